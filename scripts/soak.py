#!/usr/bin/env python3
"""Soak of the default configuration: the broker as the README starts it, everything at once.

    .venv/bin/python scripts/soak.py --duration 60m [--seed N] [--rate 1000] [--json]

It starts `corelog serve` ($CORELOG_BIN, else target/release/corelog) with the default shard
count (no --shards: one shard per usable core), on a data directory and ports of its own, and for
--duration runs all of this at once:

- producers (confluent-kafka, acks=all), two idempotent and two plain, at a steady total --rate
  over 3 topics x 8 partitions, which placement spreads over every shard (checked at start);
- two consumer groups whose members join and leave now and then, so the groups rebalance;
- admin churn: topics created (by CreateTopics and by a produce to an unknown topic), written
  to, given more partitions, reconfigured (AlterConfigs, IncrementalAlterConfigs) and deleted;
  configs of the long-lived topics changed in ways that keep their data; groups listed;
- connection churn: short-lived clients that connect, ask ApiVersions or Metadata, and close;
- a few hostile connections: garbage bytes, oversized and negative length prefixes, frames cut
  short and left hanging, a frame sent byte by byte, pipelined requests from a client that
  never reads its responses.

Every SAMPLE_INTERVAL_S it prints one line: broker RSS (and the batch cache's share of it, from
/metrics), open fds, disk bytes of the data directory, and the p50/p99 acknowledgement latency of
the interval (produce() to delivery report, linger.ms=5 included).

It fails (exit 1, naming the reason and the seed, with the broker's stderr tail) when:

- the broker ends by itself, by a signal or an exit of its own (checked at every sample and at
  the end), or does not exit 0 on the final SIGTERM;
- a client sees an error that is not a retriable transient one: every delivery report must be
  a success, no client error may be fatal, every admin call must succeed, every short-lived
  connection must be answered, consumers must read only intact messages;
- an acknowledged message is missing: at the end every partition of the long-lived topics is
  read from offset 0 and every acknowledgement must find its message at its offset;
- a long-lived partition goes PARTITION_STALL_S without an acknowledgement (a stalled shard);
- in the second half, RSS less the batch cache grows more than RSS_GROWTH_MAX_BYTES, or the fd
  count more than FD_GROWTH_MAX, above its value at the midpoint.

The seed (printed; --seed replays it) fixes every random choice: actions, sizes, which member
leaves, hostile frames. Thread timing is not reproducible.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka import TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic,
    ResourceType)

from corelog_broker import Broker, BrokerError, corelog_bin, free_port  # noqa: E402

# ---------------------------------------------------------------------------------- the load

LONG_TOPICS = ("soak-0", "soak-1", "soak-2")
PARTITIONS_PER_TOPIC = 8
LONG_PARTITIONS = len(LONG_TOPICS) * PARTITIONS_PER_TOPIC
PRODUCERS = 4  # Even indexes idempotent, odd ones plain.
VALUE_BYTES = 256
GROUPS = {"soak-group-a": LONG_TOPICS, "soak-group-b": (LONG_TOPICS[1],)}
MEMBERS_START, MEMBERS_MIN, MEMBERS_MAX = 2, 1, 3
MEMBER_CHURN_S = (8.0, 20.0)  # Wait between two joins or leaves.
ADMIN_CHURN_S = (0.5, 2.0)  # Wait between two admin actions.
CHURN_TOPICS_MAX = 4
CHURN_PARTITIONS_MAX = 4
CHURN_MESSAGES = 20  # Written to a churn topic by a short-lived producer.
CONNECTIONS_PER_S = 25.0  # Short-lived connections; every 25th is a whole librdkafka client.
HOSTILE_SLOTS = 3  # Hostile connections open at once.
HOSTILE_HOLD_S = (2.0, 15.0)  # How long a hostile connection holds a cut frame or unread data.
NEVER_READ_REQUEST_BYTES_MAX = 1 << 20  # Pipelined by a client that never reads.

# Configs of the long-lived topics the admin churn changes: none of them can remove data
# written during a soak (retention of a day or more, 1 GiB or more per partition).
DAY_MS = 86_400_000
LONG_TOPIC_CONFIGS = {
    "retention.ms": [str(days * DAY_MS) for days in (1, 3, 7, 30)] + ["-1"],
    "retention.bytes": ["-1", str(1 << 30), str(10 << 30)],
    "segment.ms": [str(days * DAY_MS) for days in (1, 7)],
}
# Configs of churn topics: small segments and short retention are welcome there.
CHURN_TOPIC_CONFIGS = {
    "segment.bytes": [str(1 << 20), str(16 << 20), str(1 << 30)],
    "retention.ms": ["60000", "3600000", "-1"],
    "max.message.bytes": ["1048588", str(2 << 20)],
    "cleanup.policy": ["delete"],
}

# ------------------------------------------------------------------------ checks and bounds

SAMPLE_INTERVAL_S = 10.0
# After the first half every pool, table and buffer has reached its working size, and the load
# of the second half is the same as the first: growth beyond the noise is a leak. The batch
# cache grows by design until it holds --batch-cache-bytes per shard (64 MiB by default; at the
# default rate it fills in about 10 minutes), so its bytes, from /metrics, are taken out of RSS.
# 64 MiB is well above the noise (request buffers, allocator slack: a few MiB) and below what
# the per-connection leak of issue 12 item 6 (1.9 KiB per connection) adds over the second half
# of a 60-minute soak at CONNECTIONS_PER_S (about 45,000 connections, 83 MiB).
RSS_GROWTH_MAX_BYTES = 64 << 20
# The load itself moves the fd count by about 30 between two samples: up to CHURN_TOPICS_MAX x
# CHURN_PARTITIONS_MAX churn partitions (one fd each), HOSTILE_SLOTS hostile sockets, group
# members joining and leaving (two sockets each), short-lived connections. 64 leaves room for
# that and catches a descriptor leaked per connection (25 a second) or per deleted topic.
FD_GROWTH_MAX = 64
# Every long-lived partition takes rate/24 messages a second (40 at the default rate): half a
# minute without one acknowledged is a stalled partition or shard, not a slow machine.
PARTITION_STALL_S = 30.0
CLIENT_TIMEOUT_S = 30.0  # One admin call, one short-lived client, one connection.
DELIVERY_TIMEOUT_MS = 120_000  # librdkafka retries within it; a message not acked by then fails.
FLUSH_TIMEOUT_S = 150.0
MEMBER_CLOSE_TIMEOUT_S = 30.0
THREAD_STOP_TIMEOUT_S = 60.0
VERIFY_TIMEOUT_S = 600.0
FAILURES_SHOWN = 20
FAILURES_KEPT_PER_SOURCE = 3  # A dead broker fails every client: the first few say it all.
STDERR_TAIL_BYTES = 16 * 1024

# Errors a client reports while it retries by itself: a connection lost or not yet made.
TRANSIENT_CLIENT_ERRORS = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
# Commit results of a group in the middle of a rebalance (the member rejoins), or of a member
# with nothing to commit.
TRANSIENT_COMMIT_ERRORS = {KafkaError._NO_OFFSET, KafkaError.REBALANCE_IN_PROGRESS,
                           KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID}

# librdkafka logs every connection event; the soak judges errors through error_cb instead.
_QUIET = logging.getLogger("soak.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class Outcome:
    """What went wrong, shared by every thread: failures end the soak, transients are counted.
    The broker's own failures come first: a client error is usually only their echo."""

    def __init__(self):
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.failure_counts: Counter[str] = Counter()
        self.transients: Counter[str] = Counter()

    def fail(self, where: str, what: str) -> None:
        with self.lock:
            self.failure_counts[where] += 1
            if self.failure_counts[where] <= FAILURES_KEPT_PER_SOURCE:
                line = f"{where}: {what}"
                if where == "broker":
                    self.failures.insert(0, line)
                else:
                    self.failures.append(line)

    def failure_total(self) -> int:
        with self.lock:
            return sum(self.failure_counts.values())

    def client_error(self, where: str, error: KafkaError, transient_codes=frozenset()) -> None:
        """A client-reported error: counted if transient, else a failure."""
        if not error.fatal() and error.code() in TRANSIENT_CLIENT_ERRORS | transient_codes:
            with self.lock:
                self.transients[f"{where}: {error.name()}"] += 1
        else:
            self.fail(where, f"{'fatal ' if error.fatal() else ''}client error {error}")

    def failed(self) -> bool:
        return bool(self.failures)

    def transient_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.transients)


