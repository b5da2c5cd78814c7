"""Compacted topics with real clients: confluent-kafka (librdkafka), kafka-python, aiokafka and
kafkajs each write a keyed changelog (updates of every key, then tombstones for some) to a
`cleanup.policy=compact` topic, and a consumer of the same client, reading the whole topic from
the beginning, ends up seeing exactly the latest record of every key at the offset its producer
was acknowledged, tombstones included, and reaches the high watermark; librdkafka's
transactional producer writes the changelog in transactions, some aborted, and its
read_committed consumer sees exactly the latest committed record of each key. A compacted log is
sparse (whole batches gone, batches holding fewer records than their offset range, a
producer's last batch kept with no records at all), so this pins down that corelog serves it
in a shape these clients read without looping or failing; the Python clients' logs also begin
with such an empty batch. Beside that: an idempotent producer whose every batch was compacted
away keeps producing, with the same producer id, epoch and the next sequence, also after the
broker restarts (SIGKILL, then SIGTERM) and rebuilds its producer state from the log, where
the producer's only trace is its last batch kept empty; such an empty batch goes once the
producer wrote a later one, or once the partition forgot the producer (expired); a consumer group's offset committed into a gap of a compacted log
survives a broker restart and the group resumes from it; a record without a key is refused
(INVALID_RECORD) by kafka-python and kafkajs (test_confluent.py has librdkafka's case).

The changelog cases run on a single node and on a three-node cluster (conftest's
BOTH_TOPOLOGIES), where the topic has three replicas that each compact their own log, and a
replica's log keeps fillers (empty batches without a producer) for the batches a pass removed:
every client reads over them as over any empty batch. The cases that restart the broker or
read its files are single-node ones. Brokers run with flags that make compaction prompt.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clients import (CLIENT_TIMEOUT_S, V2_HEADER, DeliveryLog, ck_consumer, ck_flush,
                     ck_producer, kp_consumer, kp_producer, wait_until)
from cluster_nodes import start_cluster, wait_formed

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
COMPACTION_JS = NODE_DIR / "compaction.js"
# compaction.js gives up by itself after 60 s; this only catches a node that cannot even do that.
NODE_TIMEOUT_S = 90

# Segments roll 300 ms after their first record (checked every 100 ms) and the cleaner looks
# every 100 ms; groups form without the initial rebalance delay.
BROKER_FLAGS = ("--log-cleaner-backoff-ms", "100", "--retention-check-interval-ms", "100",
                "--group-initial-rebalance-delay-ms", "100")
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": "65536",
    "segment.ms": "300",
    "min.cleanable.dirty.ratio": "0.01",
    # Tombstones stay for the whole test: the consumers must read them.
    "delete.retention.ms": "3600000",
}
# Long enough for any pass on a loaded two-core machine.
COMPACTED_WITHIN_S = 90.0
KEYS = 120
ROUNDS = 4
# Several KB a value, so that a round fills several 64 KiB segments.
VALUE_BYTES = 3000

# (offset, key, value): a record as the tests compare it; value None is a tombstone.
Entry = tuple[int, bytes, "bytes | None"]


@pytest.fixture
def compaction_broker(broker_factory, topology):
    """A broker with BROKER_FLAGS; on the "cluster" topology node 1 of three, once formed."""
    if topology == "single":
        return broker_factory(*BROKER_FLAGS)
    nodes = start_cluster(broker_factory, extra=("--default-replication-factor", "3",
                                                 *BROKER_FLAGS))
    wait_formed(nodes)
    return nodes[1]


@pytest.fixture
def replication(topology) -> int:
    """The replication factor of the topics a test creates: every node of the cluster."""
    return 1 if topology == "single" else 3


SINGLE_NODE = pytest.mark.single_node("restarts the broker or reads its files")


def changelog_value(head: str | None) -> bytes | None:
    """A value of VALUE_BYTES bytes that begins with `head` (compaction.js builds the same)."""
    return None if head is None else (head + "|").ljust(VALUE_BYTES, "x").encode()


def changelog(keys: int = KEYS, rounds: int = ROUNDS, prefix: str = "key") -> list[tuple]:
    """`rounds` rounds of an update of every key, in write order, as (key, head) with head None
    for a tombstone: the last round deletes every 7th key."""
    plan = []
    for round_ in range(rounds):
        for key in range(keys):
            deleted = round_ + 1 == rounds and key % 7 == 0
            plan.append((f"{prefix}-{key}", None if deleted else f"{prefix}-{key}@{round_}"))
    return plan


def written_entries(plan: list[tuple], offsets: list[int]) -> list[Entry]:
    assert len(plan) == len(offsets), (len(plan), len(offsets))
    return [(offset, key.encode(), changelog_value(head))
            for (key, head), offset in zip(plan, offsets)]


def latest_per_key(written: list[Entry]) -> list[Entry]:
    """The record of every key with the highest offset, in offset order."""
    latest: dict[bytes, Entry] = {}
    for entry in sorted(written):
        latest[entry[1]] = entry
    return sorted(latest.values())


def describe_difference(got: list[Entry], expected: list[Entry]) -> str:
    """What a read is missing and what it has too many, by offset (values abridged)."""
    def short(entries):
        return [(o, k, None if v is None else v[:24]) for o, k, v in entries][:8]
    got_set, expected_set = set(got), set(expected)
    missing = sorted(expected_set - got_set)
    extra = sorted(got_set - expected_set)
    order = "" if got == sorted(got) else " (not in offset order)"
    return (f"read {len(got)} records{order}, expected {len(expected)}; missing "
            f"{len(missing)}: {short(missing)}; not expected {len(extra)}: {short(extra)}")


def wait_compacted(read_all, written: list[Entry], what: str, end: int | None = None
                   ) -> list[Entry]:
    """Read the topic with `read_all()` (returns its records and the offset the reader ended
    at) until it is exactly the latest record of every key of `written`, and the reader ended
    at the high watermark `end` (by default just past the last record written). Returns that
    read."""
    expected = latest_per_key(written)
    if end is None:
        end = max(offset for offset, _, _ in written) + 1
    last: list = [None]

    def compacted():
        records, ended_at = read_all()
        assert ended_at == end, f"{what}: read ended at {ended_at}, the log ends at {end}"
        last[0] = records
        return records == expected

    try:
        wait_until(compacted, COMPACTED_WITHIN_S, what=f"{what} to read compacted")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}: {describe_difference(last[0] or [], expected)}")
    assert len(expected) < len(written), "the test wrote some record that compaction removes"
    return last[0]


# ---------------------------------------------------------------- confluent-kafka

def ck_create(bootstrap: str, topic: str, config: dict = TOPIC_CONFIG,
              replication: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, replication, config=config)],
                                  operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=CLIENT_TIMEOUT_S)


def ck_write(producer, topic: str, plan: list[tuple]) -> list[Entry]:
    """Produce `plan` to partition 0 and return what was written, at its acknowledged offsets."""
    log = DeliveryLog()
    for key, head in plan:
        producer.produce(topic, key=key.encode(), value=changelog_value(head), partition=0,
                         on_delivery=log)
        producer.poll(0)
    ck_flush(producer)
    log.check(len(plan))
    offsets = {(m.key(), m.value()): m.offset() for _, m in log.ok}
    assert len(offsets) == len(plan), "every (key, value) of a plan is distinct"
    return sorted((offsets[(key.encode(), changelog_value(head))], key.encode(),
                   changelog_value(head)) for key, head in plan)


def ck_read_all(bootstrap: str, topic: str) -> tuple[list[Entry], int]:
    """Every record of partition 0 from offset 0 up to librdkafka's end-of-partition event,
    and the offset that event reports (the high watermark the fetcher reached)."""
    consumer = ck_consumer(bootstrap, **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        records: list[Entry] = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while True:
            assert time.monotonic() < deadline, (
                f"no end of partition within {CLIENT_TIMEOUT_S}s; read {len(records)} records, "
                f"the last {records[-1:]}")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return records, msg.offset()
                raise KafkaException(msg.error())
            records.append((msg.offset(), msg.key(), msg.value()))
    finally:
        consumer.close()


# A batch header's producer fields: (base offset, last offset, producer id, epoch, base
# sequence, record count).
BatchIds = tuple[int, int, int, int, int, int]


def batches_on_disk(broker, topic: str) -> list[BatchIds]:
    """The v2 batch headers of every segment of partition 0, in offset order, as read while no
    replacement is under way (a pass may still merge segments after the log reads compacted:
    a segment that disappears or batches that overlap mean one was, and the files are read
    again)."""
    def read() -> list[BatchIds] | None:
        batches = []
        segments = broker.partition_dir(topic, 0).glob("*.log")
        try:
            for segment in sorted(segments, key=lambda p: int(p.stem)):
                data = segment.read_bytes()
                at = 0
                while at + V2_HEADER.size <= len(data):
                    (base, length, _epoch, _magic, _crc, _attributes, last_delta, _first_ts,
                     _max_ts, producer_id, producer_epoch, base_sequence,
                     count) = V2_HEADER.unpack_from(data, at)
                    if length <= 0:
                        break
                    batches.append((base, base + last_delta, producer_id, producer_epoch,
                                    base_sequence, count))
                    at += 12 + length
        except FileNotFoundError:
            return None
        if any(later[0] <= earlier[1] for earlier, later in zip(batches, batches[1:])):
            return None
        return batches

    return wait_until(read, what=f"the segments of {topic} between replacements")


def write_prelude(bootstrap: str, topic: str) -> list[Entry]:
    """An idempotent librdkafka producer writes the first record of `topic`, of a key the
    changelog updates later: compacted, the log begins with that producer's last batch kept
    with no records, which every reader must step over. Returns what it wrote."""
    producer = ck_producer(bootstrap, **{"enable.idempotence": True})
    return ck_write(producer, topic, [("key-1", "key-1@prelude")])


def assert_begins_with_an_empty_batch(broker, topic: str) -> None:
    """The compacted log read began with the prelude's batch, kept empty (see write_prelude)."""
    first = batches_on_disk(broker, topic)[0]
    assert (first[0], first[5]) == (0, 0), f"the first batch on disk is {first}"


