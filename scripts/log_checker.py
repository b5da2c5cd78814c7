"""The rules a log written by acks=all producers through faults must keep, and the producers
that write it: shared by the single-node crash harness (`crash_harness.py`) and the cluster
fault harness (`cluster_faults.py`).

Every producer sends numbered payloads (`payload`) to a partition fixed by the number
(`partition_of`), and keeps every delivery report. The `Checker` takes records as they are read
(any number of times, in any order of reads) and the producers' acknowledgements, and reports:

- `acked-present`: an acknowledged message is not at exactly its acknowledged offset (or, acked
  without an offset, not in its partition);
- `offset-stable`: a record read twice at one offset differs;
- `contiguous`: offsets skip (only where the log has no gaps: a replicated log holds control
  batches, Raft's own entries, that consumers never see);
- `invented`, `intact`: a record no producer sent, or whose bytes changed;
- `exactly-once`, `order`: an idempotent producer's message twice, or any producer's first
  occurrences out of send order within a partition.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

PAYLOAD_BYTES = 64
CLIENT_TIMEOUT_S = 60.0

# librdkafka talks about every refused connection; the harnesses break connections on purpose.
QUIET = logging.getLogger("log_checker.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def payload(producer: int, sequence: int) -> bytes:
    """Message `sequence` of producer `producer`: names its origin, padded to a fixed size."""
    head = f"p{producer:02d}-s{sequence:09d}-".encode()
    return head + b"." * (PAYLOAD_BYTES - len(head))


def parse_payload(value: bytes | None) -> tuple[int, int] | None:
    """(producer, sequence) of a payload made by `payload`, or None for foreign bytes."""
    if value is None or len(value) != PAYLOAD_BYTES or value[:1] != b"p":
        return None
    try:
        return int(value[1:3]), int(value[5:14])
    except ValueError:
        return None


def partition_of(producer: int, sequence: int, partitions: int) -> int:
    """Each producer writes to every partition, in runs of a few messages."""
    return (producer + sequence // 4) % partitions


class AckGaps:
    """When each key (a producer's partition, say) last had an acknowledgement, and the longest
    time one went without: how long a fault stopped a client."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last: dict = {}
        self.longest = (0.0, None)  # (seconds, key)

    def ack(self, key) -> None:
        now = time.monotonic()
        with self.lock:
            before = self.last.get(key)
            if before is not None and now - before > self.longest[0]:
                self.longest = (now - before, key)
            self.last[key] = now

    def acked_since(self, moment: float, keys) -> bool:
        """Whether every key of `keys` had an acknowledgement after `moment`."""
        with self.lock:
            return all(self.last.get(key, -1.0) > moment for key in keys)

    def take_longest(self) -> tuple:
        """The longest gap since the last call, and its key."""
        with self.lock:
            found, self.longest = self.longest, (0.0, None)
            return found


class ClientWatch:
    """What a librdkafka client last said of itself: its statistics (every second) and its
    latest errors, to name what it waits for when it stops making progress."""

    CONF = {"statistics.interval.ms": 1000}

    def __init__(self):
        self.stats: str | None = None
        self.stats_at = 0.0
        self.errors: collections.deque[str] = collections.deque(maxlen=6)

    def on_stats(self, text: str) -> None:
        self.stats, self.stats_at = text, time.monotonic()

    def on_error(self, error: KafkaError) -> None:
        self.errors.append(f"{time.strftime('%H:%M:%S')} {error}")

    def describe(self, topic: str, partitions) -> list[str]:
        """Its brokers' connections and requests, and `partitions` of `topic` as it sees them."""
        if self.stats is None:
            return ["no statistics yet"]
        stats = json.loads(self.stats)
        lines = [f"statistics of {time.monotonic() - self.stats_at:.1f}s ago; latest errors: "
                 f"{list(self.errors)}"]
        for broker in stats.get("brokers", {}).values():
            if broker.get("nodeid", -1) < 0:
                continue  # Bootstrap entries.
            leads = sorted(tp["partition"] for tp in broker.get("toppars", {}).values()
                           if tp["topic"] == topic)
            lines.append(f"broker {broker['nodeid']} {broker.get('state')} for "
                         f"{broker.get('stateage', 0) // 1000} ms: requests waiting to be sent "
                         f"{broker.get('outbuf_cnt')}, waiting for a response "
                         f"{broker.get('waitresp_cnt')}, timed out {broker.get('req_timeouts')}, "
                         f"disconnects {broker.get('disconnects')}; partitions {leads}")
        known = stats.get("topics", {}).get(topic, {}).get("partitions", {})
        for partition in sorted(partitions):
            tp = known.get(str(partition))
            if tp is None:
                lines.append(f"partition {partition}: unknown")
                continue
            lines.append(f"partition {partition}: leader {tp.get('leader')}, queued "
                         f"{tp.get('msgq_cnt')}, to send {tp.get('xmit_msgq_cnt')}, in flight "
                         f"{tp.get('msgs_inflight')}, fetch {tp.get('fetch_state')} at "
                         f"{tp.get('next_offset')} (high watermark {tp.get('hi_offset')})")
        return lines


class PacedProducer(threading.Thread):
    """A producer sending numbered messages (`payload`, to `partition_of`'s partition) at a
    paced rate until stopped, keeping every delivery report; a subclass sends through its
    client (`send`) and lets it work between sends (`idle`)."""

    kind = "plain"
    watch: ClientWatch | None = None  # librdkafka clients only.
    # Whether the client keeps a partition's send order through retries and leader moves
    # (`order`). librdkafka's plain producer does not across a leader move: its one request
    # in flight is per connection, so the old leader's failed request is retried after
    # later batches went to the new leader (librdkafka issues #1092, #1969).
    keeps_order = True

    def __init__(self, index: int, topic: str, partitions: int, rate: float,
                 gaps: AckGaps | None):
        super().__init__(name=f"producer-{index}", daemon=True)
        self.index = index
        self.topic = topic
        self.gaps = gaps
        self.partitions = partitions
        self.rate = rate
        # Numbers handed to the client: a record carrying a number >= this was never sent.
        self.attempted = 0
        # Delivery reports (partition, offset, sequence) not yet taken by the checker; offset
        # None: acknowledged, offset unknown (`Checker.check_unplaced`).
        self.acks: list[tuple[int, int | None, int]] = []
        self.acked = 0
        self.failures: list[str] = []
        self.fatal: list[str] = []
        self.stop = threading.Event()
        self.finished = threading.Event()

    def acknowledged(self, partition: int, offset: int | None, sequence: int) -> None:
        self.acks.append((partition, offset, sequence))
        self.acked += 1
        if self.gaps is not None:
            self.gaps.ack((self.index, partition))

    def send(self, sequence: int) -> bool:
        """Hands message `sequence` to the client; False if it has no room for it now."""
        raise NotImplementedError

    def idle(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def run(self) -> None:
        started = time.monotonic()
        sequence = 0
        while not self.stop.is_set() and not self.fatal:
            wait = started + sequence / self.rate - time.monotonic()
            if wait > 0:
                self.idle(min(wait, 0.05))
                continue
            self.attempted = max(self.attempted, sequence + 1)
            if self.send(sequence):
                sequence += 1
        self.finished.set()


class ProducerThread(PacedProducer):
    """A confluent-kafka producer: idempotent, or plain with one request in flight (a retry
    can repeat a batch but never overtake a later one)."""

    def __init__(self, index: int, idempotent: bool, bootstrap: str, topic: str,
                 partitions: int, rate: float, gaps: AckGaps | None = None):
        super().__init__(index, topic, partitions, rate, gaps)
        self.idempotent = idempotent
        self.kind = "idempotent" if idempotent else "plain"
        self.watch = ClientWatch()
        conf = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            # Retry through every crash: a delivery failure is then a finding, not noise.
            "message.timeout.ms": 300_000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 5000,
            "error_cb": self._on_error,
            "stats_cb": self.watch.on_stats,
            **ClientWatch.CONF,
            "logger": QUIET,
        }
        if idempotent:
            conf["enable.idempotence"] = True
        else:
            conf["enable.idempotence"] = False
            conf["max.in.flight.requests.per.connection"] = 1
        self.client = Producer(conf)

    def _on_error(self, error: KafkaError) -> None:
        # Transport errors and "all brokers down" are what a kill looks like from here.
        self.watch.on_error(error)
        if error.fatal():
            self.fatal.append(str(error))

    def _on_delivery(self, error, message) -> None:
        parsed = parse_payload(message.value())
        sequence = parsed[1] if parsed else -1
        if error is not None:
            self.failures.append(f"sequence {sequence}: {error}")
        else:
            self.acknowledged(message.partition(), message.offset(), sequence)

    def idle(self, seconds: float) -> None:
        self.client.poll(seconds)

    def send(self, sequence: int) -> bool:
        try:
            self.client.produce(
                self.topic, payload(self.index, sequence),
                partition=partition_of(self.index, sequence, self.partitions),
                on_delivery=self._on_delivery)
        except BufferError:
            self.client.poll(0.05)
            return False
        self.client.poll(0)
        return True

    def drain(self, timeout_s: float) -> int:
        """After `stop`: wait for every outstanding delivery report; returns those left."""
        self.finished.wait(timeout_s)
        return self.client.flush(timeout_s)


# In `Checker.log`: an offset no record was read at (a control batch, or a violation).
SKIPPED = (-1, -1)


@dataclass
class Violation:
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.detail}"


