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
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from corelog_broker import Broker, BrokerError, corelog_bin  # noqa: E402
from log_checker import (CLIENT_TIMEOUT_S, QUIET, Checker, ProducerThread,  # noqa: E402
                         read_partitions, wait_for_progress)

TOPIC = "crash-harness"
PROGRESS_TIMEOUT_S = 30.0
STABILITY_WINDOW = 64  # Records before last round's checked end that are read again.
VIOLATIONS_SHOWN = 20

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
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap, "logger": QUIET})
        admin.create_topics([NewTopic(TOPIC, num_partitions=self.args.partitions,
                                      replication_factor=1)])[TOPIC].result(
            timeout=CLIENT_TIMEOUT_S)
        for index in range(self.args.producers):
            self.producers.append(ProducerThread(
                index, index % 2 == 0, self.broker.bootstrap, TOPIC, self.args.partitions,
                self.args.rate))
        for producer in self.producers:
            producer.start()
        self.checker = Checker(self.args.partitions, self.producers)

    def check_round(self) -> None:
        """Re-read a window before last round's end, read what is new, match new acks."""
        log = self.checker.log
        starts = [max(0, len(records) - STABILITY_WINDOW) for records in log]
        for partition, offset, value in read_partitions(self.broker.bootstrap, TOPIC, starts):
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
        for partition, offset, value in read_partitions(self.broker.bootstrap, TOPIC,
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
            "acks_without_offset": self.checker.acks_unplaced,
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
