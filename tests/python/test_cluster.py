"""Several corelog processes form one cluster: the metadata quorum among the controller voters,
its leader as the active controller, nodes registered with it and fenced when they fall
silent, topics whose partitions spread over the nodes, and a controller that fails over when
its node is killed.

Every partition of a cluster (but `__consumer_offsets`, for now) is a Raft group among its
replicas: acknowledged records survive the loss of the leader's node. Each node is asked
directly (`metadata_v1`), since a client may ask any broker it knows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import confluent_kafka.admin
import kafka
import pytest
from confluent_kafka import OFFSET_BEGINNING, ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigEntry, ConfigResource, NewTopic
from kafka.admin import KafkaAdminClient

from clients import (DeliveryLog, ck_consumer, ck_flush, ck_poll_records, ck_producer,
                     holds_for, wait_until)
from cluster_nodes import NODES, SESSION_MS, start_cluster, wait_formed
from corelog_broker import (BrokerError, fetch_nothing, find_coordinator, free_port,
                            list_latest_offset_v7, metadata_v1, offset_for_leader_epoch_v4,
                            produce_batch, produce_nothing, producer_batch, topic_id_on_disk,
                            write_txn_markers)
from security_setup import corelog

FENCED = 74  # FENCED_LEADER_EPOCH
UNKNOWN = 75  # UNKNOWN_LEADER_EPOCH
NOT_LEADER = 6  # NOT_LEADER_OR_FOLLOWER

@pytest.fixture
def cluster(broker_factory):
    return start_cluster(broker_factory)


def view(broker) -> dict | None:
    """What `broker` says of the cluster, or None while it cannot answer."""
    try:
        return metadata_v1(broker.host, broker.port)
    except (OSError, ValueError):
        return None


def agreed_controller(nodes: dict, alive) -> int | None:
    """The controller every node in `alive` names, once they all name the same live one and
    list exactly the nodes in `alive` as brokers (a dead node is fenced, and left out)."""
    views = [view(nodes[node]) for node in alive]
    if any(v is None for v in views):
        return None
    controllers = {v["controller"] for v in views}
    if len(controllers) != 1 or not controllers <= set(alive):
        return None
    expected = {node: ("127.0.0.1", nodes[node].port) for node in alive}
    if any(v["brokers"] != expected for v in views):
        return None
    return controllers.pop()


def leaders(nodes: dict, alive, topic: str) -> dict | None:
    """The partition leaders of `topic`, once every node in `alive` reports the same ones."""
    views = [view(nodes[node]) for node in alive]
    if any(v is None or topic not in v["topics"] for v in views):
        return None
    found = [v["topics"][topic] for v in views]
    return found[0] if all(f == found[0] for f in found) else None


def led_by(nodes: dict, alive, topic: str) -> dict | None:
    """The partition leaders of `topic` once every node in `alive` reports the same ones, all
    of them in `alive`."""
    found = leaders(nodes, alive, topic)
    return found if found and all(leader in alive for leader in found.values()) else None


def create_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1,
                 config: dict | None = None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, replication, config=config or {})],
                                  operation_timeout=20, request_timeout=30)
    futures[topic].result(timeout=40)


def produce(bootstrap: str, topic: str, partitions: int, count: int) -> None:
    producer = ck_producer(bootstrap, **{"enable.idempotence": True})
    delivered = DeliveryLog()
    for i in range(count):
        producer.produce(topic, value=b"%d" % i, partition=i % partitions, on_delivery=delivered)
    ck_flush(producer)
    delivered.check(count)


def read_all(bootstrap: str, topic: str, partitions: int, count: int) -> dict[int, list[bytes]]:
    consumer = ck_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records = ck_poll_records(consumer, count)
    finally:
        consumer.close()
    by_partition: dict[int, list[bytes]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record.value)
    return by_partition


def expected_values(partitions: int, count: int) -> dict[int, list[bytes]]:
    values: dict[int, list[bytes]] = {}
    for i in range(count):
        values.setdefault(i % partitions, []).append(b"%d" % i)
    return values


def in_sync(nodes: dict, leader: int, topic: str) -> list[int] | None:
    """The in-sync replicas of `topic`'s partition 0 as `leader` reports them."""
    found = view(nodes[leader])
    return sorted(found["in_sync"][topic][0]) if found and topic in found["in_sync"] else None


def cluster_status(bootstrap: str) -> dict:
    """What `corelog cluster status --json` says, asked of `bootstrap`."""
    return json.loads(corelog("cluster", "status", "--brokers", bootstrap, "--json").stdout)


def describe_quorum(bootstrap: str, observers: tuple = ()) -> dict:
    """The metadata quorum's partition as kafka-python's describe_metadata_quorum reports it,
    with the broker-only nodes `observers` as its observers."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        [topic] = admin.describe_metadata_quorum()["topics"]
    finally:
        admin.close()
    assert topic["topic_name"] == "__cluster_metadata", topic
    [partition] = topic["partitions"]
    assert partition["error"] is None, partition
    assert sorted(o["replica_id"] for o in partition["observers"]) == sorted(observers), partition
    return partition


def in_sync_everywhere(nodes: dict, topic: str, node: int) -> bool:
    """Whether every node reports `node` in sync on every partition of `topic`."""
    views = [view(nodes[asked]) for asked in NODES]
    return all(found and topic in found["in_sync"]
               and all(node in isr for isr in found["in_sync"][topic].values())
               for found in views)


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    consumer = ck_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=20)
    finally:
        consumer.close()


def read_from_start(bootstrap: str, topic: str, count: int) -> list:
    """`count` records of `topic`'s partition 0 from its log start."""
    consumer = ck_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        return ck_poll_records(consumer, count)
    finally:
        consumer.close()


def read_epochs(bootstrap: str, topic: str, count: int) -> list[tuple[int, int]]:
    """(offset, leader epoch) of the first `count` records of `topic`'s partition 0."""
    consumer = ck_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        found = []
        deadline = time.monotonic() + 60
        while len(found) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                found.append((msg.offset(), msg.leader_epoch()))
        assert len(found) == count, f"read {len(found)} of {count} records"
        return found
    finally:
        consumer.close()


def recorded_log_start(broker, topic: str) -> int:
    """The log start a node's replica of `topic`'s partition 0 recorded on disk (0 if none)."""
    path = broker.partition_dir(topic, 0) / "log-start-offset"
    return int(path.read_text()) if path.exists() else 0


def first_segment(broker, topic: str) -> int:
    """The base offset of the oldest segment a node holds of `topic`'s partition 0."""
    return min(int(path.stem) for path in broker.partition_dir(topic, 0).glob("*.log"))


def points_at(nodes: dict, asked: int, topic: str, leader: int) -> int | None:
    """The leader epoch `asked`, a replica that does not lead `topic`'s partition 0, names when
    it refuses a produce there, once it names `leader` and its address (KIP-951). A consumer's
    fetch (v11+) it serves itself, as Kafka's followers do (KIP-392)."""
    host, port = nodes[asked].host, nodes[asked].port
    produced = produce_nothing(host, port, topic, 0)
    if produced["error"] != KafkaError.NOT_LEADER_FOR_PARTITION:
        return None
    named = produced["current_leader"]
    if named is None or named[0] != leader:
        return None
    if produced["endpoints"] != {leader: ("127.0.0.1", nodes[leader].port)}:
        return None
    fetched = fetch_nothing(host, port, topic, 0)
    assert fetched == {"error": 0, "current_leader": None, "endpoints": {}}, fetched
    return named[1]


