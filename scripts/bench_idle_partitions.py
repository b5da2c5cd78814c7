#!/usr/bin/env python3
"""What idle replicated partitions cost a three-node cluster on this machine.

    .venv/bin/python scripts/bench_idle_partitions.py [--binary B] [--partitions 10000]
        [--per-topic 100] [--seconds 30] [--shards 2]

Starts three voters (the default shard count unless told), measures them idle with only
`__consumer_offsets`, creates the partitions (replication factor 3, `--per-topic` to a topic),
waits until every one is led, lets them settle, and measures again. Per node: CPU as a share of
one core, resident memory, and the node-to-node traffic it sends (bytes, frames and payloads per
second, from its /metrics; builds without those counters report zeros), and all the loopback
interface's bytes per second. Prints one JSON document. All three nodes share this machine's cores,
so CPU figures are what each node takes from them, not what it would take alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, binary: str, node: int, root: Path, voters: str, cluster_port: int,
                 shards: int):
        self.node = node
        self.port = free_port()
        self.admin = free_port()
        self.log = open(root / f"n{node}.log", "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--node-id", str(node), "--data-dir", str(root / f"n{node}"),
             "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin}",
             "--cluster-listen", f"127.0.0.1:{cluster_port}",
             "--controller-quorum-voters", voters, "--shards", str(shards)],
            stdout=self.log, stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def cluster_counters(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10).read()
        totals: dict[str, float] = {}
        for line in text.decode().splitlines():
            match = re.match(r"corelog_cluster_(\w+)_total\{[^}]*\} (\S+)", line)
            if match:
                totals[match.group(1)] = totals.get(match.group(1), 0) + float(match.group(2))
        return totals

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            sys.exit(f"node {self.node} exited with {self.proc.returncode}")


def loopback_bytes() -> int:
    """Bytes sent on the loopback interface (every node's traffic, clients' too: idle here)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            return int(counters.split()[8])
    return 0


def measure(nodes: list[Node], seconds: float) -> dict:
    before = [(n.cpu_seconds(), n.cluster_counters()) for n in nodes]
    loopback = loopback_bytes()
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    result = {"loopback_bytes_per_s": round((loopback_bytes() - loopback) / elapsed, 1)}
    for node, (cpu, counters) in zip(nodes, before):
        node.check_alive()
        now = node.cluster_counters()
        rate = lambda key: round((now.get(key, 0) - counters.get(key, 0)) / elapsed, 1)
        result[f"node {node.node}"] = {
            "cpu_share_of_a_core": round((node.cpu_seconds() - cpu) / elapsed, 4),
            "rss_mib": round(node.rss_mib(), 1),
            "sent_bytes_per_s": rate("sent_bytes"),
            "frames_per_s": rate("frames_sent"),
            "payloads_per_s": rate("payloads_sent"),
            "dropped_per_s": rate("payloads_dropped"),
        }
    return result


def led_count(admin: AdminClient, prefix: str) -> int:
    metadata = admin.list_topics(timeout=30)
    return sum(1 for name, topic in metadata.topics.items() if name.startswith(prefix)
               for partition in topic.partitions.values() if partition.leader >= 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=str(REPO / "target/release/corelog"))
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--per-topic", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="corelog-idle-"))
    ports = {node: free_port() for node in (1, 2, 3)}
    voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in ports.items())
    nodes = [Node(args.binary, n, root, voters, ports[n], args.shards) for n in (1, 2, 3)]
    try:
        bootstrap = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + 60
        while led_count(admin, "__consumer_offsets") < 16:
            if time.monotonic() > deadline:
                sys.exit("__consumer_offsets never led")
            time.sleep(0.5)
        time.sleep(5)
        report = {"partitions": args.partitions, "shards": args.shards,
                  "seconds": args.seconds, "baseline": measure(nodes, args.seconds)}

        started = time.monotonic()
        topics = [NewTopic(f"idle-{i}", min(args.per_topic, args.partitions - i * args.per_topic), 3)
                  for i in range((args.partitions + args.per_topic - 1) // args.per_topic)]
        for at in range(0, len(topics), 10):
            futures = admin.create_topics(topics[at:at + 10], operation_timeout=120,
                                          request_timeout=180)
            for future in futures.values():
                future.result(timeout=240)
        while (led := led_count(admin, "idle-")) < args.partitions:
            for node in nodes:
                node.check_alive()
            if time.monotonic() - started > 900:
                sys.exit(f"only {led} of {args.partitions} partitions led after 15 minutes")
            time.sleep(2)
        report["created_and_led_s"] = round(time.monotonic() - started, 1)
        time.sleep(10)
        report["idle"] = measure(nodes, args.seconds)
        print(json.dumps(report, indent=2))
    finally:
        for node in nodes:
            node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
