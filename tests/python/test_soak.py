"""The soak of the default configuration (scripts/soak.py), 3 minutes in CI: under producers,
rebalancing groups, admin, connection and hostile churn at once, the broker stays up, loses no
acknowledged message, gives no client an error, keeps RSS and fds flat and exits 0 on SIGTERM.

CORELOG_SOAK_DURATION sets another duration (e.g. 60m); CORELOG_TEST_SEED replays a seed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "soak.py"
sys.path.insert(0, str(SCRIPT.parent))

from soak import parse_duration  # noqa: E402

DURATION = os.environ.get("CORELOG_SOAK_DURATION", "3m")
DURATION_S = parse_duration(DURATION)
# Beyond the load itself: start-up, draining the producers, reading every partition back,
# shutdown, on a loaded 2-core machine. The soak's own waits are bounded well within this.
AFTER_LOAD_S = 600


@pytest.mark.timeout(DURATION_S + AFTER_LOAD_S + 120)
def test_soak_of_the_default_configuration(tmp_path):
    """scripts/soak.py exits 0: no abort, no client error, every ack at its offset, flat
    memory and fds, exit 0 on SIGTERM."""
    seed = int(os.environ.get("CORELOG_TEST_SEED", random.randrange(1 << 30)))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--duration", DURATION, "--seed", str(seed), "--json",
         "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=DURATION_S + AFTER_LOAD_S)
    print(result.stdout[-20000:])
    assert result.returncode == 0, (f"soak failed (exit {result.returncode}, seed {seed}):\n"
                                    f"{result.stdout[-12000:]}\n{result.stderr[-4000:]}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failures"] == 0
    assert summary["messages_acknowledged"] > 0
    assert summary["acks_verified"] == summary["messages_acknowledged"]
    shutil.rmtree(tmp_path / "data")  # Hundreds of MiB of logs; the stderr file stays.
