#!/usr/bin/env python3
"""Side-by-side comparison of corelog, a peer broker (tansu) and the machine's limits.

One command (issue 3, part 3):

    python3 scripts/compare.py                 # full run: 5 rounds, 8 s per load step
    python3 scripts/compare.py --rounds 1 --duration 3   # a quick look

It installs what it needs (fio, iperf3 via apt; confluent-kafka and matplotlib into .venv),
builds target/release/corelog, and then, round after round, interleaves

  A. corelog (release binary, fresh data directory, one shard on CPU 0):
     `corelog bench produce` closed loop (max throughput), then open loop at 20% of that for
     p50/p99/p99.9; a librdkafka producer (confluent-kafka) at max throughput and paced at 20%
     of its own max on corelog; after a broker restart (cold batch cache) `corelog bench
     consume` reads the closed-loop topic back from disk;
  B. tansu (memory:// storage, never syncs): the same produce workloads at the same rates;
  L. the machine's limits on the data directory's file system: fio O_DIRECT sequential write
     (16 KiB and 1 MiB blocks, the sizes corelog's flusher writes) and read (1 MiB), fdatasync
     latency after overwriting a 4 KiB block, iperf3 over loopback;

so that the noise of this shared machine hits all three alike. Placement: each broker runs on
the broker CPUs (`--broker-cpus`, default CPU 0; corelog with `--shards 1 --cpus 0`, tansu
under `taskset`) and every client on the client CPUs (`--client-cpus`, default CPU 1), so that
load generator and broker do not take each other's core; `--shards 2 --broker-cpus ''
--client-cpus ''` runs the earlier unpinned layout. It reports medians over the
rounds (and the spread), the ratios corelog/tansu and corelog/limit, checks every target of
issue 3, splices the result between the `compare:begin`/`compare:end` markers of BENCHMARKS.md,
plots latency percentiles into BENCHMARKS-latency.png and keeps every raw measurement in
target/compare/results.json. Every step has a timeout; brokers are always stopped.

The peer: `cargo install tansu --version 0.6.0 --locked --features dynostore --root
/work/tools/tansu` (memory:// storage needs the dynostore feature); pass --tansu PATH or set
TANSU_BIN if it lives elsewhere, or --skip-tansu.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
CORELOG = REPO / "target" / "release" / "corelog"
# CPU list the load generators run on ('' = unpinned); set from --client-cpus.
CLIENT_CPUS = ""
DEFAULT_TANSU = Path("/work/tools/tansu/bin/tansu")
MARK_BEGIN = "<!-- compare:begin -->"
MARK_END = "<!-- compare:end -->"
PERCENTILES = ["p50", "p90", "p99", "p999", "p9999", "max"]


# ----------------------------------------------------------------------------- set-up


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def run_checked(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Runs argv to the end or kills it at the timeout; raises with its output on failure."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {shlex.join(argv)}") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        raise RuntimeError(f"exit {done.returncode}: {shlex.join(argv)}\n{tail}")
    return done


def ensure_environment(args) -> None:
    """apt tools, the venv with confluent-kafka and matplotlib, and the release binary."""
    missing = [tool for tool in ("fio", "iperf3") if shutil.which(tool) is None]
    if missing and not args.skip_limits:
        log(f"installing {' '.join(missing)} with apt-get")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_checked(sudo + ["apt-get", "update", "-qq"], 600, env=env)
        run_checked(sudo + ["apt-get", "install", "-y", "-qq"] + missing, 600, env=env)
    if not VENV_PYTHON.exists():
        log("creating .venv")
        run_checked([sys.executable, "-m", "venv", str(REPO / ".venv")], 300)
    probe = subprocess.run([str(VENV_PYTHON), "-c", "import confluent_kafka, matplotlib"],
                           capture_output=True)
    if probe.returncode != 0:
        log("installing confluent-kafka and matplotlib into .venv")
        run_checked([str(VENV_PYTHON), "-m", "pip", "install", "--quiet",
                     "confluent-kafka==2.16.*", "matplotlib>=3.8"], 900)
    if not args.no_build:
        log("cargo build --release")
        run_checked(["cargo", "build", "--release", "--bin", "corelog"], 3600, cwd=REPO)


def reexec_in_venv() -> None:
    """Continues this script under .venv's Python (which has confluent-kafka)."""
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:], "--no-setup"])


# ----------------------------------------------------------------------------- processes

RUNNING: list[subprocess.Popen] = []


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group this script started, SIGKILL after `grace` seconds."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(5)
    if process in RUNNING:
        RUNNING.remove(process)


def stop_all() -> None:
    for process in list(RUNNING):
        stop(process, grace=3)


def on_signal(number, _frame) -> None:
    stop_all()
    sys.exit(128 + number)