def epoch_checks(node, topic: str, epoch: int) -> dict:
    """What `node` answers a consumer of `topic`'s partition 0 that believes it in the epoch
    before `epoch`, in `epoch` and in the one after: {asked epoch: (Fetch error, ListOffsets
    error)}."""
    answers = {}
    for asked in (epoch - 1, epoch, epoch + 1):
        fetched = fetch_nothing(node.host, node.port, topic, 0, current_epoch=asked)
        listed = list_latest_offset_v7(node.host, node.port, topic, 0, current_epoch=asked)
        answers[asked] = (fetched["error"], listed["error"])
    return answers


def test_nodes_form_one_cluster_and_spread_partitions(cluster):
    controller = wait_until(lambda: agreed_controller(cluster, NODES),
                            what="every node naming one controller and all three brokers")
    assert controller in NODES
    create_topic(cluster[1].bootstrap, "spread", 6)
    placed = wait_until(lambda: led_by(cluster, NODES, "spread"),
                        what="every node reporting the same leaders of the new topic")
    assert sorted(placed) == list(range(6))
    assert set(placed.values()) == set(NODES), f"partitions spread over every node: {placed}"
    with pytest.raises(Exception, match="INVALID_REPLICATION_FACTOR"):
        create_topic(cluster[2].bootstrap, "too-replicated", 1, replication=4)

    # A producer and a consumer group that know one node each reach every partition's node.
    produce(cluster[3].bootstrap, "spread", 6, 600)
    consumer = ck_consumer(cluster[2].bootstrap, **{
        "group.id": "spread-readers", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "enable.auto.offset.store": True})
    try:
        consumer.subscribe(["spread"])
        records = ck_poll_records(consumer, 600)
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition("spread", p) for p in range(6)],
                                       timeout=20)
        # Each partition's log begins with its first leader's control batch, which consumers
        # skip: the committed position is the partition's end, not its record count.
        ends = [consumer.get_watermark_offsets(tp, timeout=20)[1] for tp in committed]
        assert [tp.offset for tp in committed] == ends, committed
    finally:
        consumer.close()
    by_partition: dict[int, list[bytes]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record.value)
    assert by_partition == expected_values(6, 600)


def test_new_partitions_are_first_led_by_their_preferred_leaders(cluster):
    """A new partition's preferred leader campaigns at once, and wins even when the other
    replicas' nodes create the partition a moment later (they keep its vote request until
    they do): so each log begins with one control batch, not one from a first leader that
    won by its election timer and another from the preferred leader taking over."""
    wait_formed(cluster)
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    first_offsets = {}
    for name in ("preferred-a", "preferred-b"):
        create_topic(bootstrap, name, 6, replication=3)
        wait_until(lambda: led_by(cluster, NODES, name), what=f"leaders of {name}")
        placed = {p: nodes[0] for p, nodes in view(cluster[1])["replicas"][name].items()}
        wait_until(lambda: leaders(cluster, NODES, name) == placed,
                   what=f"every partition of {name} led by its preferred leader")
        producer = ck_producer(bootstrap, acks="all")
        delivered = DeliveryLog()
        for partition in range(6):
            producer.produce(name, b"first", partition=partition, on_delivery=delivered)
        ck_flush(producer)
        delivered.check(6)
        first_offsets[name] = {msg.partition(): msg.offset() for _, msg in delivered.ok}
    assert first_offsets == {name: {p: 1 for p in range(6)} for name in first_offsets}


def test_controller_fails_over_and_its_node_rejoins(cluster):
    controller = wait_until(lambda: agreed_controller(cluster, NODES),
                            what="one controller named by every node")
    create_topic(cluster[1].bootstrap, "kept", 6)
    placed = wait_until(lambda: led_by(cluster, NODES, "kept"), what="the topic led everywhere")
    produce(cluster[1].bootstrap, "kept", 6, 300)

    cluster[controller].stop(signal.SIGKILL)
    survivors = [node for node in NODES if node != controller]

    def survivors_live():
        """Whether no survivor's view leaves a survivor out (fenced)."""
        views = [view(cluster[node]) for node in survivors]
        return all(v is None or set(survivors) <= set(v["brokers"]) for v in views)

    # The survivors' heartbeats reach the new controller: neither is ever fenced (a heartbeat
    # forwarded to the killed controller just before the kill waited out the 10 s call
    # timeout, and the new controller fenced both survivors with the killed node).
    successor = wait_until(
        lambda: agreed_controller(cluster, survivors) if survivors_live() else "fenced",
        what="the survivors electing another controller and fencing the killed node")
    assert successor != "fenced", "a surviving node was fenced"
    assert successor in survivors
    holds_for(survivors_live, 2 * SESSION_MS / 1000,
              what="the survivors listed as live brokers under the new controller")
    # The killed node's partitions have no leader until it returns; the others keep theirs.
    unavailable = {p: (-1 if leader == controller else leader) for p, leader in placed.items()}
    wait_until(lambda: leaders(cluster, survivors, "kept") == unavailable,
               what="the killed node's partitions reported without a leader")
    # `corelog cluster status` shows the killed voter down, the new controller leading the
    # quorum, and the killed node's partitions offline.
    status = cluster_status(cluster[survivors[0]].bootstrap)
    by_node = {node["node"]: node for node in status["nodes"]}
    assert sorted(by_node) == list(NODES), status
    assert not by_node[controller]["live"] and by_node[controller]["voter"], status
    # Registered but fenced (DescribeCluster v2): its address is still known.
    assert by_node[controller]["address"] == cluster[controller].bootstrap, status
    assert all(by_node[node]["live"] and by_node[node]["voter"] for node in survivors), status
    assert status["controller"] == status["quorum_leader"] == successor, status
    lost = {f"kept-{p}" for p, leader in placed.items() if leader == controller}
    assert lost and lost <= set(status["offline"]), status
    assert status["under_replicated"], "__consumer_offsets has a replica on the killed node"
    # DescribeQuorum, asked of either survivor, names the new controller as the quorum's
    # leader, all three voters, and the killed node as not heard from in the new term.
    for asked in survivors:
        quorum = describe_quorum(cluster[asked].bootstrap)
        assert quorum["leader_id"] == successor, quorum
        voters = {voter["replica_id"]: voter for voter in quorum["current_voters"]}
        assert sorted(voters) == list(NODES), quorum
        assert voters[successor]["log_end_offset"] >= quorum["high_watermark"] > 0, quorum
        assert voters[controller]["last_fetch_timestamp"] == -1, quorum
    create_topic(cluster[survivors[0]].bootstrap, "after-failover", 3)
    wait_until(lambda: leaders(cluster, survivors, "after-failover"),
               what="the survivors knowing the topic created after the failover")

    # The killed node comes back, catches up on the metadata it missed, and still holds
    # everything acknowledged on its partitions before the kill.
    cluster[controller].start()
    wait_until(lambda: leaders(cluster, NODES, "after-failover"),
               what="the restarted node catching up on the metadata log")
    wait_until(lambda: agreed_controller(cluster, NODES),
               what="all three listed again and naming one controller")
    wait_until(lambda: leaders(cluster, NODES, "kept") == placed,
               what="the returned node's partitions led by it again")
    wait_until(lambda: all(voter["last_fetch_timestamp"] > 0 for voter in
                           describe_quorum(cluster[controller].bootstrap)["current_voters"]),
               what="the quorum's leader hearing from every voter")
    status = cluster_status(cluster[controller].bootstrap)
    assert all(node["live"] and node["voter"] for node in status["nodes"]), status
    assert status["offline"] == [] and status["partitions"] >= 6 + 3, status
    assert sum(node["leads"] for node in status["nodes"]) == status["partitions"], status
    table = corelog("cluster", "status", "--brokers", cluster[controller].bootstrap).stdout
    assert "metadata quorum: leader" in table and "offline: 0" in table, table
    assert read_all(cluster[controller].bootstrap, "kept", 6, 300) == expected_values(6, 300)


