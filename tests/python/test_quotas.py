"""Client quotas: AlterClientQuotas and DescribeClientQuotas (kafka-python's protocol classes and
`corelog quota`), Kafka's precedence of entities, and enforcement on a 2-shard broker: a
producer over its byte rate is held to it within 10% while another user's produce latency stays
where it was, a consumer is held to its byte rate, a request-time quota throttles, and the
response tells the client how long it was throttled (KIP-219).
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.errors import ClusterAuthorizationFailedError, InvalidRequestError, for_code
from kafka.protocol.admin.client_quotas import (AlterClientQuotasRequest,
                                                DescribeClientQuotasRequest)
from kafka.protocol.metadata import MetadataRequest

from clients import ck_flush, wait_until
from security_setup import corelog, create_user_offline

TIMEOUT_S = 30
PASSWORDS = {"admin": "admin-secret-1", "alice": "alice-secret-2", "bob": "bob-secret-3"}


def with_users(data_dir):
    for user, password in PASSWORDS.items():
        create_user_offline(data_dir, user, password)


@pytest.fixture
def quota_broker(broker_factory):
    """2 shards; SASL_PLAINTEXT with users admin, alice and bob; no authorizer."""
    return broker_factory("--sasl-mechanisms", "SCRAM-SHA-512", listeners=("SASL_PLAINTEXT",),
                          before_start=with_users)


def sasl(broker, user: str) -> dict:
    return {"bootstrap.servers": broker.address("SASL_PLAINTEXT"),
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": PASSWORDS[user]}


def quota_cli(broker, *args: str, user: str = "admin", check: bool = True):
    return corelog("quota", *args, "--brokers", broker.address("SASL_PLAINTEXT"),
                   "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512",
                   "--sasl-username", user, "--sasl-password", PASSWORDS[user], check=check)


def kp_admin(broker, user: str = "admin") -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.address("SASL_PLAINTEXT"),
                            security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                            sasl_plain_username=user, sasl_plain_password=PASSWORDS[user])


def send(admin: KafkaAdminClient, request):
    return admin._manager.run(admin._manager.send, request)


def alter(admin, entity: list[tuple[str, str | None]], ops: list[tuple[str, float | None]],
          validate_only: bool = False):
    """One AlterClientQuotas entry; its error code."""
    entry_type = AlterClientQuotasRequest.EntryData
    entry = entry_type(
        entity=[entry_type.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        ops=[entry_type.OpData(key=k, value=v or 0.0, remove=v is None) for k, v in ops])
    response = send(admin, AlterClientQuotasRequest(entries=[entry],
                                                    validate_only=validate_only))
    return response.entries[0].error_code


def describe(admin, components=(), strict=False) -> dict:
    """DescribeClientQuotas: {((type, name), ...): {key: value}}."""
    component = DescribeClientQuotasRequest.ComponentData
    request = DescribeClientQuotasRequest(
        components=[component(entity_type=t, match_type=m, match=n) for t, m, n in components],
        strict=strict)
    response = send(admin, request)
    if response.error_code:
        raise for_code(response.error_code)(response.error_message)
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity):
            {v.key: v.value for v in entry.values} for entry in response.entries}


def test_quota_apis_cli_validation_and_persistence(quota_broker):
    """Quotas set over AlterClientQuotas and `corelog quota set` are listed by both, filtered as
    KIP-546 says, refused with INVALID_REQUEST when Kafka refuses them, validated without being
    set when asked, and still there after a restart."""
    admin = kp_admin(quota_broker)
    try:
        assert alter(admin, [("user", "alice")], [("producer_byte_rate", 1024.0)]) == 0
        assert alter(admin, [("user", None)], [("consumer_byte_rate", 2048.0)]) == 0
        assert alter(admin, [("user", "alice"), ("client-id", "app")],
                     [("request_percentage", 12.5)]) == 0
        assert alter(admin, [("client-id", "tmp")], [("producer_byte_rate", 1.0)],
                     validate_only=True) == 0
        invalid = InvalidRequestError.errno
        assert alter(admin, [("user", "alice")], [("producer_byte_rate", 10.5)]) == invalid
        assert alter(admin, [("user", "alice")], [("producer_byte_rate", -1.0)]) == invalid
        assert alter(admin, [("user", "alice")], [("no_such_key", 1.0)]) == invalid
        assert alter(admin, [("ip", "10.0.0.1")],
                     [("connection_creation_rate", 5.0)]) == invalid
        assert alter(admin, [("user", "a"), ("user", "b")],
                     [("producer_byte_rate", 5.0)]) == invalid

        everything = describe(admin)
        assert everything == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0},
            (("user", None),): {"consumer_byte_rate": 2048.0},
            (("user", "alice"), ("client-id", "app")): {"request_percentage": 12.5},
        }, everything
        alice = describe(admin, [("user", 0, "alice")])
        assert len(alice) == 2
        assert len(describe(admin, [("user", 0, "alice")], strict=True)) == 1
        assert list(describe(admin, [("user", 1, None)])) == [(("user", None),)]
        assert len(describe(admin, [("client-id", 2, None)])) == 1
        with pytest.raises(InvalidRequestError):
            describe(admin, [("host", 2, None)])
    finally:
        admin.close()

    out = quota_cli(quota_broker, "set", "--client-id-default", "--producer-byte-rate", "4096",
                    "--request-percentage", "50").stdout
    assert "producer_byte_rate = 4096" in out, out
    listed = json.loads(quota_cli(quota_broker, "list", "--json").stdout)
    assert {"user": None, "client-id": "<default>",
            "quotas": {"producer_byte_rate": 4096.0, "request_percentage": 50.0}} in listed
    alice = json.loads(quota_cli(quota_broker, "list", "--user", "alice", "--strict",
                                 "--json").stdout)
    assert alice == [{"user": "alice", "client-id": None,
                      "quotas": {"producer_byte_rate": 1024.0}}], alice
    quota_cli(quota_broker, "set", "--user", "alice", "--remove", "producer_byte_rate")
    bad = quota_cli(quota_broker, "set", "--user", "alice", "--producer-byte-rate", "0",
                    check=False)
    assert bad.returncode != 0 and "positive" in bad.stderr
    table = quota_cli(quota_broker, "list").stdout
    assert "client-id=<default>" in table and "user=alice,client-id=app" in table

    quota_broker.restart()
    admin = kp_admin(quota_broker)
    try:
        after = describe(admin)
        assert (("user", "alice"),) not in after
        assert after[(("client-id", None),)] == {"producer_byte_rate": 4096.0,
                                                 "request_percentage": 50.0}
        assert after[(("user", None),)] == {"consumer_byte_rate": 2048.0}
    finally:
        admin.close()


def test_quota_apis_need_cluster_config_permissions(broker_factory):
    """With the authorizer on, altering quotas needs ALTER_CONFIGS and describing them
    DESCRIBE_CONFIGS on the cluster (CLUSTER_AUTHORIZATION_FAILED otherwise)."""
    broker = broker_factory("--sasl-mechanisms", "SCRAM-SHA-512", "--authorizer", "on",
                            "--super-users", "User:admin", listeners=("SASL_PLAINTEXT",),
                            before_start=with_users)
    bob = kp_admin(broker, "bob")
    try:
        assert alter(bob, [("user", "bob")], [("producer_byte_rate", 1e9)]) == \
            ClusterAuthorizationFailedError.errno
        with pytest.raises(ClusterAuthorizationFailedError):
            describe(bob)
    finally:
        bob.close()
    refused = quota_cli(broker, "list", user="bob", check=False)
    assert refused.returncode != 0 and "ClusterAuthorizationFailed" in refused.stderr
    admin = kp_admin(broker)
    try:
        assert alter(admin, [("user", "bob")], [("producer_byte_rate", 1e9)]) == 0
        assert describe(admin) == {(("user", "bob"),): {"producer_byte_rate": 1e9}}
    finally:
        admin.close()


class Flood:
    """Producers of one user sending as fast as they are let, counting acknowledged bytes with
    their times, and the throttle times the broker reported (librdkafka's throttle_cb)."""

    def __init__(self, conf: dict, topic: str, producers: int, value_bytes: int):
        self.acked: list[tuple[float, int]] = []
        self.throttles: list[int] = []
        self.errors: list = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.value = b"q" * value_bytes
        self.topic = topic
        self.threads = [threading.Thread(target=self.run, args=(conf,), daemon=True)
                        for _ in range(producers)]

    def run(self, conf: dict) -> None:
        def delivered(err, msg):
            with self.lock:
                if err is not None:
                    self.errors.append(err)
                else:
                    self.acked.append((time.monotonic(), len(msg.value())))

        def throttled(event):
            with self.lock:
                self.throttles.append(event.throttle_time)

        producer = Producer({**conf, "acks": "all", "linger.ms": 5,
                             "queue.buffering.max.kbytes": 256,
                             "throttle_cb": throttled})
        while not self.stop.is_set():
            try:
                producer.produce(self.topic, self.value, on_delivery=delivered)
            except BufferError:
                producer.poll(0.05)  # The local queue is full: the broker holds us back.
            producer.poll(0)
        ck_flush(producer, TIMEOUT_S)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT_S * 2)
            assert not thread.is_alive()

    def bytes_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(size for at, size in self.acked if start <= at < end)


