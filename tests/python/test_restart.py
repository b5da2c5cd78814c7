"""Data and topic metadata survive a broker restart on the same data directory."""

from __future__ import annotations

import signal

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clients import DeliveryLog, ck_consumer, ck_flush, ck_poll_records, ck_producer

TIMEOUT_S = 20
BASE_TS_MS = 1_700_000_000_000


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_acknowledged_records_survive_restart(broker, topic, sig):
    """Every acks=all record is back after a restart, with the same offsets, keys and headers."""
    partitions, count = 3, 600
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                  config={"retention.ms": "86400000"})])[topic].result(
        timeout=TIMEOUT_S)
    producer = ck_producer(broker.bootstrap, acks="all", **{"compression.type": "lz4"})
    log = DeliveryLog()
    sent = {}
    for i in range(count):
        key = f"k{i}".encode()
        sent[key] = (key, f"v{i}".encode() * 10, [("i", str(i).encode())], BASE_TS_MS + i)
        producer.produce(topic, partition=i % partitions, key=key, value=sent[key][1],
                         headers=sent[key][2], timestamp=sent[key][3], on_delivery=log)
        producer.poll(0)
    ck_flush(producer)
    log.check(count)
    acked = {(m.partition(), m.offset()): sent[m.key()] for _, m in log.ok}
    for p in range(partitions):
        assert sorted(o for (q, o) in acked if q == p) == list(range(count // partitions))

    broker.restart(sig)

    meta = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(
        topic, timeout=TIMEOUT_S).topics[topic]
    assert sorted(meta.partitions) == list(range(partitions))
    consumer = ck_consumer(broker.bootstrap)
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records = ck_poll_records(consumer, count)
        for p in range(partitions):
            watermarks = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert watermarks == (0, count // partitions), f"partition {p}"
    finally:
        consumer.close()
    for p in range(partitions):
        arrival = [r.offset for r in records if r.partition == p]
        assert arrival == list(range(count // partitions)), f"partition {p} order"
    got = {(r.partition, r.offset): (r.key, r.value, r.headers, r.timestamp_ms) for r in records}
    assert got == acked

    # The restarted broker keeps appending after the recovered tail.
    log = DeliveryLog()
    producer = ck_producer(broker.bootstrap)
    producer.produce(topic, partition=0, value=b"after-restart", on_delivery=log)
    ck_flush(producer)
    log.check(1)
    assert log.ok[0][1].offset() == count // partitions


def test_topic_configs_survive_restart(broker, topic):
    """Topic configs set at creation are still reported after a clean restart."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                  config={"retention.ms": "1234567"})])[topic].result(
        timeout=TIMEOUT_S)
    broker.restart()
    from confluent_kafka.admin import ConfigResource
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert configs["retention.ms"].value == "1234567"
    assert len(admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions) == 2
