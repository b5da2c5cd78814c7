"""confluent-kafka (librdkafka) producing to and consuming from corelog."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from clients import (
    DeliveryLog, ck_consume, ck_consumer, ck_flush, ck_poll_records, ck_producer,
    data_batch_headers, first_offset, wait_until,
)

BASE_TS_MS = 1_700_000_000_000
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ONE_MIB = 1024 * 1024


def create_topic(bootstrap: str, name: str, partitions: int, config: dict | None = None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10, request_timeout=15)
    futures[name].result(timeout=20)


def produce_all(bootstrap: str, topic: str, messages: list[dict], **conf) -> DeliveryLog:
    """Produce `messages` (kwargs for Producer.produce) and require every delivery to succeed."""
    producer = ck_producer(bootstrap, **conf)
    log = DeliveryLog()
    for m in messages:
        producer.produce(topic, on_delivery=log, **m)
        producer.poll(0)
    ck_flush(producer)
    log.check(len(messages))
    return log


def test_keys_headers_timestamps_round_trip(broker, topic):
    """Keys, null keys/values, ordered and repeated headers and CreateTime come back exactly."""
    messages = []
    for i in range(20):
        messages.append(dict(
            key=None if i == 3 else f"key-{i}".encode(),
            value=None if i == 7 else f"value-{i}".encode() * (i + 1),
            headers=[("h-a", f"a{i}".encode()), ("h-b", b""), ("h-a", b"\x00\xff")],
            timestamp=BASE_TS_MS + i * 1000,
        ))
    log = produce_all(broker.bootstrap, topic, messages)
    offsets = sorted(m.offset() for _, m in log.ok)
    base = first_offset(broker, offsets[0])
    assert offsets == list(range(base, base + 20))

    records = ck_consume(broker.bootstrap, topic, 20)
    for i, (m, r) in enumerate(zip(messages, records)):
        assert r.offset == base + i
        assert r.key == m["key"]
        assert r.value == m["value"]
        assert r.headers == m["headers"]
        assert r.timestamp_type == 0, "CreateTime expected"
        assert r.timestamp_ms == BASE_TS_MS + i * 1000


def round_trip_in_codec(broker, topic: str, count: int, codec: str) -> tuple[list, int]:
    """librdkafka produces `count` keyed records compressed with `codec` (its name for it)
    and a consumer reads every one back as sent, at consecutive offsets. Returns the headers
    of the batches stored in partition 0's first segment on `broker`, and the first offset."""
    messages = [dict(key=f"k{i}".encode(), value=(f"value-{i:06d}-" + "abcdefgh" * 32).encode())
                for i in range(count)]
    produce_all(broker.bootstrap, topic, messages, **{"compression.type": codec,
                                                      "linger.ms": 20})
    records = ck_consume(broker.bootstrap, topic, count)
    base = first_offset(broker, records[0].offset)
    assert [r.offset for r in records] == list(range(base, base + count))
    assert [(r.key, r.value) for r in records] == [(m["key"], m["value"]) for m in messages]
    segment = broker.partition_dir(topic, 0) / "00000000000000000000.log"
    return data_batch_headers(segment, count), base


@pytest.mark.parametrize("codec", list(CODECS))
def test_compression_codec_round_trip_stored_verbatim(broker, topic, codec):
    """Batches compressed with each codec are consumed intact and stored on disk as sent."""
    count = 300
    headers, base = round_trip_in_codec(broker, topic, count, codec)
    assert headers, "no batches found"
    assert {h.magic for h in headers} == {2}
    assert {h.codec for h in headers} == {CODECS[codec]}
    assert sum(h.records for h in headers) == count
    assert headers[0].base_offset == base


