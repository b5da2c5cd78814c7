#!/usr/bin/env python3
"""Does a client failing authentication in a loop slow the others? A measurement, not a test.

    .venv/bin/python scripts/auth_flood.py --rounds 3 --duration 10 --flooders 200

Starts the release binary (or $CORELOG_BIN) with PLAINTEXT and SASL_PLAINTEXT listeners and
user alice, one shard on CPU 0 (`--shards 1 --cpus 0`; the bench and the flooding client share
CPU 1, the client at nice 19 or under SCHED_IDLE, so the broker's core is its own; the data
directory is made in $TMPDIR, so `TMPDIR=/mnt/somewhere` puts it on another device), then per
round runs `corelog bench produce` open loop (1 KiB, acks=all, --rate, from 127.0.0.1) against
the PLAINTEXT listener four times: alone; beside --flooders connections from 127.0.0.2 that
each log in with a wrong SCRAM-SHA-512 password in a loop; beside as many with a wrong PLAIN
password (which costs the broker a key derivation per attempt); and beside the PLAIN flood
spread over --spread addresses, so that no address is throttled and the password-check share
is what bounds it. Prints, per phase, the bench's p50/p99/p99.9, the share of the broker's own
Produce handling times over 1 and 2.5 ms, the failed logins and the connections closed
unanswered (throttled) per second, and the broker's CPU time per second of the phase, medians
over the rounds, as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))

from corelog_broker import Broker, corelog_bin  # noqa: E402
from security_setup import create_user_offline, raw_request  # noqa: E402

USER, PASSWORD = "alice", "auth-flood-secret"


def sasl_authenticate(token: bytes) -> bytes:
    return raw_request(36, 1, struct.pack(">i", len(token)) + token, correlation_id=2)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


async def failing_login(host: str, port: int, mechanism: str, source_ip: str) -> None:
    """One connection: handshake, a wrong password, read the refusal and the close."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source_ip, 0))
    try:
        writer.write(raw_request(17, 1, struct.pack(">h", len(mechanism)) + mechanism.encode()))
        await read_frame(reader)
        if mechanism == "PLAIN":
            writer.write(sasl_authenticate(f"\0{USER}\0wrong".encode()))
        else:
            nonce = base64.b64encode(os.urandom(18)).decode()
            writer.write(sasl_authenticate(f"n,,n={USER},r={nonce}".encode()))
            first = await read_frame(reader)
            server_first = first[12:].split(b",")[0].decode()  # Past error, message, length.
            proof = base64.b64encode(os.urandom(64)).decode()
            combined = server_first[server_first.find("r=") + 2:]
            writer.write(sasl_authenticate(f"c=biws,r={combined},p={proof}".encode()))
        await read_frame(reader)
        await reader.read()  # The broker closes the connection.
    finally:
        writer.close()


def flood(host: str, port: int, mechanism: str, connections: int, stop: threading.Event,
          counter: list[int], sched: str, source_ips: list[str]) -> None:
    # The flooding client shares CPU 1 with the bench: at nice 19, or under SCHED_IDLE, it
    # takes only what the bench leaves, so that what the producer's latency shows is the
    # broker's share of the cost.
    if sched == "idle":
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
    else:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    async def worker(first: int):
        attempt = first
        while not stop.is_set():
            attempt += 1
            try:
                await failing_login(host, port, mechanism,
                                    source_ips[attempt % len(source_ips)])
                counter[0] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                counter[1] += 1  # Closed unanswered: throttled.
                await asyncio.sleep(0.01)

    async def main():
        await asyncio.gather(*(worker(n) for n in range(connections)))

    asyncio.run(main())


def flooder_ips(first: str, count: int) -> list[str]:
    """`count` loopback addresses from `first` on."""
    base = int.from_bytes(bytes(int(part) for part in first.split(".")), "big")
    return [".".join(str(b) for b in (base + n).to_bytes(4, "big")) for n in range(count)]


def cpu_seconds(pid: int) -> float:
    """User and system time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def produce_buckets(broker: Broker) -> dict[float, float]:
    """The broker's own Produce handling-time histogram: cumulative count per bucket bound."""
    line = [line for line in broker.stderr_text(tail_bytes=1 << 40).splitlines()
            if "admin listener serving /metrics" in line][-1]
    address = line.split("admin=")[1].split()[0]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith('corelog_request_seconds_bucket{api="Produce"'):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


def share_over(before: dict[float, float], after: dict[float, float], bound_s: float) -> float:
    """Percent of the Produce requests between two scrapes that took longer than bound_s."""
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    within = after[bound_s] - before.get(bound_s, 0.0)
    return 100.0 * (total - within) / total if total else 0.0


