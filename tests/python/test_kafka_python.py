"""kafka-python 3 producing to and consuming from corelog.

The producers run with kafka-python's defaults, idempotence included (it turns idempotence off
by itself where a test sets acks=0/1 or retries=0).
"""

from __future__ import annotations

import os

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import MessageSizeTooLargeError
from kafka.protocol.consumer.offsets import OffsetSpec

from clients import (data_batch_headers, first_offset, kp_consume, kp_consumer, kp_poll_records,
                     kp_producer)

BASE_TS_MS = 1_700_000_000_000
CODECS = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ONE_MIB = 1024 * 1024
SEND_TIMEOUT_S = 20


def send_all(bootstrap: str, topic: str, messages: list[dict], **conf) -> list:
    """Send `messages` (kwargs for KafkaProducer.send); return their RecordMetadata in order."""
    producer = kp_producer(bootstrap, **conf)
    try:
        futures = [producer.send(topic, **m) for m in messages]
        producer.flush(timeout=SEND_TIMEOUT_S)
        return [f.get(timeout=SEND_TIMEOUT_S) for f in futures]
    finally:
        producer.close(timeout=SEND_TIMEOUT_S)


def test_keys_headers_timestamps_round_trip(broker, topic):
    """Keys, null keys/values, ordered and repeated headers and CreateTime come back exactly."""
    messages = []
    for i in range(20):
        messages.append(dict(
            key=None if i == 3 else f"key-{i}".encode(),
            value=None if i == 7 else f"value-{i}".encode() * (i + 1),
            headers=[("h-a", f"a{i}".encode()), ("h-b", b""), ("h-a", b"\x00\xff")],
            timestamp_ms=BASE_TS_MS + i * 1000,
        ))
    metadata = send_all(broker.bootstrap, topic, messages)
    base = first_offset(broker, metadata[0].offset)
    assert [md.offset for md in metadata] == list(range(base, base + 20))

    records = kp_consume(broker.bootstrap, topic, 20)
    for i, (m, r) in enumerate(zip(messages, records)):
        assert r.offset == base + i
        assert r.key == m["key"]
        assert r.value == m["value"]
        assert r.headers == m["headers"]
        assert r.timestamp_type == 0, "CreateTime expected"
        assert r.timestamp_ms == BASE_TS_MS + i * 1000


@pytest.mark.parametrize("codec", list(CODECS), ids=lambda c: c or "none")
def test_compression_codec_round_trip_stored_verbatim(broker, topic, codec):
    """Batches compressed with each codec are consumed intact and stored on disk as sent."""
    count = 300
    messages = [dict(key=f"k{i}".encode(), value=(f"value-{i:06d}-" + "abcdefgh" * 32).encode())
                for i in range(count)]
    send_all(broker.bootstrap, topic, messages, compression_type=codec, linger_ms=20)
    records = kp_consume(broker.bootstrap, topic, count)
    base = first_offset(broker, records[0].offset)
    assert [r.offset for r in records] == list(range(base, base + count))
    assert [r.value for r in records] == [m["value"] for m in messages]

    headers = data_batch_headers(broker.partition_dir(topic, 0) / "00000000000000000000.log",
                                 count)
    assert headers
    assert {h.magic for h in headers} == {2}
    assert {h.codec for h in headers} == {CODECS[codec]}
    assert sum(h.records for h in headers) == count


def test_message_just_under_max_message_bytes_is_accepted(broker, topic):
    """A record batch just under the 1 MiB default max.message.bytes is stored and fetched."""
    value = os.urandom(ONE_MIB - 512)
    [md] = send_all(broker.bootstrap, topic, [dict(key=b"big", value=value)],
                    max_request_size=4 * ONE_MIB)
    first_offset(broker, md.offset)
    [record] = kp_consume(broker.bootstrap, topic, 1)
    assert record.value == value


def test_message_over_max_message_bytes_is_rejected_by_broker(broker, topic):
    """An over-limit batch gets MessageSizeTooLargeError from the broker, not from the client."""
    producer = kp_producer(broker.bootstrap, max_request_size=8 * ONE_MIB, retries=0)
    try:
        before = producer.send(topic, value=b"before").get(timeout=SEND_TIMEOUT_S).offset
        first_offset(broker, before)
        # send() itself accepts it (the client limit is raised): the error must come back
        # in the broker's ProduceResponse.
        future = producer.send(topic, value=os.urandom(ONE_MIB + 64 * 1024))
        with pytest.raises(MessageSizeTooLargeError):
            future.get(timeout=SEND_TIMEOUT_S)
        assert producer.send(topic, value=b"after").get(timeout=SEND_TIMEOUT_S).offset == (
            before + 1)
    finally:
        producer.close(timeout=SEND_TIMEOUT_S)


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_every_acks_level_delivers(broker, topic, acks):
    """acks=0, acks=1 and acks=all all end with every message readable in order."""
    count = 50
    messages = [dict(value=f"acks-{acks}-{i}".encode()) for i in range(count)]
    metadata = send_all(broker.bootstrap, topic, messages, acks=acks)
    if acks != 0:
        base = first_offset(broker, metadata[0].offset)
        assert [md.offset for md in metadata] == list(range(base, base + count))
    records = kp_consume(broker.bootstrap, topic, count)
    assert [r.value for r in records] == [m["value"] for m in messages]


