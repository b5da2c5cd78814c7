"""Fixtures that run the real corelog binary for every test.

Each test gets its own broker (fresh data directory, free port, `--shards 2`), so tests cannot
leak topics or offsets into each other. Teardown sends SIGTERM and requires exit code 0: every
test therefore also checks clean shutdown, and fails if its broker died by itself. When a test
fails, the broker's stderr is attached to the report.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

from cluster_nodes import start_cluster, wait_formed
from corelog_broker import Broker, corelog_bin

_brokers_key = pytest.StashKey[list]()


def pytest_sessionstart(session):
    path = corelog_bin()
    if not os.access(path, os.X_OK):
        pytest.exit(f"CORELOG_BIN={path} is not an executable; build it first", returncode=4)


@pytest.fixture
def broker_factory(request, tmp_path):
    """Start brokers with extra flags; each is stopped at teardown (SIGTERM, must exit 0).

    `shards` None leaves the broker's default; `port` None picks a free port.
    """
    brokers: list[Broker] = []
    request.node.stash[_brokers_key] = brokers

    def start(*extra_args: str, shards: int | None = 2, port: int | None = None,
              listeners: tuple[str, ...] = (), before_start=None, node_id: int = 0) -> Broker:
        """`listeners`: extra listeners' security protocols (see `Broker`); `before_start`
        runs with the broker's data directory before the first start; `node_id` is the
        node's --node-id."""
        n = len(brokers)
        b = Broker(corelog_bin(), tmp_path / f"data{n}", tmp_path, shards=shards,
                   extra_args=extra_args, port=port, listeners=listeners, node_id=node_id)
        brokers.append(b)
        if before_start is not None:
            b.data_dir.mkdir(parents=True, exist_ok=True)
            before_start(b.data_dir)
        b.start()
        return b

    yield start

    errors = []
    for b in brokers:
        try:
            if b.running():
                b.stop_clean()
            else:
                b.check_not_died("teardown")
        except AssertionError as e:
            errors.append(str(e))
        finally:
            b.kill()
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


# The client suites run twice: against one node, and against a 3-node cluster whose topics
# get 3 replicas unless the client asks otherwise. A test that cannot run on a cluster (it
# restarts its broker, or reads its files) is marked `single_node`.
BOTH_TOPOLOGIES = {"test_confluent", "test_kafka_python", "test_aiokafka", "test_kafkajs",
                   "test_kcat", "test_groups", "test_idempotence", "test_admin",
                   "test_transactions", "test_compaction"}


def pytest_configure(config):
    config.addinivalue_line("markers", "single_node(reason): the test needs a single node "
                                       "(the client suites otherwise run on a cluster too)")


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__.rpartition(".")[2]
    if ("topology" in metafunc.fixturenames and module in BOTH_TOPOLOGIES
            and metafunc.definition.get_closest_marker("single_node") is None):
        metafunc.parametrize("topology", ["single", "cluster"], indirect=True)


@pytest.fixture
def topology(request) -> str:
    """What `broker` is: "single" (one node) or "cluster" (node 1 of three)."""
    return getattr(request, "param", "single")


@pytest.fixture
def broker(broker_factory, topology) -> Broker:
    """A running corelog with default settings, `--shards 2`, on a fresh data dir; on the
    "cluster" topology node 1 of a 3-node cluster (`--default-replication-factor 3`), once
    every node is registered with the controller."""
    if topology == "single":
        return broker_factory()
    nodes = start_cluster(broker_factory, extra=("--default-replication-factor", "3"))
    wait_formed(nodes)
    return nodes[1]


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to this test (legal Kafka characters only)."""
    base = re.sub(r"[^a-zA-Z0-9._-]", "_", request.node.name)[:60]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for b in item.stash.get(_brokers_key, []):
        report.sections.append((f"corelog stderr ({b.bootstrap})", b.stderr_text()))
