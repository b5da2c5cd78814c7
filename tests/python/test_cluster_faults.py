"""The cluster fault harness (scripts/cluster_faults.py), run short on 3 and 5 nodes, and its
consumer rules' own checks.

The harness puts every node in a network namespace of its own; where namespaces cannot be
made (not root), the runs are skipped and say why.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from array import array
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "cluster_faults.py"
sys.path.insert(0, str(SCRIPT.parent))

from cluster_faults import FAULTS, Network, check_group  # noqa: E402
from log_checker import Checker, payload  # noqa: E402


def run_harness(tmp_path, nodes: int, faults: int) -> dict:
    why = Network.unavailable()
    if why:
        pytest.skip(why)
    seed = int(os.environ.get("CORELOG_TEST_SEED", random.randrange(1 << 30)))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--nodes", str(nodes), "--faults", str(faults),
         "--seed", str(seed), "--hold-max-s", "4", "--calm-max-s", "2", "--json",
         "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    print(result.stdout[-30000:])
    print(result.stderr[-10000:])
    assert result.returncode == 0, f"cluster fault harness failed (seed {seed})"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failures"] == 0
    assert summary["faults"] == faults
    assert summary["messages_acknowledged"] > 0
    assert (summary["acks_verified"] + summary["acks_without_offset"]
            == summary["messages_acknowledged"])
    assert summary["duplicates_idempotent"] == 0
    assert summary["group_read"] >= summary["log_records"]
    return summary


@pytest.mark.timeout(660)  # The harness's own limit (600 s) first.
def test_three_nodes_lose_nothing_through_every_kind_of_fault(tmp_path):
    """Each kind of fault once on a 3-node cluster (SIGKILL, SIGSTOP, an isolated node, a
    minority cut off, a bridge, a slow link) under idempotent, plain and kafka-python
    producers and a consumer group: every rule of the checker holds."""
    summary = run_harness(tmp_path, nodes=3, faults=len(FAULTS))
    assert summary["faults_by_kind"] == {kind: 1 for kind in FAULTS}


@pytest.mark.timeout(660)  # The harness's own limit (600 s) first.
def test_five_nodes_lose_nothing_through_every_kind_of_fault(tmp_path):
    """The same on 5 nodes, where a split leaves two nodes in the minority and a bridge joins
    two halves of two."""
    summary = run_harness(tmp_path, nodes=5, faults=len(FAULTS))
    assert summary["faults_by_kind"] == {kind: 1 for kind in FAULTS}


def _group_checker(log: list[tuple[int, int] | None]):
    """A checker whose partition 0 holds `log` (None: a control batch's offset)."""
    producers = [SimpleNamespace(index=0, kind="idempotent", attempted=100, acks=[],
                                 keeps_order=True)]
    checker = Checker(1, producers, gaps=True)
    for offset, entry in enumerate(log):
        if entry is not None:
            checker.record(0, offset, payload(*entry))
    return checker


def _reader(index: int, reads: list[tuple[int, tuple[int, int], int]]):
    """A reader that read (offset, (producer, sequence), assignment) in that order."""
    reader = SimpleNamespace(index=index, offsets=[array("q")], values=[array("q")],
                             assignments=[array("l")])
    for offset, (producer, sequence), assignment in reads:
        reader.offsets[0].append(offset)
        reader.values[0].append((producer << 32) | sequence)
        reader.assignments[0].append(assignment)
    return reader


def _rules(checker) -> list[str]:
    return sorted({v.rule for v in checker.violations})


def test_group_rules_accept_reads_across_gaps_and_rebalances():
    """Reading past a control batch's offset, and again from an earlier offset after a
    rebalance (at least once), breaks no rule; two members together covering the log is
    enough."""
    checker = _group_checker([(0, 0), None, (0, 1), (0, 2)])
    first = _reader(0, [(0, (0, 0), 1), (2, (0, 1), 1)])
    second = _reader(1, [(2, (0, 1), 2), (3, (0, 2), 2)])
    assert check_group(checker, [first, second]) == 4
    assert checker.violations == []


def test_group_rules_catch_each_kind_of_violation():
    """A read the log does not hold, offsets going back or skipping a record within one
    assignment, and a record nobody read are each reported."""
    log = [(0, 0), (0, 1), None, (0, 2)]
    checker = _group_checker(log)
    check_group(checker, [_reader(0, [(0, (0, 0), 1), (1, (0, 5), 1), (3, (0, 2), 1)])])
    assert _rules(checker) == ["consumed-changed", "unseen"]

    checker = _group_checker(log)
    check_group(checker, [_reader(0, [(0, (0, 0), 1), (1, (0, 1), 1), (3, (0, 2), 1),
                                      (1, (0, 1), 1)])])
    assert _rules(checker) == ["nonmonotonic"]

    checker = _group_checker(log)
    check_group(checker, [_reader(0, [(0, (0, 0), 1), (3, (0, 2), 1)]),
                          _reader(1, [(1, (0, 1), 2)])])
    assert _rules(checker) == ["skipped"]

    checker = _group_checker(log)
    check_group(checker, [_reader(0, [(0, (0, 0), 1), (1, (0, 1), 1)])])
    assert _rules(checker) == ["unseen"]
