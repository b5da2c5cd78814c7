"""The README's Security section works when followed literally: its set-up block (test CA,
server certificate, first user with `corelog user create --data-dir`), its serve command with a
PLAINTEXT and a SASL_SSL listener, and its client blocks (kafka-python over SASL_SSL with
SCRAM-SHA-512, `corelog user` with the client's security flags), in the order shown, from one
fresh working directory. The blocks name 127.0.0.1:9092 and :9093, so the test skips when
either is taken.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from corelog_broker import READY_TIMEOUT_S, STOP_TIMEOUT_S, api_versions_v0
from test_readme import block_command, marked, readme_env, run_block, workdir  # noqa: F401

SASL_SSL_PORT = 9093


@pytest.fixture
def default_ports():
    for port in (9092, SASL_SSL_PORT):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                pytest.skip(f"the README's Security section uses 127.0.0.1:{port}, which is "
                            f"taken here ({e})")


def test_readme_security_section_runs_as_written(default_ports, workdir, readme_env,
                                                 tmp_path):
    """Set-up, serve, then every client block of the Security section succeed as written; the
    broker stops cleanly on Ctrl-C afterwards."""
    setup, serve, runs = (marked("security-setup"), marked("security-serve"),
                          marked("security-run"))
    assert len(setup) == 1 and len(serve) == 1 and runs, "the Security section's blocks"
    run_block(setup[0], workdir, readme_env)
    stderr_path = tmp_path / "secure-serve.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(block_command(serve[0]), cwd=workdir, env=readme_env,
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}\n{stderr_path.read_text()}"
            try:
                api_versions_v0("127.0.0.1", 9092)
                break
            except (OSError, ValueError):
                assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.05)  # Polling interval while the broker starts; not synchronisation.
        for block in runs:
            run_block(block, workdir, readme_env)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=STOP_TIMEOUT_S)
        assert code == 0, f"exit {code} after Ctrl-C\n{stderr_path.read_text()}"
        assert "alice-secret" not in stderr_path.read_text(), "a password reached the log"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