class LoadThread(threading.Thread):
    """A thread of the load: `work()` runs until `stop` is set; any exception escaping it is a
    failure of the soak (a load thread that dies quietly would leave the soak testing less)."""

    def __init__(self, name: str, outcome: Outcome):
        super().__init__(name=name, daemon=True)
        self.outcome = outcome
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self.work()
        except Exception as error:  # noqa: BLE001 - reported, with its type, as a failure.
            self.outcome.fail(self.name, f"thread died: {error!r}")

    def work(self) -> None:
        raise NotImplementedError


# ------------------------------------------------------------------------------- messages

def long_partition(producer: int, sequence: int) -> tuple[str, int]:
    """The long-lived (topic, partition) message `sequence` of `producer` goes to."""
    index = (producer + sequence) % LONG_PARTITIONS
    return LONG_TOPICS[index // PARTITIONS_PER_TOPIC], index % PARTITIONS_PER_TOPIC


def payload(producer: int, sequence: int) -> bytes:
    head = f"soak p{producer:02d} s{sequence:010d} ".encode()
    return head + b"." * (VALUE_BYTES - len(head))


def parse_payload(value: bytes | None) -> tuple[int, int] | None:
    """(producer, sequence) of a value made by `payload`, or None for foreign bytes."""
    if value is None or len(value) != VALUE_BYTES or not value.startswith(b"soak p"):
        return None
    try:
        return int(value[6:8]), int(value[10:20])
    except ValueError:
        return None


def pack_ack(offset: int, producer: int, sequence: int) -> int:
    """One acknowledgement in 64 bits, ordered by offset: offset, producer, sequence."""
    assert producer < 16 and sequence < 1 << 28 and offset < 1 << 32
    return offset << 32 | producer << 28 | sequence


def unpack_ack(packed: int) -> tuple[int, int, int]:
    return packed >> 32, (packed >> 28) & 0xF, packed & ((1 << 28) - 1)


class AckLog:
    """Every acknowledgement of the producers, per partition, and the latencies of acks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_partition = {(t, p): array("Q") for t in LONG_TOPICS
                             for p in range(PARTITIONS_PER_TOPIC)}
        started = time.monotonic()
        self.last_ack_at = {tp: started for tp in self.by_partition}
        self.interval_latencies_s: list[float] = []
        self.all_latencies_s = array("f")
        self.count = 0

    def add(self, topic: str, partition: int, offset: int, producer: int, sequence: int,
            latency_s: float) -> None:
        with self.lock:
            self.by_partition[(topic, partition)].append(pack_ack(offset, producer, sequence))
            self.last_ack_at[(topic, partition)] = time.monotonic()
            self.interval_latencies_s.append(latency_s)
            self.all_latencies_s.append(latency_s)
            self.count += 1

    def start_clock(self) -> None:
        """The load starts now: stalls are measured from here."""
        with self.lock:
            now = time.monotonic()
            self.last_ack_at = {tp: now for tp in self.last_ack_at}

    def take_interval(self) -> list[float]:
        with self.lock:
            latencies, self.interval_latencies_s = self.interval_latencies_s, []
        return latencies

    def stalled(self, now: float) -> list[tuple[str, int, float]]:
        with self.lock:
            return [(t, p, now - at) for (t, p), at in self.last_ack_at.items()
                    if now - at > PARTITION_STALL_S]


def percentile_ms(values, fraction: float) -> float:
    """Nearest-rank percentile of latencies in seconds, in ms; 0 when there are none."""
    if not len(values):
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


# ------------------------------------------------------------------------------ producers

class ProducerLoad(LoadThread):
    """One confluent-kafka producer sending numbered messages at a paced rate until stopped."""

    def __init__(self, index: int, bootstrap: str, rate: float, acks: AckLog, outcome: Outcome):
        super().__init__(f"producer-{index}", outcome)
        self.index = index
        self.idempotent = index % 2 == 0
        self.rate = rate
        self.acks = acks
        self.sent = 0
        self.finished = threading.Event()
        self.client = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": self.idempotent,
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "error_cb": self._on_error,
            "logger": _QUIET,
        })

    @property
    def label(self) -> str:
        return f"producer {self.index} ({'idempotent' if self.idempotent else 'plain'})"

    def _on_error(self, error: KafkaError) -> None:
        self.outcome.client_error(self.label, error)

    def _on_delivery(self, error, message) -> None:
        parsed = parse_payload(message.value())
        if error is not None:
            self.outcome.fail(self.label, f"delivery of {parsed} failed: {error}")
        elif parsed is None:
            self.outcome.fail(self.label, "delivery report for a value never sent")
        else:
            self.acks.add(message.topic(), message.partition(), message.offset(), *parsed,
                          message.latency())

    def work(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            wait = started + self.sent / self.rate - time.monotonic()
            if wait > 0:
                self.client.poll(min(wait, 0.05))
                continue
            topic, partition = long_partition(self.index, self.sent)
            try:
                self.client.produce(topic, payload(self.index, self.sent), partition=partition,
                                    key=f"p{self.index}-s{self.sent}".encode(),
                                    on_delivery=self._on_delivery)
                self.sent += 1
            except BufferError:  # The client's queue is full: let it drain.
                self.client.poll(0.05)
            self.client.poll(0)
        self.finished.set()

    def drain(self, timeout_s: float) -> int:
        """After `stop`: wait for every outstanding delivery report; returns those left."""
        self.finished.wait(timeout_s)
        return self.client.flush(timeout_s)


# -------------------------------------------------------------------------- consumer groups

class GroupProgress:
    """How far one group has read each partition, and how many messages it was given again
    (at least once: after a rebalance a member resumes from the last commit)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_offset: dict[tuple[str, int], int] = {}
        self.consumed = 0
        self.again = 0

    def record(self, topic: str, partition: int, offset: int) -> None:
        with self.lock:
            self.consumed += 1
            if offset < self.next_offset.get((topic, partition), 0):
                self.again += 1
            else:
                self.next_offset[(topic, partition)] = offset + 1


class GroupMember(LoadThread):
    """One member of a consumer group: subscribes, consumes, auto-commits, until stopped."""

    def __init__(self, group: str, number: int, bootstrap: str, progress: GroupProgress,
                 outcome: Outcome):
        super().__init__(f"{group}-member-{number}", outcome)
        self.label = f"{group} member {number}"
        self.topics = list(GROUPS[group])
        self.progress = progress
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 2000,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1000,
            "enable.partition.eof": False,
            "error_cb": self._on_error,
            "on_commit": self._on_commit,
            "logger": _QUIET,
        }

    def _on_error(self, error: KafkaError) -> None:
        self.outcome.client_error(self.label, error)

    def _on_commit(self, error, partitions) -> None:
        errors = [error] if error is not None else []
        errors += [tp.error for tp in partitions if tp.error is not None]
        for e in errors:
            self.outcome.client_error(f"{self.label} commit", e, TRANSIENT_COMMIT_ERRORS)

    def work(self) -> None:
        consumer = Consumer(self.conf)
        consumer.subscribe(self.topics)
        try:
            while not self.stop.is_set():
                for message in consumer.consume(num_messages=500, timeout=0.5):
                    self._check(message)
        finally:
            consumer.close()

    def _check(self, message) -> None:
        if message.error() is not None:
            self.outcome.client_error(self.label, message.error())
            return
        parsed = parse_payload(message.value())
        if parsed is None or long_partition(*parsed) != (message.topic(), message.partition()):
            self.outcome.fail(self.label, f"read bytes no producer sent there at "
                                          f"{message.topic()}-{message.partition()}"
                                          f"@{message.offset()}: {message.value()!r:.60}")
        self.progress.record(message.topic(), message.partition(), message.offset())