def test_confluent_reads_a_compacted_changelog(compaction_broker, topic, replication):
    """librdkafka's producer writes a keyed changelog with tombstones after the prelude; its
    consumer, reading from offset 0 (the prelude's empty batch) to the end-of-partition event,
    sees exactly the latest record of each key at its acknowledged offset and ends at the high
    watermark."""
    bootstrap = compaction_broker.bootstrap
    ck_create(bootstrap, topic, replication=replication)
    written = write_prelude(bootstrap, topic)
    producer = ck_producer(bootstrap, **{"batch.size": 16384})
    written += ck_write(producer, topic, changelog())
    compacted = wait_compacted(lambda: ck_read_all(bootstrap, topic), written, "librdkafka")
    assert any(value is None for _, _, value in compacted), "tombstones are read"
    if replication == 1:
        assert_begins_with_an_empty_batch(compaction_broker, topic)


def test_confluent_reads_a_compacted_transactional_changelog(compaction_broker, topic,
                                                            replication):
    """librdkafka's transactional producer writes the changelog in transactions of 30 records,
    every third one aborted after its records were written; a read_committed consumer reading
    from offset 0 ends up seeing exactly the latest committed record of each key (records of
    committed transactions superseded by later committed ones go, aborted ones go whole, also
    where they are a key's latest), and its end of partition is the high watermark: no
    transaction is left open."""
    bootstrap = compaction_broker.bootstrap
    ck_create(bootstrap, topic, replication=replication)
    producer = ck_producer(bootstrap, **{"transactional.id": f"{topic}-changelog"})
    producer.init_transactions(CLIENT_TIMEOUT_S)
    plan = changelog(keys=60)
    committed: list[Entry] = []
    for number, start in enumerate(range(0, len(plan), 30)):
        producer.begin_transaction()
        written = ck_write(producer, topic, plan[start:start + 30])
        if number % 3 == 2:
            producer.abort_transaction(CLIENT_TIMEOUT_S)
        else:
            producer.commit_transaction(CLIENT_TIMEOUT_S)
            committed += written
    watermarks = ck_consumer(bootstrap)
    try:
        _, high_watermark = watermarks.get_watermark_offsets(
            TopicPartition(topic, 0), timeout=CLIENT_TIMEOUT_S)
    finally:
        watermarks.close()
    wait_compacted(lambda: ck_read_all(bootstrap, topic), committed,
                   "librdkafka read_committed", end=high_watermark)


