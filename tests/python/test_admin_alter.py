"""Admin APIs that tools call after creation: config changes, partition increases, record
deletion and cluster description, through confluent-kafka's and kafka-python's admin clients,
and what producers, consumers and kcat then see."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from confluent_kafka import ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions,
    NewTopic,
)
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient, NewPartitions as KpNewPartitions

from clients import DeliveryLog, ck_consume, ck_consumer, ck_flush, ck_producer, kp_consume, \
    wait_until
from corelog_broker import describe_quorum_v0
from security_setup import corelog

TIMEOUT_S = 20


def ck_admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def ck_create(admin: AdminClient, name: str, partitions: int = 1, config: dict | None = None):
    new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
    admin.create_topics([new], request_timeout=TIMEOUT_S)[name].result(timeout=TIMEOUT_S)


def ck_describe(admin: AdminClient, name: str) -> dict:
    resource = ConfigResource("topic", name)
    return admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result()


def produce_values(broker, topic: str, values: list[bytes], partition: int = 0, **conf):
    producer = ck_producer(broker.bootstrap, **conf)
    log = DeliveryLog()
    for value in values:
        producer.produce(topic, value=value, partition=partition, on_delivery=log)
    ck_flush(producer)
    return log


@pytest.fixture
def kp_admin(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap,
                             request_timeout_ms=TIMEOUT_S * 1000)
    yield admin
    admin.close()


def test_confluent_incremental_alter_then_produce_obeys(broker, topic):
    """incremental_alter_configs lowers max.message.bytes: DescribeConfigs shows it as a topic
    config and a larger message then fails with MSG_SIZE_TOO_LARGE; deleting it restores the
    default."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 2)
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    configs = ck_describe(admin, topic)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    log = produce_values(broker, topic, [os.urandom(5000)], partition=1,
                         **{"compression.type": "none"})
    assert [e.code() for e, _ in log.failed] == [KafkaError.MSG_SIZE_TOO_LARGE]

    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert ck_describe(admin, topic)["max.message.bytes"].source == \
        ConfigSource.DEFAULT_CONFIG.value
    produce_values(broker, topic, [os.urandom(5000)], partition=1).check(1)