class GroupChurn(LoadThread):
    """Keeps every group between MEMBERS_MIN and MEMBERS_MAX members; now and then one more
    joins or one leaves (closes), so that every group rebalances throughout the soak."""

    def __init__(self, bootstrap: str, rng: random.Random, outcome: Outcome):
        super().__init__("group-churn", outcome)
        self.bootstrap = bootstrap
        self.rng = rng
        self.members: dict[str, list[GroupMember]] = {group: [] for group in GROUPS}
        self.progress = {group: GroupProgress() for group in GROUPS}
        self.numbers = Counter()
        self.rebalances = 0

    def consumed(self) -> int:
        return sum(progress.consumed for progress in self.progress.values())

    def add_member(self, group: str) -> None:
        self.numbers[group] += 1
        member = GroupMember(group, self.numbers[group], self.bootstrap, self.progress[group],
                             self.outcome)
        self.members[group].append(member)
        member.start()

    def remove_member(self, group: str, member: GroupMember) -> None:
        self.members[group].remove(member)
        member.stop.set()
        member.join(MEMBER_CLOSE_TIMEOUT_S)
        if member.is_alive():
            self.outcome.fail(member.label, f"close did not return within "
                                            f"{MEMBER_CLOSE_TIMEOUT_S}s")

    def work(self) -> None:
        for group in GROUPS:
            for _ in range(MEMBERS_START):
                self.add_member(group)
        while not self.stop.wait(self.rng.uniform(*MEMBER_CHURN_S)):
            group = self.rng.choice(sorted(GROUPS))
            members = self.members[group]
            grow = len(members) <= MEMBERS_MIN or (len(members) < MEMBERS_MAX
                                                  and self.rng.random() < 0.5)
            if grow:
                self.add_member(group)
            else:
                self.remove_member(group, self.rng.choice(members))
            self.rebalances += 1
        for group, members in self.members.items():
            for member in list(members):
                self.remove_member(group, member)


# ------------------------------------------------------------------------------ admin churn

