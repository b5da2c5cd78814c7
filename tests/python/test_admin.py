"""Topic administration and config description through each client's admin API."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.errors import (
    InvalidConfigurationError, InvalidPartitionsError, InvalidTopicError, TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from clients import (DeliveryLog, ck_consume, ck_consumer, ck_flush, ck_producer, first_offset,
                     wait_until)

TIMEOUT_S = 20
INVALID_NAMES = ["has space", "bad/slash", "..", ".", "x" * 250, "caf\u00e9"]
# Topic configs the issue says the broker enforces; DescribeConfigs must report them.
ENFORCED_TOPIC_CONFIGS = {"max.message.bytes", "segment.bytes", "segment.ms", "retention.ms",
                          "retention.bytes"}


# ---------------------------------------------------------------- confluent-kafka

def ck_admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def ck_create(admin: AdminClient, name: str, partitions: int = 1, config: dict | None = None):
    new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
    return admin.create_topics([new], request_timeout=TIMEOUT_S)[name].result(timeout=TIMEOUT_S)


def ck_error_code(excinfo) -> int:
    return excinfo.value.args[0].code()


def ck_topics(admin: AdminClient) -> dict:
    return admin.list_topics(timeout=TIMEOUT_S).topics


def test_confluent_create_with_partitions_and_configs(broker, topic):
    """CreateTopics makes the partitions and stores the configs; DescribeConfigs reports them."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 3, {"retention.ms": "3600000", "segment.bytes": "16777216"})
    meta = wait_until(lambda: (found := ck_topics(admin).get(topic))
                      and all(p.leader >= 0 for p in found.partitions.values()) and found,
                      what="topic in metadata, every partition led")
    assert meta.error is None
    assert sorted(meta.partitions) == [0, 1, 2]
    # One node leads everything; a cluster's partitions are led by its nodes.
    nodes = set(admin.list_topics(timeout=TIMEOUT_S).brokers)
    assert nodes == {broker.node_id} if broker.node_id == 0 else len(nodes) == 3, nodes
    assert {p.leader for p in meta.partitions.values()} <= nodes

    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result()
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].value == "16777216"
    assert ENFORCED_TOPIC_CONFIGS <= set(configs), ENFORCED_TOPIC_CONFIGS - set(configs)
    assert configs["max.message.bytes"].is_default