def test_a_restarted_node_answers_clients_only_once_caught_up(cluster):
    """A node that restarts holds the metadata it had when it stopped: until it has caught up
    with the quorum it answers nothing but ApiVersions (Kafka opens its request processing
    only then), and the controller keeps it fenced, so no client is sent to it and none is
    told the topics and leaders of its past."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="one controller named by every node")
    cluster[3].stop(signal.SIGKILL)
    wait_until(lambda: agreed_controller(cluster, (1, 2)), what="node 3 fenced by the others")
    create_topic(cluster[1].bootstrap, "made-while-down", 2, replication=2)
    wait_until(lambda: led_by(cluster, (1, 2), "made-while-down"), what="the new topic led")
    # With the quorum frozen, node 3 cannot catch up: it must not answer from its old view
    # (the build before this answered at once, without the new topic).
    cluster[1].pause()
    cluster[2].pause()
    try:
        cluster[3].start()  # waits for ApiVersions, which is answered
        assert view(cluster[3]) is None, "a node that has not caught up answered Metadata"
    finally:
        cluster[1].resume()
        cluster[2].resume()
    found = wait_until(lambda: view(cluster[3]), what="node 3 answering once caught up")
    assert "made-while-down" in found["topics"], found
    wait_until(lambda: agreed_controller(cluster, NODES), what="node 3 listed by every node again")


def test_a_leader_without_its_quorum_does_not_name_itself(cluster):
    """A leader that loses its followers steps down, while the metadata it can no longer
    update still names it: neither its NOT_LEADER_OR_FOLLOWER answers (KIP-951) nor its
    Metadata name it, where naming itself sent clients straight back to it."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="one controller named by every node")
    create_topic(cluster[1].bootstrap, "deposed", 1, replication=3)
    leader = wait_until(lambda: led_by(cluster, NODES, "deposed"), what="the topic led")[0]
    others = [node for node in NODES if node != leader]
    broker = cluster[leader]
    for node in others:
        cluster[node].pause()
    # A record wakes the partition's group (idle, it is quiescent); its leader then hears
    # from no follower within an election timeout and steps down.
    producer = ck_producer(broker.bootstrap, **{"message.timeout.ms": 5000})

    def refused() -> dict | None:
        answer = produce_nothing(broker.host, broker.port, "deposed", 0)
        return answer if answer["error"] == KafkaError.NOT_LEADER_FOR_PARTITION else None

    try:
        producer.produce("deposed", b"x", partition=0)
        producer.poll(0)
        answer = wait_until(refused, what="the leader without its quorum refusing produce")
        assert answer["current_leader"] is None, answer
        # Its replica knows no leader: the partition has none (LEADER_NOT_AVAILABLE).
        assert view(broker)["topics"]["deposed"][0] == -1
    finally:
        for node in others:
            cluster[node].resume()
    producer.flush(30)


def test_a_single_nodes_data_directory_is_refused_by_a_cluster_node(broker_factory, topic):
    """Its metadata log has no Raft state: a cluster node must not take it for the quorum's."""
    single = broker_factory()
    create_topic(single.bootstrap, topic, 1)
    single.stop_clean()
    port = free_port()
    single.node_id = 1
    single.extra_args = ("--cluster-listen", f"127.0.0.1:{port}",
                         "--controller-quorum-voters", f"1@127.0.0.1:{port}")
    with pytest.raises(BrokerError, match="metadata log of a single-node broker"):
        single.start()


def test_offline_user_changes_are_refused_on_a_cluster_nodes_data_directory(cluster):
    """Only the quorum writes a cluster's metadata log: an offline append would not be a Raft
    entry, and would corrupt the node's log."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    cluster[3].stop_clean()
    refused = corelog("user", "create", "alice", "--password", "secret",
                      "--data-dir", str(cluster[3].data_dir), check=False)
    assert refused.returncode != 0
    assert "belongs to a node of a cluster" in refused.stderr


def test_a_stopping_controller_hands_over_and_is_fenced_at_once(broker_factory):
    """SIGTERM on the controller's node: it hands the metadata leadership to another voter and
    has itself fenced before it drains, so clients are sent elsewhere at once rather than
    after its session (here a minute) expires."""
    cluster = start_cluster(broker_factory, session_ms=60_000)
    controller = wait_until(lambda: agreed_controller(cluster, NODES), what="one controller")
    survivors = [node for node in NODES if node != controller]
    stopped_at = time.monotonic()
    cluster[controller].stop_clean()
    successor = wait_until(lambda: agreed_controller(cluster, survivors),
                           what="a new controller and the stopped node fenced")
    assert successor in survivors
    took = time.monotonic() - stopped_at
    assert took < 30, f"fenced {took:.1f}s after the stop: by its session, not at its stop"
    create_topic(cluster[successor].bootstrap, "after-handover", 3)
    placed = wait_until(lambda: led_by(cluster, survivors, "after-handover"),
                        what="a topic created after the handover")
    assert set(placed.values()) <= set(survivors), f"placed on the stopped node: {placed}"


class SteadyProducer:
    """An idempotent acks=all producer sending numbered records to every partition in turn
    from a thread, until stopped, recording which records were acknowledged."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.producer = ck_producer(bootstrap, **{"enable.idempotence": True, "linger.ms": 2})
        self.topic = topic
        self.partitions = partitions
        self.acked: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        self.failed: list[str] = []
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def delivered(self, err, msg):
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acked[msg.partition()].append(msg.value())

    def acked_count(self) -> int:
        return sum(len(values) for values in self.acked.values())

    def run(self):
        while not self.stopping.is_set():
            partition = self.sent % self.partitions
            self.producer.produce(self.topic, value=b"%d" % self.sent, partition=partition,
                                  on_delivery=self.delivered)
            self.sent += 1
            self.producer.poll(0.001 if self.sent % 50 else 0.05)

    def stop(self):
        self.stopping.set()
        self.thread.join()
        ck_flush(self.producer)
        assert not self.failed, f"deliveries failed: {self.failed[:5]}"


class SteadyConsumer:
    """A consumer of every partition from offset 0, polling from a thread until stopped and
    recording what it read: read across a leader change, it shows whether the client's check
    of its position against the new leader's log (OffsetForLeaderEpoch, KIP-320) finds it
    whole, neither skipping records nor reading any twice."""

    TRANSIENT = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                 KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.consumer = ck_consumer(bootstrap)
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.read: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() not in self.TRANSIENT:
                    self.errors.append(str(msg.error()))
                continue
            self.read[msg.partition()].append(msg.value())

    def read_count(self) -> int:
        return sum(len(values) for values in self.read.values())

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        self.consumer.close()
        assert not self.errors, f"consumer errors: {self.errors[:5]}"


