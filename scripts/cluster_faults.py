#!/usr/bin/env python3
"""Cluster fault harness: a replicated corelog cluster under faults while real clients write
and read, checked the way Jepsen's Kafka queue workload checks Kafka.

    .venv/bin/python scripts/cluster_faults.py --nodes 3 --faults 200 --seed 7 --json

Needs root (network namespaces). Each node runs in a network namespace of its own, joined by a
veth pair to a bridge in the harness's namespace: the clients reach every node through the
bridge, and the harness cuts links between nodes (blackhole routes inside their namespaces) and
slows a node's link (a token bucket of 1 Mbit/s) without touching the clients' paths. The
nodes form one cluster (every node a controller voter); the topic has replication factor 3 and
`min.insync.replicas=2`.

Clients, all acks=all and retrying through every fault: two idempotent confluent-kafka
producers, a plain one (`max.in.flight.requests.per.connection=1`), a plain kafka-python one
(one request in flight), and a consumer group of two confluent-kafka members that read the
topic as it is written, committing as they go.

Faults, one at a time, each held for a seeded random time and then healed:

- kill: SIGKILL of a node (the active controller, a partition's leader, or any node), restarted
  on its data directory after the hold;
- pause: SIGSTOP of such a node, SIGCONT after the hold;
- isolate: such a node cut off from every other node;
- split: a random minority cut off from the majority;
- bridge: two halves cut off from each other but for one node that reaches both;
- slow: such a node's link slowed to 1 Mbit/s.

After each heal every producer must have an acknowledgement again within --recovery-max-s
(the time it takes is recorded). Every --read-every faults the harness reads what is new of the
topic and re-reads a window before it. At the end it heals everything, stops the producers,
waits for the group to consume everything, reads the whole topic from offset 0 and checks:

- every rule of `log_checker.Checker`: every acknowledged message at exactly its offset, offsets
  stable, nothing invented, idempotent producers' messages exactly once and in order, plain
  ones at least once with first occurrences in order (gaps allowed: the replicated log holds
  control batches consumers never see);
- what the group consumed: every record a member read is the one the log holds at that offset
  (`consumed-changed`: a consumer never sees data that is later lost), offsets within one
  assignment only increase (`nonmonotonic`) and skip no record (`skipped`), and the group
  together consumed every record in the log (`unseen`);
- no delivery failed and no client hit a fatal error;
- no node ended by itself (a node that died between two faults is a failure), and every node
  exits 0 on the final SIGTERM.

It prints a summary, with --json also a final JSON line, and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))

from confluent_kafka import Consumer, KafkaError  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from corelog_broker import Broker, BrokerError, corelog_bin, metadata_v1  # noqa: E402
from log_checker import (CLIENT_TIMEOUT_S, QUIET, SKIPPED, AckGaps, Checker,  # noqa: E402
                         ClientWatch, PacedProducer, ProducerThread, parse_payload, partition_of,
                         payload, read_partitions, wait_for_progress)

TOPIC = "cluster-faults"
GROUP = "cluster-faults-readers"
FAULTS = ("kill", "pause", "isolate", "split", "bridge", "slow")
STABILITY_WINDOW = 64
VIOLATIONS_SHOWN = 30
# Node liveness, shorter than Kafka's defaults (as in tests/python/test_cluster.py).
HEARTBEAT_MS = 250
SESSION_MS = 3000
CLIENT_PORT_BASE = 9100
CLUSTER_PORT_BASE = 9200
# After a recovery failure, how long the harness watches for the stalled clients to recover
# by themselves (a stall's length says which timeout ended it).
STALL_WATCH_S = 240.0
# A slow link: a token bucket this fast, queueing up to this long before dropping.
SLOW_RATE = "1mbit"
SLOW_LATENCY = "500ms"


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Network:
    """One network namespace per node, joined by veth pairs to a bridge in the harness's
    namespace. Names carry the harness's pid, so that parallel runs never meet and the
    leftovers of a killed run can be told from a live run's."""

    def __init__(self, nodes: tuple[int, ...]):
        pid = os.getpid()
        self.tag = f"cf{pid}"
        self.prefix = f"10.{200 + pid % 50}.{(pid // 50) % 250}"
        self.nodes = nodes
        self.bridge = f"{self.tag}br"
        self.cuts: set[tuple[int, int]] = set()
        self.slowed: set[int] = set()

    def namespace(self, node: int) -> str:
        return f"{self.tag}n{node}"

    def host(self, node: int) -> str:
        return f"{self.prefix}.{10 + node}"

    def interface(self, node: int) -> str:
        return f"{self.tag}e{node}"

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be made here (not root, no `ip`), or None."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        probe = f"cfprobe{os.getpid()}"
        try:
            made = run_ip("netns", "add", probe, check=False)
        except FileNotFoundError:
            return "iproute2's `ip` is not installed"
        if made.returncode != 0:
            return f"`ip netns add` failed: {made.stderr.strip()}"
        run_ip("netns", "del", probe, check=False)
        return None

    @staticmethod
    def remove_leftovers() -> None:
        """Delete the namespaces and bridges of earlier runs whose harness is gone."""
        listed = run_ip("netns", "list", check=False).stdout.split()
        links = run_ip("-o", "link", "show", check=False).stdout
        for name in set(listed) | set(re.findall(r"^\d+: (cf\d+br)[:@]", links, re.M)):
            found = re.fullmatch(r"cf(\d+)(?:n\d+|br)", name)
            if not found:
                continue
            try:
                os.kill(int(found[1]), 0)
                continue  # Its harness still runs.
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            if name.endswith("br"):
                run_ip("link", "del", name, check=False)
            else:
                run_ip("netns", "del", name, check=False)

    def up(self) -> None:
        run_ip("link", "add", self.bridge, "type", "bridge")
        run_ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
        run_ip("link", "set", self.bridge, "up")
        for node in self.nodes:
            ns, inner, outer = self.namespace(node), self.interface(node), f"{self.tag}v{node}"
            run_ip("netns", "add", ns)
            run_ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            run_ip("link", "set", inner, "netns", ns)
            run_ip("link", "set", outer, "master", self.bridge, "up")
            run_ip("-n", ns, "addr", "add", f"{self.host(node)}/24", "dev", inner)
            run_ip("-n", ns, "link", "set", inner, "up")
            run_ip("-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for node in self.nodes:
            run_ip("netns", "del", self.namespace(node), check=False)
        run_ip("link", "del", self.bridge, check=False)

    def cut(self, a: int, b: int) -> None:
        """Cut the link between nodes `a` and `b`, both ways (packets dropped, not refused)."""
        for here, there in ((a, b), (b, a)):
            run_ip("-n", self.namespace(here), "route", "add", "blackhole",
                   f"{self.host(there)}/32")
            self.cuts.add((here, there))

    def slow(self, node: int) -> None:
        """Slow everything `node` sends, to its peers and its clients alike."""
        subprocess.run(["ip", "netns", "exec", self.namespace(node), "tc", "qdisc", "add",
                        "dev", self.interface(node), "root", "tbf", "rate", SLOW_RATE,
                        "burst", "32kbit", "latency", SLOW_LATENCY],
                       capture_output=True, text=True, check=True)
        self.slowed.add(node)

    def heal(self) -> None:
        for here, there in sorted(self.cuts):
            run_ip("-n", self.namespace(here), "route", "del", "blackhole",
                   f"{self.host(there)}/32")
        self.cuts.clear()
        for node in sorted(self.slowed):
            subprocess.run(["ip", "netns", "exec", self.namespace(node), "tc", "qdisc", "del",
                            "dev", self.interface(node), "root"],
                           capture_output=True, text=True, check=True)
        self.slowed.clear()


class KafkaPythonProducer(PacedProducer):
    """A plain kafka-python producer (one request in flight)."""

    def __init__(self, index: int, bootstrap: str, topic: str, partitions: int, rate: float,
                 gaps: AckGaps):
        super().__init__(index, topic, partitions, rate, gaps)
        self.client = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5,
            enable_idempotence=False, max_in_flight_requests_per_connection=1,
            retries=1 << 30, delivery_timeout_ms=300_000, request_timeout_ms=30_000,
            retry_backoff_ms=50, reconnect_backoff_ms=50, reconnect_backoff_max_ms=500,
            max_block_ms=300_000)

    def _on_ack(self, sequence: int, metadata) -> None:
        offset = metadata.offset if metadata.offset is not None and metadata.offset >= 0 else None
        self.acknowledged(metadata.partition, offset, sequence)

    def _on_failure(self, sequence: int, error) -> None:
        self.failures.append(f"sequence {sequence}: {error!r}")

    def send(self, sequence: int) -> bool:
        future = self.client.send(self.topic, payload(self.index, sequence),
                                  partition=partition_of(self.index, sequence, self.partitions))
        future.add_callback(self._on_ack, sequence)
        future.add_errback(self._on_failure, sequence)
        return True

    def drain(self, timeout_s: float) -> int:
        self.finished.wait(timeout_s)
        try:
            self.client.flush(timeout=timeout_s)
        except Exception as error:  # kafka-python raises its own timeout type
            self.failures.append(f"flush: {error!r}")
        left = self.attempted - self.acked - len(self.failures)
        self.client.close(timeout=5)
        return max(0, left)


