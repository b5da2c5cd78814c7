#!/usr/bin/env python3
"""Transactional produce throughput beside plain idempotent produce (issue 15).

    python3 scripts/txn_bench.py                      # 3 rounds, 10 s per step
    python3 scripts/txn_bench.py --rounds 1 --duration 5

One broker in its default configuration (`serve`, two shards, no pinning) on a fresh data
directory per round. Per round, each step on a fresh topic of --partitions partitions, one
confluent-kafka (librdkafka) producer in a process of its own, 1 KiB values, acks=all,
linger.ms 5, spread over the partitions:
  - idempotent: enable.idempotence, produce for --duration seconds, then flush;
  - transactions of 100, 1,000 and 10,000 messages: begin, produce N, commit_transaction,
    repeated for --duration seconds (the last transaction is finished, and counted).
The rate is committed (or, for idempotent, acknowledged: every delivery report is checked)
messages over the elapsed time. The
same round measures the machine's limits: fdatasync after a 4 KiB overwrite (fio; an
acks=all produce and every transaction's markers wait for it) and loopback bandwidth
(iperf3). Prints a markdown table of medians over the rounds (range) with the ratio to
idempotent produce, and keeps the raw figures in target/txn-bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the shared helpers of the comparison script
from compare import Broker, log, median_of  # noqa: E402

STEPS = [("idempotent", 0), ("transactions of 100", 100), ("transactions of 1,000", 1000),
         ("transactions of 10,000", 10_000)]
VALUE = b"x" * 1024


def client(args) -> None:
    """One step, in this process: prints {"messages": n, "seconds": s, "transactions": t}."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    bootstrap = f"127.0.0.1:{args.port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(args.topic, args.partitions)])[args.topic].result(30)
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "enable.idempotence": True, "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 2_000_000}
    if args.per_txn:
        conf["transactional.id"] = f"bench-{args.topic}"
    producer = Producer(conf)
    if args.per_txn:
        producer.init_transactions(30)
    sent = transactions = 0
    started = time.monotonic()
    deadline = started + args.duration
    if not args.per_txn:
        delivered = {"ok": 0, "failed": 0}

        def on_delivery(error, _message):
            delivered["failed" if error else "ok"] += 1

        while time.monotonic() < deadline:
            for _ in range(1000):
                try:
                    producer.produce(args.topic, VALUE, partition=sent % args.partitions,
                                     on_delivery=on_delivery)
                except BufferError:
                    producer.poll(0.01)
                    continue
                sent += 1
            producer.poll(0)
        producer.flush(60)
        if delivered["failed"] or delivered["ok"] != sent:
            raise SystemExit(f"{delivered} of {sent} delivered")
    else:
        while time.monotonic() < deadline:
            producer.begin_transaction()
            for i in range(args.per_txn):
                while True:
                    try:
                        producer.produce(args.topic, VALUE, partition=i % args.partitions)
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.commit_transaction(60)
            sent += args.per_txn
            transactions += 1
    elapsed = time.monotonic() - started
    print(json.dumps({"messages": sent, "seconds": elapsed, "transactions": transactions}))


def run_step(args, topic: str, per_txn: int) -> dict:
    argv = [sys.executable, __file__, "--client", "--port", str(args.port), "--topic", topic,
            "--per-txn", str(per_txn), "--duration", str(args.duration),
            "--partitions", str(args.partitions)]
    done = compare.run_checked(argv, args.duration + 180)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["msgs_per_s"] = result["messages"] / result["seconds"]
    return result


def run_round(round_no: int, args, work: Path) -> dict:
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    compare.settle()
    argv = [str(args.corelog), "serve", "--data-dir", str(data), "--listen",
            f"127.0.0.1:{args.port}", "--admin-listen", "off"]
    out: dict = {}
    with Broker("corelog-txn", argv, args.port, work):
        for name, per_txn in STEPS:
            log(f"  round {round_no}: {name}")
            out[name] = run_step(args, f"txn-bench-{per_txn}-r{round_no}", per_txn)
    return out


def build_markdown(results: dict, args) -> str:
    rounds = results["rounds"]
    limits = [r["limits"] for r in rounds]
    lines = [
        f"Commit {results['commit']}, {results['date']}; {results['machine'].get('cpu', '?')}.",
        f"`python3 scripts/txn_bench.py --rounds {args.rounds} --duration {args.duration}`: "
        f"broker in its default configuration (2 shards), one confluent-kafka producer, 1 KiB "
        f"values, acks=all, linger.ms 5, {args.partitions} partitions; medians of "
        f"{len(rounds)} rounds (range). Machine, same run: fdatasync p99 "
        f"{compare.fmt(median_of(limits, 'fdatasync_p99'), 3)} ms (fio), loopback "
        f"{compare.fmt(median_of(limits, 'loopback_mb_per_s'), 0)} MB/s (iperf3).",
        "",
        "| producer | msg/s | vs idempotent | transactions/s |",
        "|---|---|---|---|",
    ]
    base = median_of([r["corelog"] for r in rounds], "idempotent", "msgs_per_s")
    for name, per_txn in STEPS:
        runs = [r["corelog"][name] for r in rounds]
        rate = median_of(runs, "msgs_per_s")
        share = compare.ratio(rate, base)
        per_s = "-"
        if per_txn:
            txns = [{"rate": r["transactions"] / r["seconds"]} for r in runs]
            per_s = compare.fmt(median_of(txns, "rate"), 1)
        lines.append(f"| {name} | {compare.fmt(rate, 0)} | "
                     f"{'-' if share is None else f'{share:.0%}'} | {per_s} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--port", type=int, default=19692)
    parser.add_argument("--work-dir", type=Path, default=compare.REPO / "target" / "txn-bench")
    parser.add_argument("--corelog", type=Path, default=compare.CORELOG)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--per-txn", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.client:
        client(args)
        return
    compare.stop_on_exit()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    results = compare.run_results()
    runtime = max(2.0, args.duration / 2)
    for round_no in range(1, args.rounds + 1):
        limits = compare.round_limits(args, work, runtime)
        results["rounds"].append({"limits": limits, "corelog": run_round(round_no, args, work)})
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(build_markdown(results, args))


if __name__ == "__main__":
    main()