def stop_on_exit() -> None:
    """Every process this script starts is stopped however the script ends (normally, on
    SIGTERM or on Ctrl-C)."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(stop_all)


def start(argv: list[str], log_path: Path, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    handle = open(log_path, "ab")
    process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                               start_new_session=True)
    RUNNING.append(process)
    return process


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(process: subprocess.Popen, port: int, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode}; log {log_path}:\n"
                               + log_path.read_text(errors="replace")[-2000:])
        if port_open(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"broker did not listen on port {port} within {timeout:.0f} s "
                       f"(log {log_path})")


class Broker:
    """A broker this script starts and always stops."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path, env=None):
        self.name, self.argv, self.port, self.workdir, self.env = name, argv, port, workdir, env
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Broker":
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already taken: stop what listens there")
        self.process = start(self.argv, self.log, self.workdir, self.env)
        wait_for_port(self.process, self.port, self.log, 60)
        return self

    def __exit__(self, *_exc) -> None:
        if self.process is not None:
            stop(self.process)


# ----------------------------------------------------------------------------- workloads


def bench(kind: str, port: int, topic: str, duration: float, extra: list[str],
          rate: float | None = None) -> dict:
    """`corelog bench KIND`; returns its JSON report."""
    argv = [str(CORELOG), "bench", kind, "--brokers", f"127.0.0.1:{port}", "--topic", topic,
            "--message-size", "1024", "--duration", f"{duration}s", "--json", *extra]
    if CLIENT_CPUS:
        argv += ["--cpus", CLIENT_CPUS]
    if rate is not None:
        argv += ["--rate", f"{rate:.0f}"]
    done = run_checked(argv, duration + 120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report.get("errors"):
        log(f"  warning: corelog bench {kind} on port {port} saw {report['errors']} errors: "
            f"{report.get('errors_by_kind')}")
    return report


def pinned(cpus: str) -> list[str]:
    """The `taskset` prefix that keeps a process on `cpus` (nothing when unpinned)."""
    return ["taskset", "-c", cpus] if cpus else []


def bench_summary(report: dict) -> dict:
    latency = report["latency_us"]
    return {"msgs_per_s": report["msgs_per_s"], "mb_per_s": report["mb_per_s"],
            "errors": report["errors"],
            **{name: latency[name] / 1000.0 for name in PERCENTILES}}


def kafka_client(mode: str, port: int, topic: str, duration: float, rate: float = 0.0) -> dict:
    """librdkafka (confluent-kafka) in a child process, so that a hang cannot stall the run."""
    argv = [*pinned(CLIENT_CPUS), str(VENV_PYTHON), __file__, "--client-mode", mode,
            "--client-port", str(port),
            "--client-topic", topic, "--client-duration", str(duration),
            "--client-rate", str(rate)]
    done = run_checked(argv, duration + 150)
    return json.loads(done.stdout.strip().splitlines()[-1])


# Messages per produce_batch() call in the librdkafka max-throughput workload.
MAX_MODE_BATCH = 100


def client_main(args) -> None:
    """Child process: one confluent-kafka workload; prints a JSON summary."""
    sys.path.insert(0, str(REPO / "scripts"))
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from bench_baseline import percentile

    bootstrap = f"127.0.0.1:{args.client_port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(args.client_topic, 1, 1)], operation_timeout=30)
    for future in futures.values():
        try:
            future.result(30)
        except Exception as error:  # An existing topic is fine; anything else shows below.
            print(f"create topic: {error}", file=sys.stderr)
    paced = args.client_mode == "paced"
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "compression.type": "none",
        "enable.idempotence": False, "linger.ms": 0 if paced else 1,
        "socket.nagle.disable": True,
        "queue.buffering.max.messages": 100_000, "message.timeout.ms": 60_000,
    })
    payload = os.urandom(1024)
    latencies: list[float] = []
    errors: list[str] = []

    def delivered(err, _msg, since_ns):
        if err is not None:
            errors.append(str(err))
        else:
            latencies.append((time.perf_counter_ns() - since_ns) / 1e6)

    producer.produce(args.client_topic, value=payload)  # metadata and connection, unmeasured
    if producer.flush(30) != 0:
        sys.exit("warm-up message not delivered within 30 s")
    interval_ns = int(1e9 / args.client_rate) if paced else 0
    usage_before = resource.getrusage(resource.RUSAGE_SELF)  # every thread: Python, librdkafka
    start_ns = time.perf_counter_ns()
    end_ns = start_ns + int(args.client_duration * 1e9)
    sent = 0
    lags_ms: list[float] = []  # paced: how late produce() was called against its due time
    while True:
        now = time.perf_counter_ns()
        if now >= end_ns:
            break
        if paced:
            # Open loop: message `sent` is due at a fixed time; its latency counts from then,
            # so a broker stall shows up (no coordinated omission).
            due = start_ns + sent * interval_ns
            if due > now:
                wait_s = (due - now) / 1e9
                if wait_s > 0.002:
                    producer.poll(wait_s - 0.001)  # serves callbacks while waiting
                else:
                    time.sleep(wait_s)
                continue
        else:
            due = now
            while sent - len(latencies) - len(errors) > 10_000:
                producer.poll(0.001)
        try:
            if paced:
                producer.produce(args.client_topic, value=payload,
                                 on_delivery=lambda e, m, t=due: delivered(e, m, t))
                sent += 1
                lags_ms.append((time.perf_counter_ns() - due) / 1e6)
            else:
                # Max throughput: a batch per call, so that the Python loop is not the limit
                # (one produce() call per message held this client near 250,000 msg/s).
                batch = [{"value": payload} for _ in range(MAX_MODE_BATCH)]
                sent += producer.produce_batch(
                    args.client_topic, batch, on_delivery=lambda e, m, t=due: delivered(e, m, t))
        except BufferError:
            producer.poll(0.001)
        producer.poll(0)
    left = producer.flush(60)
    elapsed = (time.perf_counter_ns() - start_ns) / 1e9
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    latencies.sort()
    result = {"msgs_per_s": len(latencies) / elapsed, "mb_per_s": len(latencies) * 1024 / elapsed
              / 1e6, "errors": len(errors) + left, "first_error": errors[0] if errors else "",
              "sent": sent, "client_cpu_cores": cpu_s / elapsed}
    for name, q in [("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("p9999", 99.99)]:
        result[name] = percentile(latencies, q)
    result["max"] = latencies[-1] if latencies else float("nan")
    lags_ms.sort()
    result["client_lag_p50"] = percentile(lags_ms, 50)
    result["client_lag_p99"] = percentile(lags_ms, 99)
    print(json.dumps(result))


def attempt(results: dict, key: str, label: str, measure) -> dict | None:
    """Runs one measurement; a failure is logged and kept in results["errors"]."""
    log(f"  {label}")
    try:
        results[key] = measure()
        return results[key]
    except Exception as error:  # noqa: BLE001 - one failed workload must not lose the others
        log(f"  {label} failed: {error}")
        results.setdefault("errors", []).append(f"{label}: {str(error).splitlines()[0]}")
        return None


def produce_workloads(name: str, port: int, round_no: int, args, rates: dict) -> dict:
    """The produce workloads every broker gets; `rates` carries corelog's open-loop rates
    (a broker measured first fills it in)."""
    results: dict = {}
    topic = f"{name}-r{round_no}"
    found = attempt(results, "bench_max", f"{name}: corelog bench produce, closed loop",
                    lambda: bench_summary(bench("produce", port, f"{topic}-max", args.duration,
                                                args.closed_loop_args.split())))
    if "bench" not in rates and found:
        rates["bench"] = max(1.0, found["msgs_per_s"] * args.load_fraction)
    if "bench" in rates:
        rate = rates["bench"]
        found = attempt(results, "bench_open",
                        f"{name}: corelog bench produce, open loop at {rate:.0f} msg/s",
                        lambda: bench_summary(bench("produce", port, f"{topic}-open",
                                                    args.duration,
                                                    args.open_loop_args.split(), rate=rate)))
        if found:
            found["rate"] = rate
    found = attempt(results, "rdkafka_max", f"{name}: librdkafka, max throughput",
                    lambda: kafka_client("max", port, f"{topic}-rdmax", args.duration))
    if "rdkafka" not in rates and found:
        rates["rdkafka"] = max(1.0, found["msgs_per_s"] * args.load_fraction)
    if "rdkafka" in rates:
        rate = rates["rdkafka"]
        found = attempt(results, "rdkafka_paced", f"{name}: librdkafka, paced at {rate:.0f} "
                        "msg/s", lambda: kafka_client("paced", port, f"{topic}-rdpaced",
                                                      args.duration, rate))
        if found:
            found["rate"] = rate
    return results


def settle() -> None:
    """Commits what was just deleted before the next step measures: on a file system mounted
    with `discard`, the commit after a deletion trims the freed blocks, and a produce whose
    fdatasync waits for that commit waited 150-200 ms (seen here, 1 run in 2 at 10,000
    msg/s, after the previous run's data was deleted)."""
    os.sync()


def corelog_round(round_no: int, args, work: Path) -> tuple[dict, dict]:
    data = work / "corelog-data"
    shutil.rmtree(data, ignore_errors=True)
    settle()
    data.mkdir(parents=True)
    argv = [str(CORELOG), "serve", "--data-dir", str(data), "--listen",
            f"127.0.0.1:{args.port}", "--admin-listen", "off", "--shards", str(args.shards)]
    if args.broker_cpus:
        argv += ["--cpus", args.broker_cpus]
    rates: dict = {}
    try:
        with Broker("corelog", argv, args.port, work):
            results = produce_workloads("corelog", args.port, round_no, args, rates)
        # A restart empties the batch cache, so that consume reads from disk.
        with Broker("corelog", argv, args.port, work):
            def consume() -> dict:
                report = bench("consume", args.port, f"corelog-r{round_no}-max",
                               max(60.0, args.duration), args.consume_args.split())
                return {key: report[key] for key in ("mb_per_s", "msgs_per_s", "bytes",
                                                      "duration_s", "errors")}
            attempt(results, "bench_consume",
                    "corelog: corelog bench consume (catch-up read from disk)", consume)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        settle()
    return results, rates


def tansu_round(round_no: int, args, work: Path, rates: dict) -> dict:
    url = f"tcp://127.0.0.1:{args.port + 1}"
    argv = [*pinned(args.broker_cpus), str(args.tansu), "broker", "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    # tansu reads .env from its working directory and these variables: give it neither.
    env = {key: value for key, value in os.environ.items() if key not in (
        "CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")}
    env.setdefault("RUST_LOG", "warn")
    workdir = work / "tansu"
    workdir.mkdir(exist_ok=True)
    with Broker("tansu", argv, args.port + 1, workdir, env):
        return produce_workloads("tansu", args.port + 1, round_no, args, dict(rates))


# ----------------------------------------------------------------------------- limits


def fio(work: Path, name: str, options: list[str], runtime: float, jobs: int = 1) -> dict:
    """One fio job on work/fio.dat, or `jobs` at once, each on its own file work/fio.N.dat
    (reported together)."""
    files = ([f"--filename={work / 'fio.dat'}"] if jobs == 1 else
             [f"--directory={work}", "--filename_format=fio.$jobnum.dat", f"--numjobs={jobs}",
              "--group_reporting"])
    argv = ["fio", f"--name={name}", *files, "--direct=1", "--ioengine=psync", "--time_based",
            f"--runtime={runtime}", "--output-format=json", *options]
    done = run_checked(argv, runtime + 120)
    text = done.stdout[done.stdout.index("{"):]
    return json.loads(text)["jobs"][0]


def limits_round(args, work: Path) -> dict:
    """The machine's limits; a failed measurement is reported and the others still run."""
    runtime = max(2.0, args.duration / 2)
    out: dict = {}
    steps = [("fio O_DIRECT sequential write 16k, 1M; read 1M", disk_bandwidth),
             ("fdatasync after overwriting a 4 KiB block", fdatasync_latency),
             ("iperf3 over loopback", loopback_bandwidth)]
    errors = []
    try:
        for label, measure in steps:
            log(f"  limits: {label}")
            try:
                out.update(measure(args, work, runtime))
            except Exception as error:  # noqa: BLE001 - reported below, the rest still runs
                log(f"  limits: {label} failed: {error}")
                errors.append(f"{label}: {str(error).splitlines()[0]}")
    finally:
        (work / "fio.dat").unlink(missing_ok=True)
        settle()
    if errors:
        out["errors"] = errors
    return out


def disk_bandwidth(_args, work: Path, runtime: float) -> dict:
    out = {}
    size = ["--size=1G"]
    # The first pass lays the file out, so that later writes overwrite written blocks.
    fio(work, "layout", ["--rw=write", "--bs=1M", "--time_based=0", "--runtime=0"] + size, 60)
    for bs in ("16k", "1M"):
        job = fio(work, f"write{bs}", ["--rw=write", f"--bs={bs}"] + size, runtime)
        out[f"write_{bs}_mb_per_s"] = job["write"]["bw_bytes"] / 1e6
    job = fio(work, "read1M", ["--rw=read", "--bs=1M"] + size, runtime)
    out["read_1M_mb_per_s"] = job["read"]["bw_bytes"] / 1e6
    return out


def fdatasync_latency(_args, work: Path, runtime: float, jobs: int = 1) -> dict:
    """fdatasync after each 4 KiB overwrite, by one writer (keys fdatasync_*) or by `jobs`
    writers at once, each on its own file, as partitions flush (keys fdatasync_N_*)."""
    out = {}
    # Lay the 4 MiB out first: a sync after writing into fresh blocks also commits their
    # allocation (ext4 journal), which corelog avoids by pre-writing its segment tail.
    fio(work, "layout", ["--rw=write", "--bs=1M", "--size=4M", "--time_based=0",
                         "--runtime=0"], 60, jobs)
    job = fio(work, "fdatasync", ["--rw=write", "--bs=4k", "--size=4M", "--fdatasync=1"],
              runtime, jobs)
    prefix = "fdatasync" if jobs == 1 else f"fdatasync_{jobs}"
    pct = job["sync"]["lat_ns"]["percentile"]
    for name, key in [("p50", "50.000000"), ("p90", "90.000000"), ("p99", "99.000000"),
                      ("p999", "99.900000"), ("p9999", "99.990000")]:
        out[f"{prefix}_{name}"] = pct.get(key, float("nan")) / 1e6
    out[f"{prefix}_max"] = job["sync"]["lat_ns"]["max"] / 1e6
    return out


def run_results() -> dict:
    """The frame of a bench script's results: commit, date, machine, and its rounds to come."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO).stdout.strip()
    return {"commit": commit, "date": datetime.date.today().isoformat(),
            "machine": machine(), "rounds": []}


def round_limits(args, work: Path, runtime: float) -> dict:
    """The machine's limits measured beside one round: fdatasync latency (fio) and loopback
    bandwidth (iperf3, left out with a message if it fails)."""
    limits = fdatasync_latency(args, work, runtime)
    try:
        limits.update(loopback_bandwidth(args, work, runtime))
    except Exception as error:  # noqa: BLE001 - reported, the rest still runs
        log(f"  iperf3 failed: {error}")
    (work / "fio.dat").unlink(missing_ok=True)
    return limits


def loopback_bandwidth(args, work: Path, runtime: float) -> dict:
    port = args.port + 2
    if port_open(port):
        raise RuntimeError(f"port {port} for iperf3 is already taken")
    log_path = work / "iperf3.log"
    log_path.unlink(missing_ok=True)
    server = start(["iperf3", "-s", "--forceflush", "-p", str(port)], log_path, work)
    try:
        # Readiness from the server's log, not a probe connection: iperf3 would take a probe
        # for a test and answer the real client "busy".
        deadline = time.monotonic() + 10
        while "listening" not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"iperf3 server did not start (log {log_path})")
            time.sleep(0.05)
        done = run_checked(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t",
                            str(int(runtime)), "-J"], runtime + 60)
        report = json.loads(done.stdout)
        if "error" in report:
            raise RuntimeError(f"iperf3: {report['error']}")
        return {"loopback_mb_per_s": report["end"]["sum_received"]["bits_per_second"] / 8e6}
    finally:
        stop(server, grace=2)


# ----------------------------------------------------------------------------- report


def median_of(rounds: list[dict], *path) -> tuple[float, float, float] | None:
    values = []
    for item in rounds:
        for key in path:
            item = item.get(key) if isinstance(item, dict) else None
        if isinstance(item, (int, float)) and item == item:
            values.append(float(item))
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(value, digits: int = 2, spread: bool = True) -> str:
    if value is None:
        return "-"
    mid, low, high = value
    if abs(mid) >= 1000:
        text = f"{mid:,.0f}"
        range_text = f"{low:,.0f}-{high:,.0f}"
    else:
        text = f"{mid:.{digits}f}"
        range_text = f"{low:.{digits}f}-{high:.{digits}f}"
    return f"{text} ({range_text})" if spread and low != high else text


def ratio(a, b) -> float | None:
    if a is None or b is None or b[0] == 0:
        return None
    return a[0] / b[0]


def machine() -> dict:
    def sh(command: str) -> str:
        try:
            return subprocess.run(command, shell=True, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except subprocess.TimeoutExpired:
            return "?"
    model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
    disk = " ".join(sh(f"df --output=source,fstype {REPO} | tail -1").split())
    device = Path(disk.split()[0]).name if disk else ""
    rota = sh(f"cat /sys/block/{device}/queue/rotational 2>/dev/null")
    memory = sh("free -g | awk '/Mem:/ {print $2}'")
    return {
        "cpu": f"{os.cpu_count()} x {model}", "kernel": platform.release(),
        "memory_gib": memory, "disk": f"{disk} (rotational={rota or '?'})",
        "commit": sh(f"git -C {REPO} rev-parse --short HEAD")
        + (" (dirty)" if sh(f"git -C {REPO} status --porcelain --untracked-files=no") else ""),
        "load_before": sh("cut -d' ' -f1-3 /proc/loadavg"),
    }


def tansu_version(path: Path) -> str:
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                              timeout=10)
        return done.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not available"


def verdict(value: float | None, limit: float | None, higher_is_better: bool) -> str:
    if value is None or limit is None:
        return "not measured"
    if higher_is_better:
        if value >= limit:
            return "**met**"
        return f"**missed** by {limit - value:,.3g} ({value / limit:.0%} of the goal)"
    if value <= limit:
        return "**met**"
    return f"**missed** by {value - limit:,.3g} ({value / limit:.2f}x the goal)"


def build_markdown(results: dict, args, info: dict, plot_name: str | None) -> str:
    rounds = results["rounds"]
    cl = [r.get("corelog", {}) for r in rounds]
    ta = [r.get("tansu", {}) for r in rounds]
    lim = [r.get("limits", {}) for r in rounds]
    lines = [MARK_BEGIN, "", "### Latest run", ""]
    if args.note:
        lines += [f"**Conditions:** {args.note}", ""]
    if results.get("tansu_missing"):
        lines += [f"**tansu was not run:** {results['tansu_missing']}; its columns are empty.",
                  ""]
    lines += [
        f"- Date: {results['date']}; commit {info['commit']}; machine: {info['cpu']}, "
        f"{info['memory_gib']} GiB, Linux {info['kernel']}, data on {info['disk']}; load "
        f"average before the run {info['load_before']}.",
        f"- Command: `{results['command']}` ({len(rounds)} rounds, {args.duration:g} s per load "
        "step; systems interleaved per round: corelog, tansu, limits). Medians over rounds, "
        "(min-max) where they differ. Raw numbers: target/compare/results.json.",
        f"- Placement: brokers on CPU(s) {args.broker_cpus or 'any'}, clients (corelog bench "
        f"and the librdkafka process) on CPU(s) {args.client_cpus or 'any'}.",
        f"- corelog: `corelog serve --shards {args.shards}"
        f"{' --cpus ' + args.broker_cpus if args.broker_cpus else ''} --admin-listen off`, "
        "fresh data directory, "
        "every acknowledged batch through `fdatasync`. "
        f"{results['tansu_version']}: `tansu broker --storage-engine memory://tansu/` "
        "(in memory, never syncs), listener and advertised listener on 127.0.0.1.",
        f"- corelog bench: 1 KiB messages, acks=all; closed loop `{args.closed_loop_args}`; "
        f"open loop `{args.open_loop_args} --rate R`, R = {args.load_fraction:.0%} of corelog's "
        "closed-loop median, the same R for tansu; latency from the intended send time.",
        "- librdkafka: confluent-kafka (Python) 1 KiB, acks=all, one partition; max = up to "
        "10,000 in flight, linger.ms=1, `produce_batch` of 100; paced = open loop at "
        f"{args.load_fraction:.0%} of its max on corelog, linger.ms=0, latency from the "
        "intended send time to the delivery callback (includes the Python client).",
        "- Consume: `corelog bench consume` of the closed-loop topic after a broker restart "
        f"(cold batch cache), `{args.consume_args}`.",
        "",
        "| workload | metric | corelog | tansu | corelog/tansu |",
        "|---|---|---:|---:|---:|",
    ]
    rows = [("bench closed loop", "msgs/s", "bench_max", "msgs_per_s"),
            ("bench closed loop", "MB/s", "bench_max", "mb_per_s"),
            ("bench closed loop", "p99 ms", "bench_max", "p99"),
            ("bench open loop", "rate msgs/s", "bench_open", "rate"),
            ("bench open loop", "p50 ms", "bench_open", "p50"),
            ("bench open loop", "p99 ms", "bench_open", "p99"),
            ("bench open loop", "p99.9 ms", "bench_open", "p999"),
            ("librdkafka max", "msgs/s", "rdkafka_max", "msgs_per_s"),
            ("librdkafka max", "MB/s", "rdkafka_max", "mb_per_s"),
            ("librdkafka max", "client CPU (cores)", "rdkafka_max", "client_cpu_cores"),
            ("librdkafka paced", "rate msgs/s", "rdkafka_paced", "rate"),
            ("librdkafka paced", "p50 ms", "rdkafka_paced", "p50"),
            ("librdkafka paced", "p99 ms", "rdkafka_paced", "p99"),
            ("librdkafka paced", "p99.9 ms", "rdkafka_paced", "p999"),
            ("librdkafka paced", "client send lag p99 ms", "rdkafka_paced", "client_lag_p99"),
            ("bench consume (disk)", "MB/s", "bench_consume", "mb_per_s"),
            ("errors seen", "bench closed loop", "bench_max", "errors"),
            ("errors seen", "bench open loop", "bench_open", "errors"),
            ("errors seen", "librdkafka max", "rdkafka_max", "errors"),
            ("errors seen", "librdkafka paced", "rdkafka_paced", "errors")]
    for workload, metric, key, field in rows:
        a, b = median_of(cl, key, field), median_of(ta, key, field)
        r = ratio(a, b)
        lines.append(f"| {workload} | {metric} | {fmt(a)} | {fmt(b)} | "
                     f"{'-' if r is None else f'{r:.2f}'} |")
    lines += ["", "| machine limit (same file system, same rounds) | median (min-max) |",
              "|---|---:|"]
    for label, key in [("fio O_DIRECT seq write 16 KiB, MB/s", "write_16k_mb_per_s"),
                       ("fio O_DIRECT seq write 1 MiB, MB/s", "write_1M_mb_per_s"),
                       ("fio O_DIRECT seq read 1 MiB, MB/s", "read_1M_mb_per_s"),
                       ("fdatasync after a 4 KiB overwrite, p50 ms", "fdatasync_p50"),
                       ("fdatasync p99 ms", "fdatasync_p99"),
                       ("fdatasync p99.9 ms", "fdatasync_p999"),
                       ("iperf3 loopback, MB/s", "loopback_mb_per_s")]:
        lines.append(f"| {label} | {fmt(median_of(lim, key), 3)} |")
    lines += ["", "Targets of issue 3 (medians):", "",
              "| target | measured | goal | verdict |", "|---|---:|---:|---|"]
    lines += target_rows(cl, ta, lim)
    if plot_name:
        lines += ["", f"![latency percentiles]({plot_name})", "",
                  f"[{plot_name}]({plot_name}): open-loop latency percentiles (medians over "
                  "rounds), both brokers and both clients, with fdatasync for scale."]
    lines += ["", MARK_END]
    return "\n".join(lines) + "\n"


def target_rows(cl: list, ta: list, lim: list) -> list[str]:
    rows = []
    produce = median_of(cl, "bench_max", "mb_per_s")
    limits = [median_of(lim, "loopback_mb_per_s"), median_of(lim, "write_1M_mb_per_s")]
    limits = [value[0] for value in limits if value]
    goal = 0.5 * min(limits) if limits else None
    measured = produce[0] if produce else None
    rows.append(f"| produce MB/s >= 50% of min(loopback, O_DIRECT write) | "
                f"{fmt(produce, spread=False)} | {'-' if goal is None else f'{goal:,.0f}'} | "
                f"{verdict(measured, goal, True)} |")
    p99 = median_of(cl, "bench_open", "p99")
    sync99 = median_of(lim, "fdatasync_p99")
    goal = sync99[0] + 0.3 if sync99 else None
    rows.append(f"| p99 at 20% load (ms) <= fdatasync p99 + 0.3 | {fmt(p99, 3, False)} | "
                f"{'-' if goal is None else f'{goal:.3f}'} | "
                f"{verdict(p99[0] if p99 else None, goal, False)} |")
    p999 = median_of(cl, "bench_open", "p999")
    rows.append(f"| p99.9 at 20% load (ms) < 2 | {fmt(p999, 3, False)} | 2 | "
                f"{verdict(p999[0] if p999 else None, 2.0, False)} |")
    for client, maxkey, openkey in [("corelog bench", "bench_max", "bench_open"),
                                    ("librdkafka", "rdkafka_max", "rdkafka_paced")]:
        r = ratio(median_of(cl, maxkey, "msgs_per_s"), median_of(ta, maxkey, "msgs_per_s"))
        rows.append(f"| throughput corelog/tansu >= 2, {client} | "
                    f"{'-' if r is None else f'{r:.2f}'} | 2 | {verdict(r, 2.0, True)} |")
        r = ratio(median_of(cl, openkey, "p99"), median_of(ta, openkey, "p99"))
        rows.append(f"| p99 corelog/tansu <= 0.2, {client} | "
                    f"{'-' if r is None else f'{r:.3f}'} | 0.2 | {verdict(r, 0.2, False)} |")
    consume = median_of(cl, "bench_consume", "mb_per_s")
    read = median_of(lim, "read_1M_mb_per_s")
    goal = 0.7 * read[0] if read else None
    rows.append(f"| consume MB/s >= 70% of O_DIRECT read | {fmt(consume, spread=False)} | "
                f"{'-' if goal is None else f'{goal:,.0f}'} | "
                f"{verdict(consume[0] if consume else None, goal, True)} |")
    return rows


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return False
    rounds = results["rounds"]
    labels = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]
    figure, axes = plt.subplots(figsize=(8, 5))
    series = [("corelog", "bench_open", "corelog, corelog bench", "-o"),
              ("tansu", "bench_open", "tansu, corelog bench", "-s"),
              ("corelog", "rdkafka_paced", "corelog, librdkafka", "--o"),
              ("tansu", "rdkafka_paced", "tansu, librdkafka", "--s")]
    drawn = False
    for system, key, label, style in series:
        values = [median_of([r.get(system, {}) for r in rounds], key, name) for name in
                  PERCENTILES]
        if all(values):
            axes.plot(labels, [v[0] for v in values], style, label=label)
            drawn = True
    sync = [median_of([r.get("limits", {}) for r in rounds], f"fdatasync_{name}")
            for name in PERCENTILES]
    if all(sync):
        axes.plot(labels, [v[0] for v in sync], ":k", label="fdatasync (fio, 4 KiB overwrite)")
        drawn = True
    if not drawn:
        plt.close(figure)
        return False
    axes.set_yscale("log")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_xlabel("percentile")
    axes.set_title(f"Produce latency, open loop at 20% of corelog's max, 1 KiB, acks=all\n"
                   f"medians of {len(rounds)} rounds, {results['date']}, commit "
                   f"{results['machine']['commit']}", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def splice(markdown: str, target: Path, begin: str = MARK_BEGIN, end: str = MARK_END) -> None:
    """Replaces what lies between the markers `begin` and `end` of `target` (markers
    included; `markdown` brings its own), or appends `markdown` when they are missing."""
    text = target.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + markdown.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + markdown
    target.write_text(text)


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0,
                        help="seconds of every load step (and half of it for each fio step)")
    parser.add_argument("--port", type=int, default=19800,
                        help="corelog's port; tansu gets +1, iperf3 +2")
    parser.add_argument("--tansu", type=Path,
                        default=Path(os.environ.get("TANSU_BIN", DEFAULT_TANSU)))
    parser.add_argument("--work-dir", type=Path, default=REPO / "target" / "compare",
                        help="data directories, fio's file and logs (its file system is the "
                        "one measured)")
    parser.add_argument("--load-fraction", type=float, default=0.2)
    parser.add_argument("--shards", type=int, default=1, help="corelog's shards (default 1)")
    parser.add_argument("--broker-cpus", default="0",
                        help="CPU list for the brokers ('' = unpinned; default 0)")
    parser.add_argument("--client-cpus", default="1",
                        help="CPU list for the load generators ('' = unpinned; default 1)")
    parser.add_argument("--closed-loop-args", default="--producers 4 --partitions 4 "
                        "--max-in-flight 32 --batch-size 131072")
    parser.add_argument("--open-loop-args", default="--producers 4 --partitions 4 "
                        "--max-in-flight 16 --batch-size 16384")
    parser.add_argument("--consume-args", default="--consumers 2")
    parser.add_argument("--note", default="",
                        help="conditions of the run, written above the table (e.g. what else "
                        "ran on the machine)")
    parser.add_argument("--skip-tansu", action="store_true")
    parser.add_argument("--skip-limits", action="store_true")
    parser.add_argument("--no-build", action="store_true", help="use the existing binary")
    parser.add_argument("--no-splice", action="store_true",
                        help="print the table instead of writing BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=REPO / "BENCHMARKS-latency.png")
    parser.add_argument("--no-setup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-mode", help=argparse.SUPPRESS)
    parser.add_argument("--client-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-topic", help=argparse.SUPPRESS)
    parser.add_argument("--client-duration", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--client-rate", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.client_mode:
        client_main(args)
        return
    global CLIENT_CPUS
    CLIENT_CPUS = args.client_cpus
    command_argv = [a for a in sys.argv[1:] if a != "--no-setup"]
    if not args.no_setup:
        ensure_environment(args)
        reexec_in_venv()
    stop_on_exit()
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not CORELOG.exists():
        sys.exit(f"{CORELOG} is missing: run cargo build --release")
    tansu_ok = not args.skip_tansu and args.tansu.exists()
    if not args.skip_tansu and not tansu_ok:
        log(f"tansu not found at {args.tansu}: the peer columns stay empty "
            "(see --tansu / TANSU_BIN)")
    info = machine()
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python3", "scripts/compare.py", *command_argv]),
        "machine": info,
        "tansu_version": tansu_version(args.tansu) if tansu_ok else "tansu (not run)",
        "rounds": [],
        "tansu_missing": "" if tansu_ok else ("skipped (--skip-tansu)" if args.skip_tansu
                                              else f"no binary at {args.tansu}"),
    }
    failures = []
    for round_no in range(1, args.rounds + 1):
        log(f"round {round_no}/{args.rounds}")
        entry: dict = {}
        rates: dict = {}
        steps = [("corelog", lambda: corelog_round(round_no, args, work))]
        if tansu_ok:
            steps.append(("tansu", lambda: tansu_round(round_no, args, work, rates)))
        if not args.skip_limits:
            steps.append(("limits", lambda: limits_round(args, work)))
        for name, step in steps:
            try:
                value = step()
                if name == "corelog":
                    value, found = value
                    rates.update(found)
                entry[name] = value
                for error in value.get("errors", []) if isinstance(value, dict) else []:
                    failures.append(f"round {round_no} {name}: {error}")
            except Exception as error:  # One failed step must not lose the others.
                log(f"  {name} failed: {error}")
                failures.append(f"round {round_no} {name}: {str(error).splitlines()[0]}")
                entry[f"{name}_error"] = str(error)
        results["rounds"].append(entry)
        (work / "results.json").write_text(json.dumps(results, indent=1))
    results["failures"] = failures
    (work / "results.json").write_text(json.dumps(results, indent=1))
    plot_path = args.plot.resolve()
    drew = plot(results, plot_path)
    benchmarks = REPO / "BENCHMARKS.md"
    plot_name = os.path.relpath(plot_path, benchmarks.parent) if drew else None
    markdown = build_markdown(results, args, info, plot_name)
    if failures:
        markdown = markdown.replace(
            MARK_END, "Failed steps: " + "; ".join(failures) + "\n\n" + MARK_END)
    if args.no_splice:
        print(markdown)
    else:
        splice(markdown, benchmarks)
        log(f"wrote {benchmarks}" + (f" and {plot_path}" if drew else ""))
        print(markdown)
    if failures:
        log(f"{len(failures)} step(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