class GroupReader(threading.Thread):
    """A member of a consumer group reading the topic as it is written, through every fault.
    Per partition it keeps what it read in order: offset, (producer, sequence) packed, and
    the assignment it was read under (a new one starts at each rebalance)."""

    def __init__(self, index: int, bootstrap: str, topic: str, partitions: int,
                 gaps: AckGaps):
        super().__init__(name=f"reader-{index}", daemon=True)
        self.index = index
        self.gaps = gaps
        self.offsets = [array("q") for _ in range(partitions)]
        self.values = [array("q") for _ in range(partitions)]
        self.assignments = [array("l") for _ in range(partitions)]
        self.assignment = 0
        self.read = 0
        self.fatal: list[str] = []
        self.stop = threading.Event()
        self.watch = ClientWatch()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 500,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "enable.partition.eof": False,
            "error_cb": self._on_error,
            "stats_cb": self.watch.on_stats,
            **ClientWatch.CONF,
            "logger": QUIET,
        })
        self.consumer.subscribe([topic], on_assign=self._rebalanced, on_revoke=self._rebalanced)

    def _on_error(self, error: KafkaError) -> None:
        self.watch.on_error(error)
        if error.fatal():
            self.fatal.append(str(error))

    def _rebalanced(self, _consumer, _partitions) -> None:
        self.assignment += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set() and not self.fatal:
                for message in self.consumer.consume(num_messages=1000, timeout=0.2):
                    if message.error():
                        if message.error().fatal():
                            self.fatal.append(str(message.error()))
                        continue
                    parsed = parse_payload(message.value())
                    packed = -2 if parsed is None else (parsed[0] << 32) | parsed[1]
                    partition = message.partition()
                    self.offsets[partition].append(message.offset())
                    self.values[partition].append(packed)
                    self.assignments[partition].append(self.assignment)
                    self.read += 1
                    self.gaps.ack(partition)
        finally:
            self.consumer.close()

    def highest(self, partition: int) -> int:
        return self.offsets[partition][-1] if self.offsets[partition] else -1


