#!/usr/bin/env python3
"""Produce latency while the log cleaner compacts a large partition, beside the same load with
no pass running (issue 15).

    python3 scripts/compaction_bench.py                     # 3 rounds
    python3 scripts/compaction_bench.py --rounds 1 --fill 3 --duration 5

One broker in its default configuration (`serve`, two shards, no pinning) on a fresh data
directory per round, with `--log-cleaner-backoff-ms 500` so that a pass starts soon after the
switch below (the default 15 s only delays it). Per round:
  1. fill: `corelog bench produce` closed loop for --fill seconds into topic `table` (one
     partition, cleanup.policy=delete for now, segment.bytes 16 MiB), 1 KiB values with keys
     drawn from --keys distinct keys (a changelog: every key updated again and again);
  2. no pass: `corelog bench produce` open loop at --rate msg/s for --duration seconds into
     topic `hot` (2 partitions, one per shard), acks=all, 1 KiB: its latency percentiles;
  3. during a pass: `table` switched to cleanup.policy=compact (IncrementalAlterConfigs), then
     the same load as 2 on a fresh topic at once. `/metrics` then says when the pass over
     `table` ended, and what it read and wrote; the share of the load's window the pass ran
     in is reported (a round where it ran in less than half says so: fill more).
The same round measures the machine's limits: fdatasync after a 4 KiB overwrite (fio) and
loopback bandwidth (iperf3). Prints a markdown table of medians over the rounds (range), and
keeps the raw figures in target/compaction-bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the shared helpers of the comparison script
from compare import Broker, log, median_of  # noqa: E402

TABLE = "table"


def corelog(args, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return compare.run_checked([str(args.corelog), *argv], timeout)


def metric(args, name: str) -> float:
    """The value of `name` for partition 0 of TABLE, from /metrics."""
    url = f"http://127.0.0.1:{args.admin_port}/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    prefix = f'{name}{{topic="{TABLE}",partition="0"'
    line = next(line for line in body.splitlines() if line.startswith(prefix))
    return float(line.rsplit(" ", 1)[1])


def load(args, topic: str) -> dict:
    """The open-loop produce load of steps 2 and 3; its latency in ms."""
    report = compare.bench("produce", args.port, topic, args.duration,
                           ["--partitions", "2"], rate=args.rate)
    return compare.bench_summary(report)


def run_round(round_no: int, args, work: Path) -> dict:
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    compare.settle()
    brokers = f"127.0.0.1:{args.port}"
    argv = [str(args.corelog), "serve", "--data-dir", str(data), "--listen", brokers,
            "--admin-listen", f"127.0.0.1:{args.admin_port}", "--log-cleaner-backoff-ms", "500"]
    out: dict = {}
    with Broker("corelog-compaction", argv, args.port, work):
        corelog(args, "topic", "create", TABLE, "--brokers", brokers, "-p", "1",
                "-c", "cleanup.policy=delete", "-c", "retention.ms=-1",
                "-c", "segment.bytes=16777216")
        log(f"  round {round_no}: fill")
        compare.bench("produce", args.port, TABLE, args.fill,
                      ["--key-distribution", "random", "--key-space", str(args.keys)])
        out["table_bytes"] = metric(args, "corelog_partition_size_bytes")
        log(f"  round {round_no}: no pass")
        out["no pass"] = load(args, f"hot-idle-r{round_no}")
        corelog(args, "topic", "alter", TABLE, "--brokers", brokers,
                "--set", "cleanup.policy=compact")
        switched = time.time()
        log(f"  round {round_no}: during a pass")
        out["during a pass"] = load(args, f"hot-pass-r{round_no}")
        loaded_until = time.time()
        deadline = time.time() + 600
        while metric(args, "corelog_partition_cleaner_last_pass_timestamp_seconds") == 0:
            if time.time() > deadline:
                raise SystemExit("no compaction pass within 10 minutes")
            time.sleep(0.5)
        ended = metric(args, "corelog_partition_cleaner_last_pass_timestamp_seconds")
        out["pass_ended_after_s"] = ended - switched
        # The share of the load's window the pass (begun within the 500 ms backoff) ran in.
        out["pass_share_of_load"] = min(1.0, (ended - switched) / (loaded_until - switched))
        out["cleaner_read_bytes"] = metric(args, "corelog_partition_cleaner_bytes_read_total")
        out["cleaner_written_bytes"] = metric(
            args, "corelog_partition_cleaner_bytes_written_total")
    return out


def build_markdown(results: dict, args) -> str:
    rounds = results["rounds"]
    limits = [r["limits"] for r in rounds]
    runs = [r["corelog"] for r in rounds]
    lines = [
        f"Commit {results['commit']}, {results['date']}; {results['machine'].get('cpu', '?')}.",
        f"`python3 scripts/compaction_bench.py --rounds {args.rounds} --fill {args.fill} "
        f"--duration {args.duration} --rate {args.rate} --keys {args.keys}`: broker in its "
        f"default configuration (2 shards) with --log-cleaner-backoff-ms 500; `corelog bench "
        f"produce` open loop at {args.rate} msg/s, 1 KiB, acks=all, 2 partitions; medians of "
        f"{len(rounds)} rounds (range). Compacted partition before the pass: "
        f"{compare.fmt(median_of([{'v': r['table_bytes'] / 2**20} for r in runs], 'v'), 0)} MiB; "
        f"the pass read "
        f"{compare.fmt(median_of([{'v': r['cleaner_read_bytes'] / 2**20} for r in runs], 'v'), 0)}"
        f" MiB and wrote "
        f"{compare.fmt(median_of([{'v': r['cleaner_written_bytes'] / 2**20} for r in runs], 'v'), 0)}"
        f" MiB, ending {compare.fmt(median_of(runs, 'pass_ended_after_s'), 1)} s after the "
        f"switch (it ran in {compare.fmt(median_of(runs, 'pass_share_of_load'), 2)} of the "
        f"load's window). Machine, same run: fdatasync p99 "
        f"{compare.fmt(median_of(limits, 'fdatasync_p99'), 3)} ms (fio), loopback "
        f"{compare.fmt(median_of(limits, 'loopback_mb_per_s'), 0)} MB/s (iperf3).",
        "",
        "| produce load | p50 ms | p99 ms | p99.9 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for name in ["no pass", "during a pass"]:
        cells = [compare.fmt(median_of(runs, name, p)) for p in ["p50", "p99", "p999", "max"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fill", type=float, default=8.0, help="seconds of filling `table`")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=19693)
    parser.add_argument("--admin-port", type=int, default=19694)
    parser.add_argument("--work-dir", type=Path,
                        default=compare.REPO / "target" / "compaction-bench")
    parser.add_argument("--corelog", type=Path, default=compare.CORELOG)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    compare.stop_on_exit()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    results = compare.run_results()
    runtime = max(2.0, args.duration / 2)
    for round_no in range(1, args.rounds + 1):
        limits = compare.round_limits(args, work, runtime)
        measured = run_round(round_no, args, work)
        if measured["pass_share_of_load"] < 0.5:
            log(f"  round {round_no}: the pass ended "
                f"{measured['pass_ended_after_s']:.1f} s after the switch: it ran during only "
                f"{measured['pass_share_of_load']:.0%} of the load; fill more (--fill)")
        results["rounds"].append({"limits": limits, "corelog": measured})
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(build_markdown(results, args))


if __name__ == "__main__":
    main()
