#!/usr/bin/env python3
"""Quick producer throughput and latency baseline for corelog using confluent-kafka.

Produces COUNT messages of SIZE bytes to one topic with the given acks and measures:
  - throughput: messages/s and MB/s from the first produce() to the last delivery report;
  - per-message delivery latency: produce() call -> delivery callback, as p50/p99/p99.9/max.
Two scenarios by default: "throughput" keeps up to --inflight messages unacknowledged (its
latency includes queueing behind that window), "latency" keeps one message in flight at a time
(--latency-count messages), which shows the broker's own produce round trip with fsync.
Prints a markdown table (with the machine and command) ready for BENCHMARKS.md.

Example:
  .venv/bin/python scripts/bench_baseline.py --bootstrap 127.0.0.1:9092 \
      --topic bench --size 1024 --count 200000 --acks all
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time

import confluent_kafka
from confluent_kafka import Producer


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def machine_summary() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


def run(args, count: int, inflight: int, linger_ms: int) -> dict:
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": linger_ms,
        "compression.type": "none",
        "enable.idempotence": False,
        "queue.buffering.max.messages": max(100_000, inflight),
        "message.timeout.ms": 60_000,
    })
    payload = os.urandom(args.size)
    latencies_ms: list[float] = []
    errors: list[str] = []

    def on_delivery(err, msg, sent_ns):
        if err is not None:
            errors.append(str(err))
        else:
            latencies_ms.append((time.perf_counter_ns() - sent_ns) / 1e6)

    # Warm-up: fetch metadata and auto-create the topic outside the measured window.
    producer.produce(args.topic, value=payload)
    if producer.flush(30) != 0:
        sys.exit("warm-up message not delivered within 30 s: is the broker running?")

    start = time.perf_counter()
    for i in range(count):
        sent_ns = time.perf_counter_ns()
        while True:
            try:
                producer.produce(args.topic, value=payload,
                                 on_delivery=lambda e, m, t=sent_ns: on_delivery(e, m, t))
                break
            except BufferError:
                producer.poll(0.001)  # The local queue is full: serve callbacks, then retry.
        # Bound the in-flight window so the latency measured is the broker's, not queueing
        # inside librdkafka behind an unbounded backlog.
        producer.poll(0)
        while i + 1 - len(latencies_ms) - len(errors) > inflight:
            producer.poll(0.001)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining:
        sys.exit(f"{remaining} messages not delivered within 120 s")
    latencies_ms.sort()
    delivered = len(latencies_ms)
    return {
        "delivered": delivered,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "elapsed_s": elapsed,
        "msgs_per_s": delivered / elapsed,
        "mb_per_s": delivered * args.size / elapsed / 1e6,
        "p50": percentile(latencies_ms, 50),
        "p99": percentile(latencies_ms, 99),
        "p999": percentile(latencies_ms, 99.9),
        "max": latencies_ms[-1] if latencies_ms else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="bench-baseline")
    parser.add_argument("--size", type=int, default=1024, help="message value size in bytes")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--acks", default="all", choices=["0", "1", "all", "-1"])
    parser.add_argument("--linger-ms", type=int, default=1,
                        help="throughput scenario's linger.ms (the latency scenario uses 0)")
    parser.add_argument("--inflight", type=int, default=10_000,
                        help="throughput scenario: max messages produced but not acknowledged")
    parser.add_argument("--latency-count", type=int, default=5_000,
                        help="latency scenario: messages sent one at a time")
    parser.add_argument("--mode", default="both", choices=["both", "throughput", "latency"])
    args = parser.parse_args()

    scenarios = []
    if args.mode in ("both", "throughput"):
        scenarios.append(("throughput", args.count, args.inflight, args.linger_ms))
    if args.mode in ("both", "latency"):
        scenarios.append(("latency", args.latency_count, 1, 0))
    results = [(name, inflight, linger, run(args, count, inflight, linger))
               for name, count, inflight, linger in scenarios]

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"Machine: {machine_summary()}")
    print(f"Command: `{command}`")
    print(f"Client: confluent-kafka {confluent_kafka.__version__} (librdkafka "
          f"{confluent_kafka.libversion()[0]}), acks={args.acks}, compression none, "
          f"{args.size}-byte values\n")
    print("| scenario | in flight | linger.ms | messages | msgs/s | MB/s | p50 (ms) | p99 (ms) "
          "| p99.9 (ms) | max (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    for name, inflight, linger, r in results:
        print(f"| {name} | {inflight} | {linger} | {r['delivered']} | {r['msgs_per_s']:,.0f} "
              f"| {r['mb_per_s']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p999']:.2f} "
              f"| {r['max']:.2f} |")
        if r["errors"]:
            print(f"\n{name}: {r['errors']} delivery errors, first: {r['first_error']}")
            failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
