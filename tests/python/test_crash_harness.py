"""The long crash harness (scripts/crash_harness.py), run short, and its checker's own rules."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "crash_harness.py"
sys.path.insert(0, str(SCRIPT.parent))

from log_checker import Checker, parse_payload, partition_of, payload  # noqa: E402


def test_five_sigkills_under_load_lose_and_invent_nothing(tmp_path):
    """Five SIGKILLs of a broker under idempotent and plain acks=all load: every ack is at its
    offset, offsets are stable, idempotent messages are there once and in order, nothing is
    invented, and the broker exits 0 at the end."""
    seed = int(os.environ.get("CORELOG_TEST_SEED", random.randrange(1 << 30)))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", "5", "--seed", str(seed), "--json",
         "--delay-max-ms", "800", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    print(result.stdout[-20000:])
    assert result.returncode == 0, f"crash harness failed (seed {seed}):\n{result.stdout[-8000:]}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["kills"] == 5
    assert summary["failures"] == 0
    assert summary["messages_acknowledged"] > 0
    assert (summary["acks_verified"] + summary["acks_without_offset"]
            == summary["messages_acknowledged"])


def _checker(attempted=(100, 100), gaps=False):
    """A checker over two producers (0 idempotent, 1 plain) and two partitions."""
    producers = [SimpleNamespace(index=i, kind="idempotent" if i % 2 == 0 else "plain",
                                 attempted=n, acks=[], keeps_order=True)
                 for i, n in enumerate(attempted)]
    return Checker(2, producers, gaps=gaps)


def _append(checker, producer, sequence):
    partition = partition_of(producer, sequence, 2)
    offset = len(checker.log[partition])
    checker.record(partition, offset, payload(producer, sequence))
    return partition, offset


def _rules(checker):
    return sorted({v.rule for v in checker.violations})


def test_checker_accepts_a_clean_log_and_plain_repeats():
    """A log holding every ack at its offset, with a plain producer's retried batch repeated,
    passes every rule."""
    checker = _checker()
    for sequence in range(8):
        for producer in (0, 1):
            partition, offset = _append(checker, producer, sequence)
            checker.producers[producer].acks.append((partition, offset, sequence))
    _append(checker, 1, 4)  # A plain retry: allowed at least once.
    checker.check_acks(final=True)
    assert checker.check_order() == {"idempotent": 0, "plain": 1}
    assert checker.violations == []
    assert checker.acks_verified == 16


def test_checker_catches_each_kind_of_violation():
    """Each broken rule is reported: a lost ack, an idempotent duplicate, reordering, an
    invented record, a changed offset."""
    checker = _checker()
    partition, offset = _append(checker, 0, 0)
    checker.producers[0].acks.append((partition, offset + 1, 0))  # Acked beyond the log.
    checker.check_acks(final=True)
    assert _rules(checker) == ["acked-present"]

    checker = _checker()
    _append(checker, 0, 0)
    _append(checker, 0, 0)
    checker.check_order()
    assert _rules(checker) == ["exactly-once"]

    checker = _checker()
    _append(checker, 1, 1)
    _append(checker, 1, 0)
    checker.check_order()
    assert _rules(checker) == ["order"]

    # A producer that does not keep its order through leader moves is counted, not failed.
    checker = _checker()
    checker.producers[1].keeps_order = False
    _append(checker, 1, 1)
    _append(checker, 1, 0)
    checker.check_order()
    assert (checker.violations, checker.reordered) == ([], 1)

    checker = _checker(attempted=(100, 3))
    _append(checker, 1, 3)
    assert _rules(checker) == ["invented"]

    checker = _checker()
    partition, offset = _append(checker, 0, 0)
    checker.record(partition, offset, payload(0, 1))
    assert _rules(checker) == ["offset-stable"]
    assert parse_payload(payload(3, 12345)) == (3, 12345)


def test_checker_of_a_replicated_log_allows_gaps_that_stay_gaps():
    """Offsets a replicated log gives its control batches are skipped by readers: allowed
    where `gaps` is set, but a record later read at a skipped offset, or acknowledged there, is
    a violation."""
    checker = _checker(gaps=True)
    partition = partition_of(0, 0, 2)
    checker.record(partition, 2, payload(0, 0))  # Offsets 0 and 1 held control batches.
    checker.producers[0].acks.append((partition, 2, 0))
    checker.check_acks(final=True)
    assert checker.violations == [] and checker.acks_verified == 1
    checker.record(partition, 2, payload(0, 0))  # Read again: unchanged.
    assert checker.violations == []
    checker.record(partition, 1, payload(0, 1))
    assert _rules(checker) == ["offset-stable"]

    checker = _checker(gaps=True)
    checker.record(partition, 1, payload(0, 0))
    checker.producers[0].acks.append((partition, 0, 0))
    checker.check_acks(final=True)
    assert _rules(checker) == ["acked-present"]

    checker = _checker()
    checker.record(partition, 1, payload(0, 0))
    assert _rules(checker) == ["contiguous"]


def test_checker_finds_acks_without_an_offset_in_their_partition():
    """An ack without an offset (librdkafka's implicit acknowledgement) is verified by finding
    its message in its partition, and is a violation if it is not there."""
    checker = _checker()
    partition, _ = _append(checker, 0, 0)
    checker.producers[0].acks.extend([(partition, None, 0), (partition, None, 1)])
    checker.check_acks(final=False)
    assert checker.violations == [] and checker.acks_unplaced == 0
    checker.check_acks(final=True)
    assert checker.acks_unplaced == 1
    assert _rules(checker) == ["acked-present"]
