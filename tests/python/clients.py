"""Small, strict wrappers around the Kafka clients used by the tests.

Every consumer here uses manual assignment with explicit start offsets and never commits;
consumer groups are tested with their own members in test_groups.py. Every wait is bounded by a deadline; on a timeout the
helpers fail with what they got so far rather than hanging.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

CLIENT_TIMEOUT_S = 20.0


@dataclass
class Record:
    """A client-independent view of one consumed record."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    timestamp_type: int  # 0 = CreateTime, 1 = LogAppendTime (Kafka's attribute bit).
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def wait_until(condition, timeout_s: float = CLIENT_TIMEOUT_S, what: str = "condition"):
    """Poll `condition()` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)  # Polling interval, the condition decides.


def holds_for(condition, duration_s: float, what: str = "condition") -> None:
    """Poll `condition()` for `duration_s` seconds: it must hold every time it is asked (an
    event that must not happen within the window, not a wait)."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        if not condition():
            raise AssertionError(f"{what} stopped holding")
        time.sleep(0.05)  # Polling interval over the window.


# ---------------------------------------------------------------- confluent-kafka (librdkafka)

def ck_producer(bootstrap: str, **conf) -> Producer:
    base = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(CLIENT_TIMEOUT_S * 1000),
    }
    base.update(conf)
    return Producer(base)


class DeliveryLog:
    """Collects delivery reports; `check()` raises if any delivery failed."""

    def __init__(self):
        self.ok: list = []
        self.failed: list = []

    def __call__(self, err, msg):
        (self.failed if err is not None else self.ok).append((err, msg))

    def check(self, expected: int):
        assert not self.failed, f"delivery failed: {[str(e) for e, _ in self.failed[:5]]}"
        assert len(self.ok) == expected, f"{len(self.ok)} delivered, expected {expected}"


def ck_flush(producer: Producer, timeout_s: float = CLIENT_TIMEOUT_S):
    remaining = producer.flush(timeout_s)
    assert remaining == 0, f"{remaining} messages still in flight after {timeout_s}s"


def ck_consumer(bootstrap: str, **conf) -> Consumer:
    # librdkafka insists on a group.id even for assign(); nothing is committed or joined.
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": "corelog-pytest-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
    }
    base.update(conf)
    return Consumer(base)


def ck_record(msg) -> Record:
    ts_type, ts = msg.timestamp()
    # confluent-kafka: TIMESTAMP_CREATE_TIME = 1, TIMESTAMP_LOG_APPEND_TIME = 2.
    return Record(msg.partition(), msg.offset(), msg.key(), msg.value(), ts, ts_type - 1,
                  list(msg.headers() or []))


def ck_poll_records(consumer: Consumer, count: int, timeout_s: float = CLIENT_TIMEOUT_S):
    """Poll until `count` records arrived; raise on any consumer error."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"got {len(records)} of {count} records in {timeout_s}s: {records[-3:]}")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        records.append(ck_record(msg))
    return records


def ck_consume(bootstrap: str, topic: str, count: int, partition: int = 0, offset: int = 0,
               **conf) -> list[Record]:
    """Assign one partition at `offset` and read exactly `count` records."""
    consumer = ck_consumer(bootstrap, **conf)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        return ck_poll_records(consumer, count)
    finally:
        consumer.close()


# ---------------------------------------------------------------- kafka-python

def kp_producer(bootstrap: str, **conf):
    from kafka import KafkaProducer
    base = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000),
        max_block_ms=int(CLIENT_TIMEOUT_S * 1000),
    )
    base.update(conf)
    return KafkaProducer(**base)


def kp_consumer(bootstrap: str, **conf):
    from kafka import KafkaConsumer
    base = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000) + 5000,
        consumer_timeout_ms=int(CLIENT_TIMEOUT_S * 1000),
    )
    base.update(conf)
    return KafkaConsumer(**base)


def kp_record(r) -> Record:
    return Record(r.partition, r.offset, r.key, r.value, r.timestamp, r.timestamp_type,
                  list(r.headers or []))


def kp_poll_records(consumer, count: int, timeout_s: float = CLIENT_TIMEOUT_S):
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"got {len(records)} of {count} records in {timeout_s}s: {records[-3:]}")
        batches = consumer.poll(timeout_ms=200, max_records=count - len(records))
        for tp_records in batches.values():
            records.extend(kp_record(r) for r in tp_records)
    return records


def kp_consume(bootstrap: str, topic: str, count: int, partition: int = 0, offset: int = 0,
               **conf) -> list[Record]:
    from kafka import TopicPartition as KTP
    consumer = kp_consumer(bootstrap, **conf)
    try:
        tp = KTP(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return kp_poll_records(consumer, count)
    finally:
        consumer.close()


# ---------------------------------------------------------------- the log on disk

V2_HEADER = struct.Struct(">qiiBIhiqqqhii")  # Kafka RecordBatch v2 header, 61 bytes.
assert V2_HEADER.size == 61


@dataclass
class BatchHeader:
    base_offset: int
    length: int
    magic: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    records: int

    @property
    def codec(self) -> int:
        return self.attributes & 0x7

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)


def read_batch_headers(segment: Path) -> list[BatchHeader]:
    """Parse the v2 batch headers of a `.log` segment, stopping at zero padding or the end."""
    data = segment.read_bytes()
    headers = []
    pos = 0
    while pos + V2_HEADER.size <= len(data):
        (base_offset, length, _epoch, magic, _crc, attributes, last_offset_delta,
         base_ts, max_ts, _pid, _pepoch, _base_seq, records) = V2_HEADER.unpack_from(data, pos)
        if length <= 0:
            break
        headers.append(BatchHeader(base_offset, length, magic, attributes, last_offset_delta,
                                   base_ts, max_ts, records))
        pos += 12 + length
    return headers


def data_batch_headers(segment: Path, records: int) -> list[BatchHeader]:
    """The headers of the client batches in `segment`, once they hold `records` records (a
    cluster node's copy may trail the leader's acknowledgement by a moment). On a cluster the
    log begins with its first leaders' control batches, which are left out; every batch,
    control or not, follows the one before it without a gap."""
    def found():
        headers = read_batch_headers(segment) if segment.exists() else []
        data = [h for h in headers if not h.is_control]
        return headers if sum(h.records for h in data) >= records else None

    headers = wait_until(found, what=f"{records} records in {segment}")
    expected_base = headers[0].base_offset
    assert expected_base == 0, headers[0]
    for header in headers:
        assert header.base_offset == expected_base, headers
        expected_base += header.last_offset_delta + 1
    return [h for h in headers if not h.is_control]


def first_offset(broker, found: int) -> int:
    """Checks and returns `found`, the offset of the first record written to a fresh partition
    of `broker`: 0 on a single node; on a cluster node at least 1, since a replicated log
    begins with a control batch of each of its first leaders (one, or more when leadership
    settled in several steps), which consumers skip."""
    if broker.node_id == 0:
        assert found == 0, f"the first record of a partition is at offset {found}, not 0"
    else:
        assert found >= 1, f"a replicated partition's first record is at offset {found}"
    return found