def produce_latencies_ms(conf: dict, topic: str, count: int) -> list[float]:
    """Sends `count` messages one at a time, each after the last was acknowledged."""
    producer = Producer({**conf, "acks": "all", "linger.ms": 0})
    latencies = []
    for _ in range(count):
        done = []
        started = time.monotonic()
        producer.produce(topic, b"bob" * 100, on_delivery=lambda err, msg: done.append(err))
        while not done:
            producer.poll(0.001)
        assert done == [None]
        latencies.append((time.monotonic() - started) * 1000)
    return latencies


def test_producer_is_held_to_its_byte_rate_and_another_user_is_not_slowed(quota_broker):
    """Four producers of alice (their connections spread over both shards) together get
    alice's producer_byte_rate within 10% once the first second's burst is spent, are told
    they were throttled, and bob's produce latency meanwhile stays where it was."""
    rate = 400_000
    quota_cli(quota_broker, "set", "--user", "alice", "--producer-byte-rate", str(rate))
    for topic in ("alice-flood", "bob-latency"):
        corelog("topic", "create", topic, "--partitions", "4", "--brokers",
                quota_broker.bootstrap)
    bob = sasl(quota_broker, "bob")
    produce_latencies_ms(bob, "bob-latency", 20)  # Warm up: connections, metadata.
    before = statistics.median(produce_latencies_ms(bob, "bob-latency", 100))

    flood = Flood(sasl(quota_broker, "alice"), "alice-flood", producers=4, value_bytes=8192)
    flood.start()
    started = time.monotonic()
    try:
        during = statistics.median(produce_latencies_ms(bob, "bob-latency", 100))
        wait_until(lambda: time.monotonic() - started >= 14, timeout_s=60,
                   what="14 s of alice's flood")
    finally:
        flood.finish()
    assert not flood.errors, flood.errors[:3]
    measured = flood.bytes_between(started + 3, started + 13) / 10
    print(f"alice: {measured:.0f} B/s of {rate}; bob's median latency {before:.2f} ms before, "
          f"{during:.2f} ms during; throttle times up to {max(flood.throttles, default=0)} ms")
    assert abs(measured - rate) <= 0.1 * rate, f"alice got {measured:.0f} B/s of {rate}"
    assert flood.throttles and max(flood.throttles) > 0, "no throttle time was reported"
    assert during <= 2 * before + 5, f"bob's median latency {before:.2f} -> {during:.2f} ms"