def test_replicated_partitions_survive_the_loss_of_their_leader(cluster):
    """Three replicas per partition: records acknowledged (acks=all, by confluent-kafka, then
    kcat and kafka-python) before and while a leader's node is killed are all there, once each
    and in order, after the survivors elect new leaders; the killed node catches up when it
    returns and leads its partitions again, so that it can stand in for another."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "replicated", 3, replication=3)
    wait_until(lambda: led_by(cluster, NODES, "replicated"),
               what="every node reporting the leaders of the replicated topic")
    replicas = view(cluster[1])["replicas"]["replicated"]
    assert all(sorted(nodes) == list(NODES) for nodes in replicas.values()), replicas
    # The preferred leaders lead (so that leader balancing moves nothing while all are live).
    placed = {p: nodes[0] for p, nodes in replicas.items()}
    wait_until(lambda: leaders(cluster, NODES, "replicated") == placed,
               what="every partition led by its preferred leader")
    follower = next(node for node in NODES if node != placed[0])
    old_epoch = wait_until(lambda: points_at(cluster, follower, "replicated", placed[0]),
                           what="a follower naming the leader to a producer")

    producer = SteadyProducer(bootstrap, "replicated", 3)
    consumer = SteadyConsumer(bootstrap, "replicated", 3)
    wait_until(lambda: producer.acked_count() >= 300, what="records acknowledged")
    victim = placed[0]
    cluster[victim].stop(signal.SIGKILL)
    survivors = [node for node in NODES if node != victim]
    before = producer.acked_count()
    wait_until(lambda: led_by(cluster, survivors, "replicated"),
               what="the survivors leading every partition")
    wait_until(lambda: producer.acked_count() >= before + 300,
               what="records acknowledged by the new leaders")
    new_leader = led_by(cluster, survivors, "replicated")[0]
    bystander = next(node for node in survivors if node != new_leader)
    new_epoch = wait_until(lambda: points_at(cluster, bystander, "replicated", new_leader),
                           what="the other survivor naming the new leader")
    # KIP-320: the new leader, and its follower serving a consumer (KIP-392), refuse one that
    # believes an older epoch (FENCED_LEADER_EPOCH: its metadata is stale) or a newer one
    # (UNKNOWN_LEADER_EPOCH), in Fetch and ListOffsets alike, so that no consumer takes
    # another epoch's offsets (OFFSET_OUT_OF_RANGE from a deposed leader) for its own.
    assert new_epoch > old_epoch
    assert epoch_checks(cluster[new_leader], "replicated", new_epoch) == {
        new_epoch - 1: (FENCED, FENCED), new_epoch: (0, 0), new_epoch + 1: (UNKNOWN, UNKNOWN)}
    assert epoch_checks(cluster[bystander], "replicated", new_epoch) == {
        new_epoch - 1: (FENCED, FENCED), new_epoch: (0, NOT_LEADER),
        new_epoch + 1: (UNKNOWN, UNKNOWN)}
    producer.stop()
    acked = producer.acked
    # kcat and kafka-python write through the survivors too (acks=all), after the rest.
    lines = [f"kcat-{i}" for i in range(20)]
    subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "replicated", "-p", "0",
                    "-X", "acks=all"], input="\n".join(lines) + "\n", text=True, check=True,
                   timeout=60)
    acked[0].extend(line.encode() for line in lines)
    python_producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(20):
        python_producer.send("replicated", b"kafka-python-%d" % i, partition=1).get(timeout=60)
        acked[1].append(b"kafka-python-%d" % i)
    python_producer.close()
    total = sum(len(values) for values in acked.values())
    read = read_all(bootstrap, "replicated", 3, total)
    assert read == acked, "every acknowledged record, once, in order"
    wait_until(lambda: consumer.read_count() >= total,
               what="the consumer reading on through the change")
    consumer.stop()
    assert consumer.read == acked, "read on across the change: nothing skipped, nothing twice"

    # The new leader's epoch history says where the lost leader's epoch ended (what a client
    # asks with OffsetForLeaderEpoch to check its position, KIP-320): after every record of
    # that epoch, and at or before the first record of a later one.
    def epoch_end():
        found = led_by(cluster, survivors, "replicated")
        if not found:
            return None
        leader = found[0]
        answer = offset_for_leader_epoch_v4(cluster[leader].host, cluster[leader].port,
                                            "replicated", 0, old_epoch)
        return answer if answer["error"] == 0 else None

    ended = wait_until(epoch_end, what="the new leader answering for the old epoch")
    assert ended["leader_epoch"] == old_epoch, ended
    epochs = read_epochs(bootstrap, "replicated", len(acked[0]))
    assert max(o for o, e in epochs if e <= old_epoch) < ended["end_offset"]
    assert ended["end_offset"] <= min(o for o, e in epochs if e > old_epoch)

    # The killed node returns and catches up; then another node is killed, and what was
    # acknowledged is still all there, on the returned node and the last one.
    cluster[victim].start()
    wait_until(lambda: agreed_controller(cluster, NODES), what="the killed node back")
    wait_until(lambda: leaders(cluster, NODES, "replicated") == placed,
               what="every partition led by its preferred leader again")
    other = next(node for node in survivors if node != view(cluster[victim])["controller"])
    cluster[other].stop(signal.SIGKILL)
    alive = [node for node in NODES if node != other]
    wait_until(lambda: led_by(cluster, alive, "replicated"),
               what="the returned node and the last one leading every partition")
    bootstrap = ",".join(cluster[node].bootstrap for node in alive)
    assert read_all(bootstrap, "replicated", 3, total) == acked


def cluster_payloads_sent(broker) -> float:
    """Payloads `broker` has sent to other nodes, over all its shards (its /metrics)."""
    counted = [float(line.rsplit(" ", 1)[1]) for line in broker.metrics().splitlines()
               if line.startswith("corelog_cluster_payloads_sent_total{")]
    assert counted, "no corelog_cluster_payloads_sent_total in /metrics"
    return sum(counted)


def test_idle_partitions_quiesce_and_still_fail_over(cluster):
    """Partitions nobody writes to go quiet: no heartbeat per partition, only one payload per
    pair of shards now and then (60 partitions sent ~1,500 payloads a second per node before).
    Their leaders' node killed, the survivors notice the silence, elect new leaders, and take
    writes; the killed node comes back and the partitions go quiet again."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "quiet", 44, replication=3)
    wait_until(lambda: led_by(cluster, NODES, "quiet"), what="the partitions led")
    produce(bootstrap, "quiet", 44, 440)

    def rate(broker) -> float:
        before, started = cluster_payloads_sent(broker), time.monotonic()
        time.sleep(2)
        return (cluster_payloads_sent(broker) - before) / (time.monotonic() - started)

    # Quiet within a few seconds: a generous bound, far below a heartbeat per partition.
    wait_until(lambda: all(rate(cluster[node]) < 100 for node in NODES),
               what="every node sending fewer than 100 payloads a second", timeout_s=60)

    victim = leaders(cluster, NODES, "quiet")[0]
    cluster[victim].stop(signal.SIGKILL)
    survivors = [node for node in NODES if node != victim]
    wait_until(lambda: led_by(cluster, survivors, "quiet"), what="the survivors leading all")
    bootstrap = ",".join(cluster[node].bootstrap for node in survivors)
    produce(bootstrap, "quiet", 44, 440)
    cluster[victim].start()
    wait_until(lambda: agreed_controller(cluster, NODES), what="the killed node back")
    wait_until(lambda: all(rate(cluster[node]) < 100 for node in NODES),
               what="quiet again", timeout_s=60)
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    assert read_all(bootstrap, "quiet", 44, 880) == {
        p: values + values for p, values in expected_values(44, 440).items()}


def test_min_insync_replicas_is_enforced_on_the_replicas_in_sync(cluster):
    """The leader reports its in-sync replicas (Metadata's ISR); an acks=all produce needs
    min.insync.replicas of them (NOT_ENOUGH_REPLICAS), while acks=1 is still taken."""
    controller = wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "strict", 1, replication=3, config={"min.insync.replicas": "3"})
    leader = wait_until(lambda: led_by(cluster, NODES, "strict"), what="the topic led")[0]
    in_sync = lambda node: sorted(view(cluster[node])["in_sync"]["strict"][0])  # noqa: E731
    wait_until(lambda: in_sync(leader) == list(NODES), what="every replica in sync")
    produce(bootstrap, "strict", 1, 10)

    follower = next(node for node in NODES if node not in (leader, controller))
    cluster[follower].stop(signal.SIGKILL)
    alive = [node for node in NODES if node != follower]
    wait_until(lambda: in_sync(leader) == alive, what="the killed follower out of sync")

    def produce_once(acks: str):
        producer = ck_producer(bootstrap, **{"acks": acks, "retries": 0,
                                             "enable.idempotence": False})
        delivered = DeliveryLog()
        producer.produce("strict", value=b"x", partition=0, on_delivery=delivered)
        ck_flush(producer)
        return delivered

    refused = produce_once("all")
    assert [err.code() for err, _ in refused.failed] == [KafkaError.NOT_ENOUGH_REPLICAS]
    produce_once("1").check(1)


