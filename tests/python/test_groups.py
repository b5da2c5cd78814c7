"""Consumer groups with real clients: one group mixing confluent-kafka, kafka-python and
aiokafka splits a 6-partition topic; members joining, leaving and being SIGKILLed rebalance it
without a record consumed twice or lost; committed offsets survive a broker SIGKILL; kcat's
group mode consumes.

Every consumer commits synchronously after each batch it processed, and records are produced
only while the group is stable, so "exactly once" is a precise expectation here.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import threading

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from clients import CLIENT_TIMEOUT_S, ck_flush, ck_producer, wait_until

PARTITIONS = 6
BROKER_FLAGS = ("--group-initial-rebalance-delay-ms", "100",
                "--group-min-session-timeout-ms", "1000")
# Long enough for a loaded CI machine, short enough that a SIGKILLed member expires quickly.
SESSION_MS = 4000
HEARTBEAT_MS = 500
REBALANCE_TIMEOUT_S = 60


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(*BROKER_FLAGS)


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic].result(timeout=CLIENT_TIMEOUT_S)


def produce(bootstrap: str, topic: str, values: list[str], partitions: int = PARTITIONS):
    producer = ck_producer(bootstrap)
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % partitions)
    ck_flush(producer)


class Member(threading.Thread):
    """A group member polling in its own thread; records what it consumed and holds."""

    def __init__(self, kind: str, bootstrap: str, topic: str, group: str):
        super().__init__(name=f"member-{kind}", daemon=True)
        self.kind, self.bootstrap, self.topic, self.group = kind, bootstrap, topic, group
        self.records: list[tuple[int, int, bytes]] = []
        self.assignment: frozenset[int] = frozenset()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def run(self):
        try:
            {"confluent": self.run_confluent, "kafka-python": self.run_kafka_python,
             "aiokafka": lambda: asyncio.run(self.run_aiokafka())}[self.kind]()
        except BaseException as e:  # Reported by the test, never swallowed.
            self.error = e

    def got(self, partition: int, offset: int, value: bytes):
        with self.lock:
            self.records.append((partition, offset, value))

    def run_confluent(self):
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group,
            "partition.assignment.strategy": "roundrobin", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
        })
        consumer.subscribe([self.topic])
        while not self.stopping.is_set():
            msg = consumer.poll(0.1)
            self.assignment = frozenset(tp.partition for tp in consumer.assignment())
            if msg is None or msg.error():
                continue
            self.got(msg.partition(), msg.offset(), msg.value())
            consumer.commit(message=msg, asynchronous=False)
        consumer.close()

    def run_kafka_python(self):
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
        consumer = KafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
            partition_assignment_strategy=[RoundRobinPartitionAssignor],
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS)
        while not self.stopping.is_set():
            batches = consumer.poll(timeout_ms=100)
            for records in batches.values():
                for r in records:
                    self.got(r.partition, r.offset, r.value)
            if batches:
                consumer.commit()
            self.assignment = frozenset(tp.partition for tp in consumer.assignment())
        consumer.close()

    async def run_aiokafka(self):
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS)
        await consumer.start()
        try:
            while not self.stopping.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for r in records:
                        self.got(r.partition, r.offset, r.value)
                if batches:
                    await consumer.commit()
                self.assignment = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            await consumer.stop()

    def stop(self):
        self.stopping.set()
        self.join(timeout=CLIENT_TIMEOUT_S)
        assert not self.is_alive(), f"{self.kind} did not stop"


def check_members(members: list[Member]):
    for m in members:
        assert m.error is None, f"{m.kind} failed: {m.error!r}"


def wait_split(members: list[Member], what: str):
    """Waits until the members hold disjoint partition sets covering the topic, evenly."""
    def split():
        check_members(members)
        sets = [m.assignment for m in members]
        union = frozenset().union(*sets)
        sizes = sorted(len(s) for s in sets)
        even = sizes[-1] - sizes[0] <= 1 and sizes[0] > 0
        return union == frozenset(range(PARTITIONS)) and sum(sizes) == PARTITIONS and even
    wait_until(split, timeout_s=REBALANCE_TIMEOUT_S, what=what)


def consumed(members: list[Member]) -> list[tuple[int, int, bytes]]:
    out = []
    for m in members:
        with m.lock:
            out.extend(m.records)
    return out


def wait_consumed_exactly(members: list[Member], expected: set[bytes]):
    """Waits until every expected value was consumed, then checks none twice."""
    wait_until(lambda: {v for _, _, v in consumed(members)} >= expected,
               timeout_s=REBALANCE_TIMEOUT_S, what=f"{len(expected)} records consumed")
    records = consumed(members)
    positions = [(p, o) for p, o, _ in records]
    assert len(positions) == len(set(positions)), "a record was consumed twice"
    assert {v for _, _, v in records} == expected


KILLED_MEMBER = """
import sys
from kafka import KafkaConsumer
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
consumer = KafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
    partition_assignment_strategy=[RoundRobinPartitionAssignor], enable_auto_commit=False,
    auto_offset_reset="earliest", session_timeout_ms=int(sys.argv[4]), heartbeat_interval_ms=300)