def test_confluent_alter_errors(broker, topic):
    """Unknown keys and bad values are INVALID_CONFIG; an unknown topic is
    UNKNOWN_TOPIC_OR_PART; a dynamic broker config is refused."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 1)
    for key, value, code in [("no.such.key", "1", KafkaError.INVALID_CONFIG),
                             ("retention.ms", "soon", KafkaError.INVALID_CONFIG)]:
        resource = ConfigResource("topic", topic, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(KafkaException) as excinfo:
            admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
        assert excinfo.value.args[0].code() == code, key
    resource = ConfigResource("topic", f"{topic}-missing", incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as excinfo:
        admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert excinfo.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    resource = ConfigResource("broker", "0", incremental_configs=[
        ConfigEntry("log.retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as excinfo:
        admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert excinfo.value.args[0].code() == KafkaError.INVALID_REQUEST


def test_confluent_create_partitions_then_produce_and_kcat(broker, topic):
    """create_partitions grows the topic; the new partition takes messages, and `kcat -L` lists
    every partition."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 1)
    fs = admin.create_partitions([NewPartitions(topic, 3)], request_timeout=TIMEOUT_S)
    fs[topic].result(timeout=TIMEOUT_S)
    wait_until(lambda: len(admin.list_topics(timeout=TIMEOUT_S).topics[topic].partitions) == 3,
               what="3 partitions in metadata")
    produce_values(broker, topic, [b"on-two"], partition=2).check(1)
    assert [r.value for r in ck_consume(broker.bootstrap, topic, 1, partition=2)] == [b"on-two"]

    with pytest.raises(KafkaException) as excinfo:
        admin.create_partitions([NewPartitions(topic, 2)])[topic].result(timeout=TIMEOUT_S)
    assert excinfo.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    if shutil.which("kcat"):
        out = subprocess.run(["kcat", "-b", broker.bootstrap, "-L", "-t", topic],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        assert f'topic "{topic}" with 3 partitions:' in out, out


def test_confluent_delete_records_moves_consumers(broker, topic):
    """delete_records advances the low watermark; a consumer from the beginning starts there."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 1)
    produce_values(broker, topic, [f"m{i}".encode() for i in range(10)]).check(10)
    fs = admin.delete_records([TopicPartition(topic, 0, 6)], request_timeout=TIMEOUT_S)
    [result] = [f.result(timeout=TIMEOUT_S) for f in fs.values()]
    assert result.low_watermark == 6
    consumer = ck_consumer(broker.bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S) == \
            (6, 10)
    finally:
        consumer.close()
    records = ck_consume(broker.bootstrap, topic, 4, offset=-2)  # OFFSET_BEGINNING
    assert [r.offset for r in records] == [6, 7, 8, 9]


def test_confluent_describe_cluster(broker):
    """describe_cluster names this broker as the one node and the controller."""
    admin = ck_admin(broker)  # Kept alive: the future fails if its client is destroyed.
    result = admin.describe_cluster(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert [(n.id, n.port) for n in result.nodes] == [(0, broker.port)]
    assert result.controller.id == 0
    assert result.cluster_id


def test_kafka_python_alter_configs_and_describe(kp_admin, topic):
    """kafka-python's alter_configs (incremental when offered) changes retention.ms, and
    describe_configs shows it."""
    kp_admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}},
                           timeout_ms=TIMEOUT_S * 1000)
    resource = KpConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "86400000"})
    kp_admin.alter_configs([resource])
    described = kp_admin.describe_configs(
        [KpConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    assert described["topic"][topic]["retention.ms"]["value"] == "86400000"


def test_kafka_python_create_partitions_and_delete_records(broker, kp_admin, topic):
    """kafka-python grows a topic, deletes records (DeleteRecords v0) and a consumer then
    starts at the new log start."""
    kp_admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}},
                           timeout_ms=TIMEOUT_S * 1000)
    kp_admin.create_partitions({topic: KpNewPartitions(total_count=2)})
    wait_until(lambda: len(kp_admin.describe_topics([topic])[0]["partitions"]) == 2,
               what="2 partitions")
    produce_values(broker, topic, [f"v{i}".encode() for i in range(5)]).check(5)
    result = kp_admin.delete_records({KpTopicPartition(topic, 0): 3})
    assert list(result.values())[0]["low_watermark"] == 3
    records = kp_consume(broker.bootstrap, topic, 2, offset=3)
    assert [r.offset for r in records] == [3, 4]
    cluster = kp_admin.describe_cluster()
    assert [b["broker_id"] for b in cluster["brokers"]] == [0]
    assert cluster["controller_id"] == 0


def test_kafka_python_describe_log_dirs(broker, kp_admin, topic):
    """DescribeLogDirs names the data directory, the bytes each partition holds there and the
    file system's size; a partition asked for by name is the only one described."""
    kp_admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}},
                           timeout_ms=TIMEOUT_S * 1000)
    produce_values(broker, topic, [b"x" * 1000] * 20, partition=1).check(20)
    [answer] = kp_admin.describe_log_dirs()
    assert answer["broker"] == 0
    [log_dir] = answer["log_dirs"]
    assert log_dir["error_code"] == 0
    assert os.path.samefile(log_dir["log_dir"], broker.data_dir)
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
    sizes = {p["partition_index"]: p["partition_size"]
             for t in log_dir["topics"] if t["name"] == topic for p in t["partitions"]}
    assert set(sizes) == {0, 1}
    assert sizes[1] >= 20 * 1000 > sizes[0]
    [answer] = kp_admin.describe_log_dirs({topic: [1]})
    [log_dir] = answer["log_dirs"]
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
            for t in log_dir["topics"]] == [(topic, [1])]


def test_elect_leaders_on_a_single_node_needs_no_election(broker, kp_admin, topic):
    """Every partition of a single node is led by its one replica: a preferred or unclean
    election is ELECTION_NOT_NEEDED, an unknown partition UNKNOWN_TOPIC_OR_PARTITION.
    (confluent-kafka 2.16's elect_leaders fails on keyword arguments, so it runs with its
    default timeouts.)"""
    ck_create(ck_admin(broker), topic, partitions=2)
    admin = ck_admin(broker)
    asked = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        result = admin.elect_leaders(election, asked)
        errors = result.result(timeout=TIMEOUT_S)
        assert {(tp.topic, tp.partition) for tp in errors} == {(topic, 0), (topic, 1)}
        assert all(error.code() == KafkaError.ELECTION_NOT_NEEDED
                   for error in errors.values()), errors
    response = kp_admin.elect_leaders(0, {topic: [0, 7]}, raise_errors=False)
    codes = {p.partition_id: p.error_code
             for r in response.replica_election_results for p in r.partition_result}
    assert codes == {0: 84, 7: 3}, "ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION"
    # Every partition (kafka-python names each, confluent-kafka none): none needed an
    # election, so none is listed.
    response = kp_admin.elect_leaders(0, None, raise_errors=False)
    codes = {p.error_code for r in response.replica_election_results for p in r.partition_result}
    assert response.error_code == 0 and codes == {84}
    assert admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=TIMEOUT_S) == {}