@SINGLE_NODE
def test_confluent_idempotent_producer_outlives_its_compacted_batches(compaction_broker, topic):
    """An idempotent librdkafka producer writes one key many times, then other keys; another
    producer overwrites every one of them, so compaction removes all its records and keeps
    only its last batch, empty. The same producer instance then keeps producing with its
    producer id, epoch and next sequence (no OutOfOrderSequence, no reset): with the broker
    running, after a SIGKILL (producer state rebuilt from the log, where the empty batch is
    the producer's only trace) and after a clean restart."""
    broker = compaction_broker
    ck_create(broker.bootstrap, topic)
    errors: list = []
    idempotent = ck_producer(broker.bootstrap, **{
        "enable.idempotence": True, "batch.size": 16384, "error_cb": errors.append})
    overwriter = ck_producer(broker.bootstrap, **{"batch.size": 16384})
    ours = ck_write(idempotent, topic, [("A", f"A@{i}") for i in range(60)]
                    + [(f"other-{key}", f"other-{key}@0") for key in range(20)])
    written = list(ours)
    for step, restart in enumerate([None, signal.SIGKILL, signal.SIGTERM]):
        keys = sorted({key.decode() for _, key, _ in ours})
        written += ck_write(overwriter, topic, [(key, f"{key}@over-{step}") for key in keys])
        wait_compacted(lambda: ck_read_all(broker.bootstrap, topic), written,
                       f"step {step}: the overwritten log")
        # The overwriter is not idempotent: every batch with a producer id is ours.
        # The overwriter is not idempotent: every batch with a producer id is ours, and
        # none of our records is left.
        ours_on_disk = [b for b in batches_on_disk(broker, topic) if b[2] >= 0]
        assert ours_on_disk and all(b[5] == 0 for b in ours_on_disk), ours_on_disk
        (base, last, producer_id, epoch, base_sequence, count) = ours_on_disk[-1]
        assert last == ours[-1][0], (
            f"step {step}: the idempotent producer's batches left are {ours_on_disk}; its "
            f"last, ending at {ours[-1][0]}, is not kept")
        next_sequence = base_sequence + (last - base) + 1

        if restart is not None:
            broker.restart(restart)
        head = f"after-{step}"
        [appended] = ck_write(idempotent, topic, [(head, head)])
        assert appended[0] == written[-1][0] + 1, "appends continue at the log end"
        # Brokers down during a restart is expected; anything else is not.
        serious = [e for e in errors if e.fatal() or e.code() not in (
            KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)]
        assert not serious, f"step {step}: producer errors: {[str(e) for e in serious]}"
        ours.append(appended)
        written.append(appended)
        newest = [b for b in batches_on_disk(broker, topic) if b[2] == producer_id][-1]
        assert newest == (appended[0], appended[0], producer_id, epoch, next_sequence, 1), (
            f"step {step}: the producer's new batch is {newest}: expected producer "
            f"{producer_id}, epoch {epoch}, sequence {next_sequence}")


