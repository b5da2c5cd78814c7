"""Several corelog processes started as one cluster on 127.0.0.1: shared by the cluster tests
and by the client suites' cluster runs (conftest.py's `topology`)."""

from __future__ import annotations

from clients import wait_until
from corelog_broker import free_port, metadata_v1

NODES = (1, 2, 3)


# Heartbeats and the session of a node, shorter than Kafka's defaults (2 s and 9 s) so that a
# killed node is fenced within seconds; the session still spans 12 heartbeats, so that a
# loaded machine does not fence a live node.
HEARTBEAT_MS = 250
SESSION_MS = 3000
# Leaders hand partitions back to their preferred leaders this often (Kafka: 5 minutes).
BALANCE_MS = 1000


def start_cluster(broker_factory, session_ms: int = SESSION_MS, balance_ms: int = BALANCE_MS,
                  racks: dict | None = None, extra: tuple = (), node_ids: tuple = NODES,
                  broker_only: tuple = (), per_node: dict | None = None) -> dict:
    """Nodes `node_ids` (three by default), each a controller voter, then the broker-only
    nodes `broker_only` (given the same voters), started one after another; `racks` names
    each node's --broker-rack; `balance_ms` 0 turns leader balancing off; `extra` are more
    flags for every node, `per_node[node]` for one."""
    ports = {node: free_port() for node in node_ids + broker_only}
    voters = ",".join(f"{node}@127.0.0.1:{ports[node]}" for node in node_ids)
    nodes = {}
    for node in node_ids + broker_only:
        rack = ("--broker-rack", racks[node]) if racks else ()
        nodes[node] = broker_factory(
            "--cluster-listen", f"127.0.0.1:{ports[node]}",
            "--controller-quorum-voters", voters,
            "--broker-heartbeat-interval-ms", str(HEARTBEAT_MS),
            "--broker-session-timeout-ms", str(session_ms),
            "--leader-imbalance-check-interval-ms", str(balance_ms),
            *rack,
            *extra,
            *(per_node or {}).get(node, ()),
            node_id=node)
    return nodes


def wait_formed(nodes: dict, timeout_s: float = 60) -> None:
    """Until every one of `nodes` lists all of them, a controller among them, and a leader
    for every partition of `__consumer_offsets` (created once as many nodes as voters are
    unfenced), so that groups have coordinators. Each node is asked: a node answers only
    once it has caught up, and lists others only once they are registered and unfenced."""
    def formed():
        for node in nodes.values():
            try:
                found = metadata_v1(node.host, node.port)
            except (OSError, ValueError):
                return False
            if set(found["brokers"]) != set(nodes) or found["controller"] not in nodes:
                return False
            offsets = found["topics"].get("__consumer_offsets")
            if not offsets or any(leader < 0 for leader in offsets.values()):
                return False
        return True

    wait_until(formed, timeout_s, "every node registered with a controller, groups coordinated")