def test_committed_offsets_survive_the_loss_of_the_coordinators_node(cluster):
    """`__consumer_offsets` is replicated: when the node coordinating a group is killed, the
    leader elected for its offsets partition loads the group, and a consumer of the group
    resumes from the offsets committed before the kill."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    wait_until(lambda: led_by(cluster, NODES, "__consumer_offsets"),
               what="every offsets partition led")
    replicas = view(cluster[1])["replicas"]["__consumer_offsets"]
    assert all(sorted(nodes) == list(NODES) for nodes in replicas.values()), replicas
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "tracked", 1, replication=3)
    wait_until(lambda: led_by(cluster, NODES, "tracked"), what="the topic led")
    produce(bootstrap, "tracked", 1, 100)

    group = {"group.id": "survivors", "auto.offset.reset": "earliest",
             "enable.auto.commit": False, "enable.auto.offset.store": True}
    consumer = ck_consumer(bootstrap, **group)
    try:
        consumer.subscribe(["tracked"])
        ck_poll_records(consumer, 100)
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition("tracked", 0)], timeout=20)[0].offset
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups(["survivors"])["survivors"].result(timeout=20)
    coordinator = described.coordinator.id

    cluster[coordinator].stop(signal.SIGKILL)
    survivors = [node for node in NODES if node != coordinator]
    wait_until(lambda: led_by(cluster, survivors, "__consumer_offsets"),
               what="the survivors leading every offsets partition")
    bootstrap = ",".join(cluster[node].bootstrap for node in survivors)
    produce(bootstrap, "tracked", 1, 20)
    consumer = ck_consumer(bootstrap, **group)
    try:
        consumer.subscribe(["tracked"])
        resumed = ck_poll_records(consumer, 20)
        assert [r.value for r in resumed] == [b"%d" % i for i in range(20)], \
            "the group resumed where it had committed, not from the start"
        # At or past it: a new leader of "tracked" begins its term with a control batch.
        assert resumed[0].offset >= committed
    finally:
        consumer.close()


def test_a_transaction_survives_the_loss_of_its_coordinators_node(cluster):
    """`__transaction_state` is replicated: a librdkafka producer's transaction, open when
    the node coordinating it is SIGKILLed, is ended through the coordinator the survivors
    elect, which loaded it; its markers reach partitions led on other nodes (forwarded
    between nodes), and a read_committed consumer sees every committed record once and no
    aborted one. The producer goes on with its next transaction."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "txn-out", 3, replication=3)
    wait_until(lambda: led_by(cluster, NODES, "txn-out"), what="the topic led")
    producer = ck_producer(bootstrap, **{"transactional.id": "survivor"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(30):
        producer.produce("txn-out", value=b"first-%d" % i, partition=i % 3)
    producer.commit_transaction(30)

    _, coordinator = find_coordinator("127.0.0.1", cluster[1].port, "survivor", key_type=1)
    assert coordinator in NODES
    producer.begin_transaction()
    for i in range(30):
        producer.produce("txn-out", value=b"second-%d" % i, partition=i % 3)
    ck_flush(producer)
    cluster[coordinator].stop(signal.SIGKILL)
    survivors = [node for node in NODES if node != coordinator]
    wait_until(lambda: led_by(cluster, survivors, "__transaction_state"),
               what="the survivors leading every transaction state partition")
    try:
        producer.commit_transaction(60)
        second = [b"second-%d" % i for i in range(30)]
    except confluent_kafka.KafkaException as error:
        assert error.args[0].txn_requires_abort(), error
        producer.abort_transaction(60)
        second = []
    producer.begin_transaction()
    producer.produce("txn-out", value=b"third", partition=0)
    producer.commit_transaction(60)

    bootstrap = ",".join(cluster[node].bootstrap for node in survivors)
    consumer = ck_consumer(bootstrap, **{"isolation.level": "read_committed"})
    try:
        consumer.assign([TopicPartition("txn-out", p, OFFSET_BEGINNING) for p in range(3)])
        expected = sorted([b"first-%d" % i for i in range(30)] + second + [b"third"])
        got = [r.value for r in ck_poll_records(consumer, len(expected))]
        assert sorted(got) == expected
    finally:
        consumer.close()


def test_replicas_spread_over_racks(broker_factory):
    """Two nodes in rack "a", one in "b": every partition with two replicas has one in each
    rack, and Metadata reports each node's rack."""
    cluster = start_cluster(broker_factory, racks={1: "a", 2: "a", 3: "b"})
    wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "racked", 6, replication=2)
    wait_until(lambda: led_by(cluster, NODES, "racked"), what="the topic led")
    replicas = view(cluster[2])["replicas"]["racked"]
    assert all(3 in nodes and len(set(nodes)) == 2 for nodes in replicas.values()), replicas
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_cluster().result(timeout=20).nodes
    assert {node.id: node.rack for node in described} == {1: "a", 2: "a", 3: "b"}


def test_deleted_records_are_deleted_on_every_replica(cluster):
    """DeleteRecords on a replicated partition moves the log start of every replica. A follower
    that was down meanwhile finds the leader's log beginning past its own end: it restarts its
    log there (what lay below is deleted everywhere; the simulation checks that path under
    crashes) and catches up, and a new leader's log begins where the old one's did."""
    controller = wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "trimmed", 1, replication=3)
    leader = wait_until(lambda: led_by(cluster, NODES, "trimmed"), what="the topic led")[0]
    produce(bootstrap, "trimmed", 1, 200)

    follower = next(node for node in NODES if node not in (leader, controller))
    cluster[follower].stop(signal.SIGKILL)
    alive = [node for node in NODES if node != follower]
    bootstrap = ",".join(cluster[node].bootstrap for node in alive)
    produce(bootstrap, "trimmed", 1, 200)
    # Everything written so far: the leader's log then begins past the follower's end.
    _, target = watermarks(bootstrap, "trimmed")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [deleted] = admin.delete_records([TopicPartition("trimmed", 0, target)],
                                     request_timeout=30).values()
    assert deleted.result(timeout=40).low_watermark == target
    produce(bootstrap, "trimmed", 1, 50)

    cluster[follower].start()
    wait_until(lambda: in_sync(cluster, leader, "trimmed") == list(NODES),
               what="the returned follower in sync")
    wait_until(lambda: all(recorded_log_start(cluster[node], "trimmed") == target
                           for node in NODES),
               what="every replica's log starting at the deleted records' end")

    cluster[leader].stop(signal.SIGKILL)
    survivors = [node for node in NODES if node != leader]
    wait_until(lambda: led_by(cluster, survivors, "trimmed"), what="a new leader")
    bootstrap = ",".join(cluster[node].bootstrap for node in survivors)
    assert watermarks(bootstrap, "trimmed")[0] == target
    expected = [b"%d" % i for i in range(50)]
    assert [r.value for r in read_from_start(bootstrap, "trimmed", 50)] == expected