@SINGLE_NODE
def test_confluent_a_superseded_empty_batch_goes_at_the_next_pass(compaction_broker, topic):
    """The empty batch kept for an idempotent producer's last batch goes once the producer
    wrote a later batch (Kafka keeps only the batch holding a producer's last sequence): after
    the producer's later batch is overwritten and compacted too, the producer has exactly one
    batch left, that later one, empty."""
    broker = compaction_broker
    ck_create(broker.bootstrap, topic)
    idempotent = ck_producer(broker.bootstrap, **{"enable.idempotence": True})
    overwriter = ck_producer(broker.bootstrap)
    written: list[Entry] = []
    for step in range(2):
        [ours] = ck_write(idempotent, topic, [(f"key-{step}", f"key-{step}@ours")])
        written += [ours]
        written += ck_write(overwriter, topic, [(f"key-{step}", f"key-{step}@over")])
        wait_compacted(lambda: ck_read_all(broker.bootstrap, topic), written,
                       f"step {step}: the overwritten log")
    ours_on_disk = [b for b in batches_on_disk(broker, topic) if b[2] >= 0]
    assert [(b[0], b[5]) for b in ours_on_disk] == [(ours[0], 0)], (
        f"the idempotent producer's batches on disk: {ours_on_disk} (base, last, producer id, "
        f"epoch, base sequence, records); only its last, at {ours[0]}, should be left")


