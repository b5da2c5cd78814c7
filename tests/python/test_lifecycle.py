"""Process lifecycle of `corelog serve`: readiness, protocol ranges, signals, bad start-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


from corelog_broker import Broker, api_versions_v0, corelog_bin, free_port

# Ranges the issue requires; the broker may advertise more, never less.
REQUIRED_RANGES = {
    0: (3, 11),   # Produce
    1: (4, 12),   # Fetch
    2: (1, 7),    # ListOffsets
    3: (1, 12),   # Metadata
    18: (0, 4),   # ApiVersions
    19: (2, 7),   # CreateTopics
    20: (1, 6),   # DeleteTopics
    32: (1, 4),   # DescribeConfigs
}
START_FAILURE_TIMEOUT_S = 20


def test_api_versions_advertises_required_ranges(broker):
    """ApiVersions v0 advertises at least the version ranges the issue requires."""
    ranges = api_versions_v0(broker.host, broker.port)
    for key, (lo, hi) in REQUIRED_RANGES.items():
        assert key in ranges, f"api key {key} not advertised"
        got_lo, got_hi = ranges[key]
        assert got_lo <= lo and got_hi >= hi, f"api key {key}: {ranges[key]} !> {(lo, hi)}"


def test_sigint_is_a_clean_shutdown(broker):
    """SIGINT, like SIGTERM, stops the broker with exit code 0."""
    assert broker.stop(signal.SIGINT) == 0, broker.stderr_text()


def test_environment_variables_configure_serve(tmp_path):
    """CORELOG_DATA_DIR and CORELOG_LISTEN are honoured when no flag is given."""
    port = free_port()
    data_dir = tmp_path / "env-data"
    env = dict(os.environ, CORELOG_DATA_DIR=str(data_dir), CORELOG_LISTEN=f"127.0.0.1:{port}")
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen([corelog_bin(), "serve", "--shards", "1", "--node-id", "0"],
                                env=env, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
    b = Broker(corelog_bin(), data_dir, tmp_path)
    b.port, b.proc, b.stderr_path = port, proc, tmp_path / "stderr"
    try:
        b.wait_ready()
        assert data_dir.is_dir()
        b.stop_clean()
    finally:
        b.kill()


def run_expecting_failure(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    proc = subprocess.run([corelog_bin(), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=START_FAILURE_TIMEOUT_S,
                          cwd=tmp_path)
    assert proc.returncode not in (0, None), f"expected failure, got 0:\n{proc.stderr}"
    assert proc.returncode > 0, f"died by signal {-proc.returncode}, not a clean error exit"
    assert proc.stderr.strip(), "no message on stderr"
    assert "panicked" not in proc.stderr, proc.stderr
    return proc


def test_bad_flag_exits_non_zero_with_message(tmp_path):
    """An unknown flag is a clear error and a non-zero exit."""
    proc = run_expecting_failure(["serve", "--no-such-flag"], tmp_path)
    assert "--no-such-flag" in proc.stderr


def test_taken_port_exits_non_zero_with_message(tmp_path):
    """A listen address already in use is a clear error and a non-zero exit."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        run_expecting_failure(["serve", "--data-dir", str(tmp_path / "d"), "--listen",
                               f"127.0.0.1:{port}", "--shards", "1", "--node-id", "0"], tmp_path)


def test_unusable_data_dir_exits_non_zero_with_message(tmp_path):
    """A data directory that cannot be created is a clear error and a non-zero exit."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run_expecting_failure(["serve", "--data-dir", str(blocker / "data"), "--listen",
                           f"127.0.0.1:{free_port()}", "--shards", "1", "--node-id", "0"],
                          tmp_path)


def test_sigterm_does_not_wait_for_parked_fetches(broker):
    """SIGTERM exits promptly even while a consumer's fetch is parked for up to 30 s."""
    from confluent_kafka import TopicPartition

    from clients import DeliveryLog, ck_consumer, ck_flush, ck_poll_records, ck_producer
    producer = ck_producer(broker.bootstrap)
    log = DeliveryLog()
    producer.produce("parked", value=b"x", on_delivery=log)
    ck_flush(producer)
    log.check(1)
    consumer = ck_consumer(broker.bootstrap, **{"fetch.wait.max.ms": 30_000})
    try:
        consumer.assign([TopicPartition("parked", 0, 0)])
        ck_poll_records(consumer, 1)  # The next fetch, at the end of the log, parks.
        started = time.monotonic()
        code = broker.stop(signal.SIGTERM, timeout_s=40)
        took_s = time.monotonic() - started
    finally:
        consumer.close()
    assert code == 0, broker.stderr_text()
    assert took_s < 5.0, f"shutdown took {took_s:.1f} s: it waited for the parked fetch"