def check_group(checker: Checker, readers: list[GroupReader]) -> int:
    """The consumer rules over what the group read, against the whole log; returns how many
    records the group read."""
    read = 0
    for partition, log in enumerate(checker.log):
        data_before = [0]  # data_before[o]: records (not gaps) below offset o
        for entry in log:
            data_before.append(data_before[-1] + (entry != SKIPPED))
        seen = bytearray(len(log))
        for reader in readers:
            offsets = reader.offsets[partition]
            values = reader.values[partition]
            assignments = reader.assignments[partition]
            read += len(offsets)
            for i, offset in enumerate(offsets):
                packed = values[i]
                found = (-2, -2) if packed < 0 else (packed >> 32, packed & 0xFFFFFFFF)
                if offset >= len(log) or log[offset] != found:
                    held = log[offset] if offset < len(log) else "nothing"
                    checker.fail("consumed-changed", f"reader {reader.index} read {found} at "
                                                     f"{partition}@{offset}, the log holds {held}")
                else:
                    seen[offset] = 1
                if i == 0 or assignments[i - 1] != assignments[i]:
                    continue
                before = offsets[i - 1]
                if offset <= before:
                    checker.fail("nonmonotonic", f"reader {reader.index} read {partition}@"
                                                 f"{offset} after @{before}")
                elif (offset <= len(log)
                      and data_before[offset] - data_before[before + 1] > 0):
                    checker.fail("skipped", f"reader {reader.index} read {partition}@{offset} "
                                            f"after @{before}, skipping records between")
        unseen = [offset for offset, entry in enumerate(log)
                  if entry != SKIPPED and not seen[offset]]
        if unseen:
            checker.fail("unseen", f"partition {partition}: {len(unseen)} records the group "
                                   f"never read, first at offset {unseen[0]}")
    return read


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    ap.add_argument("--faults", type=int, default=20)
    ap.add_argument("--kinds", default=",".join(FAULTS),
                    help=f"comma-separated fault kinds, of {','.join(FAULTS)}")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--shards", type=int, default=2, help="shards per node")
    ap.add_argument("--rate", type=float, default=200.0, help="messages/s per producer")
    ap.add_argument("--hold-min-s", type=float, default=1.0, help="shortest fault")
    ap.add_argument("--hold-max-s", type=float, default=8.0, help="longest fault")
    ap.add_argument("--calm-max-s", type=float, default=3.0,
                    help="longest run without a fault, after recovery")
    ap.add_argument("--recovery-max-s", type=float, default=60.0,
                    help="a producer with no acknowledgement this long after a heal fails")
    ap.add_argument("--read-every", type=int, default=10, help="faults between read rounds")
    ap.add_argument("--duration-max-s", type=float, default=None,
                    help="stop injecting after this long, even before --faults")
    ap.add_argument("--work-dir", type=Path, default=None, help="default: a temporary dir")
    ap.add_argument("--json", action="store_true", help="print a final JSON line")
    args = ap.parse_args(argv)
    args.kinds = tuple(args.kinds.split(","))
    unknown = set(args.kinds) - set(FAULTS)
    if unknown:
        ap.error(f"unknown fault kinds {sorted(unknown)}")
    return args