def read_committed_until_end(bootstrap: str, topic: str) -> set[bytes]:
    """The values a read_committed librdkafka consumer reads from `topic`'s partition 0 up to
    the record b"end"."""
    consumer = ck_consumer(bootstrap, **{"isolation.level": "read_committed"})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values: set[bytes] = set()

        def read_end() -> bool:
            message = consumer.poll(0.2)
            if message is None:
                return False
            assert message.error() is None, message.error()
            if message.value() == b"end":
                return True
            values.add(message.value())
            return False

        wait_until(read_end, what="the end record read")
        return values
    finally:
        consumer.close()


def test_transaction_markers_are_replicated(cluster):
    """Transaction markers on a replicated partition are entries of its Raft group, and every
    replica keeps the transactions' state as it appends them: after the leader's node is
    killed, the new leader still knows the transaction its old leader aborted (a
    read_committed consumer skips its records) and holds the last stable offset at the first
    batch of a transaction still open, until a marker sent to it commits that one."""
    wait_until(lambda: agreed_controller(cluster, NODES), what="the cluster formed")
    bootstrap = ",".join(cluster[node].bootstrap for node in NODES)
    create_topic(bootstrap, "txn", 1, replication=3)
    leader = wait_until(lambda: led_by(cluster, NODES, "txn"), what="the topic led")[0]
    on_leader = (cluster[leader].host, cluster[leader].port)
    aborted, committed, left_open = 7_001, 7_002, 7_003
    for producer, values in [(aborted, [b"a0", b"a1"]), (None, [b"plain"]),
                             (committed, [b"b0"])]:
        batch = (producer_batch(values, producer, 0, 0, transactional=True) if producer
                 else producer_batch(values))
        assert produce_batch(*on_leader, "txn", 0, batch)[0] == 0
    assert write_txn_markers(*on_leader, aborted, 0, False, "txn", [0]) == [0]
    assert write_txn_markers(*on_leader, committed, 0, True, "txn", [0]) == [0]
    error, open_at = produce_batch(*on_leader, "txn", 0,
                                   producer_batch([b"c0"], left_open, 0, 0, transactional=True))
    assert error == 0
    assert produce_batch(*on_leader, "txn", 0, producer_batch([b"after"]))[0] == 0

    cluster[leader].stop(signal.SIGKILL)
    survivors = [node for node in NODES if node != leader]
    new_leader = wait_until(lambda: led_by(cluster, survivors, "txn"), what="a new leader")[0]
    bootstrap = ",".join(cluster[node].bootstrap for node in survivors)
    watcher = ck_consumer(bootstrap, **{"isolation.level": "read_committed"})
    try:
        assert watcher.get_watermark_offsets(TopicPartition("txn", 0), timeout=30)[1] == open_at
    finally:
        watcher.close()
    on_new_leader = (cluster[new_leader].host, cluster[new_leader].port)
    assert write_txn_markers(*on_new_leader, left_open, 0, True, "txn", [0]) == [0]
    assert produce_batch(*on_new_leader, "txn", 0, producer_batch([b"end"]))[0] == 0
    assert read_committed_until_end(bootstrap, "txn") == {b"plain", b"b0", b"c0", b"after"}


def test_retention_moves_the_log_start_of_every_replica(broker_factory):
    """Retention of a replicated partition is its leader's: where retention.bytes lets the log
    begin, the leader moves every replica's log start, and each deletes its segments below."""
    nodes = start_cluster(broker_factory, extra=("--retention-check-interval-ms", "200"))
    wait_until(lambda: agreed_controller(nodes, NODES), what="the cluster formed")
    bootstrap = ",".join(nodes[node].bootstrap for node in NODES)
    create_topic(bootstrap, "expiring", 1, replication=3, config={"segment.bytes": "16384"})
    wait_until(lambda: led_by(nodes, NODES, "expiring"), what="the topic led")
    # Small batches of 100-byte records: some fourteen segments, of which retention.bytes of
    # one segment keeps the last one or two.
    producer = ck_producer(bootstrap, **{"enable.idempotence": True, "batch.num.messages": 20})
    delivered = DeliveryLog()
    for i in range(2000):
        producer.produce("expiring", value=b"%0100d" % i, partition=0, on_delivery=delivered)
    ck_flush(producer)
    delivered.check(2000)
    high = watermarks(bootstrap, "expiring")[1]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource("topic", "expiring", incremental_configs=[
        ConfigEntry("retention.bytes", "16384",
                    incremental_operation=confluent_kafka.admin.AlterConfigOpType.SET)])
    [altered] = admin.incremental_alter_configs([resource]).values()
    altered.result(timeout=30)

    def log_starts():
        starts = {recorded_log_start(nodes[node], "expiring") for node in NODES}
        return starts.pop() if len(starts) == 1 and max(starts) > high // 2 else None

    start = wait_until(log_starts, what="every replica's log start moved to the same offset")
    assert watermarks(bootstrap, "expiring")[0] == start
    # The replicas' logs are the same batches, so their segments begin at the same offsets,
    # and retention moved the log start to the leader's first kept segment.
    wait_until(lambda: all(first_segment(nodes[node], "expiring") == start for node in NODES),
               what="every replica's segments below the log start deleted")


def test_elect_leaders_hands_partitions_back_to_their_preferred_leaders(broker_factory):
    """With leader balancing off, partitions whose preferred leader stopped stay led elsewhere
    after it returns, until an operator elects the preferred leaders (confluent-kafka's
    elect_leaders); a second election is not needed, an unclean one never is,
    DescribeTopicPartitions shows the preferred leaders, and every node describes its log
    directory with the topic's replicas in it (kafka-python)."""
    nodes = start_cluster(broker_factory, balance_ms=0)
    wait_until(lambda: agreed_controller(nodes, NODES), what="the cluster formed")
    bootstrap = ",".join(nodes[node].bootstrap for node in NODES)
    create_topic(bootstrap, "elected", 3, replication=3)
    replicas = view(nodes[1])["replicas"]["elected"]
    placed = {p: replicas_of[0] for p, replicas_of in replicas.items()}
    wait_until(lambda: led_by(nodes, NODES, "elected"), what="every partition led")
    produce(bootstrap, "elected", 3, 300)

    # The preferred leader of partition 0 stops (handing its partitions over) and returns.
    returning = placed[0]
    assert nodes[returning].stop() == 0
    others = [node for node in NODES if node != returning]
    wait_until(lambda: led_by(nodes, others, "elected"), what="the others leading")
    nodes[returning].start()
    wait_until(lambda: agreed_controller(nodes, NODES), what="the node back")
    wait_until(lambda: in_sync_everywhere(nodes, "elected", returning),
               what="the returned node in sync on every partition")
    moved = leaders(nodes, NODES, "elected")
    assert moved and moved[0] != returning, "no balancing: partition 0 stays led elsewhere"

    admin = AdminClient({"bootstrap.servers": bootstrap})
    asked = [TopicPartition("elected", p) for p in range(3)]
    # With its default timeouts: confluent-kafka 2.16 fails on keyword arguments here.
    elected = admin.elect_leaders(ElectionType.PREFERRED, asked).result(timeout=90)
    errors = {tp.partition: error for tp, error in elected.items()}
    assert errors[0] is None, errors
    assert all(error is None or error.code() == KafkaError.ELECTION_NOT_NEEDED
               for error in errors.values()), errors
    wait_until(lambda: leaders(nodes, NODES, "elected") == placed,
               what="every node reporting the preferred leaders")
    assert read_all(bootstrap, "elected", 3, 300) == expected_values(3, 300)

    kp_admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        for election in (0, 1):  # preferred, unclean
            response = kp_admin.elect_leaders(election, {"elected": [0, 1, 2]},
                                              raise_errors=False)
            codes = [p.error_code for r in response.replica_election_results
                     for p in r.partition_result]
            assert codes == [84, 84, 84], "ELECTION_NOT_NEEDED"
        described = kp_admin.describe_log_dirs()
        # DescribeTopicPartitions (KIP-966) tells what Metadata tells: the preferred leaders,
        # three replicas each, all in sync.
        [topic] = kp_admin.describe_topic_partitions(["elected"])["topics"]
    finally:
        kp_admin.close()
    partitions = {p["partition_index"]: p for p in topic["partitions"]}
    assert {p: partitions[p]["leader_id"] for p in partitions} == placed
    assert all(sorted(p["replica_nodes"]) == list(NODES) == sorted(p["isr_nodes"])
               for p in partitions.values()), partitions
    assert sorted(answer["broker"] for answer in described) == list(NODES)
    for answer in described:
        [log_dir] = answer["log_dirs"]
        assert log_dir["log_dir"] == str(nodes[answer["broker"]].data_dir.resolve())
        sizes = {p["partition_index"]: p["partition_size"] for t in log_dir["topics"]
                 if t["name"] == "elected" for p in t["partitions"]}
        assert sorted(sizes) == [0, 1, 2] and all(size > 0 for size in sizes.values()), sizes


RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def fetched_bytes(broker, topic: str) -> int:
    """The record bytes `broker` served fetches of `topic`'s partition 0 with."""
    line = f'corelog_partition_fetched_bytes_total{{topic="{topic}",partition="0",'
    rows = broker.metrics().splitlines()
    return sum(int(row.split()[-1]) for row in rows if row.startswith(line))


def test_consumers_fetch_from_a_replica_in_their_rack(broker_factory):
    """KIP-392: with the rack-aware replica selector, the leader sends a consumer that names
    its rack (client.rack) to the in-sync replica in that rack, which serves every record;
    the leader serves none. A consumer without a rack reads from the leader."""
    racks = {1: "r1", 2: "r2", 3: "r3"}
    nodes = start_cluster(broker_factory, racks=racks,
                          extra=("--replica-selector-class", RACK_AWARE))
    wait_until(lambda: agreed_controller(nodes, NODES), what="the cluster formed")
    bootstrap = ",".join(nodes[node].bootstrap for node in NODES)
    create_topic(bootstrap, "nearby", 1, replication=3)
    replicas = view(nodes[1])["replicas"]["nearby"]
    placed = {0: replicas[0][0]}
    wait_until(lambda: leaders(nodes, NODES, "nearby") == placed,
               what="the partition led by its preferred leader")
    leader = placed[0]
    wait_until(lambda: in_sync_everywhere(nodes, "nearby", replicas[0][1])
               and in_sync_everywhere(nodes, "nearby", replicas[0][2]),
               what="every replica in sync")
    produce(bootstrap, "nearby", 1, 500)
    expected = expected_values(1, 500)[0]

    near = next(node for node in NODES if node != leader)
    consumer = ck_consumer(bootstrap, **{"client.rack": racks[near]})
    try:
        consumer.assign([TopicPartition("nearby", 0, OFFSET_BEGINNING)])
        assert [r.value for r in ck_poll_records(consumer, 500)] == expected
    finally:
        consumer.close()
    assert fetched_bytes(nodes[near], "nearby") > 500, "the replica in the consumer's rack"
    assert fetched_bytes(nodes[leader], "nearby") == 0, "the leader only sent it there"
    third = next(node for node in NODES if node not in (leader, near))
    assert fetched_bytes(nodes[third], "nearby") == 0

    # Without a rack, the leader serves.
    assert read_all(bootstrap, "nearby", 1, 500) == {0: expected}
    assert fetched_bytes(nodes[leader], "nearby") > 500

    # A node that holds no replica refuses a fetch and names the leader (KIP-951, v12), and
    # from v16 its endpoint; from v13 the topic is named by its id.
    create_topic(bootstrap, "alone", 1, replication=1)
    holder = wait_until(lambda: (led_by(nodes, NODES, "alone") or {}).get(0),
                        what="the single-replica topic placed")
    other = next(node for node in NODES if node != holder)
    fetched = fetch_nothing(nodes[other].host, nodes[other].port, "alone", 0)
    assert fetched["error"] == KafkaError.NOT_LEADER_FOR_PARTITION, fetched
    assert fetched["current_leader"][0] == holder, fetched
    assert fetched["endpoints"] == {}, "v12 has no endpoints"
    alone = topic_id_on_disk(nodes[holder], "alone")
    fetched = fetch_nothing(nodes[other].host, nodes[other].port, alone, 0, version=16)
    assert fetched["error"] == KafkaError.NOT_LEADER_FOR_PARTITION, fetched
    assert fetched["current_leader"][0] == holder, fetched
    assert fetched["endpoints"] == {holder: ("127.0.0.1", nodes[holder].port)}, fetched


FOUR = (1, 2, 3, 4)


def partition_dir(broker, topic: str, partition: int):
    return broker.data_dir / f"{topic}-{partition}"


def replicas_everywhere(nodes: dict, alive, topic: str, partition: int) -> list | None:
    """`partition`'s replicas, once every node in `alive` reports the same ones."""
    views = [view(nodes[node]) for node in alive]
    if any(v is None or topic not in v["replicas"] for v in views):
        return None
    found = [v["replicas"][topic][partition] for v in views]
    return found[0] if all(f == found[0] for f in found) else None


def four_nodes_with(broker_factory, topic: str, partitions: int) -> tuple[dict, str]:
    """Four nodes, all voters, and `topic` with three replicas per partition, led; the nodes
    and a bootstrap list of all four."""
    nodes = start_cluster(broker_factory, node_ids=FOUR)
    wait_until(lambda: agreed_controller(nodes, FOUR), what="the cluster formed")
    bootstrap = ",".join(nodes[node].bootstrap for node in FOUR)
    create_topic(bootstrap, topic, partitions, replication=3)
    wait_until(lambda: led_by(nodes, FOUR, topic), what="the partitions led")
    return nodes, bootstrap


def reassignments(bootstrap: str) -> list:
    """What `corelog cluster reassignments --json` lists."""
    return json.loads(corelog("cluster", "reassignments", "--brokers", bootstrap,
                              "--json").stdout)


def test_a_reassignment_moves_a_partition_while_it_takes_writes(broker_factory):
    """A partition on three of four nodes moves to the fourth and two of its replicas, its
    leader's node among those leaving, while an idempotent producer writes to it: the new
    node joins the partition's Raft group as a learner, catches up and becomes a voter in one
    joint change; the leader hands over; the old node deletes its copy. Every acknowledged
    record is there once and in order, on the new node too."""
    nodes, bootstrap = four_nodes_with(broker_factory, "moving", 1)
    before = replicas_everywhere(nodes, FOUR, "moving", 0)
    leader = led_by(nodes, FOUR, "moving")[0]
    newcomer = next(node for node in FOUR if node not in before)
    target = [newcomer] + [node for node in before if node != leader]

    producer = SteadyProducer(bootstrap, "moving", 1)
    wait_until(lambda: producer.acked_count() >= 300, what="records acknowledged")
    corelog("cluster", "reassign", "--brokers", bootstrap, "--topic", "moving",
            "--partition", "0", "--replicas", ",".join(map(str, target)), "--wait",
            "--timeout-s", "45")
    assert reassignments(bootstrap) == []
    wait_until(lambda: replicas_everywhere(nodes, FOUR, "moving", 0) == target,
               what="every node reporting the new replicas")
    wait_until(lambda: sorted(view(nodes[target[0]])["in_sync"]["moving"][0]) == sorted(target),
               what="the new replicas in sync")
    wait_until(lambda: not partition_dir(nodes[leader], "moving", 0).exists(),
               what="the old leader's node deleting its copy")
    acked_during = producer.acked_count()
    wait_until(lambda: producer.acked_count() >= acked_during + 300,
               what="records acknowledged by the new group")
    producer.stop()
    acked = producer.acked
    total = len(acked[0])
    assert read_all(bootstrap, "moving", 1, total) == acked, "every acknowledged record, once"
    # Only the new group holds the partition: stop the node that left, and the newcomer
    # still serves everything (a majority of the new replicas is live).
    nodes[leader].stop(signal.SIGKILL)
    alive = [node for node in FOUR if node != leader]
    wait_until(lambda: led_by(nodes, alive, "moving"), what="the moved partition led")
    bootstrap = ",".join(nodes[node].bootstrap for node in alive)
    assert read_all(bootstrap, "moving", 1, total) == acked


