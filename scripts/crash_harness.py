#!/usr/bin/env python3
"""Long crash harness: SIGKILL a loaded broker again and again and check what survives.

    .venv/bin/python scripts/crash_harness.py --kills 200 --seed 7 --json

It starts the release binary (`target/release/corelog serve --shards 2`, or $CORELOG_BIN) on a
fresh data directory, creates one topic with several partitions, and runs producers
(confluent-kafka, acks=all) that live through every crash: half of them idempotent
(`enable.idempotence=true`), half plain. The plain ones run with
`max.in.flight.requests.per.connection=1`, so that a retry can duplicate a batch but never
overtake a later one: their messages must keep send order too (repeats of earlier messages
aside). Every producer sends numbered payloads to a partition fixed by the number, and keeps
every delivery report.

Round after round the harness waits until the producers make progress, lets them run for a
random time (seeded by --seed), SIGKILLs the broker, restarts it on the same directory and
port, and checks cheaply: it re-reads a window before the end it checked last round (those
records must be unchanged: offsets are stable across restarts), reads what is new, and matches
every acknowledgement that has arrived since against the log. At the end the producers flush
and stop, the whole topic is read from offset 0, and every rule is checked over the whole log:

- every acknowledged message is at exactly the offset it was acknowledged at;
- offsets run from 0 without gaps, and a record read in any round is still there, unchanged;
- every record read maps to a send: its producer handed that number to the client, it is in
  the partition that number goes to, and its bytes are intact (nothing is invented);
- an idempotent producer's messages appear at most once (exactly once if acknowledged) and in
  send order; a plain producer's appear at least once if acknowledged, and its first
  occurrences are in send order;
- no delivery failed and no producer hit a fatal error (retries are unbounded in time here);
- the broker never ends by itself: before every SIGKILL and the final SIGTERM it must still be
  running (a broker that aborted between two kills is a failure, not a crash to recover from);
- the broker exits 0 on the final SIGTERM.

It prints a summary, with --json also a final JSON line, and exits 1 on any violation, after
a report naming the rule, the partition, the offset and the seed to replay it with.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from corelog_broker import Broker, BrokerError, corelog_bin  # noqa: E402

TOPIC = "crash-harness"
PAYLOAD_BYTES = 64
CLIENT_TIMEOUT_S = 60.0
PROGRESS_TIMEOUT_S = 30.0
STABILITY_WINDOW = 64  # Records before last round's checked end that are read again.
VIOLATIONS_SHOWN = 20

# librdkafka talks about every refused connection; the harness kills the broker on purpose.
_QUIET = logging.getLogger("crash_harness.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


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


class ProducerThread(threading.Thread):
    """One confluent-kafka producer sending numbered messages at a paced rate until stopped."""

    def __init__(self, index: int, idempotent: bool, bootstrap: str, partitions: int,
                 rate: float):
        super().__init__(name=f"producer-{index}", daemon=True)
        self.index = index
        self.idempotent = idempotent
        self.partitions = partitions
        self.rate = rate
        # Numbers handed to the client: a record carrying a number >= this was never sent.
        self.attempted = 0
        # Delivery reports (partition, offset, sequence) not yet taken by the checker.
        self.acks: list[tuple[int, int, int]] = []
        self.acked = 0
        self.failures: list[str] = []
        self.fatal: list[str] = []
        self.stop = threading.Event()
        self.finished = threading.Event()
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
            "logger": _QUIET,
        }
        if idempotent:
            conf["enable.idempotence"] = True
        else:
            conf["enable.idempotence"] = False
            conf["max.in.flight.requests.per.connection"] = 1
        self.client = Producer(conf)

    @property
    def kind(self) -> str:
        return "idempotent" if self.idempotent else "plain"

    def _on_error(self, error: KafkaError) -> None:
        # Transport errors and "all brokers down" are what a kill looks like from here.
        if error.fatal():
            self.fatal.append(str(error))

    def _on_delivery(self, error, message) -> None:
        parsed = parse_payload(message.value())
        sequence = parsed[1] if parsed else -1
        if error is not None:
            self.failures.append(f"sequence {sequence}: {error}")
        else:
            self.acks.append((message.partition(), message.offset(), sequence))
            self.acked += 1

    def run(self) -> None:
        started = time.monotonic()
        sequence = 0
        while not self.stop.is_set() and not self.fatal:
            due = started + sequence / self.rate
            wait = due - time.monotonic()
            if wait > 0:
                self.client.poll(min(wait, 0.05))
                continue
            self.attempted = max(self.attempted, sequence + 1)
            try:
                self.client.produce(
                    TOPIC, payload(self.index, sequence),
                    partition=partition_of(self.index, sequence, self.partitions),
                    on_delivery=self._on_delivery)
                sequence += 1
            except BufferError:
                self.client.poll(0.05)
            self.client.poll(0)
        self.finished.set()

    def drain(self, timeout_s: float) -> int:
        """After `stop`: wait for every outstanding delivery report; returns those left."""
        self.finished.wait(timeout_s)
        return self.client.flush(timeout_s)


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
    producers: list[ProducerThread]
    # Per partition, the (producer, sequence) of every record read, indexed by offset.
    log: list[list[tuple[int, int]]] = field(default_factory=list)
    # Acks taken from the producers but beyond the log read so far.
    pending: list[tuple[int, int, int, int]] = field(default_factory=list)
    acks_verified: int = 0
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
            parsed = (-1, -1)
        if offset < len(known):
            if known[offset] != parsed:
                self.fail("offset-stable", f"{partition}@{offset} was {known[offset]}, "
                                           f"now reads {parsed}")
            return
        if offset != len(known):
            self.fail("contiguous", f"partition {partition}: offset {offset} read, "
                                    f"expected {len(known)}")
            known.extend([(-1, -1)] * (offset - len(known)))
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
        for producer, partition, offset, sequence in self.pending:
            known = self.log[partition]
            if offset >= len(known):
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
                    self.fail("order", f"{kind} p{producer} s{sequence} at {partition}@{offset} "
                                       f"after s{last_new[producer]}")
                last_new[producer] = sequence
        return duplicates


def read_partitions(bootstrap: str, starts: list[int], timeout_s: float = CLIENT_TIMEOUT_S):
    """Read every partition from `starts[p]` to its high watermark now; yield (p, offset, value)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "crash-harness-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
        "fetch.max.bytes": 8 << 20,
        "logger": _QUIET,
    })
    try:
        ends = []
        for partition in range(len(starts)):
            _, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, partition),
                                                     timeout=timeout_s)
            ends.append(high)
        todo = {p for p in range(len(starts)) if starts[p] < ends[p]}
        consumer.assign([TopicPartition(TOPIC, p, starts[p]) for p in sorted(todo)])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions {sorted(todo)} not read to {ends} in {timeout_s}s")
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                if message.error():
                    raise RuntimeError(f"consumer error: {message.error()}")
                partition, offset = message.partition(), message.offset()
                if offset < ends[partition]:
                    yield partition, offset, message.value()
                if offset >= ends[partition] - 1:
                    todo.discard(partition)
    finally:
        consumer.close()