class Harness:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.seed = args.seed if args.seed is not None else random.randrange(1 << 31)
        self.random = random.Random(self.seed)
        self.node_ids = tuple(range(1, args.nodes + 1))
        self.net = Network(self.node_ids)
        voters = ",".join(f"{node}@{self.net.host(node)}:{CLUSTER_PORT_BASE + node}"
                          for node in self.node_ids)
        self.nodes = {
            node: Broker(
                corelog_bin(), workdir / f"node{node}", workdir, shards=args.shards,
                port=CLIENT_PORT_BASE + node, node_id=node, host=self.net.host(node),
                wrapper=("ip", "netns", "exec", self.net.namespace(node)),
                extra_args=("--cluster-listen", f"{self.net.host(node)}:"
                                                f"{CLUSTER_PORT_BASE + node}",
                            "--controller-quorum-voters", voters,
                            "--broker-heartbeat-interval-ms", str(HEARTBEAT_MS),
                            "--broker-session-timeout-ms", str(SESSION_MS)))
            for node in self.node_ids}
        self.bootstrap = ",".join(node.bootstrap for node in self.nodes.values())
        self.producers: list = []
        self.readers: list[GroupReader] = []
        self.checker: Checker | None = None
        self.down: set[int] = set()  # Killed nodes, restarted at the heal.
        self.paused: set[int] = set()
        self.schedule: list[str] = []
        self.faults: dict[str, int] = {kind: 0 for kind in FAULTS}
        self.gaps = AckGaps()
        self.read_gaps = AckGaps()  # The group's reads, as `gaps` the producers' acks.
        # Per fault: (kind, seconds from the heal until every producer had an acknowledgement
        # from every partition again and the group read every partition again, the longest
        # time a producer had none from a partition, the longest the group read none of one).
        self.outcomes: list[tuple[str, float, float, float]] = []
        self.records_read = 0
        self.reported: dict[tuple[str, int, str], int] = {}

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    # ---- set-up ----

    def view(self, node: int) -> dict | None:
        broker = self.nodes[node]
        try:
            return metadata_v1(broker.host, broker.port)
        except (OSError, ValueError):
            return None

    def wait_for(self, condition, what: str, timeout_s: float = CLIENT_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = condition()
            if found:
                return found
            time.sleep(0.1)  # Polling the nodes' metadata; nothing to wait on.
        raise TimeoutError(f"{what} not within {timeout_s}s")

    def led_everywhere(self) -> bool:
        """Whether every node names the same live leader for every partition of the topic."""
        views = [self.view(node) for node in self.node_ids]
        if any(v is None or TOPIC not in v["topics"] for v in views):
            return False
        leaders = [v["topics"][TOPIC] for v in views]
        return (all(found == leaders[0] for found in leaders)
                and len(leaders[0]) == self.args.partitions
                and all(leader in self.node_ids for leader in leaders[0].values()))

    def start(self) -> None:
        Network.remove_leftovers()
        self.net.up()
        for broker in self.nodes.values():
            broker.start()
        self.wait_for(lambda: all((v := self.view(n)) and len(v["brokers"]) == len(self.nodes)
                                  and v["controller"] in self.node_ids
                                  for n in self.node_ids), "a controller every node names")
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "logger": QUIET})
        admin.create_topics([NewTopic(TOPIC, num_partitions=self.args.partitions,
                                      replication_factor=3,
                                      config={"min.insync.replicas": "2"})],
                            operation_timeout=30)[TOPIC].result(timeout=CLIENT_TIMEOUT_S)
        self.wait_for(self.led_everywhere, "leaders of every partition")
        p, rate, gaps = self.args.partitions, self.args.rate, self.gaps
        self.producers = [
            ProducerThread(0, True, self.bootstrap, TOPIC, p, rate, gaps),
            ProducerThread(1, True, self.bootstrap, TOPIC, p, rate, gaps),
            ProducerThread(2, False, self.bootstrap, TOPIC, p, rate, gaps),
            KafkaPythonProducer(3, self.bootstrap, TOPIC, p, rate, gaps),
        ]
        # Its send order does not survive leader moves (see `PacedProducer.keeps_order`).
        self.producers[2].keeps_order = False
        self.readers = [GroupReader(i, self.bootstrap, TOPIC, p, self.read_gaps)
                        for i in range(2)]
        self.checker = Checker(p, self.producers, gaps=True)
        for thread in (*self.producers, *self.readers):
            thread.start()
        self.recover("the start")  # Every client flowing before the first fault.
        self.gaps.take_longest()
        self.read_gaps.take_longest()

    # ---- faults ----

    def check_alive(self, before: str) -> None:
        """Every node not killed by the harness still runs (raises BrokerError if not)."""
        for node, broker in self.nodes.items():
            if node not in self.down:
                broker.check_not_died(before)

    def target(self) -> int:
        """The active controller, the leader of a random partition, or any node."""
        choice = self.random.choice(("controller", "leader", "any"))
        view = self.view(self.random.choice(self.node_ids))
        if view and choice == "controller" and view["controller"] in self.node_ids:
            return view["controller"]
        leaders = view["topics"].get(TOPIC, {}) if view else {}
        if choice == "leader" and leaders:
            leader = leaders[self.random.choice(sorted(leaders))]
            if leader in self.node_ids:
                return leader
        return self.random.choice(self.node_ids)

    def next_kind(self) -> str:
        """Every kind once in each round of len(kinds) faults, in a seeded order."""
        if not self.schedule:
            self.schedule = list(self.args.kinds)
            self.random.shuffle(self.schedule)
        return self.schedule.pop()

    def inject(self, kind: str) -> str:
        nodes = list(self.node_ids)
        if kind in ("kill", "pause", "isolate", "slow"):
            node = self.target()
            if kind == "kill":
                self.nodes[node].stop(signal.SIGKILL)
                self.down.add(node)
            elif kind == "pause":
                self.nodes[node].pause()
                self.paused.add(node)
            elif kind == "isolate":
                for other in nodes:
                    if other != node:
                        self.net.cut(node, other)
            else:
                self.net.slow(node)
            return f"{kind} node {node}"
        self.random.shuffle(nodes)
        if kind == "split":
            minority, majority = nodes[:(len(nodes) - 1) // 2], nodes[(len(nodes) - 1) // 2:]
            for a in minority:
                for b in majority:
                    self.net.cut(a, b)
            return f"split {sorted(minority)} | {sorted(majority)}"
        bridge, rest = nodes[0], nodes[1:]
        left, right = rest[:len(rest) // 2], rest[len(rest) // 2:]
        for a in left:
            for b in right:
                self.net.cut(a, b)
        return f"bridge {sorted(left)} - {bridge} - {sorted(right)}"

    def heal(self) -> None:
        self.net.heal()
        for node in sorted(self.paused):
            self.nodes[node].resume()
        self.paused.clear()
        for node in sorted(self.down):
            self.nodes[node].start()
        self.down.clear()

    def one_fault(self) -> None:
        number = sum(self.faults.values()) + 1
        calm = self.random.uniform(0, self.args.calm_max_s)
        time.sleep(calm)  # A seeded run without faults: where the next fault lands matters.
        self.check_alive(f"fault {number}")
        kind = self.next_kind()
        hold = self.random.uniform(self.args.hold_min_s, self.args.hold_max_s)
        what = self.inject(kind)
        self.faults[kind] += 1
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            self.check_alive(f"the heal of fault {number} ({what})")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))  # The fault's hold.
        self.heal()
        recovery = self.recover(f"fault {number} ({what})")
        stall, key = self.gaps.take_longest()
        producer, partition = key or (None, None)
        read_stall, read_partition = self.read_gaps.take_longest()
        if recovery is not None:
            self.outcomes.append((kind, recovery, stall, read_stall))
        self.log(f"fault {number}: {what}, held {hold:.1f}s; all flowing again "
                 f"{'never' if recovery is None else f'after {recovery:.2f}s'}, longest stall "
                 f"{stall:.2f}s (producer {producer}, partition {partition}), of the group {read_stall:.2f}s "
                 f"(partition {read_partition}); acked "
                 f"{sum(p.acked for p in self.producers)}, group read "
                 f"{sum(r.read for r in self.readers)}")
        self.check_clients(f"fault {number}")
        if number % self.args.read_every == 0:
            self.read_round()

    def recover(self, what: str) -> float | None:
        """Seconds from now until every producer and every partition had an acknowledgement
        again, or None (a `recovery` violation) if that takes over --recovery-max-s."""
        healed = time.monotonic()
        limit = self.args.recovery_max_s
        if (wait_for_progress(self.producers, limit)
                and self.wait_since(self.gaps, self.ack_keys(), healed, healed + limit)
                and self.wait_since(self.read_gaps, range(self.args.partitions), healed,
                                    healed + limit)):
            return time.monotonic() - healed
        self.check_alive(f"recovery from {what}")
        self.describe_stall(healed)
        self.checker.fail("recovery", f"not every producer and partition had an "
                                      f"acknowledgement, and the group a read of every "
                                      f"partition, within {limit}s of healing {what}; "
                                      f"acked: {[p.acked for p in self.producers]}, read: "
                                      f"{[r.read for r in self.readers]}")
        return None

    def describe_stall(self, healed: float) -> None:
        """Who has not recovered since `healed`, what its client waits for, what the nodes
        say of its partitions; then how long until it does recover (if within
        STALL_WATCH_S)."""
        with self.gaps.lock:
            silent = sorted(key for key in self.ack_keys()
                            if self.gaps.last.get(key, -1.0) <= healed)
        with self.read_gaps.lock:
            unread = sorted(p for p in range(self.args.partitions)
                            if self.read_gaps.last.get(p, -1.0) <= healed)
        self.log(f"not recovered: producer x partition {silent}, group partitions {unread}")
        partitions = {p for _, p in silent} | set(unread)
        for producer in self.producers:
            mine = sorted(p for index, p in silent if index == producer.index)
            if not mine:
                continue
            lines = (producer.watch.describe(TOPIC, mine) if producer.watch
                     else [f"latest failures: {producer.failures[-3:]}"])
            self.log(f"producer {producer.index} ({type(producer).__name__}):\n  "
                     + "\n  ".join(lines))
        for reader in self.readers:
            self.log(f"reader {reader.index}:\n  " + "\n  ".join(
                reader.watch.describe(TOPIC, unread or partitions)))
        for node, broker in self.nodes.items():
            view = self.view(node) if broker.running() else None
            watermarks = self.high_watermarks_of(broker, partitions)
            leaders = view and {p: view["topics"].get(TOPIC, {}).get(p) for p in partitions}
            in_sync = view and {p: view["in_sync"].get(TOPIC, {}).get(p) for p in partitions}
            self.log(f"node {node}: leaders {leaders}, in sync {in_sync}, high watermarks "
                     f"{watermarks}")
        until = time.monotonic() + STALL_WATCH_S
        if (self.wait_since(self.gaps, silent, healed, until)
                and self.wait_since(self.read_gaps, unread, healed, until)):
            self.log(f"recovered {time.monotonic() - healed:.1f}s after the heal")
        else:
            self.log(f"still not recovered {time.monotonic() - healed:.1f}s after the heal")

    @staticmethod
    def high_watermarks_of(broker: Broker, partitions) -> dict | str:
        """`partitions`' high watermarks on `broker`'s replicas, from its /metrics."""
        try:
            text = broker.metrics()
        except (OSError, AssertionError) as error:
            return f"no metrics: {error}"
        found = {}
        for line in text.splitlines():
            match = re.match(r'corelog_partition_high_watermark\{(.*)\} (\d+)', line)
            if match and f'topic="{TOPIC}"' in match[1]:
                partition = int(re.search(r'partition="(\d+)"', match[1])[1])
                if partition in partitions:
                    found[partition] = int(match[2])
        return found

    def ack_keys(self) -> list[tuple[int, int]]:
        return [(producer.index, partition) for producer in self.producers
                for partition in range(self.args.partitions)]

    def wait_since(self, gaps: AckGaps, keys, moment: float, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if gaps.acked_since(moment, keys):
                return True
            time.sleep(0.01)  # Polling the clients' clocks; nothing to wait on.
        return False

    # ---- checks ----

    def read_round(self, whole: bool = False) -> None:
        """Read what is new (and a window before it again); match the acks that arrived."""
        starts = [0 if whole else max(0, len(records) - STABILITY_WINDOW)
                  for records in self.checker.log]
        for partition, offset, value in read_partitions(self.bootstrap, TOPIC, starts):
            self.checker.record(partition, offset, value)
            self.records_read += 1
        self.checker.check_acks(final=whole)

    def check_clients(self, after: str) -> None:
        """Report client failures not reported yet, naming the fault they followed."""
        sources = [("producer", p.index, ("delivery", p.failures), ("fatal", p.fatal))
                   for p in self.producers]
        sources += [("reader", r.index, ("fatal", r.fatal)) for r in self.readers]
        for who, index, *lists in sources:
            for rule, found in lists:
                key = (who, index, rule)
                reported = self.reported.get(key, 0)
                for failure in found[reported:reported + 5]:
                    self.checker.fail(rule, f"{who} {index} after {after}: {failure}")
                self.reported[key] = len(found)

    def wait_for_group(self, ends: list[int]) -> None:
        """Until the group has read up to each partition's end `ends[p]` (exclusive)."""
        def caught_up():
            return all(max(r.highest(p) for r in self.readers) >= last
                       for p, last in enumerate(self.last_records(ends)))
        try:
            self.wait_for(caught_up, "the group reading every record", CLIENT_TIMEOUT_S * 2)
        except TimeoutError as error:
            self.log(f"warning: {error}")  # `unseen` reports what is missing.

    def last_records(self, ends: list[int]) -> list[int]:
        """Per partition, the offset of the last record (not gap) below `ends[p]`, or -1."""
        found = []
        for partition, end in enumerate(ends):
            log = self.checker.log[partition]
            last = min(end, len(log)) - 1
            while last >= 0 and log[last] == SKIPPED:
                last -= 1
            found.append(last)
        return found

    def finish(self) -> dict:
        self.heal()
        self.check_alive("the end")
        self.recover("the end")
        for producer in self.producers:
            producer.stop.set()
        for producer in self.producers:
            left = producer.drain(CLIENT_TIMEOUT_S)
            if left:
                self.checker.fail("drain", f"p{producer.index}: {left} messages undelivered")
        self.read_round(whole=True)
        self.wait_for_group([len(records) for records in self.checker.log])
        for reader in self.readers:
            reader.stop.set()
        for reader in self.readers:
            reader.join(CLIENT_TIMEOUT_S)
        duplicates = self.checker.check_order()
        consumed = check_group(self.checker, self.readers)
        self.check_clients("the end")
        for node, broker in self.nodes.items():
            code = broker.stop(signal.SIGTERM)
            if code != 0:
                self.checker.fail("shutdown", f"node {node}: SIGTERM exit code {code}")
        return {"duplicates": duplicates, "consumed": consumed}

    def describe_nodes(self) -> None:
        """What each node says of the cluster and the topic now, and its log's tail."""
        for node, broker in self.nodes.items():
            view = self.view(node) if broker.running() else None
            if view:
                view = {"controller": view["controller"], "brokers": sorted(view["brokers"]),
                        "leaders": view["topics"].get(TOPIC),
                        "in_sync": view["in_sync"].get(TOPIC)}
            print(f"--- node {node}: {view} ---")
            print(broker.stderr_text(4096))

    def run(self) -> dict:
        started = time.monotonic()
        self.log(f"cluster faults: seed {self.seed}, {self.args.nodes} nodes, "
                 f"{self.args.faults} faults of {','.join(self.args.kinds)}, "
                 f"{self.args.partitions} partitions, binary {corelog_bin()}")
        try:
            self.start()
            limit = self.args.duration_max_s
            while (sum(self.faults.values()) < self.args.faults and not self.checker.violations
                   and (limit is None or time.monotonic() - started < limit)):
                self.one_fault()
            ended = self.finish()
        except BaseException:
            self.describe_nodes()  # While they still run.
            raise
        finally:
            for thread in (*self.producers, *self.readers):
                thread.stop.set()
            for node in sorted(self.paused):
                self.nodes[node].resume()
            for broker in self.nodes.values():
                try:
                    broker.kill()
                except BrokerError as error:
                    self.log(str(error))
            self.net.down()
        recoveries = sorted(outcome[1] for outcome in self.outcomes)
        stalls = sorted(outcome[2] for outcome in self.outcomes)
        read_stalls = sorted(outcome[3] for outcome in self.outcomes)
        stall_by_kind = {kind: round(max((o[2] for o in self.outcomes if o[0] == kind),
                                         default=0.0), 2) for kind in self.args.kinds}
        read_stall_by_kind = {kind: round(max((o[3] for o in self.outcomes if o[0] == kind),
                                              default=0.0), 2) for kind in self.args.kinds}
        return {
            "seed": self.seed,
            "nodes": self.args.nodes,
            "faults": sum(self.faults.values()),
            "faults_by_kind": self.faults,
            "messages_sent": sum(p.attempted for p in self.producers),
            "messages_acknowledged": sum(p.acked for p in self.producers),
            "acks_verified": self.checker.acks_verified,
            "acks_without_offset": self.checker.acks_unplaced,
            "log_records": sum(entry != SKIPPED for log in self.checker.log for entry in log),
            "log_gaps": sum(entry == SKIPPED for log in self.checker.log for entry in log),
            "group_read": ended["consumed"],
            "duplicates_plain": ended["duplicates"]["plain"],
            "reordered_plain": self.checker.reordered,
            "duplicates_idempotent": ended["duplicates"]["idempotent"],
            "recovery_median_s": round(statistics.median(recoveries), 2) if recoveries else None,
            "recovery_max_s": round(recoveries[-1], 2) if recoveries else None,
            "stall_median_s": round(statistics.median(stalls), 2) if stalls else None,
            "stall_max_s": round(stalls[-1], 2) if stalls else None,
            "stall_max_s_by_kind": stall_by_kind,
            "read_stall_median_s": (round(statistics.median(read_stalls), 2) if read_stalls
                                    else None),
            "read_stall_max_s": round(read_stalls[-1], 2) if read_stalls else None,
            "read_stall_max_s_by_kind": read_stall_by_kind,
            "failures": len(self.checker.violations),
            "duration_s": round(time.monotonic() - started, 1),
        }


def main(argv=None) -> int:
    args = parse_args(argv)
    why = Network.unavailable()
    if why:
        print(f"cannot run: {why}", flush=True)
        return 2
    with tempfile.TemporaryDirectory(prefix="corelog-cluster-faults-") as tmp:
        workdir = args.work_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        harness = Harness(args, workdir)
        try:
            summary = harness.run()
        except (BrokerError, TimeoutError, RuntimeError, subprocess.CalledProcessError) as error:
            print(f"FAILED (seed {harness.seed}): {error}", flush=True)
            if isinstance(error, subprocess.CalledProcessError):
                print(error.stderr)
            if args.json:
                print(json.dumps({"seed": harness.seed, "failures": 1,
                                  "error": str(error)[:500]}))
            return 1
        violations = harness.checker.violations
        print(f"{summary['faults']} faults {summary['faults_by_kind']}; sent "
              f"{summary['messages_sent']}, acknowledged {summary['messages_acknowledged']}, "
              f"verified at their offsets {summary['acks_verified']} (and "
              f"{summary['acks_without_offset']} acknowledged without an offset found); log "
              f"{summary['log_records']} records ({summary['log_gaps']} offsets of control "
              f"batches), group read {summary['group_read']}; "
              f"{summary['duplicates_plain']} plain-producer duplicates, "
              f"{summary['reordered_plain']} of the plain librdkafka producer's first "
              f"occurrences out of send order; all flowing again "
              f"after a heal: median {summary['recovery_median_s']} s, max "
              f"{summary['recovery_max_s']} s; longest time a producer had no acknowledgement from a partition: median "
              f"{summary['stall_median_s']} s, max {summary['stall_max_s']} s, by kind "
              f"{summary['stall_max_s_by_kind']}; of the group's reads: median "
              f"{summary['read_stall_median_s']} s, max {summary['read_stall_max_s']} s, by "
              f"kind {summary['read_stall_max_s_by_kind']}; "
              f"{summary['duration_s']} s", flush=True)
        if violations:
            print(f"VIOLATIONS: {len(violations)} (replay with --seed {harness.seed})")
            for violation in violations[:VIOLATIONS_SHOWN]:
                print(f"  {violation}")
            harness.describe_nodes()
        else:
            print("OK: every rule held")
        if args.json:
            print(json.dumps(summary))
        return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
