"""The network fuzzer (scripts/net_fuzz.py), run short against its own broker."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "net_fuzz.py"
sys.path.insert(0, str(SCRIPT.parent))

import net_fuzz  # noqa: E402

import pytest  # noqa: E402


def test_fifty_hostile_connections_do_not_disturb_a_real_client(tmp_path):
    """Twenty seconds of random, mutated, truncated and slow frames on 50 connections: the
    broker stays up and answers, a confluent-kafka client beside them sees no error and reads
    every message it produced, and the broker still shuts down cleanly."""
    seed = int(os.environ.get("CORELOG_TEST_SEED", random.randrange(1 << 30)))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--duration", "20", "--connections", "50",
         "--seed", str(seed), "--json", "--dump", str(tmp_path / "sent.txt")],
        capture_output=True, text=True, timeout=150)
    print(result.stdout[-20000:])
    assert result.returncode == 0, f"net fuzz failed (seed {seed}):\n{result.stdout[-8000:]}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failures"] == 0
    assert summary["client_errors"] == 0
    assert summary["client_produced"] > 0
    assert summary["client_consumed"] == summary["client_produced"]
    # The fuzz must have reached the broker, and the broker must have refused some of it.
    assert summary["frames_sent"] > 1000
    assert summary["closes_by_broker"] > 10
    assert summary["probes"] >= 10


def test_hostile_sasl_and_tls_traffic_does_not_disturb_a_sasl_ssl_client(tmp_path):
    """Fifteen seconds of broken SASL exchanges (mutated PLAIN and SCRAM tokens, bare tokens,
    requests before authentication) and broken TLS (mutated ClientHellos and records, half
    handshakes, bad SASL inside real TLS sessions) beside plain fuzzing: a SASL_SSL/SCRAM
    client sees no error and reads every message, and the broker shuts down cleanly."""
    seed = int(os.environ.get("CORELOG_TEST_SEED", random.randrange(1 << 30)))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--secure", "--duration", "15", "--connections", "30",
         "--seed", str(seed), "--json", "--dump", str(tmp_path / "sent.txt")],
        capture_output=True, text=True, timeout=150)
    print(result.stdout[-20000:])
    assert result.returncode == 0, f"net fuzz failed (seed {seed}):\n{result.stdout[-8000:]}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failures"] == 0 and summary["client_errors"] == 0
    assert summary["client_produced"] > 0
    assert summary["client_consumed"] == summary["client_produced"]
    kinds = summary["frames_by_kind"]
    for kind in ("sasl-handshake", "sasl-token", "tls-hello", "tls-record"):
        assert kinds.get(kind, 0) > 10, f"too little {kind} traffic: {kinds}"


def test_encoded_requests_are_valid_frames():
    """The templates the fuzzer mutates are well-formed: the length prefix matches, and the
    record batch inside Produce carries the CRC-32C of its tail."""
    for frame in net_fuzz.templates(7):
        (length,) = net_fuzz.struct.unpack(">i", frame[:4])
        assert length == len(frame) - 4
        assert net_fuzz.struct.unpack(">i", frame[8:12])[0] == 7
    batch = net_fuzz.record_batch(b"x")
    assert net_fuzz.struct.unpack(">I", batch[17:21])[0] == net_fuzz.crc32c(batch[21:])
    assert net_fuzz.crc32c(b"123456789") == 0xE3069283  # The CRC-32C check value.