def test_a_cancelled_reassignment_puts_the_replicas_back(broker_factory):
    """A move to a node that is paused (SIGSTOP) cannot complete: ListPartitionReassignments
    and kafka-python's admin client show it in progress (adding and removing replicas);
    cancelled, the partition's replicas are what they were, and the paused node, resumed,
    deletes the copy it began. Bad targets get Kafka's errors."""
    nodes, bootstrap = four_nodes_with(broker_factory, "stays", 1)
    produce(bootstrap, "stays", 1, 100)
    before = replicas_everywhere(nodes, FOUR, "stays", 0)
    paused = next(node for node in FOUR if node not in before)
    leaving = before[-1]
    target = before[:-1] + [paused]
    nodes[paused].pause()
    live = [node for node in FOUR if node != paused]
    bootstrap = ",".join(nodes[node].bootstrap for node in live)
    try:
        # kafka-python sends the request to the controller it was told of: a live one.
        wait_until(lambda: agreed_controller(nodes, live), what="the paused node fenced")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            moving = kafka.TopicPartition("stays", 0)
            assert admin.alter_partition_reassignments({moving: target}) == {moving: None}
            listed = admin.list_partition_reassignments()
        finally:
            admin.close()
        assert listed == {moving: {"replicas": target + [leaving], "adding_replicas": [paused],
                                   "removing_replicas": [leaving]}}, listed
        ongoing = reassignments(bootstrap)
        assert ongoing == [{"topic": "stays", "partition": 0, "replicas": target + [leaving],
                            "adding": [paused], "removing": [leaving]}], ongoing
        # The learner cannot catch up: nothing moves.
        time.sleep(1)
        assert replicas_everywhere(nodes, live, "stays", 0) == target + [leaving]
        corelog("cluster", "reassign", "--brokers", bootstrap, "--topic", "stays",
                "--partition", "0", "--cancel", "--wait", "--timeout-s", "45")
        wait_until(lambda: replicas_everywhere(nodes, live, "stays", 0) == before,
                   what="the replicas as they were")
        # Kafka's answers to bad targets.
        refused = corelog("cluster", "reassign", "--brokers", bootstrap, "--topic", "stays",
                          "--partition", "0", "--cancel", check=False)
        assert "NoReassignmentInProgress" in refused.stderr, refused.stderr
        for replicas, error in [("1,1,2", "InvalidReplicaAssignment"),
                                ("1,2,9", "InvalidReplicaAssignment")]:
            refused = corelog("cluster", "reassign", "--brokers", bootstrap, "--topic", "stays",
                              "--partition", "0", "--replicas", replicas, check=False)
            assert error in refused.stderr, refused.stderr
        refused = corelog("cluster", "reassign", "--brokers", bootstrap, "--topic", "nope",
                          "--partition", "0", "--replicas", "1,2,3", check=False)
        assert "UnknownTopicOrPartition" in refused.stderr, refused.stderr
    finally:
        nodes[paused].resume()
    wait_until(lambda: not partition_dir(nodes[paused], "stays", 0).exists(),
               what="the resumed node deleting the copy it began")
    assert read_all(bootstrap, "stays", 1, 100) == expected_values(1, 100)


def test_decommission_drains_a_node(broker_factory):
    """`corelog cluster decommission` moves every replica off a node, `__consumer_offsets`'
    too, to the other nodes; the node can then be stopped without any partition losing a
    replica, and everything written is still there."""
    nodes, bootstrap = four_nodes_with(broker_factory, "drained", 4)
    produce(bootstrap, "drained", 4, 400)
    status = cluster_status(bootstrap)
    victim = max(status["nodes"], key=lambda n: n["replicas"])["node"]
    plan = corelog("cluster", "decommission", "--brokers", bootstrap, "--node", str(victim),
                   "--dry-run").stdout
    assert "drained-" in plan, plan
    corelog("cluster", "decommission", "--brokers", bootstrap, "--node", str(victim), "--wait",
            "--timeout-s", "50")

    def drained():
        found = cluster_status(bootstrap)
        held = {n["node"]: n["replicas"] for n in found["nodes"]}
        return found if held.get(victim, 0) == 0 and not found["under_replicated"] else None

    wait_until(drained, what="no replica left on the node, none under-replicated")
    nodes[victim].stop(signal.SIGTERM)
    alive = [node for node in FOUR if node != victim]
    wait_until(lambda: led_by(nodes, alive, "drained"), what="every partition led")
    bootstrap = ",".join(nodes[node].bootstrap for node in alive)
    assert read_all(bootstrap, "drained", 4, 400) == expected_values(4, 400)


def test_a_broker_only_node_joins_and_serves(broker_factory):
    """A node outside `--controller-quorum-voters` joins as a broker only: it follows the
    metadata log as a learner (an observer in DescribeQuorum, never a voter), holds and leads
    partitions like the others, serves clients and admin requests through whichever voter
    leads, comes back from a SIGKILL, and follows a new controller when the active one dies."""
    nodes = start_cluster(broker_factory, broker_only=(4,))
    wait_until(lambda: agreed_controller(nodes, FOUR), what="the four nodes agreeing")
    bootstrap = nodes[4].bootstrap
    quorum = describe_quorum(bootstrap, observers=(4,))
    assert sorted(v["replica_id"] for v in quorum["current_voters"]) == list(NODES), quorum
    status = {n["node"]: n for n in cluster_status(bootstrap)["nodes"]}
    assert status[4]["voter"] is False and status[4]["metadata_lag"] is not None, status

    # Created, written and read through the broker-only node alone.
    create_topic(bootstrap, "spread", 8, replication=3)
    wait_until(lambda: led_by(nodes, FOUR, "spread"), what="the partitions led")
    held = [p for p in range(8) if 4 in replicas_everywhere(nodes, FOUR, "spread", p)]
    assert held, "placement gave the broker-only node no replica"
    produce(bootstrap, "spread", 8, 800)
    assert read_all(bootstrap, "spread", 8, 800) == expected_values(8, 800)

    nodes[4].kill()
    wait_until(lambda: led_by(nodes, NODES, "spread"), what="its partitions led elsewhere")
    nodes[4].start()
    wait_until(lambda: agreed_controller(nodes, FOUR), what="the node back")

    def in_sync_again():
        views = [view(nodes[node]) for node in FOUR]
        return all(v and "spread" in v["in_sync"] and all(
            4 in v["in_sync"]["spread"][p] for p in held) for v in views)

    wait_until(in_sync_again, what="its replicas in sync again")

    # The active controller dies: the broker-only node follows the new one, and its calls
    # (a topic created through it) reach it.
    controller = agreed_controller(nodes, FOUR)
    nodes[controller].kill()
    alive = tuple(node for node in FOUR if node != controller)
    wait_until(lambda: agreed_controller(nodes, alive), what="a new controller")
    create_topic(bootstrap, "after", 2, replication=3)
    wait_until(lambda: led_by(nodes, alive, "after"), what="the new topic led")
    produce(bootstrap, "after", 2, 100)
    assert read_all(bootstrap, "after", 2, 100) == expected_values(2, 100)