@SINGLE_NODE
def test_confluent_an_expired_producers_empty_batch_goes(broker_factory, topic):
    """The empty batch kept for an idempotent producer's last batch goes once the partition
    forgot the producer (`--producer-id-expiration-ms`), as Kafka keeps only its active
    producers' last batches: later writes of another producer bring passes that remove it."""
    broker = broker_factory(*BROKER_FLAGS, "--producer-id-expiration-ms", "1000")
    ck_create(broker.bootstrap, topic)
    idempotent = ck_producer(broker.bootstrap, **{"enable.idempotence": True})
    overwriter = ck_producer(broker.bootstrap)
    ck_write(idempotent, topic, [("key-0", "key-0@ours")])
    ticks = iter(range(1_000_000))

    def forgotten():
        tick = next(ticks)
        ck_write(overwriter, topic, [("key-0", f"key-0@over-{tick}")])
        return not [b for b in batches_on_disk(broker, topic) if b[2] >= 0]

    wait_until(forgotten, COMPACTED_WITHIN_S,
               what="the expired idempotent producer's batch to go")


@SINGLE_NODE
def test_confluent_group_resumes_inside_a_compacted_log(compaction_broker, topic):
    """A librdkafka consumer group commits, on a compacted topic, an offset that compaction
    removed (the one after a record it consumed); after a broker restart the group resumes
    there: it reads the surviving records from that offset on, then new ones, nothing
    before."""
    broker = compaction_broker
    ck_create(broker.bootstrap, topic)
    producer = ck_producer(broker.bootstrap, **{"batch.size": 16384})
    written = ck_write(producer, topic, changelog(keys=60, rounds=3))
    survivors = wait_compacted(lambda: ck_read_all(broker.bootstrap, topic), written,
                               "librdkafka")
    offsets = {offset for offset, _, _ in survivors}
    middle = len(survivors) // 2
    resume_at = next(offset + 1 for offset, _, _ in survivors[middle:]
                     if offset + 1 not in offsets)
    group = f"{topic}-group"
    member_conf = {"group.id": group, "auto.offset.reset": "earliest",
                   "enable.partition.eof": True}
    first = ck_consumer(broker.bootstrap, **member_conf)
    try:
        first.subscribe([topic])
        consumed = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S * 2
        while not consumed or consumed[-1] < resume_at - 1:
            assert time.monotonic() < deadline, f"group consumed {consumed[-3:]}"
            msg = first.poll(0.2)
            if msg is not None and msg.error() is None:
                consumed.append(msg.offset())
        first.commit(offsets=[TopicPartition(topic, 0, resume_at)], asynchronous=False)
    finally:
        first.close()

    broker.restart()
    written += ck_write(producer, topic, changelog(keys=5, rounds=1, prefix="new"))
    expected = [e for e in latest_per_key(written) if e[0] >= resume_at]
    second = ck_consumer(broker.bootstrap, **{**member_conf, "auto.offset.reset": "error"})
    try:
        second.subscribe([topic])
        resumed: list[Entry] = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S * 2
        while len(resumed) < len(expected):
            assert time.monotonic() < deadline, describe_difference(resumed, expected)
            msg = second.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            resumed.append((msg.offset(), msg.key(), msg.value()))
    finally:
        second.close()
    assert resumed == expected, describe_difference(resumed, expected)


# ---------------------------------------------------------------- kafka-python