def test_several_partitions_auto_created_keep_order(broker_factory, topic):
    """Auto-created topics get --num-partitions partitions; each reads back in order."""
    broker = broker_factory("--num-partitions", "4")
    partitions, per_partition = 4, 25
    messages = [dict(partition=p, value=f"p{p}-m{i}".encode())
                for i in range(per_partition) for p in range(partitions)]
    metadata = send_all(broker.bootstrap, topic, messages)
    for p in range(partitions):
        assert [md.offset for md in metadata if md.partition == p] == list(range(per_partition))

    consumer = kp_consumer(broker.bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == set(range(partitions))
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records = kp_poll_records(consumer, partitions * per_partition)
    finally:
        consumer.close()
    for p in range(partitions):
        got = [r for r in records if r.partition == p]
        assert [r.value for r in got] == [f"p{p}-m{i}".encode() for i in range(per_partition)]


def test_consume_from_earliest_latest_and_given_offset(broker, topic):
    """seek_to_beginning, seek_to_end (only new records) and seek(offset) start where asked."""
    [first, *_] = send_all(broker.bootstrap, topic,
                           [dict(value=f"old{i}".encode()) for i in range(10)])
    base = first_offset(broker, first.offset)
    tp = TopicPartition(topic, 0)
    consumer = kp_consumer(broker.bootstrap)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        assert consumer.position(tp, timeout_ms=10_000) == 0  # The log start.
        records = kp_poll_records(consumer, 10)
        assert [r.offset for r in records] == list(range(base, base + 10))

        consumer.seek(tp, base + 7)
        assert [r.value for r in kp_poll_records(consumer, 3)] == [b"old7", b"old8", b"old9"]

        consumer.seek_to_end(tp)
        assert consumer.position(tp, timeout_ms=10_000) == base + 10
        send_all(broker.bootstrap, topic, [dict(value=f"new{i}".encode()) for i in range(3)])
        records = kp_poll_records(consumer, 3)
        assert [(r.offset, r.value) for r in records] == [
            (base + 10, b"new0"), (base + 11, b"new1"), (base + 12, b"new2")]

        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: base + 13}
    finally:
        consumer.close()


def test_kafka_python_takes_the_broker_for_kafka_4_1(broker):
    """kafka-python infers the broker's Kafka release from the versions ApiVersions advertises
    (Produce v13: 4.1), and then produces and fetches with Kafka 4.1's versions (Produce 13
    and Fetch 18 name topics by id) in every test here."""
    producer = kp_producer(broker.bootstrap)
    try:
        assert producer.config["api_version"] == (4, 1)
    finally:
        producer.close(timeout=SEND_TIMEOUT_S)


def test_list_offsets_answers_every_spec_with_its_epoch(broker, topic):
    """ListOffsets up to v10 (kafka-python's list_partition_offsets) answers every spec as
    Kafka does without tiered storage: the earliest local offset is the log start, nothing is
    tiered; and each offset comes with the epoch of the leader that wrote it (the current one
    for the latest)."""
    sent = send_all(broker.bootstrap, topic,
                    [dict(value=b"v%d" % i, timestamp_ms=BASE_TS_MS + i) for i in range(5)])
    base = first_offset(broker, sent[0].offset)
    tp = TopicPartition(topic, 0)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        found = {spec: admin.list_partition_offsets({tp: spec})[tp] for spec in OffsetSpec}
    finally:
        admin.close()
    answers = {spec: (got.offset, got.timestamp) for spec, got in found.items()}
    assert answers == {
        OffsetSpec.EARLIEST: (0, -1),
        OffsetSpec.EARLIEST_LOCAL: (0, -1),
        OffsetSpec.LATEST: (base + 5, -1),
        OffsetSpec.MAX_TIMESTAMP: (base + 4, BASE_TS_MS + 4),
        OffsetSpec.LATEST_TIERED: (-1, -1),
    }
    epochs = {spec: got.leader_epoch for spec, got in found.items()}
    assert epochs[OffsetSpec.LATEST_TIERED] is None
    assert epochs[OffsetSpec.EARLIEST] == epochs[OffsetSpec.EARLIEST_LOCAL]
    assert 0 <= epochs[OffsetSpec.EARLIEST] <= epochs[OffsetSpec.MAX_TIMESTAMP]
    assert epochs[OffsetSpec.MAX_TIMESTAMP] <= epochs[OffsetSpec.LATEST]
    if broker.node_id == 0:
        assert set(epochs.values()) == {0, None}, epochs
    else:
        assert epochs[OffsetSpec.LATEST] >= 1, epochs


def test_describing_an_unknown_group_is_group_id_not_found(broker):
    """DescribeGroups v6 answers a group nobody joined with GROUP_ID_NOT_FOUND (KIP-1043)."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = admin.describe_groups(["nobody-joined"])["nobody-joined"]
    finally:
        admin.close()
    assert described["group_state"] == "Dead"
    assert described["error"] == "[Error 69] GroupIdNotFoundError: Group nobody-joined not found."


def test_offsets_for_times(broker, topic):
    """kafka-python's offsets_for_times gets the first offset whose timestamp >= the target."""
    producer = kp_producer(broker.bootstrap)
    try:
        sent = [producer.send(topic, value=f"m{i}".encode(), timestamp_ms=BASE_TS_MS + i * 1000)
                .get(timeout=SEND_TIMEOUT_S) for i in range(5)]
        base = first_offset(broker, sent[0].offset)
    finally:
        producer.close(timeout=SEND_TIMEOUT_S)
    tp = TopicPartition(topic, 0)
    consumer = kp_consumer(broker.bootstrap)
    try:
        got = consumer.offsets_for_times({tp: BASE_TS_MS + 1500})[tp]
        assert got is not None, "no offset found for a timestamp inside the log"
        assert (got.offset, got.timestamp) == (base + 2, BASE_TS_MS + 2000)
        assert consumer.offsets_for_times({tp: BASE_TS_MS + 10_000})[tp] is None
    finally:
        consumer.close()