class AdminChurn(LoadThread):
    """Creates, writes, grows, reconfigures and deletes short-lived topics, changes harmless
    configs of the long-lived ones and lists groups, one action every ADMIN_CHURN_S."""

    def __init__(self, bootstrap: str, rng: random.Random, outcome: Outcome):
        super().__init__("admin-churn", outcome)
        self.bootstrap = bootstrap
        self.rng = rng
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET})
        self.topics: dict[str, int] = {}  # Live churn topics and their partition counts.
        self.created = 0
        self.actions = Counter()

    def work(self) -> None:
        while not self.stop.wait(self.rng.uniform(*ADMIN_CHURN_S)):
            action = self.rng.choice(self.possible_actions())
            try:
                action()
                self.actions[action.__name__] += 1
            except (KafkaException, TimeoutError, AssertionError) as error:
                self.outcome.fail(f"admin {action.__name__}", repr(error))

    def possible_actions(self) -> list:
        actions = [self.alter_long_topic, self.describe]
        if len(self.topics) < CHURN_TOPICS_MAX:
            actions += [self.create_topic, self.auto_create_topic]
        if self.topics:
            actions += [self.delete_topic, self.write_churn_topic, self.alter_incremental,
                        self.alter_whole]
        if any(n < CHURN_PARTITIONS_MAX for n in self.topics.values()):
            actions.append(self.add_partitions)
        return actions

    def new_name(self, kind: str) -> str:
        self.created += 1
        return f"soak-{kind}-{self.created:05d}"

    def create_topic(self) -> None:
        name, partitions = self.new_name("churn"), self.rng.randint(1, CHURN_PARTITIONS_MAX)
        config = {key: self.rng.choice(values) for key, values in CHURN_TOPIC_CONFIGS.items()
                  if self.rng.random() < 0.5}
        self.admin.create_topics([NewTopic(name, partitions, config=config)])[name].result(
            timeout=CLIENT_TIMEOUT_S)
        self.topics[name] = partitions
        self.write(name, partitions)

    def auto_create_topic(self) -> None:
        """A produce to an unknown topic creates it (one partition, the broker's default)."""
        name = self.new_name("auto")
        self.write(name, None)
        self.topics[name] = 1

    def write_churn_topic(self) -> None:
        name = self.rng.choice(sorted(self.topics))
        self.write(name, self.topics[name])

    def write(self, topic: str, partitions: int | None) -> None:
        """CHURN_MESSAGES acks=all messages from a short-lived producer; all must be acked."""
        failures = []
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                             "message.timeout.ms": int(CLIENT_TIMEOUT_S * 1000),
                             "logger": _QUIET,
                             "error_cb": lambda e: self.outcome.client_error("churn producer", e)})
        for i in range(CHURN_MESSAGES):
            extra = {} if partitions is None else {"partition": i % partitions}
            producer.produce(topic, b"churn %d" % i, on_delivery=lambda e, m: failures.append(e)
                             if e is not None else None, **extra)
        left = producer.flush(CLIENT_TIMEOUT_S)
        assert left == 0 and not failures, f"{topic}: {left} unacknowledged, {failures[:3]}"

    def delete_topic(self) -> None:
        name = self.rng.choice(sorted(self.topics))
        self.admin.delete_topics([name])[name].result(timeout=CLIENT_TIMEOUT_S)
        del self.topics[name]

    def add_partitions(self) -> None:
        name = self.rng.choice(sorted(n for n, c in self.topics.items()
                                      if c < CHURN_PARTITIONS_MAX))
        count = self.topics[name] + 1
        self.admin.create_partitions([NewPartitions(name, count)])[name].result(
            timeout=CLIENT_TIMEOUT_S)
        self.topics[name] = count

    def incremental(self, topic: str, configs: dict) -> None:
        entries = []
        for key, values in configs.items():
            op = AlterConfigOpType.SET if self.rng.random() < 0.8 else AlterConfigOpType.DELETE
            entries.append(ConfigEntry(key, self.rng.choice(values), incremental_operation=op))
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
        for future in self.admin.incremental_alter_configs([resource]).values():
            future.result(timeout=CLIENT_TIMEOUT_S)

    def alter_long_topic(self) -> None:
        key = self.rng.choice(sorted(LONG_TOPIC_CONFIGS))
        self.incremental(self.rng.choice(LONG_TOPICS), {key: LONG_TOPIC_CONFIGS[key]})

    def alter_incremental(self) -> None:
        keys = self.rng.sample(sorted(CHURN_TOPIC_CONFIGS), 2)
        self.incremental(self.rng.choice(sorted(self.topics)),
                         {key: CHURN_TOPIC_CONFIGS[key] for key in keys})

    def alter_whole(self) -> None:
        """The legacy AlterConfigs: replaces the topic's whole override set."""
        config = {key: self.rng.choice(values) for key, values in CHURN_TOPIC_CONFIGS.items()
                  if self.rng.random() < 0.5}
        resource = ConfigResource(ResourceType.TOPIC, self.rng.choice(sorted(self.topics)),
                                  set_config=config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            futures = self.admin.alter_configs([resource])
        for future in futures.values():
            future.result(timeout=CLIENT_TIMEOUT_S)

    def describe(self) -> None:
        topic = self.rng.choice(LONG_TOPICS + tuple(sorted(self.topics)))
        resource = ConfigResource(ResourceType.TOPIC, topic)
        for future in self.admin.describe_configs([resource]).values():
            future.result(timeout=CLIENT_TIMEOUT_S)
        self.admin.list_consumer_groups().result(timeout=CLIENT_TIMEOUT_S)
        for future in self.admin.describe_consumer_groups(sorted(GROUPS)).values():
            future.result(timeout=CLIENT_TIMEOUT_S)


# ------------------------------------------------------------------------ raw connections

def request_frame(api_key: int, version: int, correlation_id: int, body: bytes = b"") -> bytes:
    """A length-prefixed request with a v1 (non-flexible) header."""
    client_id = b"corelog-soak"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


API_VERSIONS_V0 = request_frame(18, 0, 1)
METADATA_V1_ALL_TOPICS = request_frame(3, 1, 2, struct.pack(">i", -1))  # Null topics: all.


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("closed by the broker mid-response")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def round_trip(host: str, port: int, frame: bytes) -> None:
    """One fresh connection: send `frame`, read one whole response, check its correlation id."""
    with socket.create_connection((host, port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(frame)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        body = recv_exact(sock, size)
    sent_id = struct.unpack_from(">i", frame, 8)[0]
    if struct.unpack_from(">i", body)[0] != sent_id:
        raise ValueError(f"response correlation id {body[:4].hex()} != {sent_id}")


class ConnectionChurn(LoadThread):
    """Short-lived connections at CONNECTIONS_PER_S: raw ApiVersions or Metadata round trips,
    and every 25th a whole librdkafka client that connects, reads metadata and is destroyed."""

    def __init__(self, host: str, port: int, outcome: Outcome):
        super().__init__("connection-churn", outcome)
        self.host, self.port = host, port
        self.connections = 0

    def work(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(max(0.0, started + self.connections / CONNECTIONS_PER_S
                                     - time.monotonic())):
            try:
                self.one()
            except (OSError, ValueError, struct.error, KafkaException) as error:
                self.outcome.fail("connection churn", f"connection {self.connections}: "
                                                      f"{error!r}")
            self.connections += 1

    def one(self) -> None:
        if self.connections % 25 == 24:
            client = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}",
                                  "logger": _QUIET})
            client.list_topics(timeout=CLIENT_TIMEOUT_S)
        elif self.connections % 5 == 4:
            round_trip(self.host, self.port, METADATA_V1_ALL_TOPICS)
        else:
            round_trip(self.host, self.port, API_VERSIONS_V0)


# ------------------------------------------------------------------- hostile connections

def hostile_garbage(sock: socket.socket, rng: random.Random, stop: threading.Event) -> None:
    """Random bytes: read as a length prefix and a request they are garbage."""
    sock.sendall(rng.randbytes(rng.randint(1, 4096)))
    drain(sock, 3.0)


def hostile_length_prefix(sock: socket.socket, rng: random.Random, stop) -> None:
    """A length prefix that is negative or beyond socket.request.max.bytes, with no body."""
    claim = rng.choice([-1, -(1 << 31), (1 << 31) - 1, (100 << 20) + 1, 1 << 30])
    sock.sendall(struct.pack(">i", claim))
    drain(sock, 3.0)


def hostile_cut_frame(sock: socket.socket, rng: random.Random, stop: threading.Event) -> None:
    """A frame that claims more bytes than it sends, left hanging (up to 64 MiB claimed)."""
    claim = rng.choice([64, 4096, 1 << 20, 64 << 20])
    sent = API_VERSIONS_V0[4:][:rng.randint(0, 20)]
    sock.sendall(struct.pack(">i", claim) + sent)
    stop.wait(rng.uniform(*HOSTILE_HOLD_S))


def hostile_slow_frame(sock: socket.socket, rng: random.Random, stop: threading.Event) -> None:
    """A valid request sent one byte at a time, then its answer read."""
    for byte in API_VERSIONS_V0:
        if stop.wait(rng.uniform(0.05, 0.3)):
            return
        sock.sendall(bytes([byte]))
    drain(sock, 3.0)


def hostile_never_reads(sock: socket.socket, rng: random.Random, stop: threading.Event) -> None:
    """Pipelined Metadata and ApiVersions requests until the socket blocks (or a MiB is
    sent), then the connection is held open without ever reading a response."""
    batch = b"".join(rng.choice([METADATA_V1_ALL_TOPICS, API_VERSIONS_V0]) for _ in range(256))
    sock.settimeout(0.5)
    sent = 0
    try:
        while sent < NEVER_READ_REQUEST_BYTES_MAX and not stop.is_set():
            sock.sendall(batch)
            sent += len(batch)
    except socket.timeout:
        pass  # The broker stopped reading us: what it should do.
    stop.wait(rng.uniform(*HOSTILE_HOLD_S))


HOSTILE_KINDS = (hostile_garbage, hostile_length_prefix, hostile_cut_frame, hostile_slow_frame,
                 hostile_never_reads)


def drain(sock: socket.socket, timeout_s: float) -> None:
    """Read whatever comes until the broker closes the connection or `timeout_s` passes."""
    sock.settimeout(timeout_s)
    while sock.recv(65536):
        pass


class HostileConnections(LoadThread):
    """One slot of hostile connections: one after another, of a random kind each."""

    def __init__(self, slot: int, host: str, port: int, rng: random.Random, outcome: Outcome):
        super().__init__(f"hostile-{slot}", outcome)
        self.host, self.port = host, port
        self.rng = rng
        self.episodes = Counter()

    def work(self) -> None:
        while not self.stop.is_set():
            kind = self.rng.choice(HOSTILE_KINDS)
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                # A small receive buffer, so that a client that never reads fills up soon.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(CLIENT_TIMEOUT_S)
                with sock:
                    sock.connect((self.host, self.port))
                    kind(sock, self.rng, self.stop)
            except OSError:
                pass  # Being cut off is the expected answer; the broker's health is judged
                # by the other clients and the samples.
            self.episodes[kind.__name__] += 1


# ---------------------------------------------------------------------------------- broker

class SoakBroker(Broker):
    """The broker as the README starts it, `corelog serve` with every default, except that the
    data directory, the Kafka port and the admin port are the soak's own. It runs under
    `setpriv --pdeathsig KILL` (when installed) so that it dies with the soak, even when a
    timeout SIGKILLs the soak."""

    def __init__(self, binary: str, workdir: Path):
        super().__init__(binary, workdir / "data", workdir)
        self.admin_port = free_port()

    def command(self) -> list[str]:
        wrapper = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        return [*wrapper, self.binary, "serve", "--data-dir", str(self.data_dir),
                "--listen", self.bootstrap, "--admin-listen", f"127.0.0.1:{self.admin_port}"]

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=CLIENT_TIMEOUT_S) as response:
            return response.read().decode()

    def wait_for_metrics(self) -> str:
        """/metrics once the admin listener is up (it may bind after the Kafka listener)."""
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while True:
            try:
                return self.metrics()
            except OSError:
                if time.monotonic() > deadline or not self.running():
                    raise
            time.sleep(0.05)  # Polling interval while the listener comes up.