@dataclass
class Checker:
    """What the harness has read so far, and the rules every read and ack must satisfy."""

    partitions: int
    producers: list
    # Whether offsets may skip: a replicated log holds control batches (Raft's no-ops and
    # configuration changes) that consumers never see. A skipped offset must stay skipped.
    gaps: bool = False
    # Per partition, the (producer, sequence) of every record read, indexed by offset.
    log: list[list[tuple[int, int]]] = field(default_factory=list)
    # Acks taken from the producers but beyond the log read so far.
    pending: list[tuple[int, int, int, int]] = field(default_factory=list)
    acks_verified: int = 0
    # Acks without an offset found in their partition.
    acks_unplaced: int = 0
    # First occurrences out of send order of producers that do not keep it (`keeps_order`).
    reordered: int = 0
    violations: list[Violation] = field(default_factory=list)

    def __post_init__(self):
        self.log = [[] for _ in range(self.partitions)]

    def fail(self, rule: str, detail: str) -> None:
        self.violations.append(Violation(rule, detail))

    def record(self, partition: int, offset: int, value: bytes | None) -> None:
        """Take one record read at `offset`: compare with an earlier read, or append it."""
        known = self.log[partition]
        parsed = parse_payload(value)
        if parsed is None:
            self.fail("invented", f"{partition}@{offset}: bytes no producer sent: {value!r:.80}")
            parsed = (-2, -2)
        if offset < len(known):
            if known[offset] != parsed:
                self.fail("offset-stable", f"{partition}@{offset} was {known[offset]}, "
                                           f"now reads {parsed}")
            return
        if offset != len(known):
            if not self.gaps:
                self.fail("contiguous", f"partition {partition}: offset {offset} read, "
                                        f"expected {len(known)}")
            known.extend([SKIPPED] * (offset - len(known)))
        producer, sequence = parsed
        if producer >= 0:
            if producer >= len(self.producers) or sequence >= self.producers[producer].attempted:
                self.fail("invented", f"{partition}@{offset}: producer {producer} never sent "
                                      f"sequence {sequence}")
            elif (home := partition_of(producer, sequence, self.partitions)) != partition:
                self.fail("invented", f"{partition}@{offset}: p{producer} s{sequence} belongs "
                                      f"in partition {home}")
            elif value != payload(producer, sequence):
                self.fail("intact", f"{partition}@{offset}: payload bytes differ")
        known.append(parsed)

    def take_acks(self) -> None:
        """Move the delivery reports that arrived since the last call into `pending`."""
        for index, producer in enumerate(self.producers):
            count = len(producer.acks)
            # The producer thread only appends: these two steps never lose a report.
            self.pending.extend((index, *ack) for ack in producer.acks[:count])
            del producer.acks[:count]

    def check_acks(self, final: bool) -> None:
        """Match acks against the log read so far; one beyond it waits (unless `final`)."""
        self.take_acks()
        waiting = []
        unplaced = [ack for ack in self.pending if ack[2] is None]
        if final and unplaced:
            self.check_unplaced(unplaced)
        for producer, partition, offset, sequence in self.pending:
            known = self.log[partition]
            if offset is None:
                if not final:
                    waiting.append((producer, partition, offset, sequence))
            elif offset >= len(known):
                if final:
                    self.fail("acked-present", f"p{producer} s{sequence} acknowledged at "
                                               f"{partition}@{offset}, beyond the log end "
                                               f"{len(known)}")
                else:
                    waiting.append((producer, partition, offset, sequence))
            elif known[offset] != (producer, sequence):
                self.fail("acked-present", f"p{producer} s{sequence} acknowledged at "
                                           f"{partition}@{offset}, log holds {known[offset]}")
            else:
                self.acks_verified += 1
        self.pending = waiting

    def check_unplaced(self, acks: list) -> None:
        """Acks without an offset (librdkafka's idempotent producer acknowledges a batch whose
        answer it lost once the broker acknowledged a later one: it must be in the log) are
        looked for in their partition; `check_order` counts how often they are there."""
        wanted = {(producer, sequence): partition for producer, partition, _, sequence in acks}
        found = set()
        for partition, records in enumerate(self.log):
            for entry in records:
                if wanted.get(entry) == partition:
                    found.add(entry)
        for key, partition in sorted(wanted.items()):
            if key in found:
                self.acks_unplaced += 1
            else:
                self.fail("acked-present", f"p{key[0]} s{key[1]} acknowledged in partition "
                                           f"{partition} without an offset, not in it")

    def check_order(self) -> dict[str, int]:
        """Whole-log rules per producer: exactly/at-least once and send order per partition."""
        seen: dict[tuple[int, int], int] = {}
        duplicates = {"idempotent": 0, "plain": 0}
        for partition, records in enumerate(self.log):
            last_new: dict[int, int] = {}
            for offset, (producer, sequence) in enumerate(records):
                if producer < 0:
                    continue
                kind = self.producers[producer].kind
                key = (producer, sequence)
                if key in seen:
                    duplicates[kind] += 1
                    if kind == "idempotent":
                        self.fail("exactly-once", f"p{producer} s{sequence} at {partition}@"
                                                  f"{offset} and @{seen[key]}")
                    continue
                seen[key] = offset
                if last_new.get(producer, -1) > sequence:
                    if self.producers[producer].keeps_order:
                        self.fail("order", f"{kind} p{producer} s{sequence} at "
                                           f"{partition}@{offset} after s{last_new[producer]}")
                    else:
                        self.reordered += 1
                last_new[producer] = sequence
        return duplicates