def kp_create(bootstrap: str, topic: str, config: dict = TOPIC_CONFIG,
              replication: int = 1) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([KNewTopic(topic, 1, replication, topic_configs=config)],
                            timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
    finally:
        admin.close()


def kp_read_all(bootstrap: str, topic: str) -> tuple[list[Entry], int]:
    """Every record of partition 0 from offset 0 until the consumer's position reaches the
    end offset it was told first, and that position."""
    from kafka import TopicPartition as KTP
    consumer = kp_consumer(bootstrap)
    try:
        tp = KTP(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        end = consumer.end_offsets([tp])[tp]
        records: list[Entry] = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while consumer.position(tp) < end:
            assert time.monotonic() < deadline, (
                f"position {consumer.position(tp)} short of {end} after {CLIENT_TIMEOUT_S}s; "
                f"read {len(records)} records, the last {records[-1:]}")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend((r.offset, r.key, r.value) for r in batch)
        return records, consumer.position(tp)
    finally:
        consumer.close()


def test_kafka_python_reads_a_compacted_changelog(compaction_broker, topic, replication):
    """kafka-python's (idempotent) producer writes a keyed changelog with tombstones after the
    prelude; its consumer reads from offset 0 (the prelude's empty batch) until its position
    reaches the end offset, and sees exactly the latest record of each key at its
    acknowledged offset."""
    bootstrap = compaction_broker.bootstrap
    kp_create(bootstrap, topic, replication=replication)
    prelude = write_prelude(bootstrap, topic)
    plan = changelog()
    producer = kp_producer(bootstrap)
    try:
        futures = [producer.send(topic, key=key.encode(), value=changelog_value(head),
                                 partition=0) for key, head in plan]
        producer.flush(timeout=CLIENT_TIMEOUT_S)
        offsets = [future.get(timeout=CLIENT_TIMEOUT_S).offset for future in futures]
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)
    written = prelude + written_entries(plan, offsets)
    compacted = wait_compacted(lambda: kp_read_all(bootstrap, topic), written, "kafka-python")
    assert any(value is None for _, _, value in compacted), "tombstones are read"
    if replication == 1:
        assert_begins_with_an_empty_batch(compaction_broker, topic)


@SINGLE_NODE
def test_kafka_python_compacted_topic_refuses_a_message_without_a_key(compaction_broker, topic):
    """kafka-python's send of a record without a key to a compacted topic fails with
    InvalidRecordError and writes nothing; a keyed record after it gets the next offset, 0.
    The producer is not idempotent: kafka-python 3.0's idempotent producer takes any error it
    cannot retry, INVALID_RECORD included, as fatal and fails every later send."""
    from kafka.errors import InvalidRecordError
    bootstrap = compaction_broker.bootstrap
    kp_create(bootstrap, topic)
    producer = kp_producer(bootstrap, enable_idempotence=False)
    try:
        keyless = producer.send(topic, value=b"no key", partition=0)
        with pytest.raises(InvalidRecordError):
            keyless.get(timeout=CLIENT_TIMEOUT_S)
        keyed = producer.send(topic, key=b"k", value=b"with key", partition=0)
        assert keyed.get(timeout=CLIENT_TIMEOUT_S).offset == 0
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)
    records, end = kp_read_all(bootstrap, topic)
    assert (records, end) == ([(0, b"k", b"with key")], 1)


# ---------------------------------------------------------------- aiokafka

async def aio_create(bootstrap: str, topic: str, replication: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin import NewTopic as ANewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([ANewTopic(topic, 1, replication,
                                             topic_configs=TOPIC_CONFIG)])
    finally:
        await admin.close()


async def aio_write(bootstrap: str, topic: str, plan: list[tuple]) -> list[int]:
    """Send `plan` to partition 0; the offset acknowledged for each record."""
    from aiokafka import AIOKafkaProducer
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key.encode(), value=changelog_value(head),
                                       partition=0) for key, head in plan]
        return [(await future).offset for future in futures]
    finally:
        await producer.stop()