METRIC_LINE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.M)


def metric_rows(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    rows = []
    for metric, labels, value in METRIC_LINE.findall(text):
        if metric == name:
            rows.append((dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
    return rows


def shards_of(text: str) -> set[str]:
    return {labels["shard"] for labels, _ in metric_rows(text, "corelog_connections_open")}


def long_partition_shards(text: str) -> dict[tuple[str, int], str]:
    return {(labels["topic"], int(labels["partition"])): labels["shard"]
            for labels, _ in metric_rows(text, "corelog_partition_high_watermark")
            if labels["topic"] in LONG_TOPICS}


# --------------------------------------------------------------------------------- samples

@dataclass
class Sample:
    elapsed_s: float
    rss_bytes: int
    cache_bytes: int
    fds: int
    disk_bytes: int
    acks: int
    p50_ms: float
    p99_ms: float
    connections_open: int

    @property
    def rss_less_cache(self) -> int:
        return self.rss_bytes - self.cache_bytes


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS in /proc/{pid}/status")


def disk_bytes(root: Path) -> int:
    """Bytes allocated on disk under `root` (what du counts), files vanishing meanwhile aside."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def sample_line(s: Sample, consumed: int, transients: int) -> str:
    return (f"[{s.elapsed_s:6.0f} s] rss {mib(s.rss_bytes)} (cache {mib(s.cache_bytes)}) "
            f"fds {s.fds} disk {mib(s.disk_bytes)} | acks {s.acks} p50 {s.p50_ms:.1f} ms "
            f"p99 {s.p99_ms:.1f} ms | conns {s.connections_open} consumed {consumed} "
            f"transient errors {transients}")


def growth_failures(samples: list[Sample], duration_s: float) -> tuple[list[str], dict]:
    """Second half's maximum against the sample nearest the midpoint: RSS less cache, fds."""
    middle = min(range(len(samples)), key=lambda i: abs(samples[i].elapsed_s - duration_s / 2))
    second = samples[middle + 1:]
    if len(second) < 2:
        return [], {"growth": f"not judged: {len(second)} samples after the midpoint"}
    mid = samples[middle]
    rss_growth = max(s.rss_less_cache for s in second) - mid.rss_less_cache
    fd_growth = max(s.fds for s in second) - mid.fds
    failures = []
    if rss_growth > RSS_GROWTH_MAX_BYTES:
        failures.append(f"memory: RSS less batch cache grew {mib(rss_growth)} in the second half "
                        f"(bound {mib(RSS_GROWTH_MAX_BYTES)})")
    if fd_growth > FD_GROWTH_MAX:
        failures.append(f"fds: grew by {fd_growth} in the second half (bound {FD_GROWTH_MAX})")
    return failures, {"rss_growth_second_half_bytes": rss_growth,
                      "fd_growth_second_half": fd_growth, "midpoint_s": mid.elapsed_s}


# ---------------------------------------------------------------------------- verification

def read_long_topics(bootstrap: str):
    """Every record of the long-lived topics, from offset 0 to the high watermark of now:
    yields (topic, partition, offset, value), in offset order within a partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-verify-unjoined",
                         "enable.auto.commit": False, "auto.offset.reset": "error",
                         "enable.partition.eof": False, "fetch.max.bytes": 8 << 20,
                         "logger": _QUIET})
    try:
        ends = {}
        for topic in LONG_TOPICS:
            for partition in range(PARTITIONS_PER_TOPIC):
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                         timeout=CLIENT_TIMEOUT_S)
                ends[(topic, partition)] = high
        todo = {tp for tp, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(t, p, 0) for t, p in sorted(todo)])
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sorted(todo)} not read to their ends in {VERIFY_TIMEOUT_S}s")
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                if message.error() is not None:
                    raise KafkaException(message.error())
                tp, offset = (message.topic(), message.partition()), message.offset()
                if offset < ends[tp]:
                    yield *tp, offset, message.value()
                if offset >= ends[tp] - 1:
                    todo.discard(tp)
    finally:
        consumer.close()


def sorted_acks(acks: AckLog, outcome: Outcome) -> dict[tuple[str, int], array]:
    """Per partition, the packed acknowledgements in offset order; two at one offset fail."""
    expected = {}
    for (topic, partition), packed in acks.by_partition.items():
        ordered = array("Q", sorted(packed))
        for before, after in zip(ordered, ordered[1:]):
            if before >> 32 == after >> 32:
                outcome.fail("acked", f"two messages acknowledged at {topic}-{partition}"
                                      f"@{after >> 32}")
        expected[(topic, partition)] = ordered
    return expected


def verify_acks(bootstrap: str, acks: AckLog, outcome: Outcome) -> dict:
    """Every acknowledgement finds its message at its offset; nothing foreign is stored.

    Records arrive in offset order per partition, so one cursor per partition walks the
    acknowledgements beside them: an acknowledged offset the cursor passes unmatched is missing.
    """
    expected = sorted_acks(acks, outcome)
    cursor = {tp: 0 for tp in expected}
    last_read = {tp: (-1, None) for tp in expected}  # (offset, (producer, sequence)).
    counts = Counter()

    def missing(tp, ack: int, holds) -> None:
        counts["missing"] += 1
        offset, producer, sequence = unpack_ack(ack)
        outcome.fail("acked", f"p{producer} s{sequence} acknowledged at {tp[0]}-{tp[1]}"
                              f"@{offset}, the log holds {holds}")

    for topic, partition, offset, value in read_long_topics(bootstrap):
        tp, parsed = (topic, partition), parse_payload(value)
        if parsed is None or long_partition(*parsed) != tp or value != payload(*parsed):
            counts["foreign"] += 1
            outcome.fail("stored", f"{topic}-{partition}@{offset}: bytes no producer sent "
                                   f"there: {value!r:.60}")
        acked, i = expected[tp], cursor[tp]
        while i < len(acked) and acked[i] >> 32 < offset:
            before = last_read[tp]
            missing(tp, acked[i], before[1] if before[0] == acked[i] >> 32 else "nothing")
            i += 1
        if i < len(acked) and acked[i] >> 32 == offset:
            if parsed is not None and acked[i] == pack_ack(offset, *parsed):
                counts["verified"] += 1
            else:
                missing(tp, acked[i], parsed)
            i += 1
        cursor[tp], last_read[tp] = i, (offset, parsed)
    for tp, acked in expected.items():
        for ack in acked[cursor[tp]:]:
            missing(tp, ack, "nothing: beyond the end")
    if counts["missing"]:
        outcome.fail("acked in all", f"{counts['missing']} acknowledged messages missing")
    return {"acks_verified": counts["verified"], "acks_missing": counts["missing"],
            "records_foreign": counts["foreign"]}


# ------------------------------------------------------------------------------------ soak

class Soak:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.rng = random.Random(args.seed)
        self.outcome = Outcome()
        self.acks = AckLog()
        self.broker = SoakBroker(corelog_bin(), workdir)
        self.samples: list[Sample] = []
        self.producers: list[ProducerLoad] = []
        self.groups: GroupChurn | None = None
        self.admin: AdminChurn | None = None
        self.churn: ConnectionChurn | None = None
        self.hostile: list[HostileConnections] = []
        self.summary: dict = {"seed": args.seed}

    def log(self, text: str) -> None:
        print(text, flush=True)

    def start(self) -> None:
        self.broker.start()
        metrics = self.broker.wait_for_metrics()
        self.log(f"broker pid {self.broker.proc.pid}, {len(shards_of(metrics))} shards "
                 f"(default), {self.broker.bootstrap}, data {self.broker.data_dir}")
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap, "logger": _QUIET})
        futures = admin.create_topics([NewTopic(t, PARTITIONS_PER_TOPIC) for t in LONG_TOPICS])
        for future in futures.values():
            future.result(timeout=CLIENT_TIMEOUT_S)
        self.check_placement()

    def check_placement(self) -> None:
        """The long-lived partitions must be on every shard: cross-shard load is the point."""
        metrics = self.broker.metrics()
        placed = Counter(long_partition_shards(metrics).values())
        self.log(f"long-lived partitions per shard: {dict(sorted(placed.items()))}")
        if set(placed) != shards_of(metrics) or sum(placed.values()) != LONG_PARTITIONS:
            self.outcome.fail("placement", f"long-lived partitions {dict(placed)} do not cover "
                                           f"the shards {sorted(shards_of(metrics))}")

    def start_load(self) -> None:
        host, port, bootstrap = self.broker.host, self.broker.port, self.broker.bootstrap
        self.producers = [ProducerLoad(i, bootstrap, self.args.rate / PRODUCERS, self.acks,
                                       self.outcome) for i in range(PRODUCERS)]
        self.groups = GroupChurn(bootstrap, random.Random(self.rng.random()), self.outcome)
        self.admin = AdminChurn(bootstrap, random.Random(self.rng.random()), self.outcome)
        self.churn = ConnectionChurn(host, port, self.outcome)
        self.hostile = [HostileConnections(slot, host, port, random.Random(self.rng.random()),
                                           self.outcome) for slot in range(HOSTILE_SLOTS)]
        self.acks.start_clock()
        for thread in [*self.producers, self.groups, self.admin, self.churn, *self.hostile]:
            thread.start()

    def check_alive(self, when: str) -> bool:
        ending = self.broker.died_by_itself()
        if ending is not None:
            self.outcome.fail("broker", f"died by itself ({ending}) {when}")
        return ending is None

    def take_sample(self, elapsed_s: float) -> Sample:
        pid = self.broker.proc.pid
        metrics = self.broker.metrics()
        latencies = self.acks.take_interval()
        return Sample(
            elapsed_s=elapsed_s, rss_bytes=rss_bytes(pid),
            cache_bytes=int(sum(v for _, v in metric_rows(metrics, "corelog_batch_cache_bytes"))),
            fds=len(os.listdir(f"/proc/{pid}/fd")), disk_bytes=disk_bytes(self.broker.data_dir),
            acks=len(latencies), p50_ms=percentile_ms(latencies, 0.50),
            p99_ms=percentile_ms(latencies, 0.99),
            connections_open=int(sum(v for _, v in metric_rows(metrics,
                                                                "corelog_connections_open"))))

    def check_stalls(self) -> None:
        for topic, partition, quiet_s in self.acks.stalled(time.monotonic()):
            self.outcome.fail("stall", f"{topic}-{partition}: no acknowledgement for "
                                       f"{quiet_s:.0f} s")

    def sample_until_done(self) -> None:
        """Sample every SAMPLE_INTERVAL_S until the duration is over or something failed."""
        started = time.monotonic()
        self.acks.take_interval()
        while not self.outcome.failed():
            next_at = started + (len(self.samples) + 1) * self.args.sample_interval
            time.sleep(max(0.0, next_at - time.monotonic()))  # The sampling clock.
            if not self.check_alive(f"at {time.monotonic() - started:.0f} s"):
                return
            try:
                sample = self.take_sample(time.monotonic() - started)
            except (OSError, ValueError) as error:
                self.check_alive("while sampled")
                self.outcome.fail("sample", repr(error))
                return
            self.samples.append(sample)
            self.log(sample_line(sample, self.groups.consumed(),
                                 sum(self.outcome.transient_counts().values())))
            self.check_stalls()
            if sample.elapsed_s >= self.args.duration_s - 1:
                return

    def stop_load(self) -> None:
        """Stop churn and hostile clients, close group members, flush every producer."""
        for thread in [self.admin, self.churn, *self.hostile, self.groups, *self.producers]:
            thread.stop.set()
        for thread in [self.admin, self.churn, *self.hostile, self.groups]:
            thread.join(THREAD_STOP_TIMEOUT_S + MEMBER_CLOSE_TIMEOUT_S * MEMBERS_MAX)
            if thread.is_alive():
                self.outcome.fail(thread.name, "did not stop")
        for producer in self.producers:
            left = producer.drain(FLUSH_TIMEOUT_S)
            if left:
                self.outcome.fail(producer.label, f"{left} messages never acknowledged")

    def finish(self) -> None:
        """After the load: every ack verified, growth judged, SIGTERM answered by exit 0."""
        self.summary.update(verify_acks(self.broker.bootstrap, self.acks, self.outcome))
        failures, growth = growth_failures(self.samples, self.args.duration_s)
        self.summary.update(growth)
        for failure in failures:
            self.outcome.fail("growth", failure)
        if self.check_alive("before the final SIGTERM"):
            code = self.broker.stop(signal.SIGTERM)
            if code != 0:
                self.outcome.fail("broker", f"exit code {code} after SIGTERM, expected 0")

    def run(self) -> None:
        self.log(f"soak: seed {self.args.seed}, duration {self.args.duration_s:.0f} s, "
                 f"{self.args.rate:.0f} msg/s, binary {self.broker.binary}")
        self.start()
        if self.outcome.failed():
            return
        self.start_load()
        self.sample_until_done()
        if self.outcome.failed():
            return
        self.stop_load()
        if self.check_alive("while the load stopped") and not self.outcome.failed():
            self.finish()

    def report(self) -> dict:
        samples = self.samples
        sent = sum(p.sent for p in self.producers)
        self.summary.update({
            "duration_s": self.args.duration_s, "samples": len(samples),
            "messages_sent": sent, "messages_acknowledged": self.acks.count,
            "ack_p50_ms": round(percentile_ms(self.acks.all_latencies_s, 0.50), 2),
            "ack_p99_ms": round(percentile_ms(self.acks.all_latencies_s, 0.99), 2),
            "ack_p999_ms": round(percentile_ms(self.acks.all_latencies_s, 0.999), 2),
            "consumed": self.groups.consumed() if self.groups else 0,
            "rebalances": self.groups.rebalances if self.groups else 0,
            "groups": {group: {"consumed": progress.consumed, "given_again": progress.again,
                               "read_to": sum(progress.next_offset.values())}
                       for group, progress in (self.groups.progress.items()
                                               if self.groups else ())},
            "admin_actions": dict(self.admin.actions) if self.admin else {},
            "connections": self.churn.connections if self.churn else 0,
            "hostile": dict(sum((h.episodes for h in self.hostile), Counter())),
            "transient_errors": self.outcome.transient_counts(),
            "failures": self.outcome.failure_total(),
        })
        if samples:
            mid = samples[len(samples) // 2]
            for name, pick in (("rss_bytes", lambda s: s.rss_bytes), ("fds", lambda s: s.fds),
                               ("disk_bytes", lambda s: s.disk_bytes)):
                self.summary[name] = {"start": pick(samples[0]), "mid": pick(mid),
                                      "end": pick(samples[-1]),
                                      "max": max(map(pick, samples))}
            self.summary["interval_p99_ms_max"] = max(s.p99_ms for s in samples)
        return self.summary


def print_report(soak: Soak, summary: dict) -> None:
    print(f"sent {summary['messages_sent']}, acknowledged {summary['messages_acknowledged']}, "
          f"verified at their offsets {summary.get('acks_verified', '-')}; ack latency p50 "
          f"{summary['ack_p50_ms']} ms p99 {summary['ack_p99_ms']} ms p99.9 "
          f"{summary['ack_p999_ms']} ms; consumed {summary['consumed']}, "
          f"{summary['rebalances']} member joins/leaves {summary['groups']}, "
          f"{sum(summary['admin_actions'].values())} admin actions, "
          f"{summary['connections']} short connections, "
          f"{sum(summary['hostile'].values())} hostile connections")
    for name in ("rss_bytes", "fds", "disk_bytes"):
        if name in summary:
            print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in summary[name].items()))
    if "rss_growth_second_half_bytes" in summary:
        print(f"  second half vs midpoint: RSS less cache "
              f"{mib(summary['rss_growth_second_half_bytes'])} (bound "
              f"{mib(RSS_GROWTH_MAX_BYTES)}), fds {summary['fd_growth_second_half']:+d} "
              f"(bound {FD_GROWTH_MAX})")
    if summary["transient_errors"]:
        print(f"  transient client errors (retried by the clients): {summary['transient_errors']}")
    failures = soak.outcome.failures
    if failures:
        print(f"FAILED: {summary['failures']} failures (seed {soak.args.seed}; replay with "
              f"--seed {soak.args.seed} --duration {soak.args.duration})")
        for failure in failures[:FAILURES_SHOWN]:
            print(f"  {failure}")
        for where, count in soak.outcome.failure_counts.items():
            if count > FAILURES_KEPT_PER_SOURCE:
                print(f"  ... and {count - FAILURES_KEPT_PER_SOURCE} more from {where}")
        print("--- broker stderr (tail) ---")
        print(soak.broker.stderr_text(STDERR_TAIL_BYTES))
    else:
        print("OK: the broker stayed up, every acknowledged message is at its offset, no client "
              "error, memory and fds flat, exit 0 on SIGTERM")


# ------------------------------------------------------------------------------------ main

def parse_duration(text: str) -> float:
    """`90`, `90s`, `3m`, `1h` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"duration {text!r}: expected e.g. 90s, 3m, 1h")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default="3m", help="how long the load runs (90s, 3m, 1h)")
    ap.add_argument("--seed", type=int, default=None, help="seed of every random choice")
    ap.add_argument("--rate", type=float, default=1000.0, help="messages/s of all producers")
    ap.add_argument("--sample-interval", type=float, default=SAMPLE_INTERVAL_S,
                    help="seconds between two samples")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="data dir and broker stderr go here, kept (default: a temporary dir)")
    ap.add_argument("--json", action="store_true", help="print a final JSON line")
    args = ap.parse_args(argv)
    args.duration_s = parse_duration(args.duration)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    temporary = None if args.work_dir else tempfile.TemporaryDirectory(prefix="corelog-soak-")
    workdir = args.work_dir or Path(temporary.name)
    workdir.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, workdir)
    try:
        soak.run()
    except (BrokerError, KafkaException, TimeoutError, OSError, ValueError) as error:
        soak.check_alive("(found after an error)")
        soak.outcome.fail("soak", repr(error))
    summary = soak.report()
    print_report(soak, summary)
    if args.json:
        print(json.dumps(summary))
    sys.stdout.flush()
    if soak.broker.running():
        soak.broker.kill()
    if temporary is not None:
        temporary.cleanup()
    # Client threads may still sit inside librdkafka after a failure: exit without waiting for
    # them (and without the interpreter's teardown of clients they hold).
    os._exit(1 if soak.outcome.failed() else 0)


if __name__ == "__main__":
    main()