def reader(bootstrap: str) -> Consumer:
    """A consumer that only reads what it is assigned (librdkafka wants a group id anyway)."""
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "log-checker-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        # The end of a partition is where its fetch position reaches the high watermark: the
        # last offsets below it may be control batches, never delivered as messages.
        "enable.partition.eof": True,
        "fetch.max.bytes": 8 << 20,
        "logger": QUIET,
    })


def high_watermarks(bootstrap: str, topic: str, partitions: int, deadline: float) -> list[int]:
    """Each partition's high watermark, asked again with a fresh client while an answer is an
    error: librdkafka keeps a partition it was once told has no leader (its leader's node
    fenced for a moment) as a permanent error of watermark queries until its next periodic
    metadata refresh, minutes later; and a node that just restarted names the leaders it
    knew before until it catches up."""
    while True:
        consumer = reader(bootstrap)
        try:
            return [consumer.get_watermark_offsets(
                        TopicPartition(topic, partition),
                        timeout=max(1.0, deadline - time.monotonic()))[1]
                    for partition in range(partitions)]
        except KafkaException as error:
            if time.monotonic() > deadline:
                # What the client believes of the topic, for the report.
                known = consumer.list_topics(topic, timeout=5).topics.get(topic)
                leaders = known and {p: m.leader for p, m in known.partitions.items()}
                raise RuntimeError(f"no high watermarks of {topic}: {error}; the client's "
                                   f"metadata: leaders {leaders} (error "
                                   f"{known and known.error})") from error
        finally:
            consumer.close()
        time.sleep(0.1)  # Retry pacing, as a client's backoff.


