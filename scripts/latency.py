#!/usr/bin/env python3
"""Produce latency at low and moderate load, beside the disk's fdatasync (issue 12, item 9).

    python3 scripts/latency.py                 # 3 rounds, 15 s per load step (about 12 minutes)
    python3 scripts/latency.py --rounds 1 --duration 5    # a quick look

Per round, one after the other so that the machine's noise hits every step alike:

  L. fdatasync latency after overwriting a 4 KiB block of a laid-out file (fio), on the file
     system of the data directory: the floor an acks=all produce cannot go under; then the
     same by --partitions writers at once, each on its own file, as the partitions flush;
  1. one shard on CPU 0 (`serve --shards 1 --cpus 0`), `corelog bench produce` on CPU 1:
     open loop at each of --rates (default 1,000, 10,000 and 100,000 msg/s), then closed loop;
  2. the default configuration (`serve`, two shards, placed as the broker places them) with the
     bench on its default CPU: the same steps, with the topic's partitions spread over both
     shards (the broker places new partitions on the least loaded shard).

Every step: 1 KiB values, acks=all, a fresh topic of --partitions partitions, --producers
producer connections, --warmup before measuring. Open loop latency is measured from each
message's intended send time, so a client that falls behind shows as latency, not as a lower
rate. Every layout starts a broker on an empty data directory; what the layout before wrote
is deleted and the deletion committed first (see `compare.settle`). The in-flight limit per
producer (--max-in-flight) is high enough that the client is not the queue at 100,000 msg/s:
a produce waits for the broker, never for a free slot.

It prints a markdown table (medians over the rounds, with the range) with the targets of
item 9 checked against the fdatasync p99 of the same run, splices it between the
`latency:begin`/`latency:end` markers of BENCHMARKS.md (unless --no-splice), and keeps every
raw figure in target/latency/results.json. Brokers are always stopped; a broker that exits
by itself fails the run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the shared helpers of the comparison script
from compare import Broker, log, median_of  # noqa: E402

MARK_BEGIN = "<!-- latency:begin -->"
MARK_END = "<!-- latency:end -->"


# The broker layouts measured: one pinned shard, and the default configuration.
LAYOUTS = [
    {"name": "1 shard (CPU 0), bench on CPU 1", "key": "one",
     "serve": ["--shards", "1", "--cpus", "0"], "bench_cpus": "1"},
    {"name": "default: 2 shards, bench on its default CPU", "key": "default",
     "serve": [], "bench_cpus": ""},
]


def run_layout(layout: dict, round_no: int, args, work: Path) -> dict:
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    compare.settle()
    data.mkdir(parents=True)
    argv = [str(args.corelog), "serve", "--data-dir", str(data), "--listen",
            f"127.0.0.1:{args.port}", "--admin-listen", "off", *layout["serve"]]
    compare.CLIENT_CPUS = layout["bench_cpus"]
    common = ["--producers", str(args.producers), "--partitions", str(args.partitions),
              "--max-in-flight", str(args.max_in_flight), "--warmup", f"{args.warmup}s"]
    out: dict = {}
    broker = Broker(f"corelog-{layout['key']}", argv, args.port, work)
    try:
        with broker:
            for rate in args.rates:
                log(f"  {layout['name']}: open loop at {rate:,} msg/s")
                report = compare.bench("produce", args.port, f"open-{rate}-r{round_no}",
                                       args.duration, common, rate=rate)
                out[f"open_{rate}"] = compare.bench_summary(report)
            log(f"  {layout['name']}: closed loop")
            report = compare.bench("produce", args.port, f"closed-r{round_no}", args.duration,
                                   [*common, "--batch-size", "131072"])
            out["closed"] = compare.bench_summary(report)
            if broker.process.poll() is not None:
                raise RuntimeError(f"the broker exited by itself with {broker.process.returncode}")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return out


def build_markdown(results: dict, args) -> str:
    info = results["machine"]
    rounds = results["rounds"]
    sync99 = median_of([r["limits"] for r in rounds], "fdatasync_p99")
    jobs = args.partitions

    def limit(key: str) -> str:
        return compare.fmt(median_of([r["limits"] for r in rounds], key), 3)

    lines = [
        MARK_BEGIN,
        "",
        f"### Latest run: {results['date']}",
        "",
        f"Machine: {info['cpu']}, kernel {info['kernel']}, {info['memory_gib']} GiB, disk "
        f"{info['disk']}; commit {info['commit']}; load before the run {info['load_before']}.",
        f"Command: `{results['command']}` ({len(rounds)} rounds; medians, range in brackets); "
        f"broker binary {results['broker']}, load from target/release/corelog.",
        "",
        f"fdatasync after a 4 KiB overwrite (fio, same file system, same rounds): p50 "
        f"{limit('fdatasync_p50')} ms, p99 {limit('fdatasync_p99')} ms, p99.9 "
        f"{limit('fdatasync_p999')} ms. The same by {jobs} writers at once, each on its own "
        f"file (as {jobs} partitions flush): p50 {limit(f'fdatasync_{jobs}_p50')} ms, p99 "
        f"{limit(f'fdatasync_{jobs}_p99')} ms, p99.9 {limit(f'fdatasync_{jobs}_p999')} ms.",
        "",
        "| layout | load | msg/s | p50 ms | p99 ms | p99.9 ms | max ms | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layout in LAYOUTS:
        runs = [r.get(layout["key"], {}) for r in rounds]
        for rate in args.rates:
            key = f"open_{rate}"
            p99 = median_of(runs, key, "p99")
            p999 = median_of(runs, key, "p999")
            if rate >= 100_000:
                target = "p99 <= 2 ms"
                met = p99 is not None and p99[0] <= 2.0
            else:
                bound = (sync99[0] if sync99 else 0.0) + 0.5
                target = f"p99 <= {bound:.2f} ms, p99.9 <= 2 ms"
                met = (p99 is not None and p999 is not None and p99[0] <= bound
                       and p999[0] <= 2.0)
            lines.append(
                f"| {layout['name']} | open {rate:,}/s | "
                f"{compare.fmt(median_of(runs, key, 'msgs_per_s'), 0, False)} | "
                f"{compare.fmt(median_of(runs, key, 'p50'), 3)} | {compare.fmt(p99, 3)} | "
                f"{compare.fmt(p999, 3)} | {compare.fmt(median_of(runs, key, 'max'), 2)} | "
                f"{target} | {'yes' if met else '**no**'} |")
        lines.append(
            f"| {layout['name']} | closed loop | "
            f"{compare.fmt(median_of(runs, 'closed', 'msgs_per_s'), 0)} | "
            f"{compare.fmt(median_of(runs, 'closed', 'p50'), 3)} | "
            f"{compare.fmt(median_of(runs, 'closed', 'p99'), 3)} | "
            f"{compare.fmt(median_of(runs, 'closed', 'p999'), 3)} | "
            f"{compare.fmt(median_of(runs, 'closed', 'max'), 2)} | - | - |")
    errors = [f"round {i + 1} {layout['key']} {key}: {step['errors']} errors"
              for i, r in enumerate(rounds) for layout in LAYOUTS
              for key, step in r.get(layout["key"], {}).items() if step.get("errors")]
    lines += ["", "Client errors: " + ("; ".join(errors) if errors else "none") + ".", "",
              MARK_END]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load step")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rates", type=lambda text: [int(x) for x in text.split(",")],
                        default=[1_000, 10_000, 100_000])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-in-flight", type=int, default=32)
    parser.add_argument("--port", type=int, default=19900)
    parser.add_argument("--work-dir", type=Path, default=compare.REPO / "target" / "latency")
    parser.add_argument("--no-splice", action="store_true")
    parser.add_argument("--corelog", type=Path, default=compare.CORELOG,
                        help="the broker binary to measure (default target/release/corelog; "
                        "the load always comes from target/release/corelog's bench)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    compare.stop_on_exit()
    if shutil.which("fio") is None:
        sys.exit("fio is missing: apt-get install fio")
    args.corelog = args.corelog.resolve()
    for binary in {compare.CORELOG, args.corelog}:
        if not binary.exists():
            sys.exit(f"{binary} is missing: run cargo build --release")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python3", "scripts/latency.py", *sys.argv[1:]]),
        "machine": compare.machine(),
        "broker": str(args.corelog),
        "rounds": [],
    }
    for round_no in range(1, args.rounds + 1):
        log(f"round {round_no}/{args.rounds}")
        runtime = max(5.0, args.duration / 3)
        entry = {"limits": compare.fdatasync_latency(args, work, runtime)}
        entry["limits"].update(compare.fdatasync_latency(args, work, runtime, args.partitions))
        for fio_file in work.glob("fio*.dat"):
            fio_file.unlink()
        compare.settle()
        for layout in LAYOUTS:
            entry[layout["key"]] = run_layout(layout, round_no, args, work)
        results["rounds"].append(entry)
        (work / "results.json").write_text(json.dumps(results, indent=1))
    markdown = build_markdown(results, args)
    if not args.no_splice:
        compare.splice(markdown, compare.REPO / "BENCHMARKS.md", MARK_BEGIN, MARK_END)
    print(markdown)


if __name__ == "__main__":
    main()