@pytest.mark.parametrize("codec,sent_as", [("zstd", "none"), ("uncompressed", "gzip")])
def test_topic_compression_type_recompresses_produced_batches(broker, topic, codec, sent_as):
    """A topic's compression.type: batches librdkafka sends in another codec are stored in the
    topic's (on a cluster, in every replica's log, node 1's read here); the consumer reads every
    record as sent, at consecutive offsets; DescribeConfigs reports the value."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, -1, config={"compression.type": codec})],
                                  operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=20)
    headers, _ = round_trip_in_codec(broker, topic, 200, sent_as)
    stored_as = {"zstd": 4, "uncompressed": 0}[codec]
    assert {h.codec for h in headers} == {stored_as}, headers
    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=20)
    assert configs["compression.type"].value == codec


def test_message_just_under_max_message_bytes_is_accepted(broker, topic):
    """A record batch just under the 1 MiB default max.message.bytes is stored and fetched."""
    value = os.urandom(ONE_MIB - 512)
    produce_all(broker.bootstrap, topic, [dict(key=b"big", value=value)],
                **{"message.max.bytes": 4 * ONE_MIB, "compression.type": "none"})
    [record] = ck_consume(broker.bootstrap, topic, 1)
    assert record.value == value


def test_message_over_max_message_bytes_is_rejected_by_broker(broker, topic):
    """An over-limit batch gets MESSAGE_TOO_LARGE from the broker and takes no offset."""
    producer = ck_producer(broker.bootstrap, **{"message.max.bytes": 8 * ONE_MIB,
                                                "compression.type": "none"})
    log = DeliveryLog()
    producer.produce(topic, value=b"before", on_delivery=log)
    ck_flush(producer)
    # The client accepts it locally (its own limit is raised), so the error must be the broker's.
    producer.produce(topic, value=os.urandom(ONE_MIB + 64 * 1024), on_delivery=log)
    ck_flush(producer)
    producer.produce(topic, value=b"after", on_delivery=log)
    ck_flush(producer)

    assert len(log.failed) == 1, [str(e) for e, _ in log.failed]
    err, _ = log.failed[0]
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, str(err)
    base = first_offset(broker, log.ok[0][1].offset())
    assert [m.offset() for _, m in log.ok] == [base, base + 1]
    assert [r.value for r in ck_consume(broker.bootstrap, topic, 2)] == [b"before", b"after"]


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_level_delivers(broker, topic, acks):
    """acks=0, acks=1 and acks=all all end with every message readable in order."""
    count = 50
    messages = [dict(value=f"acks-{acks}-{i}".encode()) for i in range(count)]
    log = produce_all(broker.bootstrap, topic, messages, acks=acks)
    if acks != "0":
        offsets = sorted(m.offset() for _, m in log.ok)
        base = first_offset(broker, offsets[0])
        assert offsets == list(range(base, base + count))
    records = ck_consume(broker.bootstrap, topic, count)
    assert [r.value for r in records] == [m["value"] for m in messages]


def test_six_partitions_over_two_shards_keep_order(broker, topic):
    """Explicit produce to each of 6 partitions (spread over 2 shards) reads back per partition."""
    partitions, per_partition = 6, 40
    create_topic(broker.bootstrap, topic, partitions)
    messages = [dict(partition=p, key=f"p{p}".encode(), value=f"p{p}-m{i}".encode())
                for i in range(per_partition) for p in range(partitions)]
    log = produce_all(broker.bootstrap, topic, messages)
    bases = {}
    for p in range(partitions):
        offsets = sorted(m.offset() for _, m in log.ok if m.partition() == p)
        bases[p] = first_offset(broker, offsets[0])
        assert offsets == list(range(bases[p], bases[p] + per_partition)), f"partition {p}"

    consumer = ck_consumer(broker.bootstrap)
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records = ck_poll_records(consumer, partitions * per_partition)
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert (low, high) == (0, bases[p] + per_partition), f"partition {p}"
    finally:
        consumer.close()
    for p in range(partitions):
        got = [r for r in records if r.partition == p]
        assert [r.offset for r in got] == list(range(bases[p], bases[p] + per_partition))
        assert [r.value for r in got] == [f"p{p}-m{i}".encode() for i in range(per_partition)]
        if broker.node_id == 0:  # One node holds every partition (a cluster spreads them).
            assert broker.partition_dir(topic, p).is_dir()


def test_consume_from_earliest(broker, topic):
    """OFFSET_BEGINNING starts at the first record of the partition."""
    produce_all(broker.bootstrap, topic, [dict(value=f"m{i}".encode()) for i in range(10)])
    records = ck_consume(broker.bootstrap, topic, 10, offset=OFFSET_BEGINNING)
    base = first_offset(broker, records[0].offset)
    assert [(r.offset, r.value) for r in records] == [(base + i, f"m{i}".encode())
                                                      for i in range(10)]


def test_consume_from_given_offset(broker, topic):
    """An explicit start offset yields exactly the records from that offset on."""
    log = produce_all(broker.bootstrap, topic, [dict(value=f"m{i}".encode()) for i in range(10)])
    base = first_offset(broker, log.ok[0][1].offset())
    records = ck_consume(broker.bootstrap, topic, 4, offset=base + 6)
    assert [(r.offset, r.value) for r in records] == [(base + i, f"m{i}".encode())
                                                      for i in range(6, 10)]


def test_consume_from_latest_sees_only_new_records(broker, topic):
    """OFFSET_END skips the existing records: the first record seen is a new one."""
    log = produce_all(broker.bootstrap, topic,
                      [dict(value=f"old{i}".encode()) for i in range(10)])
    end = first_offset(broker, log.ok[0][1].offset()) + 10
    consumer = ck_consumer(broker.bootstrap)
    producer = ck_producer(broker.bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
        # The consumer resolves "latest" asynchronously, so keep producing new records until
        # some arrive; whatever offset "latest" resolved to, no old record may show up.
        seen = []
        for i in range(200):
            producer.produce(topic, value=f"new{i}".encode())
            ck_flush(producer)
            msg = consumer.poll(0.5)
            if msg is not None:
                assert not msg.error(), str(msg.error())
                seen.append(msg)
                break
        assert seen, "no new record consumed from OFFSET_END"
        first = seen[0]
        assert first.value().startswith(b"new")
        assert first.offset() >= end
        assert first.value() == f"new{first.offset() - end}".encode()
    finally:
        consumer.close()


def test_offsets_for_times_one_record_per_batch(broker, topic):
    """ListOffsets by timestamp returns the first offset with timestamp >= target."""
    producer = ck_producer(broker.bootstrap)
    log = DeliveryLog()
    for i in range(5):
        producer.produce(topic, value=f"m{i}".encode(), timestamp=BASE_TS_MS + i * 1000,
                         on_delivery=log)
        ck_flush(producer)  # One batch per record.
    assert_offsets_for_times(broker.bootstrap, topic, first_offset(broker, log.ok[0][1].offset()))


@pytest.mark.parametrize("codec", list(CODECS))
def test_offsets_for_times_inside_one_batch(broker, topic, codec):
    """ListOffsets by timestamp finds the exact record inside a batch, as Kafka does, in
    batches of every codec (librdkafka's snappy is raw, without the xerial framing). The
    values compress, since librdkafka sends a batch uncompressed when compressing does not
    make it smaller. The producer learns the topic's leader before it produces: records
    produced while the topic is being created wait in librdkafka's unassigned queue, and on a
    loaded machine their linger can run out before the leader is known, which split them
    into two batches."""
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 5000, "compression.type": codec})

    def leader_known() -> bool:
        partitions = producer.list_topics(topic, timeout=10).topics[topic].partitions
        return bool(partitions) and all(p.leader >= 0 for p in partitions.values())

    wait_until(leader_known, what="the producer knowing the topic's leader")
    log = DeliveryLog()
    for i in range(5):
        producer.produce(topic, value=f"m{i}".encode() + b"-" * 200,
                         timestamp=BASE_TS_MS + i * 1000, on_delivery=log)
    ck_flush(producer)
    headers = data_batch_headers(broker.partition_dir(topic, 0) / "00000000000000000000.log", 5)
    assert len(headers) == 1, "precondition: all five records in one batch"
    assert headers[0].codec == CODECS[codec], "precondition: the batch compressed"
    assert_offsets_for_times(broker.bootstrap, topic, first_offset(broker, log.ok[0][1].offset()))


def assert_offsets_for_times(bootstrap: str, topic: str, base: int):
    """The five records m0..m4 at offsets `base`.., one second apart from BASE_TS_MS."""
    consumer = ck_consumer(bootstrap)
    try:
        cases = {
            BASE_TS_MS - 10_000: base,
            BASE_TS_MS: base,
            BASE_TS_MS + 1: base + 1,
            BASE_TS_MS + 2000: base + 2,
            BASE_TS_MS + 3500: base + 4,
            BASE_TS_MS + 4000: base + 4,
            BASE_TS_MS + 4001: OFFSET_END,  # No such record: Kafka answers -1.
        }
        for ts, expected in cases.items():
            [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            assert tp.offset == expected, f"timestamp {ts - BASE_TS_MS:+d} ms"
    finally:
        consumer.close()


def test_watermarks_and_list_offsets_earliest_latest(broker, topic):
    """Low/high watermarks from ListOffsets match the produced record count."""
    log = produce_all(broker.bootstrap, topic, [dict(value=b"x")] * 7)
    base = first_offset(broker, log.ok[0][1].offset())
    consumer = ck_consumer(broker.bootstrap)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, base + 7)
    finally:
        consumer.close()


def test_log_append_time_topic_stamps_broker_time(broker, topic):
    """On a LogAppendTime topic the consumer sees the broker's append time, not CreateTime."""
    create_topic(broker.bootstrap, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    before_ms = int(time.time() * 1000)
    produce_all(broker.bootstrap, topic,
                [dict(value=f"m{i}".encode(), timestamp=BASE_TS_MS + i) for i in range(3)])
    after_ms = int(time.time() * 1000)
    records = ck_consume(broker.bootstrap, topic, 3)
    for r in records:
        assert r.timestamp_type == 1, "LogAppendTime expected"
        assert before_ms - 1000 <= r.timestamp_ms <= after_ms + 1000, r.timestamp_ms


def test_compacted_topic_refuses_a_message_without_a_key(broker, topic):
    """On a cleanup.policy=compact topic a message without a key fails delivery with
    INVALID_RECORD (KIP-467) and nothing of it is written; a message with a key is delivered,
    at the offset the refused one would have taken."""
    create_topic(broker.bootstrap, topic, 1, {"cleanup.policy": "compact"})
    producer = ck_producer(broker.bootstrap)
    keyless, keyed = DeliveryLog(), DeliveryLog()
    producer.produce(topic, value=b"no key", partition=0, on_delivery=keyless)
    ck_flush(producer)
    producer.produce(topic, key=b"k", value=b"with key", partition=0, on_delivery=keyed)
    ck_flush(producer)
    assert not keyless.ok, "a keyless message was delivered to a compacted topic"
    [(error, _)] = keyless.failed
    assert error.code() == KafkaError.INVALID_RECORD, error
    keyed.check(1)
    offset = first_offset(broker, keyed.ok[0][1].offset())
    [record] = ck_consume(broker.bootstrap, topic, 1)
    assert (record.offset, record.key, record.value) == (offset, b"k", b"with key")


def test_fetch_returns_first_batch_larger_than_fetch_limits(broker, topic):
    """A record larger than fetch.max.bytes and the partition limit is still delivered."""
    value = os.urandom(100_000)
    produce_all(broker.bootstrap, topic, [dict(value=value), dict(value=b"small")],
                **{"compression.type": "none"})
    records = ck_consume(broker.bootstrap, topic, 2, **{
        "message.max.bytes": 1000, "fetch.max.bytes": 1024,
        "max.partition.fetch.bytes": 1024})
    assert [r.value for r in records] == [value, b"small"]


def test_long_poll_fetch_is_woken_by_append(broker, topic):
    """A fetch parked for up to 8 s returns soon after a record is appended."""
    produce_all(broker.bootstrap, topic, [dict(value=b"first")])
    consumer = ck_consumer(broker.bootstrap, **{"fetch.wait.max.ms": 8_000})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        ck_poll_records(consumer, 1)
        # The consumer is now parked in a fetch at offset 1 that may wait 8 s.
        producer = ck_producer(broker.bootstrap)
        producer.produce(topic, value=b"second")
        ck_flush(producer)
        acked = time.monotonic()
        [record] = ck_poll_records(consumer, 1, timeout_s=15)
        waited_s = time.monotonic() - acked
    finally:
        consumer.close()
    assert record.value == b"second"
    assert waited_s < 4.0, f"arrived after {waited_s:.1f} s: the parked fetch was not woken"
