"""A consume-transform-produce pipeline with exactly-once semantics, run as its own process by
test_transactions.py (which SIGKILLs it and the broker at random moments).

Usage: eos_pipeline.py BOOTSTRAP SOURCE SINK GROUP TRANSACTIONAL_ID PER_TXN PACE_MS

It reads SOURCE (read_committed, from the group's committed offsets), and for every PER_TXN
records writes the same values to SINK and the consumed positions to the group, in one
transaction; PACE_MS between transactions keeps it running long enough to be killed midway.
Exits 0 once its positions reach the end of SOURCE with everything committed; exits 3 on any
client error (a broker that went away mid-transaction), after which a new instance resumes
from the committed offsets and fences this one's leftovers.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

TIMEOUT_S = 30


def main() -> int:
    bootstrap, source, sink, group, transactional_id, per_txn, pace_ms = sys.argv[1:8]
    per_txn, pace_s = int(per_txn), int(pace_ms) / 1000
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    partitions = [TopicPartition(source, p) for p in
                  consumer.list_topics(source, TIMEOUT_S).topics[source].partitions]
    consumer.assign(partitions)
    ends = [consumer.get_watermark_offsets(tp, TIMEOUT_S)[1] for tp in partitions]
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         "linger.ms": 1})
    producer.init_transactions(TIMEOUT_S)
    # Where the group's committed offsets stand: a consumer's position is unknown until it
    # has fetched, which it never does once everything is consumed.
    done = [max(tp.offset, 0) for tp in consumer.committed(partitions, TIMEOUT_S)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(offset >= end for offset, end in zip(done, ends)):
            return 0
        messages = [m for m in consumer.consume(per_txn, 0.5) if not m.error()]
        if not messages:
            continue
        producer.begin_transaction()
        for message in messages:
            producer.produce(sink, value=message.value(), partition=message.partition())
        positions = consumer.position(partitions)
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                             TIMEOUT_S)
        producer.commit_transaction(TIMEOUT_S)
        done = [max(tp.offset, offset) for tp, offset in zip(positions, done)]
        time.sleep(pace_s)
    print("pipeline did not finish", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as error:
        print(f"client error: {error}", file=sys.stderr)
        sys.exit(3)