def test_kafka_python_describe_metadata_quorum(broker, kp_admin):
    """A single node is the one voter of its own metadata log: DescribeQuorum names it as
    leader in epoch 0, its log end at the high watermark, reached through its listener."""
    quorum = kp_admin.describe_metadata_quorum()
    [topic] = quorum["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    [partition] = topic["partitions"]
    assert partition["error"] is None, partition
    assert (partition["leader_id"], partition["leader_epoch"]) == (0, 0)
    assert partition["high_watermark"] > 0, "at least __consumer_offsets' creation"
    [voter] = partition["current_voters"]
    assert voter["replica_id"] == 0 and voter["log_end_offset"] == partition["high_watermark"]
    assert partition["observers"] == []
    [node] = quorum["nodes"]
    assert node["node_id"] == 0 and node["listeners"][0]["port"] == broker.port
    # v0 carries neither the contact times (v1) nor the nodes (v2).
    v0 = describe_quorum_v0(broker.host, broker.port)
    assert v0 == {"error": 0, "partition_error": 0, "leader": 0, "epoch": 0,
                  "high_watermark": partition["high_watermark"],
                  "voters": {0: partition["high_watermark"]}, "observers": 0}, v0


def test_kafka_python_describe_topic_partitions_in_pages(kp_admin, topic):
    """DescribeTopicPartitions (KIP-966) answers topics in name order, at most the asked
    number of partitions per answer, with a cursor to the rest; unknown topics are named
    with UNKNOWN_TOPIC_OR_PARTITION, and a cursor outside the named topics is refused."""
    first, second, missing = f"{topic}-a", f"{topic}-b", f"{topic}-c"
    kp_admin.create_topics({first: {"num_partitions": 3, "replication_factor": 1},
                            second: {"num_partitions": 2, "replication_factor": 1}},
                           timeout_ms=TIMEOUT_S * 1000)
    seen, cursor, pages = [], None, 0
    while True:
        page = kp_admin.describe_topic_partitions([second, missing, first],
                                                  response_partition_limit=2, cursor=cursor)
        pages += 1
        for described in page["topics"]:
            if described["error_code"]:
                seen.append((described["name"], described["error_code"]))
            for p in described["partitions"]:
                assert p["error_code"] == 0 and p["leader_id"] == 0, p
                assert p["replica_nodes"] == [0] and p["isr_nodes"] == [0], p
                seen.append((described["name"], p["partition_index"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3, "5 partitions, 2 per page (the unknown topic counts none)"
    assert seen == [(first, 0), (first, 1), (first, 2), (second, 0), (second, 1), (missing, 3)]
    refused = kp_admin.describe_topic_partitions(
        [first], cursor={"topic_name": second, "partition_index": 0})
    assert [t["error_code"] for t in refused["topics"]] == [42], "INVALID_REQUEST"


def test_cluster_status_of_a_single_node(broker, topic):
    """`corelog cluster status` shows a single node as a cluster of one: live, the one voter,
    the controller, leading every partition."""
    ck_create(ck_admin(broker), topic, partitions=3)
    status = json.loads(corelog("cluster", "status", "--brokers", broker.bootstrap,
                                "--json").stdout)
    assert status["controller"] == status["quorum_leader"] == 0, status
    [node] = status["nodes"]
    assert node["live"] and node["voter"] and node["metadata_lag"] == 0, node
    assert node["leads"] == node["replicas"] == status["partitions"] >= 3, status
    assert status["under_replicated"] == [] and status["offline"] == [], status


def test_min_insync_replicas_above_one_refuses_acks_all_on_one_replica(broker, topic):
    """A partition of a single node has one replica: with min.insync.replicas=2, acks=all is
    NOT_ENOUGH_REPLICAS, as Kafka answers for a topic of fewer replicas; acks=1 is taken."""
    ck_create(ck_admin(broker), topic, config={"min.insync.replicas": "2"})

    def produce_once(acks: str) -> DeliveryLog:
        return produce_values(broker, topic, [b"x"], acks=acks, retries=0,
                              **{"enable.idempotence": False})

    refused = produce_once("all")
    assert [err.code() for err, _ in refused.failed] == [KafkaError.NOT_ENOUGH_REPLICAS]
    produce_once("1").check(1)


def test_reassignments_on_a_single_node(broker, kp_admin, topic):
    """A single node's partitions have one replica, on it: reassigning one to that node
    changes nothing and succeeds, to any other node is INVALID_REPLICA_ASSIGNMENT, a cancel
    NO_REASSIGNMENT_IN_PROGRESS, an unknown partition UNKNOWN_TOPIC_OR_PARTITION; nothing is
    ever in progress."""
    ck_create(ck_admin(broker), topic, partitions=1)
    here = KpTopicPartition(topic, 0)
    node = json.loads(corelog("cluster", "status", "--brokers", broker.bootstrap,
                              "--json").stdout)["nodes"][0]["node"]
    results = kp_admin.alter_partition_reassignments({here: [node]})
    assert results == {here: None}, results
    unknown = KpTopicPartition(topic, 5)
    results = kp_admin.alter_partition_reassignments({here: [node + 1], unknown: [node]})
    names = {tp.partition: error.__name__ for tp, error in results.items()}
    assert names == {0: "InvalidReplicationAssignmentError",  # kafka-python's name for 39
                     5: "UnknownTopicOrPartitionError"}, \
        names
    results = kp_admin.alter_partition_reassignments({here: None})
    assert results[here].__name__ == "NoReassignmentInProgressError", results
    assert kp_admin.list_partition_reassignments() == {}
    assert json.loads(corelog("cluster", "reassignments", "--brokers", broker.bootstrap,
                              "--json").stdout) == []
