#!/usr/bin/env python3
"""Produce throughput and latency over TLS and SASL_SSL against plaintext (issue 13).

    python3 scripts/tls_bench.py                  # 3 rounds, 10 s per step (about 8 minutes)
    python3 scripts/tls_bench.py --rounds 1 --duration 5
    # the rustls providers side by side, same rounds (the second build's bench uses it too):
    CARGO_TARGET_DIR=target/aws-lc cargo build --release --features aws-lc-rs
    python3 scripts/tls_bench.py --other-corelog target/aws-lc/release/corelog

One broker, one shard on CPU 0 (`serve --shards 1 --cpus 0`), with a PLAINTEXT, an SSL and a
SASL_SSL (SCRAM-SHA-512) listener on consecutive ports, certificates from a test CA made with
openssl and user alice created before the start. `corelog bench produce` runs on CPU 1 against
each listener in turn, per round: closed loop (the throughput), then open loop at --rate (the
latency at moderate load). 1 KiB values, acks=all, --partitions partitions, --producers
connections, a fresh topic per step. The same round also measures the machine's limits: the
loopback bandwidth (iperf3) and fdatasync after a 4 KiB overwrite (fio), since an acks=all
produce waits for both.

Prints a markdown table (medians over the rounds, with the range) with the ratios to
plaintext, and keeps the raw figures in target/tls-bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

import compare  # noqa: E402 - the shared helpers of the comparison script
from compare import Broker, log, median_of  # noqa: E402
from security_setup import TestPki, create_user_offline  # noqa: E402

LISTENERS = ["PLAINTEXT", "SSL", "SASL_SSL"]
USER, PASSWORD = "alice", "tls-bench-secret"


def security_flags(listener: str, pki: TestPki) -> list[str]:
    if listener == "PLAINTEXT":
        return []
    flags = ["--security-protocol", listener, "--tls-ca", str(pki.ca.cert)]
    if listener == "SASL_SSL":
        flags += ["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", USER,
                  "--sasl-password", PASSWORD]
    return flags


def run_round(round_no: int, args, work: Path, pki: TestPki, corelog: Path) -> dict:
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    compare.settle()
    create_user_offline(data, USER, PASSWORD)
    ports = {name: args.port + i for i, name in enumerate(LISTENERS)}
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    compare.CORELOG = corelog  # The bench of this round runs the same build.
    argv = [str(corelog), "serve", "--data-dir", str(data), "--listeners", listeners,
            "--admin-listen", "off", "--shards", "1", "--cpus", "0", *pki.tls_flags(),
            "--sasl-mechanisms", "SCRAM-SHA-512"]
    compare.CLIENT_CPUS = "1"
    common = ["--producers", str(args.producers), "--partitions", str(args.partitions),
              "--warmup", f"{args.warmup}s"]
    out: dict = {}
    with Broker("corelog-tls", argv, args.port, work):
        for listener in LISTENERS:
            extra = common + security_flags(listener, pki)
            port = ports[listener]
            log(f"  round {round_no}: {listener} closed loop")
            closed = compare.bench("produce", port, f"closed-{listener}-r{round_no}",
                                   args.duration, extra)
            log(f"  round {round_no}: {listener} open loop at {args.rate:,} msg/s")
            opened = compare.bench("produce", port, f"open-{listener}-r{round_no}",
                                   args.duration, extra, rate=args.rate)
            out[listener] = {"closed": compare.bench_summary(closed),
                             "open": compare.bench_summary(opened)}
    return out


def build_markdown(results: dict, args) -> str:
    rounds = results["rounds"]
    limits = [r["limits"] for r in rounds]
    lines = [
        f"Commit {results['commit']}, {results['date']}; {results['machine'].get('cpu', '?')}.",
        f"`python3 scripts/tls_bench.py --rounds {args.rounds} --duration {args.duration} "
        f"--rate {args.rate}`: broker `--shards 1 --cpus 0`, bench on CPU 1, 1 KiB values, "
        f"acks=all, {args.producers} producers, {args.partitions} partitions; medians of "
        f"{len(rounds)} rounds (range). Machine, same run: loopback "
        f"{compare.fmt(median_of(limits, 'loopback_mb_per_s'), 0)} MB/s (iperf3), fdatasync "
        f"p99 {compare.fmt(median_of(limits, 'fdatasync_p99'), 3)} ms (fio).",
        "",
        "| listener | closed loop msg/s | vs plaintext | closed p99 ms | "
        f"open {args.rate:,}/s p50 ms | p99 ms | p99 - plaintext ms | p99.9 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for build, label in builds(args):
        runs = {name: [r[build][name] for r in rounds] for name in LISTENERS}
        base_rate = median_of(runs["PLAINTEXT"], "closed", "msgs_per_s")
        base_p99 = median_of(runs["PLAINTEXT"], "open", "p99")
        for name in LISTENERS:
            rate = median_of(runs[name], "closed", "msgs_per_s")
            p99 = median_of(runs[name], "open", "p99")
            share = compare.ratio(rate, base_rate)
            delta = None if p99 is None or base_p99 is None else p99[0] - base_p99[0]
            lines.append(
                f"| {label}{name} | {compare.fmt(rate, 0)} | "
                f"{'-' if share is None else f'{share:.0%}'} | "
                f"{compare.fmt(median_of(runs[name], 'closed', 'p99'), 2)} | "
                f"{compare.fmt(median_of(runs[name], 'open', 'p50'), 3)} | "
                f"{compare.fmt(p99, 3)} | {'-' if delta is None else f'{delta:+.3f}'} | "
                f"{compare.fmt(median_of(runs[name], 'open', 'p999'), 3)} |")
    return "\n".join(lines) + "\n"


def builds(args) -> list[tuple[str, str]]:
    """The builds measured: (key in a round's results, row label prefix)."""
    if args.other_corelog is None:
        return [("corelog", "")]
    return [("corelog", f"{args.name} "), ("other", f"{args.other_name} ")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--port", type=int, default=19592)
    parser.add_argument("--work-dir", type=Path, default=compare.REPO / "target" / "tls-bench")
    parser.add_argument("--corelog", type=Path, default=compare.CORELOG)
    parser.add_argument("--name", default="ring", help="row label of --corelog's build")
    parser.add_argument("--other-corelog", type=Path, default=None,
                        help="a second build (say, --features aws-lc-rs) measured in the same "
                        "rounds, in alternating order")
    parser.add_argument("--other-name", default="aws-lc-rs")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    compare.stop_on_exit()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    pki = TestPki(work / "pki")
    results = compare.run_results()
    runtime = max(2.0, args.duration / 2)
    for round_no in range(1, args.rounds + 1):
        limits = compare.round_limits(args, work, runtime)
        measured = {"limits": limits}
        order = [("corelog", args.corelog), ("other", args.other_corelog)]
        if round_no % 2 == 0:
            order.reverse()
        for build, corelog in order:
            if corelog is not None:
                measured[build] = run_round(round_no, args, work, pki, corelog)
        results["rounds"].append(measured)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(build_markdown(results, args))


if __name__ == "__main__":
    main()