def bench(address: str, rate: int, duration: int) -> dict:
    command = [corelog_bin(), "bench", "produce", "--brokers", address, "--topic", "flood",
               "--cpus", "1",
               "--message-size", "1024", "--rate", str(rate), "--producers", "4",
               "--partitions", "4", "--duration", f"{duration}s", "--json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def phase(broker: Broker, mechanism: str | None, addresses: int, args) -> dict:
    stop, counter = threading.Event(), [0, 0]
    thread = None
    if mechanism:
        thread = threading.Thread(target=flood, args=(broker.host,
                                  broker.ports["SASL_PLAINTEXT"], mechanism, args.flooders,
                                  stop, counter, args.flooder_sched,
                                  [args.flooder_ip] if addresses == 1
                                  else flooder_ips("127.0.1.1", addresses)),
                                  daemon=True)
        thread.start()
        time.sleep(1)  # Let the flood reach its pace before the measurement starts.
    started, before, closed_before = time.monotonic(), counter[0], counter[1]
    cpu_before = cpu_seconds(broker.proc.pid)
    buckets_before = produce_buckets(broker)
    report = bench(broker.bootstrap, args.rate, args.duration)
    buckets_after = produce_buckets(broker)
    elapsed = time.monotonic() - started
    logins = (counter[0] - before) / elapsed
    closed = (counter[1] - closed_before) / elapsed
    cpu = (cpu_seconds(broker.proc.pid) - cpu_before) / elapsed
    stop.set()
    if thread:
        thread.join(30)
    latency = report["latency_us"]
    return {"p50": latency["p50"] / 1000, "p99": latency["p99"] / 1000,
            "p999": latency["p999"] / 1000, "logins": logins, "closed": closed, "cpu": cpu,
            "errors": report.get("errors", 0),
            "over_1ms": share_over(buckets_before, buckets_after, 0.001),
            "over_2_5ms": share_over(buckets_before, buckets_after, 0.0025)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--flooders", type=int, default=200)
    ap.add_argument("--flooder-ip", default="127.0.0.2",
                    help="the flooding client's source address (the bench connects from "
                         "127.0.0.1)")
    ap.add_argument("--spread", type=int, default=64,
                    help="addresses the last phase's flood comes from, so that none of them "
                         "fails often enough to be throttled")
    ap.add_argument("--flooder-sched", choices=("nice", "idle"), default="nice",
                    help="the flooding client at nice 19, or under SCHED_IDLE")
    args = ap.parse_args()
    # Phase name: (mechanism, source addresses of the flood).
    phases = {"none": (None, 1), "SCRAM-SHA-512": ("SCRAM-SHA-512", 1), "PLAIN": ("PLAIN", 1),
              f"PLAIN from {args.spread} addresses": ("PLAIN", args.spread)}
    results: dict[str, list[dict]] = {name: [] for name in phases}
    with tempfile.TemporaryDirectory(prefix="corelog-authflood-") as tmp:
        broker = Broker(corelog_bin(), Path(tmp) / "data", Path(tmp), shards=1,
                        extra_args=("--sasl-mechanisms", "SCRAM-SHA-512,PLAIN", "--cpus", "0"),
                        listeners=("SASL_PLAINTEXT",))
        create_user_offline(broker.data_dir, USER, PASSWORD)
        broker.start()
        os.sched_setaffinity(0, {1})  # This script's flooding threads stay off CPU 0.
        try:
            for round_ in range(args.rounds):
                for name in results:
                    result = phase(broker, *phases[name], args)
                    results[name].append(result)
                    print(f"round {round_ + 1} {name}: {result}", flush=True)
            broker.stop_clean()
        finally:
            broker.kill()
    print(f"\n{args.rate} msg/s, 1 KiB, acks=all, 4 producers; {args.flooders} flooding "
          f"connections; medians of {args.rounds} rounds of {args.duration} s\n")
    print("| failing logins beside | p50 ms | p99 ms | p99.9 ms | broker's Produce > 1 ms | "
          "> 2.5 ms | failed logins/s | closed unanswered/s | broker CPU s/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = ("p50", "p99", "p999", "over_1ms", "over_2_5ms", "logins", "closed", "cpu")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in keys}
        print(f"| {name} | {med['p50']:.3f} | {med['p99']:.3f} | {med['p999']:.3f} | "
              f"{med['over_1ms']:.2f}% | {med['over_2_5ms']:.2f}% | {med['logins']:.0f} | "
              f"{med['closed']:.0f} | {med['cpu']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