def wait_for_progress(producers: list[ProducerThread], timeout_s: float) -> bool:
    """Until every producer got at least one more ack than now (its batches flow again)."""
    before = [p.acked for p in producers]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = [p.acked for p in producers]
        if all(n > b for n, b in zip(now, before)) or any(p.fatal for p in producers):
            return True
        time.sleep(0.01)  # Polling the producers' counters; nothing to wait on.
    return False


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILL/restart rounds")
    ap.add_argument("--seed", type=int, default=None, help="seed of the kill moments")
    ap.add_argument("--producers", type=int, default=4, help="half idempotent, half plain")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rate", type=float, default=500.0, help="messages/s per producer")
    ap.add_argument("--delay-min-ms", type=int, default=50, help="shortest run before a kill")
    ap.add_argument("--delay-max-ms", type=int, default=1500, help="longest run before a kill")
    ap.add_argument("--duration-max-s", type=float, default=None,
                    help="stop killing after this long, even before --kills")
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")
    ap.add_argument("--json", action="store_true", help="print a final JSON line")
    return ap.parse_args(argv)


class Harness:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.seed = args.seed if args.seed is not None else random.randrange(1 << 31)
        self.random = random.Random(self.seed)
        self.broker = Broker(corelog_bin(), workdir / "data", workdir, shards=args.shards)
        self.producers: list[ProducerThread] = []
        self.checker: Checker | None = None
        self.kills = 0
        self.records_read = 0
        self.reported: dict[tuple[int, str], int] = {}

    def log(self, text: str) -> None:
        print(text, flush=True)

    def start(self) -> None:
        self.broker.start()
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap, "logger": _QUIET})
        admin.create_topics([NewTopic(TOPIC, num_partitions=self.args.partitions,
                                      replication_factor=1)])[TOPIC].result(
            timeout=CLIENT_TIMEOUT_S)
        for index in range(self.args.producers):
            self.producers.append(ProducerThread(
                index, index % 2 == 0, self.broker.bootstrap, self.args.partitions,
                self.args.rate))
        for producer in self.producers:
            producer.start()
        self.checker = Checker(self.args.partitions, self.producers)

    def check_round(self) -> None:
        """Re-read a window before last round's end, read what is new, match new acks."""
        log = self.checker.log
        starts = [max(0, len(records) - STABILITY_WINDOW) for records in log]
        for partition, offset, value in read_partitions(self.broker.bootstrap, starts):
            self.checker.record(partition, offset, value)
            self.records_read += 1
        self.checker.check_acks(final=False)
        self.check_clients()

    def check_clients(self) -> None:
        """Report client-side failures not reported yet, naming the kill they followed."""
        for producer in self.producers:
            for rule, found in (("delivery", producer.failures), ("fatal", producer.fatal)):
                reported = self.reported.get((producer.index, rule), 0)
                for failure in found[reported:reported + 5]:
                    self.checker.fail(rule, f"p{producer.index} ({producer.kind}) after kill "
                                            f"{self.kills}: {failure}")
                self.reported[(producer.index, rule)] = len(found)

    def one_round(self) -> None:
        if not wait_for_progress(self.producers, PROGRESS_TIMEOUT_S):
            self.broker.check_not_died(f"kill {self.kills + 1}")  # No progress: is it dead?
            self.checker.fail("progress", f"no acknowledgement from some producer within "
                                          f"{PROGRESS_TIMEOUT_S}s after restart {self.kills}")
            return
        delay_ms = self.random.randint(self.args.delay_min_ms, self.args.delay_max_ms)
        time.sleep(delay_ms / 1000)  # The random moment of the kill: the point of the test.
        self.broker.stop(signal.SIGKILL)  # Raises BrokerError if it had died by itself.
        self.kills += 1
        self.broker.start()
        self.check_round()

    def finish(self) -> dict:
        """Stop the producers, read the whole topic, check every rule over all of it."""
        for producer in self.producers:
            producer.stop.set()
        for producer in self.producers:
            left = producer.drain(CLIENT_TIMEOUT_S)
            if left:
                self.checker.fail("drain", f"p{producer.index}: {left} messages undelivered")
        # The full read starts from 0: every earlier read is compared against it.
        for partition, offset, value in read_partitions(self.broker.bootstrap,
                                                        [0] * self.args.partitions):
            self.checker.record(partition, offset, value)
            self.records_read += 1
        self.checker.check_acks(final=True)
        duplicates = self.checker.check_order()
        self.check_clients()
        code = self.broker.stop(signal.SIGTERM)
        if code != 0:
            self.checker.fail("shutdown", f"SIGTERM exit code {code}")
        return duplicates

    def run(self) -> dict:
        started = time.monotonic()
        self.log(f"crash harness: seed {self.seed}, {self.args.kills} kills, "
                 f"{self.args.producers} producers, {self.args.partitions} partitions, "
                 f"--shards {self.args.shards}, binary {self.broker.binary}")
        self.start()
        try:
            limit = self.args.duration_max_s
            while (self.kills < self.args.kills and not self.checker.violations
                   and (limit is None or time.monotonic() - started < limit)):
                self.one_round()
                if self.kills % 10 == 0 or self.checker.violations:
                    self.log(f"  kill {self.kills}: {self.checker.acks_verified} acks verified, "
                             f"log {sum(map(len, self.checker.log))} records")
            duplicates = self.finish()
        finally:
            for producer in self.producers:
                producer.stop.set()
            self.broker.kill()
        sent = sum(p.attempted for p in self.producers)
        acked = sum(p.acked for p in self.producers)
        return {
            "seed": self.seed,
            "kills": self.kills,
            "messages_sent": sent,
            "messages_acknowledged": acked,
            "acks_verified": self.checker.acks_verified,
            "log_records": sum(map(len, self.checker.log)),
            "records_read": self.records_read,
            "duplicates_plain": duplicates["plain"],
            "duplicates_idempotent": duplicates["idempotent"],
            "failures": len(self.checker.violations),
            "duration_s": round(time.monotonic() - started, 1),
        }


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="corelog-crash-") as tmp:
        workdir = args.data_dir or Path(tmp)
        harness = Harness(args, workdir)
        try:
            summary = harness.run()
        except (BrokerError, TimeoutError, RuntimeError) as error:
            print(f"FAILED (seed {harness.seed}): {error}", flush=True)
            print(harness.broker.stderr_text(8192))
            if args.json:
                print(json.dumps({"seed": harness.seed, "kills": harness.kills,
                                  "failures": 1, "error": str(error)[:500]}))
            return 1
        violations = harness.checker.violations
        print(f"kills {summary['kills']}, sent {summary['messages_sent']}, acknowledged "
              f"{summary['messages_acknowledged']}, verified at their offsets "
              f"{summary['acks_verified']}, log {summary['log_records']} records "
              f"({summary['duplicates_plain']} plain-producer duplicates), "
              f"{summary['duration_s']} s")
        if violations:
            print(f"VIOLATIONS: {len(violations)} (seed {harness.seed}; replay with --seed "
                  f"{harness.seed} --kills {args.kills})")
            for violation in violations[:VIOLATIONS_SHOWN]:
                print(f"  {violation}")
            print("--- broker stderr (tail) ---")
            print(harness.broker.stderr_text(8192))
        else:
            print("OK: every rule held")
        if args.json:
            print(json.dumps(summary))
        return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