def read_partitions(bootstrap: str, topic: str, starts: list[int],
                    timeout_s: float = CLIENT_TIMEOUT_S):
    """Read every partition from `starts[p]` to its high watermark now; yield (p, offset, value)."""
    ends = high_watermarks(bootstrap, topic, len(starts), time.monotonic() + timeout_s)
    consumer = reader(bootstrap)
    try:
        todo = {p for p in range(len(starts)) if starts[p] < ends[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(todo)])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions {sorted(todo)} not read to {ends} in {timeout_s}s")
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                partition, offset = message.partition(), message.offset()
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        if offset >= ends[partition]:
                            todo.discard(partition)
                    elif message.error().fatal():
                        raise RuntimeError(f"consumer error: {message.error()}")
                    continue  # Transient (a leader moving): the client carries on.
                if offset < ends[partition]:
                    yield partition, offset, message.value()
                if offset >= ends[partition] - 1:
                    todo.discard(partition)
    finally:
        consumer.close()


def wait_for_progress(producers: list[PacedProducer], timeout_s: float) -> bool:
    """Until every producer got at least one more ack than now (its batches flow again)."""
    before = [p.acked for p in producers]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = [p.acked for p in producers]
        if all(n > b for n, b in zip(now, before)) or any(p.fatal for p in producers):
            return True
        time.sleep(0.01)  # Polling the producers' counters; nothing to wait on.
    return False