while True:
    consumer.poll(timeout_ms=100)
    if consumer.assignment():
        print("assigned", flush=True)
"""


def test_mixed_group_splits_and_rebalances(group_broker, topic):
    """confluent-kafka, kafka-python and aiokafka in one group split 6 partitions; a member
    leaving and one SIGKILLed (expired by session timeout) rebalance the rest, and across all
    of it every record is consumed exactly once."""
    bootstrap, group = group_broker.bootstrap, f"{topic}-group"
    create_topic(bootstrap, topic)
    members = [Member(kind, bootstrap, topic, group)
               for kind in ("confluent", "kafka-python", "aiokafka")]
    for m in members:
        m.start()
    try:
        wait_split(members, "three members split the partitions")
        values = {f"first-{i}".encode() for i in range(60)}
        produce(bootstrap, topic, sorted(v.decode() for v in values))
        wait_consumed_exactly(members, values)

        leaving = members.pop(1)  # kafka-python leaves with LeaveGroup.
        leaving.stop()
        wait_split(members, "two members after one left")
        more = {f"second-{i}".encode() for i in range(30)}
        produce(bootstrap, topic, sorted(v.decode() for v in more))
        values |= more
        wait_consumed_exactly(members + [leaving], values)

        killed = subprocess.Popen(
            [sys.executable, "-c", KILLED_MEMBER, bootstrap, topic, group, str(SESSION_MS)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert killed.stdout.readline().strip() == "assigned"
            wait_until(lambda: sum(len(m.assignment) for m in members) < PARTITIONS,
                       timeout_s=REBALANCE_TIMEOUT_S, what="the new member taking partitions")
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait()
        wait_split(members, "two members after the killed one's session expired")
        last = {f"third-{i}".encode() for i in range(30)}
        produce(bootstrap, topic, sorted(v.decode() for v in last))
        values |= last
        wait_consumed_exactly(members + [leaving], values)
    finally:
        for m in members:
            m.stop()
    check_members(members)


def test_group_resumes_after_broker_sigkill(group_broker, topic):
    """Offsets committed by kafka-python survive a broker SIGKILL: after restart an aiokafka
    consumer in the same group reads only what came after them."""
    from kafka import KafkaConsumer
    bootstrap, group = group_broker.bootstrap, f"{topic}-group"
    create_topic(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, [f"before-{i}" for i in range(20)], partitions=2)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS)
    seen = []

    def poll_all_twenty():
        for records in consumer.poll(timeout_ms=200).values():
            seen.extend(r.value for r in records)
        return len(seen) >= 20
    wait_until(poll_all_twenty, what="first 20 records")
    consumer.commit()
    consumer.close()
    assert len(seen) == 20

    group_broker.restart(signal.SIGKILL)
    produce(bootstrap, topic, [f"after-{i}" for i in range(10)], partitions=2)
    member = Member("aiokafka", bootstrap, topic, group)
    member.start()
    try:
        expected = {f"after-{i}".encode() for i in range(10)}
        wait_consumed_exactly([member], expected)
    finally:
        member.stop()
    check_members([member])


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_group_mode_consumes_and_commits(group_broker, topic):
    """`kcat -G group topic` consumes every record and commits, so a second run reads nothing."""
    bootstrap, group = group_broker.bootstrap, f"{topic}-group"
    create_topic(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, [f"line-{i}" for i in range(20)], partitions=2)

    def kcat_group() -> list[str]:
        proc = subprocess.run(
            ["kcat", "-b", bootstrap, "-G", group, topic, "-e", "-q",
             "-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=100"],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S * 3)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    assert sorted(kcat_group()) == sorted(f"line-{i}" for i in range(20))
    assert kcat_group() == [], "the second run starts from the committed offsets"