def test_consumer_is_held_to_its_byte_rate(quota_broker):
    """A consumer with a consumer_byte_rate needs as long as its quota allows to read a topic
    (after the first second's burst), and one without a quota reads it at once."""
    topic = "fetch-quota"
    corelog("topic", "create", topic, "--partitions", "1", "--brokers", quota_broker.bootstrap)
    producer = Producer({"bootstrap.servers": quota_broker.bootstrap, "linger.ms": 20})
    total = 0
    for _ in range(300):
        producer.produce(topic, b"f" * 10_000)
        total += 10_000
    ck_flush(producer, TIMEOUT_S)

    def read_all_s(user: str) -> float:
        consumer = Consumer({**sasl(quota_broker, user), "group.id": f"g-{user}",
                             "enable.auto.commit": False,
                             "max.partition.fetch.bytes": 100_000})
        consumer.assign([TopicPartition(topic, 0, 0)])
        got, started = 0, time.monotonic()
        try:
            while got < total:
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    got += len(message.value())
                assert time.monotonic() - started < 60, f"{user} read {got} of {total}"
            return time.monotonic() - started
        finally:
            consumer.close()

    rate = 500_000
    quota_cli(quota_broker, "set", "--user", "bob", "--consumer-byte-rate", str(rate))
    throttled_s = read_all_s("bob")
    unthrottled_s = read_all_s("alice")
    # 3 MB at 500 kB/s, less the first second's burst: at least 5 s.
    assert throttled_s >= 0.9 * (total - rate) / rate, f"{throttled_s:.1f} s"
    assert unthrottled_s < throttled_s / 2, (unthrottled_s, throttled_s)


def test_request_time_quota_throttles_a_busy_client(quota_broker):
    """A request_percentage quota set as the default for users throttles a client that keeps the
    shard busy: its Metadata responses carry a throttle time."""
    quota_cli(quota_broker, "set", "--user-default", "--request-percentage", "0.01")
    admin = kp_admin(quota_broker, "alice")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            response = send(admin, MetadataRequest(topics=None))
            if response.throttle_time_ms > 0:
                break
            assert time.monotonic() < deadline, "no Metadata response was throttled"
    finally:
        admin.close()