async def aio_read_all(bootstrap: str, topic: str) -> tuple[list[Entry], int]:
    """Every record of partition 0 from offset 0 until the consumer's position reaches the
    end offset it was told first, and that position."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="none",
                                request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
    await consumer.start()
    try:
        tp = ATP(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Entry] = []
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT_S):
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=200)
                    records.extend((r.offset, r.key, r.value) for r in batch.get(tp, []))
        except TimeoutError:
            raise AssertionError(
                f"position {await consumer.position(tp)} short of {end} after "
                f"{CLIENT_TIMEOUT_S}s; read {len(records)} records, the last {records[-1:]}")
        return records, await consumer.position(tp)
    finally:
        await consumer.stop()


def test_aiokafka_reads_a_compacted_changelog(compaction_broker, topic, replication):
    """aiokafka's producer writes a keyed changelog with tombstones after the prelude; its
    consumer reads from offset 0 (the prelude's empty batch) until its position reaches the
    end offset, and sees exactly the latest record of each key at its acknowledged offset."""
    bootstrap = compaction_broker.bootstrap
    asyncio.run(aio_create(bootstrap, topic, replication))
    prelude = write_prelude(bootstrap, topic)
    plan = changelog()
    written = prelude + written_entries(plan, asyncio.run(aio_write(bootstrap, topic, plan)))
    compacted = wait_compacted(lambda: asyncio.run(aio_read_all(bootstrap, topic)), written,
                               "aiokafka")
    assert any(value is None for _, _, value in compacted), "tombstones are read"
    if replication == 1:
        assert_begins_with_an_empty_batch(compaction_broker, topic)


# ---------------------------------------------------------------- kafkajs

def kafkajs(step: str, **config) -> dict:
    """Run one step of tests/node/compaction.js; its JSON result, which must say ok."""
    proc = subprocess.run(["node", str(COMPACTION_JS), json.dumps({"step": step, **config})],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"compaction.js printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert result["ok"] and proc.returncode == 0, (
        f"kafkajs {step} failed (exit {proc.returncode}): "
        f"{ {k: v for k, v in result.items() if k != 'records'} }\n{proc.stderr[-20000:]}")
    return result


needs_kafkajs = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir(),
    reason="node and kafkajs are needed (scripts/test.sh installs kafkajs with npm ci)")


def kafkajs_read_all(bootstrap: str, topic: str) -> tuple[list[Entry], int]:
    """Every record kafkajs's group consumer reads from the beginning up to the record just
    below the high watermark, and the offset after the last one (where it ended)."""
    result = kafkajs("read", brokers=[bootstrap], topic=topic)
    records = [(int(r["offset"]), r["key"].encode(),
                None if r["value"] is None else r["value"].encode())
               for r in result["records"]]
    assert all(r["partition"] == 0 for r in result["records"])
    ended_at = records[-1][0] + 1 if records else 0
    assert ended_at == int(result["highWatermark"]), result["highWatermark"]
    return records, ended_at


@needs_kafkajs
def test_kafkajs_reads_a_compacted_changelog(compaction_broker, topic, replication):
    """kafkajs creates the compacted topic and writes a keyed changelog with tombstones, five
    records a batch; a consumer group of its own reads from the beginning to the high
    watermark and sees exactly the latest record of each key at its acknowledged offset."""
    bootstrap = compaction_broker.bootstrap
    # No prelude (write_prelude): kafkajs 2.2 moves on only past records it was given, so a
    # fetch answered with nothing but an empty batch (a compacted segment that holds only
    # that batch: one fetch reads one segment, as in Kafka) has it fetch the same offset
    # forever (tulios/kafkajs#1072, with Apache Kafka as well).
    kafkajs("create", brokers=[bootstrap], topic=topic, configs=TOPIC_CONFIG,
            replicationFactor=replication)
    plan = changelog()
    produced = kafkajs("produce", brokers=[bootstrap], topic=topic, messages=plan,
                       valueBytes=VALUE_BYTES, perSend=5)
    written = written_entries(plan, [int(offset) for offset in produced["offsets"]])
    compacted = wait_compacted(lambda: kafkajs_read_all(bootstrap, topic), written, "kafkajs")
    assert any(value is None for _, _, value in compacted), "tombstones are read"


@needs_kafkajs
@SINGLE_NODE
def test_kafkajs_compacted_topic_refuses_a_message_without_a_key(compaction_broker, topic):
    """kafkajs's send of a record without a key to a compacted topic fails with INVALID_RECORD;
    a keyed record after it gets offset 0."""
    result = kafkajs("keyless", brokers=[compaction_broker.bootstrap], topic=topic,
                     configs=TOPIC_CONFIG)
    assert result["keylessError"] is not None, "a keyless record was accepted"
    assert result["keylessError"].get("type") == "INVALID_RECORD", result["keylessError"]
    assert result["keyedOffset"] == "0", result