def test_confluent_duplicate_create_is_topic_already_exists(broker, topic):
    """Creating an existing topic fails with TOPIC_ALREADY_EXISTS and leaves it unchanged."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 2)
    with pytest.raises(KafkaException) as excinfo:
        ck_create(admin, topic, 5)
    assert ck_error_code(excinfo) == KafkaError.TOPIC_ALREADY_EXISTS
    assert len(ck_topics(admin)[topic].partitions) == 2


@pytest.mark.parametrize("name", INVALID_NAMES, ids=["space", "slash", "dotdot", "dot",
                                                     "too_long", "non_ascii"])
def test_confluent_invalid_topic_name_is_rejected(broker, name):
    """Illegal topic names get INVALID_TOPIC_EXCEPTION and create nothing."""
    admin = ck_admin(broker)
    with pytest.raises(KafkaException) as excinfo:
        ck_create(admin, name)
    assert ck_error_code(excinfo) == KafkaError.TOPIC_EXCEPTION
    assert name not in ck_topics(admin)


# A stock Kafka topic config set, as admin tools copy it from Kafka's documentation.
STOCK_TOPIC_CONFIGS = {"flush.messages": "10000", "flush.ms": "1000",
                       "min.cleanable.dirty.ratio": "0.3", "min.compaction.lag.ms": "0",
                       "delete.retention.ms": "86400000", "segment.jitter.ms": "0",
                       "preallocate": "false", "message.downconversion.enable": "true",
                       "unclean.leader.election.enable": "false", "file.delete.delay.ms": "60000",
                       "segment.index.bytes": "10485760", "compression.zstd.level": "3"}


def test_confluent_create_with_a_stock_config_set(broker, topic):
    """A topic created with Kafka's stock configs that corelog only accepts (it syncs every
    batch, so flush.* mean nothing more) is created, and DescribeConfigs shows the values set
    as the topic's and the others' defaults; a value corelog cannot honour is INVALID_CONFIG."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 1, STOCK_TOPIC_CONFIGS)
    resource = ConfigResource("topic", topic)
    configs = admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result()
    for name, value in STOCK_TOPIC_CONFIGS.items():
        assert configs[name].value == value, name
        assert configs[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, name
    assert configs["local.retention.ms"].value == "-2"
    assert configs["local.retention.ms"].is_default
    with pytest.raises(KafkaException) as excinfo:
        ck_create(admin, topic + "-unclean", 1, {"unclean.leader.election.enable": "true"})
    assert ck_error_code(excinfo) == KafkaError.INVALID_CONFIG


def test_confluent_unknown_config_is_invalid_config(broker, topic):
    """A topic config the broker does not know fails with INVALID_CONFIG."""
    admin = ck_admin(broker)
    with pytest.raises(KafkaException) as excinfo:
        ck_create(admin, topic, 1, {"no.such.config": "1"})
    assert ck_error_code(excinfo) == KafkaError.INVALID_CONFIG
    assert topic not in ck_topics(admin)


def test_confluent_delete_removes_topic_and_recreate_starts_empty(broker, topic):
    """DeleteTopics drops the topic from metadata; re-creating it starts again at offset 0."""
    admin = ck_admin(broker)
    ck_create(admin, topic, 1)
    producer = ck_producer(broker.bootstrap)
    log = DeliveryLog()
    for i in range(5):
        producer.produce(topic, value=f"old{i}".encode(), on_delivery=log)
    ck_flush(producer)
    log.check(5)

    admin.delete_topics([topic], request_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    wait_until(lambda: topic not in ck_topics(admin), what="topic gone from metadata")

    ck_create(admin, topic, 1)
    # Asked again while the new partition has no leader yet (a cluster).
    low, high = wait_until(lambda: watermarks(broker, topic), what="the new topic's ends")
    # Empty (on a cluster its first leaders' control batches may be there already).
    assert low == 0 and (high == 0 or broker.node_id != 0), (low, high)
    log = DeliveryLog()
    producer.produce(topic, value=b"fresh", on_delivery=log)
    ck_flush(producer)
    log.check(1)
    assert first_offset(broker, log.ok[0][1].offset()) >= high
    assert [r.value for r in ck_consume(broker.bootstrap, topic, 1)] == [b"fresh"]


def watermarks(broker, topic: str) -> tuple[int, int] | None:
    """Partition 0's watermarks, or None; asked with a fresh client each time, since librdkafka
    keeps a partition it was told has no leader as a permanent error of watermark queries."""
    consumer = ck_consumer(broker.bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
    except KafkaException:
        return None
    finally:
        consumer.close()


def test_confluent_delete_unknown_topic_fails(broker, topic):
    """Deleting a topic that does not exist fails with UNKNOWN_TOPIC_OR_PART."""
    admin = ck_admin(broker)
    with pytest.raises(KafkaException) as excinfo:
        admin.delete_topics([topic], request_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    assert ck_error_code(excinfo) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_confluent_topic_max_message_bytes_is_enforced(broker, topic):
    """A topic's own max.message.bytes overrides the default in both directions."""
    admin = ck_admin(broker)
    big_topic, small_topic = f"{topic}-big", f"{topic}-small"
    ck_create(admin, big_topic, 1, {"max.message.bytes": str(3 * 1024 * 1024)})
    ck_create(admin, small_topic, 1, {"max.message.bytes": "10000"})
    producer = ck_producer(broker.bootstrap, **{"message.max.bytes": 8 * 1024 * 1024,
                                                "compression.type": "none"})
    log = DeliveryLog()
    producer.produce(big_topic, value=os.urandom(2 * 1024 * 1024), on_delivery=log)
    ck_flush(producer)
    log.check(1)
    producer.produce(small_topic, value=os.urandom(20_000), on_delivery=log)
    ck_flush(producer)
    assert [e.code() for e, _ in log.failed] == [KafkaError.MSG_SIZE_TOO_LARGE]


def test_confluent_describe_broker_configs(broker):
    """DescribeConfigs for the node asked answers with a non-empty config set."""
    admin = ck_admin(broker)
    resource = ConfigResource("broker", str(broker.node_id))
    configs = admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result()
    assert configs, f"broker {broker.node_id} reported no configs"
    for name, entry in configs.items():
        assert entry.name == name


# ---------------------------------------------------------------- kafka-python

@pytest.fixture
def kp_admin(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap,
                             request_timeout_ms=TIMEOUT_S * 1000)
    yield admin
    admin.close()


def kp_create(admin, name: str, partitions: int = 1, configs: dict | None = None):
    return admin.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
        timeout_ms=TIMEOUT_S * 1000)


def kp_topic_partitions(admin, name: str) -> list[int]:
    [meta] = admin.describe_topics([name])
    assert meta["error_code"] == 0, meta
    return sorted(p["partition_index"] for p in meta["partitions"])


def test_kafka_python_create_with_partitions_and_configs(kp_admin, topic):
    """kafka-python's create_topics makes partitions and configs that describe_configs shows."""
    kp_create(kp_admin, topic, 4, {"retention.ms": "7200000"})
    assert topic in kp_admin.list_topics()
    assert kp_topic_partitions(kp_admin, topic) == [0, 1, 2, 3]
    described = kp_admin.describe_configs(
        [KpConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    configs = described["topic"][topic]
    assert configs["retention.ms"]["value"] == "7200000"
    assert ENFORCED_TOPIC_CONFIGS <= set(configs), ENFORCED_TOPIC_CONFIGS - set(configs)


def test_kafka_python_duplicate_create_is_topic_already_exists(kp_admin, topic):
    """A second create_topics of the same name raises TopicAlreadyExistsError."""
    kp_create(kp_admin, topic, 1)
    with pytest.raises(TopicAlreadyExistsError):
        kp_create(kp_admin, topic, 1)


@pytest.mark.parametrize("name", INVALID_NAMES[:5], ids=["space", "slash", "dotdot", "dot",
                                                         "too_long"])
def test_kafka_python_invalid_topic_name_is_rejected(kp_admin, name):
    """Illegal topic names raise InvalidTopicError."""
    with pytest.raises(InvalidTopicError):
        kp_create(kp_admin, name)
    assert name not in kp_admin.list_topics()


def test_kafka_python_zero_partitions_is_invalid_partitions(kp_admin, topic):
    """num_partitions=0 is refused with InvalidPartitionsError."""
    with pytest.raises(InvalidPartitionsError):
        kp_create(kp_admin, topic, 0)


def test_kafka_python_unknown_config_is_invalid_config(kp_admin, topic):
    """An unknown topic config raises InvalidConfigurationError."""
    with pytest.raises(InvalidConfigurationError):
        kp_create(kp_admin, topic, 1, {"no.such.config": "1"})


def test_kafka_python_delete_topic(kp_admin, topic):
    """delete_topics removes the topic from list_topics; a second delete is UNKNOWN_TOPIC."""
    kp_create(kp_admin, topic, 2)
    assert topic in kp_admin.list_topics()
    kp_admin.delete_topics([topic], timeout_ms=TIMEOUT_S * 1000)
    wait_until(lambda: topic not in kp_admin.list_topics(), what="topic gone from metadata")
    with pytest.raises(UnknownTopicOrPartitionError):
        kp_admin.delete_topics([topic], timeout_ms=TIMEOUT_S * 1000)


def test_kafka_python_describe_broker_configs(kp_admin, broker):
    """describe_configs of the node asked answers with a non-empty config set."""
    node = str(broker.node_id)
    described = kp_admin.describe_configs(
        [KpConfigResource(ConfigResourceType.BROKER, node)], config_filter="all")
    assert described["broker"][node], described


# ---------------------------------------------------------------- automatic topic creation

def test_auto_create_on_produce_uses_default_partition_count(broker, topic):
    """Producing to an unknown topic creates it with the default of one partition."""
    producer = ck_producer(broker.bootstrap)
    log = DeliveryLog()
    producer.produce(topic, value=b"first", on_delivery=log)
    ck_flush(producer)
    log.check(1)
    meta = ck_topics(ck_admin(broker))[topic]
    assert sorted(meta.partitions) == [0]


def test_auto_create_disabled_leaves_unknown_topics_unknown(broker_factory, topic):
    """With --auto-create-topics false, Metadata for an unknown topic creates nothing."""
    broker = broker_factory("--auto-create-topics", "false")
    admin = ck_admin(broker)
    meta = admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic]
    assert meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic not in ck_topics(admin)
    ck_create(admin, topic, 1)  # Explicit creation still works.
    assert topic in ck_topics(admin)
