"""kcat (Debian's librdkafka build) listing metadata and producing/consuming."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from confluent_kafka.admin import AdminClient, NewTopic

from clients import first_offset

TIMEOUT_S = 30

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None,
                                reason="kcat not installed (scripts/test.sh installs it)")


def kcat(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def test_kcat_metadata_lists_topics(broker, topic):
    """`kcat -L` shows the broker and an existing topic with its partition count."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(
        timeout=TIMEOUT_S)
    out = kcat("-b", broker.bootstrap, "-L", "-m", "10")
    assert f"broker {broker.node_id} at {broker.bootstrap}" in out, out
    assert f'topic "{topic}" with 3 partitions:' in out, out


def test_kcat_produce_then_consume_round_trip(broker, topic):
    """`kcat -P` with keys then `kcat -C -e` from the beginning reads the same lines back."""
    lines = [f"key{i}:value {i}" for i in range(25)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K", ":", stdin="\n".join(lines) + "\n")
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
               "-f", "%o %k=%s\n")
    base = first_offset(broker, int(out.split(" ", 1)[0]))
    assert out.splitlines() == [f"{base + i} key{i}=value {i}" for i in range(25)]
