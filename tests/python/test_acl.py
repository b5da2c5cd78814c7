"""ACL authorization with real clients: `--authorizer on` denies what no ACL allows, super users
pass everything, CreateAcls/DescribeAcls/DeleteAcls through confluent-kafka's and kafka-python's
admin clients (filters, MATCH, deletion returning the bindings), prefixed and wildcard patterns,
DENY over ALLOW, hosts, the error each client surfaces for each refused API, KIP-430 authorized
operations, KIP-679 idempotent producers, ACLs surviving a restart, and SECURITY_DISABLED with
the authorizer off.

Every test has its own broker (a start costs well under a second) so that no ACL of one test,
in particular a "User:*" or "*" one, can change what another test sees. Principals are
"User:<SASL user>" on the SASL listener and "User:ANONYMOUS" on the PLAINTEXT one; the users
are made offline before the first start. ACL changes are made as the super user "admin" and
take effect at once (the controller has every shard apply a change before it answers), so each
step below uses fresh clients rather than waiting: librdkafka caches a topic's refusal.
"""

from __future__ import annotations

import signal
import socket
import struct
import time

import pytest
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException,
                             Producer, TopicCollection, TopicPartition)
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, AlterConfigOpType,
                                   ConfigEntry, ConfigResource, NewPartitions, NewTopic,
                                   OffsetSpec, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from clients import DeliveryLog, wait_until
from security_setup import TestPki, create_user_offline, raw_request, recv_frame

TIMEOUT_S = 30
USERS = {"admin": "admin-pw-1618", "alice": "alice-pw-2718", "bob": "bob-pw-3141",
         "carol": "carol-pw-1414"}
ACL_FLAGS = ("--sasl-mechanisms", "SCRAM-SHA-512", "--authorizer", "on",
             "--super-users", "User:admin", "--group-initial-rebalance-delay-ms", "100")

TOPIC_AUTHORIZATION_FAILED = KafkaError.TOPIC_AUTHORIZATION_FAILED  # 29
GROUP_AUTHORIZATION_FAILED = KafkaError.GROUP_AUTHORIZATION_FAILED  # 30
CLUSTER_AUTHORIZATION_FAILED = KafkaError.CLUSTER_AUTHORIZATION_FAILED  # 31
AUTHORIZATION_ERRORS = {TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
                        CLUSTER_AUTHORIZATION_FAILED}

TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
# librdkafka calls the CLUSTER resource type (code 4) BROKER; its one name is "kafka-cluster".
CLUSTER = ResourceType.BROKER
CLUSTER_NAME = "kafka-cluster"
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
Op = AclOperation
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY

# KIP-430: the operations each resource type reports for a principal allowed everything.
TOPIC_OPERATIONS = {Op.READ, Op.WRITE, Op.CREATE, Op.DELETE, Op.ALTER, Op.DESCRIBE,
                    Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS}
GROUP_OPERATIONS = {Op.READ, Op.DESCRIBE, Op.DELETE}
CLUSTER_OPERATIONS = {Op.CREATE, Op.CLUSTER_ACTION, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS,
                      Op.IDEMPOTENT_WRITE, Op.ALTER, Op.DESCRIBE}


# ---------------------------------------------------------------------------------- helpers

def with_users(data_dir) -> None:
    for user, password in USERS.items():
        create_user_offline(data_dir, user, password)


@pytest.fixture
def acl_broker(broker_factory):
    """PLAINTEXT and SASL_PLAINTEXT (SCRAM-SHA-512) listeners, the authorizer on, super user
    User:admin; users admin, alice, bob and carol made offline before the first start."""
    return broker_factory(*ACL_FLAGS, listeners=("SASL_PLAINTEXT",), before_start=with_users)


def sasl(broker, user: str, listener: str = "SASL_PLAINTEXT", **extra) -> dict:
    """librdkafka settings to log in as `user` (SCRAM-SHA-512)."""
    return {"bootstrap.servers": broker.address(listener), "security.protocol": listener,
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user,
            "sasl.password": USERS[user], **extra}


def ck_admin(broker, user: str = "admin") -> AdminClient:
    return AdminClient(sasl(broker, user))


def kp_admin(broker, user: str = "admin"):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(
        bootstrap_servers=broker.address("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
        sasl_plain_password=USERS[user], request_timeout_ms=TIMEOUT_S * 1000)


def acl(restype, name: str, principal: str, operation, pattern=LITERAL, host: str = "*",
        permission=ALLOW) -> AclBinding:
    return AclBinding(restype, name, pattern, principal, host, operation, permission)


def deny(restype, name: str, principal: str, operation, pattern=LITERAL,
         host: str = "*") -> AclBinding:
    return acl(restype, name, principal, operation, pattern, host, DENY)


def exactly(binding: AclBinding) -> AclBindingFilter:
    """The filter that matches `binding` and nothing else."""
    return AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                            binding.principal, binding.host, binding.operation,
                            binding.permission_type)


def acl_filter(restype=ResourceType.ANY, name=None, pattern=ResourcePatternType.ANY,
               principal=None, host=None, operation=Op.ANY,
               permission=AclPermissionType.ANY) -> AclBindingFilter:
    return AclBindingFilter(restype, name, pattern, principal, host, operation, permission)


EVERY_ACL = acl_filter()


def grant(admin: AdminClient, *bindings: AclBinding) -> None:
    """Create `bindings` (each must succeed)."""
    futures = admin.create_acls(list(bindings), request_timeout=TIMEOUT_S)
    for binding, future in futures.items():
        assert future.result(timeout=TIMEOUT_S) is None, binding


def revoke(admin: AdminClient, *bindings: AclBinding) -> None:
    """Delete exactly `bindings` (each must have existed)."""
    filters = [exactly(b) for b in bindings]
    futures = admin.delete_acls(filters, request_timeout=TIMEOUT_S)
    for binding, f in zip(bindings, filters):
        assert futures[f].result(timeout=TIMEOUT_S) == [binding]


def described(admin: AdminClient, f: AclBindingFilter = EVERY_ACL) -> set:
    return set(admin.describe_acls(f, request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S))


def refusal(future) -> int:
    """The error code of an admin future that must fail."""
    with pytest.raises(KafkaException) as excinfo:
        future.result(timeout=TIMEOUT_S)
    return excinfo.value.args[0].code()


def code_of(future) -> int:
    """0 if an admin future succeeds, else the error code it fails with."""
    try:
        future.result(timeout=TIMEOUT_S)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def create_topics(admin: AdminClient, *names: str, partitions: int = 1) -> None:
    new = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    for future in admin.create_topics(new, request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)


def topic_names(admin: AdminClient) -> set[str]:
    return set(admin.list_topics(timeout=TIMEOUT_S).topics)


def send(conf: dict, messages: list[tuple[str, bytes]], **extra) -> DeliveryLog:
    """Produce (topic, value) pairs with acks=all and wait for every delivery report."""
    producer = Producer({"acks": "all", "linger.ms": 5,
                         "message.timeout.ms": TIMEOUT_S * 1000, **conf, **extra})
    log = DeliveryLog()
    for topic, value in messages:
        producer.produce(topic, value=value, on_delivery=log)
    remaining = producer.flush(TIMEOUT_S + 10)
    assert remaining == 0, f"{remaining} messages without a delivery report"
    return log


def outcomes(log: DeliveryLog) -> dict[str, list[int]]:
    """Per topic, the error code of each delivery report (0: delivered)."""
    by_topic: dict[str, list[int]] = {}
    for err, msg in log.ok + log.failed:
        by_topic.setdefault(msg.topic(), []).append(0 if err is None else err.code())
    return {topic: sorted(codes) for topic, codes in by_topic.items()}


def watermarks(broker, topic: str, partition: int = 0) -> tuple[int, int]:
    consumer = Consumer(sasl(broker, "admin", **{"group.id": "watermarks"}))
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                              timeout=TIMEOUT_S)
    finally:
        consumer.close()


def consumer_for(conf: dict, group: str, **extra) -> Consumer:
    return Consumer({"group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "enable.partition.eof": False,
                     **conf, **extra})


def poll_values(consumer: Consumer, count: int) -> list[bytes]:
    """Poll until `count` records arrived; any consumer error fails."""
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(values) < count:
        assert time.monotonic() < deadline, f"got {len(values)} of {count} records"
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        values.append(msg.value())
    return values


def poll_error(consumer: Consumer, code: int, what: str) -> KafkaError:
    """Poll until the consumer reports the error `code`; a record, or another authorization
    error first, fails."""
    seen: list[KafkaError] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        error = msg.error()
        assert error is not None, \
            f"{what}: got a record (offset {msg.offset()}) where error {code} was expected"
        if error.code() == code:
            return error
        assert error.code() not in AUTHORIZATION_ERRORS, f"{what}: {error} before {code}"
        seen.append(error)
    raise AssertionError(f"{what}: no error {code} within {TIMEOUT_S}s; saw {seen}")


def assigned_read(conf: dict, topic: str, count: int, group: str = "reader") -> list[bytes]:
    """Read `count` records of partition 0 from offset 0 by assignment."""
    consumer = consumer_for(conf, group)
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        return poll_values(consumer, count)
    finally:
        consumer.close()


def assigned_refusal(conf: dict, topic: str, group: str = "reader") -> int:
    """The error code the consumer reports when it reads partition 0 by assignment."""
    consumer = consumer_for(conf, group)
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        return poll_error(consumer, TOPIC_AUTHORIZATION_FAILED, f"reading {topic}").code()
    finally:
        consumer.close()


def commit_offset(conf: dict, group: str, topic: str, offset: int) -> None:
    """Commit `offset` for partition 0 as a consumer outside any generation."""
    consumer = consumer_for(conf, group)
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def ops(operations) -> set:
    """KIP-430 operations as a set (the client gives None for none)."""
    return set(operations or [])


# ------------------------------------------------------------------- consumers and producers

def test_consumer_needs_read_on_the_topic_and_on_the_group(acl_broker, topic):
    """A subscribing consumer without any ACL on the topic gets TOPIC_AUTHORIZATION_FAILED
    (Metadata), with DESCRIBE but not READ again TOPIC_AUTHORIZATION_FAILED (Fetch); with READ
    on the topic but nothing on the group GROUP_AUTHORIZATION_FAILED (FindCoordinator), with
    DESCRIBE on the group but not READ again GROUP_AUTHORIZATION_FAILED (JoinGroup); with READ
    on both it consumes and commits. A commit for a topic it may only DESCRIBE is
    TOPIC_AUTHORIZATION_FAILED and stores nothing."""
    admin = ck_admin(acl_broker)
    described_only = f"{topic}-described"
    create_topics(admin, topic, described_only)
    values = [f"v{i}".encode() for i in range(5)]
    send(sasl(acl_broker, "admin"), [(topic, v) for v in values]).check(5)
    group = f"{topic}-group"
    alice = sasl(acl_broker, "alice")

    def refused_subscriber(code: int, what: str) -> None:
        consumer = consumer_for(alice, group)
        try:
            consumer.subscribe([topic])
            poll_error(consumer, code, what)
        finally:
            consumer.close()

    grant(admin, acl(GROUP, group, "User:alice", Op.READ))
    refused_subscriber(TOPIC_AUTHORIZATION_FAILED, "no ACL on the topic")
    grant(admin, acl(TOPIC, topic, "User:alice", Op.DESCRIBE))
    refused_subscriber(TOPIC_AUTHORIZATION_FAILED, "DESCRIBE without READ on the topic")

    revoke(admin, acl(GROUP, group, "User:alice", Op.READ))
    grant(admin, acl(TOPIC, topic, "User:alice", Op.READ))
    refused_subscriber(GROUP_AUTHORIZATION_FAILED, "READ on the topic, nothing on the group")
    grant(admin, acl(GROUP, group, "User:alice", Op.DESCRIBE))
    refused_subscriber(GROUP_AUTHORIZATION_FAILED, "DESCRIBE without READ on the group")

    grant(admin, acl(GROUP, group, "User:alice", Op.READ),
          acl(TOPIC, described_only, "User:alice", Op.DESCRIBE))
    consumer = consumer_for(alice, group)
    try:
        consumer.subscribe([topic])
        assert poll_values(consumer, 5) == values
        committed = consumer.commit(asynchronous=False)
        assert [(tp.topic, tp.offset, tp.error) for tp in committed] == [(topic, 5, None)]
        [stored] = consumer.committed([TopicPartition(topic, 0)], timeout=TIMEOUT_S)
        assert stored.offset == 5 and stored.error is None
    finally:
        consumer.close()

    assert commit_refusal(alice, group, described_only) == TOPIC_AUTHORIZATION_FAILED
    request = [ConsumerGroupTopicPartitions(group)]
    stored = admin.list_consumer_group_offsets(request)[group].result(timeout=TIMEOUT_S)
    assert [(tp.topic, tp.offset) for tp in stored.topic_partitions] == [(topic, 5)]


def commit_refusal(conf: dict, group: str, topic: str) -> int:
    """The error of a commit of offset 1 for partition 0 of `topic` that must be refused."""
    consumer = consumer_for(conf, group)
    try:
        committed = consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    except KafkaException as e:
        return e.args[0].code()
    finally:
        consumer.close()
    [partition] = committed
    assert partition.error is not None, "the commit was accepted"
    return partition.error.code()


def test_prefixed_write_acl_allows_matching_topics_only(acl_broker):
    """A producer with WRITE on the PREFIXED pattern "app." writes to app.x; other.x (no ACL:
    Metadata refuses) and other.y (DESCRIBE only: Produce refuses) get
    TOPIC_AUTHORIZATION_FAILED, nothing is appended to them, and the broker keeps serving the
    same producer."""
    admin = ck_admin(acl_broker)
    create_topics(admin, "app.x", "other.x", "other.y")
    grant(admin, acl(TOPIC, "app.", "User:bob", Op.WRITE, PREFIXED),
          acl(TOPIC, "other.y", "User:bob", Op.DESCRIBE))
    bob = sasl(acl_broker, "bob")
    log = send(bob, [("app.x", b"a1"), ("other.x", b"o1"), ("other.y", b"y1"), ("app.x", b"a2")])
    assert outcomes(log) == {"app.x": [0, 0], "other.x": [TOPIC_AUTHORIZATION_FAILED],
                             "other.y": [TOPIC_AUTHORIZATION_FAILED]}
    send(bob, [("app.x", b"a3")]).check(1)
    acl_broker.check_not_died("the checks")
    assert watermarks(acl_broker, "app.x") == (0, 3)
    assert watermarks(acl_broker, "other.x") == (0, 0)
    assert watermarks(acl_broker, "other.y") == (0, 0)


def test_topic_auto_creation_needs_create(acl_broker):
    """Producing to a missing topic creates it only with CREATE on the topic (or a pattern
    of it) or on the cluster; without, TOPIC_AUTHORIZATION_FAILED and no topic appears."""
    admin = ck_admin(acl_broker)
    grant(admin, acl(TOPIC, "auto.", "User:alice", Op.WRITE, PREFIXED),
          acl(TOPIC, "bob.", "User:bob", Op.WRITE, PREFIXED))
    log = send(sasl(acl_broker, "alice"), [("auto.one", b"x")])
    assert outcomes(log) == {"auto.one": [TOPIC_AUTHORIZATION_FAILED]}
    assert "auto.one" not in topic_names(admin)

    grant(admin, acl(TOPIC, "auto.", "User:alice", Op.CREATE, PREFIXED),
          acl(CLUSTER, CLUSTER_NAME, "User:bob", Op.CREATE))
    send(sasl(acl_broker, "alice"), [("auto.two", b"x")]).check(1)
    send(sasl(acl_broker, "bob"), [("bob.created", b"x")]).check(1)
    assert {"auto.two", "bob.created"} <= topic_names(admin)
    assert watermarks(acl_broker, "auto.two") == (0, 1)


def test_metadata_lists_only_the_topics_a_principal_may_describe(acl_broker):
    """Listing all topics leaves out those without DESCRIBE (READ implies it); a named topic
    without DESCRIBE, existing or not, is TOPIC_AUTHORIZATION_FAILED and is not created; a
    super user sees every topic; User:ANONYMOUS on the PLAINTEXT listener sees what its own
    ACLs allow."""
    admin = ck_admin(acl_broker)
    create_topics(admin, "visible", "hidden", "reports.daily")
    grant(admin, acl(TOPIC, "visible", "User:alice", Op.DESCRIBE),
          acl(TOPIC, "reports.", "User:alice", Op.READ, PREFIXED))
    alice = ck_admin(acl_broker, "alice")
    assert topic_names(alice) == {"visible", "reports.daily"}
    assert {"visible", "hidden", "reports.daily"} <= topic_names(admin)
    assert topic_names(ck_admin(acl_broker, "bob")) == set()

    for name in ("hidden", "not-there"):
        meta = alice.list_topics(topic=name, timeout=TIMEOUT_S).topics[name]
        assert meta.error is not None and meta.error.code() == TOPIC_AUTHORIZATION_FAILED, \
            (name, meta.error)
    assert "not-there" not in topic_names(admin)

    kp = kp_admin(acl_broker, "alice")
    try:
        assert set(kp.list_topics()) == {"visible", "reports.daily"}
    finally:
        kp.close()

    anonymous = AdminClient({"bootstrap.servers": acl_broker.bootstrap})
    assert topic_names(anonymous) == set()
    grant(admin, acl(TOPIC, "visible", "User:ANONYMOUS", Op.DESCRIBE))
    assert topic_names(AdminClient({"bootstrap.servers": acl_broker.bootstrap})) == {"visible"}


def test_super_users_may_do_everything(broker_factory, topic):
    """Every principal of --super-users ("User:admin;User:carol") passes every check with no
    ACL at all: topic creation (explicit and automatic), produce, group consume and commit,
    configs, groups, ACL administration, deletion."""
    broker = broker_factory("--sasl-mechanisms", "SCRAM-SHA-512", "--authorizer", "on",
                            "--super-users", "User:admin;User:carol",
                            "--group-initial-rebalance-delay-ms", "100",
                            listeners=("SASL_PLAINTEXT",), before_start=with_users)
    carol = sasl(broker, "carol")
    admin = AdminClient(carol)
    create_topics(admin, topic, partitions=2)
    send(carol, [(topic, f"v{i}".encode()) for i in range(4)] + [(f"{topic}-auto", b"a")]).check(5)
    assert f"{topic}-auto" in topic_names(admin)

    group = f"{topic}-group"
    consumer = consumer_for(carol, group)
    try:
        consumer.subscribe([topic])
        assert len(poll_values(consumer, 4)) == 4
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    listed = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert group in {g.group_id for g in listed.valid}
    [description] = [f.result(timeout=TIMEOUT_S) for f in admin.describe_consumer_groups(
        [group], include_authorized_operations=True, request_timeout=TIMEOUT_S).values()]
    assert ops(description.authorized_operations) == GROUP_OPERATIONS

    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    configs = admin.describe_configs([ConfigResource("topic", topic)])
    assert list(configs.values())[0].result(timeout=TIMEOUT_S)["retention.ms"].value == "3600000"
    broker_resource = ConfigResource("broker", "0")
    assert admin.describe_configs([broker_resource])[broker_resource].result(timeout=TIMEOUT_S)

    binding = acl(TOPIC, topic, "User:bob", Op.READ)
    grant(admin, binding)
    grant(ck_admin(broker, "admin"), acl(GROUP, group, "User:bob", Op.READ))
    assert len(described(admin)) == 2
    revoke(admin, binding)
    for future in admin.delete_topics([topic], request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)
    wait_until(lambda: topic not in topic_names(admin), TIMEOUT_S, "the topic gone")


def test_deny_wins_over_allow_and_hosts_are_matched(acl_broker):
    """With ALLOW READ on every topic and group for User:*, a DENY READ on one topic for bob
    refuses bob's fetches of it (TOPIC_AUTHORIZATION_FAILED) but not alice's, and leaves bob
    its DESCRIBE (a denial implies nothing); a DENY for another host does not apply, one for
    127.0.0.1 does; super users pass even a DENY ALL for User:*."""
    admin = ck_admin(acl_broker)
    create_topics(admin, "secret", "public")
    admin_conf = sasl(acl_broker, "admin")
    send(admin_conf, [("secret", b"s0"), ("secret", b"s1"), ("public", b"p0")]).check(3)
    grant(admin, acl(TOPIC, "*", "User:*", Op.READ), acl(GROUP, "*", "User:*", Op.READ),
          deny(TOPIC, "secret", "User:bob", Op.READ))
    alice, bob = sasl(acl_broker, "alice"), sasl(acl_broker, "bob")

    assert assigned_read(alice, "secret", 2) == [b"s0", b"s1"]
    assert assigned_read(bob, "public", 1) == [b"p0"]
    assert assigned_refusal(bob, "secret") == TOPIC_AUTHORIZATION_FAILED
    assert {"secret", "public"} <= topic_names(ck_admin(acl_broker, "bob"))

    grant(admin, deny(TOPIC, "public", "User:alice", Op.READ, host="10.20.30.40"))
    assert assigned_read(alice, "public", 1) == [b"p0"]
    grant(admin, deny(TOPIC, "public", "User:alice", Op.READ, host="127.0.0.1"))
    assert assigned_refusal(alice, "public") == TOPIC_AUTHORIZATION_FAILED

    grant(admin, deny(TOPIC, "sec", "User:*", Op.ALL, PREFIXED))
    assert "secret" not in topic_names(ck_admin(acl_broker, "alice"))
    assert assigned_read(admin_conf, "secret", 2) == [b"s0", b"s1"]


def test_idempotent_producer_needs_write_on_a_topic_or_idempotent_write(acl_broker):
    """KIP-679: an idempotent producer whose user has only WRITE on one topic gets a producer
    id and delivers; a user with no ACL, or with READ only, is refused InitProducerId with
    CLUSTER_AUTHORIZATION_FAILED, which librdkafka raises as a fatal error; IDEMPOTENT_WRITE on
    the cluster gives a producer id without any WRITE (the produce is then refused per topic,
    TOPIC_AUTHORIZATION_FAILED, which needs the producer id first)."""
    admin = ck_admin(acl_broker)
    create_topics(admin, "idem")
    grant(admin, acl(TOPIC, "idem", "User:alice", Op.WRITE),
          acl(TOPIC, "idem", "User:bob", Op.READ))
    idempotent = {"enable.idempotence": True}
    send(sasl(acl_broker, "alice"), [("idem", f"i{i}".encode()) for i in range(5)],
         **idempotent).check(5)
    for user in ("carol", "bob"):
        error = idempotence_refusal(sasl(acl_broker, user), "idem")
        assert error.code() == CLUSTER_AUTHORIZATION_FAILED, (user, error)
    grant(admin, acl(CLUSTER, CLUSTER_NAME, "User:bob", Op.IDEMPOTENT_WRITE))
    log = send(sasl(acl_broker, "bob"), [("idem", b"refused")], **idempotent)
    assert outcomes(log) == {"idem": [TOPIC_AUTHORIZATION_FAILED]}
    assert watermarks(acl_broker, "idem") == (0, 5)


def idempotence_refusal(conf: dict, topic: str) -> KafkaError:
    """The fatal error an idempotent producer raises (from poll) when it gets no producer id."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "enable.idempotence": True,
                         "message.timeout.ms": TIMEOUT_S * 1000, "error_cb": errors.append})
    producer.produce(topic, value=b"x")
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            producer.poll(0.1)
        except KafkaException as e:
            errors.append(e.args[0])
        fatal = [e for e in errors if e.fatal()]
        if fatal:
            return fatal[0]
    raise AssertionError(f"no fatal error within {TIMEOUT_S}s; errors: {errors}")


# -------------------------------------------------------------------------- ACL administration

def test_confluent_admin_creates_describes_and_deletes_acls(acl_broker):
    """confluent-kafka's admin client creates ACLs of every resource type and both pattern
    types (creating one again changes nothing), describes them with filters by resource,
    pattern type, MATCH, principal, host, operation and permission, and deletes by filter,
    each deletion returning the bindings it removed."""
    admin = ck_admin(acl_broker)
    read = acl(TOPIC, "orders", "User:alice", Op.READ)
    write = acl(TOPIC, "orders.", "User:alice", Op.WRITE, PREFIXED)
    wildcard = acl(TOPIC, "*", "User:bob", Op.DESCRIBE)
    denied = deny(TOPIC, "orders", "User:bob", Op.READ, host="10.0.0.1")
    group = acl(GROUP, "billing", "User:*", Op.READ)
    cluster = acl(CLUSTER, CLUSTER_NAME, "User:bob", Op.DESCRIBE)
    txn = acl(ResourceType.TRANSACTIONAL_ID, "tx-", "User:alice", Op.WRITE, PREFIXED)
    everything = {read, write, wildcard, denied, group, cluster, txn}
    grant(admin, *everything)
    grant(admin, read, cluster)  # Again: no error, no duplicate.
    assert described(admin) == everything

    match = ResourcePatternType.MATCH
    cases = [
        (acl_filter(TOPIC, "orders", LITERAL), {read, denied}),
        (acl_filter(TOPIC, "orders"), {read, denied}),  # Any pattern type named "orders".
        (acl_filter(TOPIC, "orders", match), {read, denied, wildcard}),
        (acl_filter(TOPIC, "orders.eu", match), {write, wildcard}),
        (acl_filter(GROUP, "billing", match), {group}),
        (acl_filter(pattern=PREFIXED), {write, txn}),
        (acl_filter(principal="User:bob"), {wildcard, denied, cluster}),
        (acl_filter(principal="User:*"), {group}),
        (acl_filter(host="10.0.0.1"), {denied}),
        (acl_filter(operation=Op.WRITE), {write, txn}),
        (acl_filter(permission=DENY), {denied}),
        (acl_filter(CLUSTER), {cluster}),
        (acl_filter(TOPIC, "nothing-like-it", LITERAL), set()),
    ]
    for f, expected in cases:
        assert described(admin, f) == expected, f

    orders, nothing = acl_filter(TOPIC, "orders", LITERAL), acl_filter(GROUP, "no-such-group")
    deleted = admin.delete_acls([orders, nothing], request_timeout=TIMEOUT_S)
    assert set(deleted[orders].result(timeout=TIMEOUT_S)) == {read, denied}
    assert deleted[nothing].result(timeout=TIMEOUT_S) == []
    assert described(admin) == everything - {read, denied}
    for f, expected in [(acl_filter(principal="User:bob"), {wildcard, cluster}),
                        (acl_filter(TOPIC, "orders.x", match), {write}),
                        (EVERY_ACL, {group, txn})]:
        removed = admin.delete_acls([f], request_timeout=TIMEOUT_S)[f].result(timeout=TIMEOUT_S)
        assert set(removed) == expected, f
    assert described(admin) == set()


def test_kafka_python_admin_creates_describes_and_deletes_acls(acl_broker):
    """kafka-python's admin client creates ACLs, describes them by resource, principal and
    MATCH, and deletes by principal, getting back what it removed; confluent-kafka sees the
    same ACLs."""
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, ResourcePattern, ResourcePatternFilter)
    from kafka.admin import ResourceType as KpType
    from kafka.errors import NoError

    def kp_acl(rtype, name, principal, operation, pattern=ACLResourcePatternType.LITERAL,
               permission=ACLPermissionType.ALLOW):
        return ACL(principal, "*", operation, permission, ResourcePattern(rtype, name, pattern))

    def kp_filter(rtype=KpType.ANY, name=None, pattern=ACLResourcePatternType.ANY,
                  principal=None):
        return ACLFilter(principal, None, ACLOperation.ANY, ACLPermissionType.ANY,
                         ResourcePatternFilter(rtype, name, pattern))

    read = kp_acl(KpType.TOPIC, "orders", "User:alice", ACLOperation.READ)
    write = kp_acl(KpType.TOPIC, "orders.", "User:alice", ACLOperation.WRITE,
                   ACLResourcePatternType.PREFIXED)
    denied = kp_acl(KpType.GROUP, "billing", "User:bob", ACLOperation.DESCRIBE,
                    permission=ACLPermissionType.DENY)
    cluster = kp_acl(KpType.CLUSTER, CLUSTER_NAME, "User:bob", ACLOperation.ALTER)
    everything = [read, write, denied, cluster]
    admin = kp_admin(acl_broker)
    try:
        created = admin.create_acls(everything)
        assert created["failed"] == [] and created["succeeded"] == everything, created

        def kp_described(f) -> set:
            acls, error = admin.describe_acls(f)
            assert error is NoError
            return set(acls)

        assert kp_described(kp_filter()) == set(everything)
        assert kp_described(kp_filter(KpType.TOPIC, "orders",
                                      ACLResourcePatternType.LITERAL)) == {read}
        assert kp_described(kp_filter(principal="User:bob")) == {denied, cluster}
        assert kp_described(kp_filter(KpType.TOPIC, "orders.eu",
                                      ACLResourcePatternType.MATCH)) == {write}
        [(_, removed, error)] = admin.delete_acls([kp_filter(principal="User:alice")])
        assert error is NoError and set(removed) == {read, write}
        assert kp_described(kp_filter()) == {denied, cluster}
    finally:
        admin.close()
    assert described(ck_admin(acl_broker)) == {deny(GROUP, "billing", "User:bob", Op.DESCRIBE),
                                              acl(CLUSTER, CLUSTER_NAME, "User:bob", Op.ALTER)}


def test_invalid_bindings_are_invalid_request(acl_broker):
    """A CLUSTER binding not named "kafka-cluster", a principal without its "User:" type and
    an empty resource name are each INVALID_REQUEST (in both admin clients) and create
    nothing; a valid binding in the same request is created."""
    admin = ck_admin(acl_broker)
    valid = acl(TOPIC, "fine", "User:alice", Op.READ)
    invalid = [acl(CLUSTER, "my-cluster", "User:alice", Op.ALTER),
               acl(TOPIC, "t", "alice", Op.READ),
               acl(TOPIC, "", "User:alice", Op.READ)]
    futures = admin.create_acls([valid, *invalid], request_timeout=TIMEOUT_S)
    assert futures[valid].result(timeout=TIMEOUT_S) is None
    for binding in invalid:
        assert refusal(futures[binding]) == KafkaError.INVALID_REQUEST, binding

    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern
    from kafka.admin import ResourceType as KpType
    from kafka.errors import InvalidRequestError
    kp = kp_admin(acl_broker)
    try:
        created = kp.create_acls([ACL("alice", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                                      ResourcePattern(KpType.TOPIC, "t"))])
        assert created["failed"] == [InvalidRequestError], created
    finally:
        kp.close()
    assert described(admin) == {valid}


def test_acl_and_user_apis_need_alter_or_describe_on_the_cluster(acl_broker):
    """Without an ACL on the cluster, CreateAcls, DescribeAcls, DeleteAcls,
    AlterUserScramCredentials and DescribeUserScramCredentials are CLUSTER_AUTHORIZATION_FAILED
    (and change nothing); DESCRIBE on the cluster opens the two describes only; ALTER (which
    implies DESCRIBE) opens all five.

    librdkafka cannot show the refusal of the two describes, which Kafka puts in the
    response's top-level error: it drops DescribeAcls' (describe_acls gives an empty list) and
    frees memory it does not own on DescribeUserScramCredentials' (the process aborts). Those
    two refusals are checked with kafka-python."""
    admin = ck_admin(acl_broker)
    existing = acl(TOPIC, "t", "User:bob", Op.READ)
    grant(admin, existing)
    alice = ck_admin(acl_broker, "alice")
    new = acl(TOPIC, "t", "User:alice", Op.READ)
    upsert = UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"dave-password")

    def codes() -> dict[str, int]:
        """0 or the error code of each changing API, for alice through confluent-kafka."""
        return {
            "CreateAcls": code_of(alice.create_acls([new], request_timeout=TIMEOUT_S)[new]),
            "DeleteAcls": code_of(alice.delete_acls([exactly(new)], request_timeout=TIMEOUT_S)
                                  [exactly(new)]),
            "AlterUserScramCredentials": code_of(alice.alter_user_scram_credentials(
                [upsert], request_timeout=TIMEOUT_S)["dave"]),
        }

    def users_described() -> list:
        future = alice.describe_user_scram_credentials(["admin"], request_timeout=TIMEOUT_S)
        info = future["admin"].result(timeout=TIMEOUT_S)
        return [(i.mechanism, i.iterations) for i in info.scram_credential_infos]

    refused = CLUSTER_AUTHORIZATION_FAILED
    assert codes() == dict.fromkeys(["CreateAcls", "DeleteAcls", "AlterUserScramCredentials"],
                                    refused)
    assert described(alice) == set(), "a refused DescribeAcls must not list any ACL"
    kafka_python_refusals(acl_broker)
    assert described(admin) == {existing}
    with pytest.raises(KafkaException) as unknown:
        admin.describe_user_scram_credentials(["dave"])["dave"].result(timeout=TIMEOUT_S)
    assert unknown.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND

    grant(admin, acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.DESCRIBE))
    assert codes() == dict.fromkeys(["CreateAcls", "DeleteAcls", "AlterUserScramCredentials"],
                                    refused)
    assert described(alice) == {existing, acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.DESCRIBE)}
    assert users_described() == [(ScramMechanism.SCRAM_SHA_512, 4096)]

    revoke(admin, acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.DESCRIBE))
    grant(admin, acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.ALTER))
    assert codes() == {"CreateAcls": 0, "DeleteAcls": 0, "AlterUserScramCredentials": 0}
    assert described(alice) == {existing, acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.ALTER)}
    assert users_described() == [(ScramMechanism.SCRAM_SHA_512, 4096)]
    info = admin.describe_user_scram_credentials(["dave"])["dave"].result(timeout=TIMEOUT_S)
    assert [i.iterations for i in info.scram_credential_infos] == [4096]


def kafka_python_refusals(broker) -> None:
    """kafka-python, as alice without any cluster ACL, is refused every ACL and user API."""
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, ResourcePattern, ResourcePatternFilter)
    from kafka.admin import ResourceType as KpType
    from kafka.admin import ScramMechanism as KpMechanism
    from kafka.admin import UserScramCredentialUpsertion as KpUpsertion
    from kafka.errors import ClusterAuthorizationFailedError
    every = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                      ResourcePatternFilter(KpType.ANY, None, ACLResourcePatternType.ANY))
    kp = kp_admin(broker, "alice")
    try:
        created = kp.create_acls([ACL("User:alice", "*", ACLOperation.READ,
                                      ACLPermissionType.ALLOW, ResourcePattern(KpType.TOPIC,
                                                                               "t"))])
        assert created["failed"] == [ClusterAuthorizationFailedError], created
        with pytest.raises(ClusterAuthorizationFailedError):
            kp.describe_acls(every)
        [(_, removed, error)] = kp.delete_acls([every])
        assert (removed, error) == ([], ClusterAuthorizationFailedError)
        with pytest.raises(ClusterAuthorizationFailedError):
            kp.describe_user_scram_credentials()
        # kafka-python reports an alteration's error by its message only (None = success).
        altered = kp.alter_user_scram_credentials(
            [KpUpsertion("erin", KpMechanism.SCRAM_SHA_512, "erin-password")])
        assert list(altered) == ["erin"] and altered["erin"] is not None, altered
    finally:
        kp.close()


def test_super_user_manages_scram_credentials_with_both_admin_clients(acl_broker):
    """As the super user, confluent-kafka and kafka-python create, describe and delete SCRAM
    credentials, and the new users can log in."""
    admin = ck_admin(acl_broker)
    upsert = UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"dave-password")
    admin.alter_user_scram_credentials([upsert])["dave"].result(timeout=TIMEOUT_S)
    info = admin.describe_user_scram_credentials(["dave"])["dave"].result(timeout=TIMEOUT_S)
    assert [(i.mechanism, i.iterations) for i in info.scram_credential_infos] == \
        [(ScramMechanism.SCRAM_SHA_512, 8192)]

    from kafka.admin import ScramMechanism as KpMechanism
    from kafka.admin import UserScramCredentialDeletion as KpDeletion
    from kafka.admin import UserScramCredentialUpsertion as KpUpsertion
    kp = kp_admin(acl_broker)
    try:
        assert kp.alter_user_scram_credentials(
            [KpUpsertion("erin", KpMechanism.SCRAM_SHA_512, "erin-password")]) == {"erin": None}
        users = kp.describe_user_scram_credentials(["dave", "erin"])
        assert users["dave"] == {"error": None, "credential_infos": [
            {"mechanism": KpMechanism.SCRAM_SHA_512, "iterations": 8192}]}, users
        assert users["erin"] == {"error": None, "credential_infos": [
            {"mechanism": KpMechanism.SCRAM_SHA_512, "iterations": 4096}]}, users

        for user, password in (("dave", "dave-password"), ("erin", "erin-password")):
            login = AdminClient({**sasl(acl_broker, "alice"), "sasl.username": user,
                                 "sasl.password": password})
            assert topic_names(login) == set(), user  # Logged in; no ACL, so no topic.

        assert kp.alter_user_scram_credentials(
            [KpDeletion("erin", KpMechanism.SCRAM_SHA_512)]) == {"erin": None}
        deletion = UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_512)
        admin.alter_user_scram_credentials([deletion])["dave"].result(timeout=TIMEOUT_S)
        users = kp.describe_user_scram_credentials(["dave", "erin"])
        assert all(users[u]["error"] and not users[u]["credential_infos"]
                   for u in ("dave", "erin")), users
    finally:
        kp.close()


def test_acls_survive_restarts(acl_broker):
    """ACLs created (and one deleted) before a clean restart, and one more before a SIGKILL,
    are exactly as they were after each start, and are still enforced."""
    admin = ck_admin(acl_broker)
    create_topics(admin, "logs.app", "logs.audit")
    kept = {acl(TOPIC, "logs.", "User:alice", Op.WRITE, PREFIXED),
            deny(TOPIC, "logs.audit", "User:alice", Op.WRITE),
            acl(CLUSTER, CLUSTER_NAME, "User:bob", Op.IDEMPOTENT_WRITE),
            acl(GROUP, "*", "User:*", Op.READ, host="127.0.0.1")}
    dropped = acl(GROUP, "gone", "User:alice", Op.DELETE)
    grant(admin, *kept, dropped)
    revoke(admin, dropped)

    def enforced() -> dict[str, list[int]]:
        log = send(sasl(acl_broker, "alice"), [("logs.app", b"ok"), ("logs.audit", b"no")])
        return outcomes(log)

    expected = {"logs.app": [0], "logs.audit": [TOPIC_AUTHORIZATION_FAILED]}
    acl_broker.restart()
    assert described(ck_admin(acl_broker)) == kept
    assert enforced() == expected
    later = acl(TOPIC, "after", "User:bob", Op.READ)
    grant(ck_admin(acl_broker), later)
    acl_broker.restart(signal.SIGKILL)
    assert described(ck_admin(acl_broker)) == kept | {later}
    assert enforced() == expected
    assert watermarks(acl_broker, "logs.app") == (0, 2)
    assert watermarks(acl_broker, "logs.audit") == (0, 0)


def test_acl_apis_answer_security_disabled_without_authorizer(broker_factory, topic):
    """With --authorizer off, CreateAcls, DescribeAcls and DeleteAcls answer SECURITY_DISABLED
    to both admin clients, and every client may do everything (an anonymous producer creates
    a topic)."""
    broker = broker_factory("--authorizer", "off")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    binding = acl(TOPIC, topic, "User:alice", Op.READ)
    disabled = KafkaError.SECURITY_DISABLED
    assert refusal(admin.create_acls([binding], request_timeout=TIMEOUT_S)[binding]) == disabled
    # (librdkafka drops DescribeAcls' top-level error: kafka-python checks that one below.)
    f = exactly(binding)
    assert refusal(admin.delete_acls([f], request_timeout=TIMEOUT_S)[f]) == disabled

    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, KafkaAdminClient, ResourcePattern,
                             ResourcePatternFilter)
    from kafka.admin import ResourceType as KpType
    from kafka.errors import SecurityDisabledError
    every = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                      ResourcePatternFilter(KpType.ANY, None, ACLResourcePatternType.ANY))
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        created = kp.create_acls([ACL("User:alice", "*", ACLOperation.READ,
                                      ACLPermissionType.ALLOW,
                                      ResourcePattern(KpType.TOPIC, topic))])
        assert created["failed"] == [SecurityDisabledError], created
        with pytest.raises(SecurityDisabledError):
            kp.describe_acls(every)
        [(_, removed, error)] = kp.delete_acls([every])
        assert (removed, error) == ([], SecurityDisabledError)
    finally:
        kp.close()
    send({"bootstrap.servers": broker.bootstrap}, [(topic, b"anyone")]).check(1)


# --------------------------------------------------------------------- other APIs' checks

def test_topic_admin_apis_need_their_operations(acl_broker, topic):
    """CreateTopics needs CREATE (on the topic or the cluster), ListOffsets DESCRIBE,
    DescribeConfigs DESCRIBE_CONFIGS (implied by ALTER_CONFIGS), IncrementalAlterConfigs
    ALTER_CONFIGS, CreatePartitions ALTER, DeleteRecords and DeleteTopics DELETE; each is
    otherwise TOPIC_AUTHORIZATION_FAILED. Broker configs need DESCRIBE_CONFIGS on the cluster
    (CLUSTER_AUTHORIZATION_FAILED)."""
    admin = ck_admin(acl_broker)
    create_topics(admin, topic)
    send(sasl(acl_broker, "admin"), [(topic, f"v{i}".encode()) for i in range(3)]).check(3)
    alice = ck_admin(acl_broker, "alice")
    new_topic = f"new.{topic}"
    tp = TopicPartition(topic, 0)
    config = ConfigResource("topic", topic)
    change = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    broker_config = ConfigResource("broker", "0")

    def create():
        new = NewTopic(new_topic, num_partitions=1, replication_factor=1)
        return alice.create_topics([new], request_timeout=TIMEOUT_S)[new_topic]

    def list_offsets():
        return alice.list_offsets({tp: OffsetSpec.latest()}, request_timeout=TIMEOUT_S)[tp]

    def describe_configs(resource=config):
        return alice.describe_configs([resource], request_timeout=TIMEOUT_S)[resource]

    def alter_configs():
        return alice.incremental_alter_configs([change], request_timeout=TIMEOUT_S)[change]

    def create_partitions():
        return alice.create_partitions([NewPartitions(topic, 2)],
                                       request_timeout=TIMEOUT_S)[topic]

    def delete_records():
        [future] = alice.delete_records([TopicPartition(topic, 0, 2)],
                                        request_timeout=TIMEOUT_S).values()
        return future

    def delete_topic():
        return alice.delete_topics([topic], request_timeout=TIMEOUT_S)[topic]

    # librdkafka looks up the leader in Metadata before ListOffsets and DeleteRecords, which
    # refuses first without DESCRIBE (librdkafka then reports _NOENT); those two APIs' own
    # checks are reached with DESCRIBE below, and ListOffsets' by raw requests in
    # test_offset_apis_need_describe.
    refused = TOPIC_AUTHORIZATION_FAILED
    for name, call in [("CreateTopics", create), ("DescribeConfigs", describe_configs),
                       ("IncrementalAlterConfigs", alter_configs),
                       ("CreatePartitions", create_partitions), ("DeleteTopics", delete_topic)]:
        assert refusal(call()) == refused, f"{name} with no ACL"
    assert refusal(describe_configs(broker_config)) == CLUSTER_AUTHORIZATION_FAILED

    grant(admin, acl(TOPIC, topic, "User:alice", Op.DESCRIBE))
    assert list_offsets().result(timeout=TIMEOUT_S).offset == 3
    for name, call in [("DescribeConfigs", describe_configs),
                       ("CreatePartitions", create_partitions),
                       ("DeleteRecords", delete_records), ("DeleteTopics", delete_topic)]:
        assert refusal(call()) == refused, f"{name} with DESCRIBE only"

    grant(admin, acl(TOPIC, topic, "User:alice", Op.ALTER_CONFIGS))
    alter_configs().result(timeout=TIMEOUT_S)
    assert describe_configs().result(timeout=TIMEOUT_S)["retention.ms"].value == "3600000"

    grant(admin, acl(TOPIC, topic, "User:alice", Op.ALTER))
    create_partitions().result(timeout=TIMEOUT_S)
    assert len(admin.list_topics(timeout=TIMEOUT_S).topics[topic].partitions) == 2

    grant(admin, acl(TOPIC, topic, "User:alice", Op.DELETE))
    assert delete_records().result(timeout=TIMEOUT_S).low_watermark == 2
    delete_topic().result(timeout=TIMEOUT_S)
    wait_until(lambda: topic not in topic_names(admin), TIMEOUT_S, "the topic deleted")

    grant(admin, acl(TOPIC, "new.", "User:alice", Op.CREATE, PREFIXED),
          acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.DESCRIBE_CONFIGS),
          acl(CLUSTER, CLUSTER_NAME, "User:bob", Op.CREATE))
    create().result(timeout=TIMEOUT_S)
    assert describe_configs(broker_config).result(timeout=TIMEOUT_S)
    bob = ck_admin(acl_broker, "bob")
    create_topics(bob, "anything-bob-likes")
    assert {new_topic, "anything-bob-likes"} <= topic_names(admin)


def test_offset_apis_need_describe(acl_broker, topic):
    """ListOffsets (v1) and OffsetForLeaderEpoch (v2), sent by hand on the PLAINTEXT listener
    (User:ANONYMOUS) so that no client's Metadata lookup refuses first, answer
    TOPIC_AUTHORIZATION_FAILED for the partition without DESCRIBE on the topic, and the offsets
    with it."""
    admin = ck_admin(acl_broker)
    create_topics(admin, topic)
    send(sasl(acl_broker, "admin"), [(topic, f"v{i}".encode()) for i in range(3)]).check(3)
    assert raw_list_offsets(acl_broker.port, topic) == (TOPIC_AUTHORIZATION_FAILED, -1)
    assert raw_offset_for_leader_epoch(acl_broker.port, topic)[0] == TOPIC_AUTHORIZATION_FAILED
    grant(admin, acl(TOPIC, topic, "User:ANONYMOUS", Op.DESCRIBE))
    assert raw_list_offsets(acl_broker.port, topic) == (0, 3)
    error, end_offset = raw_offset_for_leader_epoch(acl_broker.port, topic)
    assert (error, end_offset) == (0, 3)


def kafka_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def raw_exchange(port: int, api_key: int, version: int, body: bytes) -> bytes:
    """One request on a fresh PLAINTEXT connection; the response after its correlation id."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendall(raw_request(api_key, version, body, correlation_id=77))
        response = recv_frame(sock)
    assert struct.unpack_from(">i", response)[0] == 77
    return response[4:]


def raw_list_offsets(port: int, topic: str) -> tuple[int, int]:
    """ListOffsets v1 for the latest offset of partition 0: (error code, offset)."""
    body = struct.pack(">ii", -1, 1) + kafka_string(topic) + struct.pack(">iiq", 1, 0, -1)
    response = raw_exchange(port, 2, 1, body)
    (topics,) = struct.unpack_from(">i", response, 0)
    (name_length,) = struct.unpack_from(">h", response, 4)
    at = 6 + name_length
    partitions, partition, error, _timestamp, offset = struct.unpack_from(">iihqq", response, at)
    assert (topics, partitions, partition) == (1, 1, 0)
    return error, offset


def raw_offset_for_leader_epoch(port: int, topic: str) -> tuple[int, int]:
    """OffsetForLeaderEpoch v2 for epoch 0 of partition 0: (error code, end offset)."""
    body = struct.pack(">i", 1) + kafka_string(topic) + struct.pack(">iiii", 1, 0, -1, 0)
    response = raw_exchange(port, 23, 2, body)
    _throttle, topics = struct.unpack_from(">ii", response, 0)
    (name_length,) = struct.unpack_from(">h", response, 8)
    at = 10 + name_length
    partitions, error, partition, _epoch, end_offset = struct.unpack_from(">ihiiq", response, at)
    assert (topics, partitions, partition) == (1, 1, 0)
    return error, end_offset


def test_group_apis_need_group_acls(acl_broker, topic):
    """ListGroups lists only the groups the principal may DESCRIBE unless it may DESCRIBE the
    cluster; DescribeGroups and OffsetFetch need DESCRIBE on the group, DeleteGroups DELETE,
    else GROUP_AUTHORIZATION_FAILED; a group's offsets leave out the topics the principal may
    not DESCRIBE; DescribeGroups reports the allowed operations (KIP-430)."""
    admin = ck_admin(acl_broker)
    create_topics(admin, topic)
    admin_conf = sasl(acl_broker, "admin")
    commit_offset(admin_conf, "g-alpha", topic, 2)
    commit_offset(admin_conf, "g-beta", topic, 1)
    alice = ck_admin(acl_broker, "alice")

    def listed(client) -> set[str]:
        result = client.list_consumer_groups(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
        assert not result.errors, result.errors
        return {g.group_id for g in result.valid}

    def describe(client, group):
        return client.describe_consumer_groups([group], include_authorized_operations=True,
                                               request_timeout=TIMEOUT_S)[group]

    def offsets(group):
        request = [ConsumerGroupTopicPartitions(group)]
        return alice.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group]

    def delete(group):
        return alice.delete_consumer_groups([group], request_timeout=TIMEOUT_S)[group]

    assert {"g-alpha", "g-beta"} <= listed(admin)
    assert listed(alice) == set()
    assert refusal(describe(alice, "g-alpha")) == GROUP_AUTHORIZATION_FAILED
    assert refusal(offsets("g-alpha")) == GROUP_AUTHORIZATION_FAILED
    assert refusal(delete("g-alpha")) == GROUP_AUTHORIZATION_FAILED

    grant(admin, acl(GROUP, "g-alpha", "User:alice", Op.DESCRIBE))
    assert listed(alice) == {"g-alpha"}
    description = describe(alice, "g-alpha").result(timeout=TIMEOUT_S)
    assert description.group_id == "g-alpha"
    assert ops(description.authorized_operations) == {Op.DESCRIBE}
    assert ops(describe(admin, "g-alpha").result(timeout=TIMEOUT_S)
               .authorized_operations) == GROUP_OPERATIONS
    assert not offsets("g-alpha").result(timeout=TIMEOUT_S).topic_partitions
    grant(admin, acl(TOPIC, topic, "User:alice", Op.DESCRIBE))
    [committed] = offsets("g-alpha").result(timeout=TIMEOUT_S).topic_partitions
    assert (committed.topic, committed.partition, committed.offset) == (topic, 0, 2)
    assert refusal(delete("g-alpha")) == GROUP_AUTHORIZATION_FAILED

    grant(admin, acl(GROUP, "g-alpha", "User:alice", Op.DELETE))
    delete("g-alpha").result(timeout=TIMEOUT_S)
    assert "g-alpha" not in listed(admin)
    assert listed(alice) == set()
    grant(admin, acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.DESCRIBE))
    assert listed(alice) == {"g-beta"}
    assert refusal(describe(alice, "g-beta")) == GROUP_AUTHORIZATION_FAILED


def test_topic_authorized_operations_are_reported(acl_broker, topic):
    """KIP-430: Metadata (librdkafka's describe_topics) reports the operations the principal
    may do on each topic, implied ones included; a topic it may not describe is
    TOPIC_AUTHORIZATION_FAILED."""
    admin = ck_admin(acl_broker)
    create_topics(admin, topic, "other")
    grant(admin, acl(TOPIC, topic, "User:alice", Op.READ),
          acl(TOPIC, topic, "User:alice", Op.ALTER_CONFIGS))
    alice = ck_admin(acl_broker, "alice")

    def topic_future(client, name):
        return client.describe_topics(TopicCollection([name]), include_authorized_operations=True,
                                      request_timeout=TIMEOUT_S)[name]

    alice_ops = ops(topic_future(alice, topic).result(timeout=TIMEOUT_S).authorized_operations)
    assert alice_ops == {Op.READ, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS}
    assert ops(topic_future(admin, topic).result(timeout=TIMEOUT_S)
               .authorized_operations) == TOPIC_OPERATIONS
    assert refusal(topic_future(alice, "other")) == TOPIC_AUTHORIZATION_FAILED


def cluster_ops(client: AdminClient) -> set:
    """KIP-430 cluster operations as librdkafka's describe_cluster gets them (Metadata v10)."""
    future = client.describe_cluster(include_authorized_operations=True,
                                     request_timeout=TIMEOUT_S)
    return ops(future.result(timeout=TIMEOUT_S).authorized_operations)


def test_cluster_authorized_operations_in_metadata(acl_broker):
    """KIP-430: Metadata v8-10 reports the principal's cluster operations (librdkafka's
    describe_cluster): all of them for a super user, the allowed ones (implied DESCRIBE
    included) for a user with DESCRIBE on the cluster, and, as Kafka answers, none for a user
    without DESCRIBE on the cluster, whatever else it may do there."""
    admin = ck_admin(acl_broker)
    assert cluster_ops(admin) == CLUSTER_OPERATIONS
    assert cluster_ops(ck_admin(acl_broker, "alice")) == set()
    grant(admin, acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.ALTER))
    assert cluster_ops(ck_admin(acl_broker, "alice")) == {Op.ALTER, Op.DESCRIBE}
    grant(admin, acl(CLUSTER, CLUSTER_NAME, "User:bob", Op.IDEMPOTENT_WRITE))
    assert cluster_ops(ck_admin(acl_broker, "bob")) == set(), \
        "without DESCRIBE on the cluster Kafka reports no cluster operation (0)"


def test_describe_cluster_reports_cluster_operations(acl_broker):
    """KIP-430 through DescribeCluster (kafka-python's describe_cluster): the super user gets
    every cluster operation, a user with ALTER on the cluster ALTER and DESCRIBE; a user
    without DESCRIBE on the cluster is answered too (Kafka does not refuse DescribeCluster, it
    reports no operation)."""
    grant(ck_admin(acl_broker), acl(CLUSTER, CLUSTER_NAME, "User:alice", Op.ALTER))
    expected = {"admin": CLUSTER_OPERATIONS, "alice": {Op.ALTER, Op.DESCRIBE}, "carol": set()}
    for user, operations in expected.items():
        kp = kp_admin(acl_broker, user)
        try:
            cluster = kp.describe_cluster()
        finally:
            kp.close()
        assert cluster["cluster_id"], cluster
        assert set(cluster["authorized_operations"]) == {op.name for op in operations}, \
            (user, cluster)


# ------------------------------------------------------------------------------ SASL_SSL

@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


def test_acls_apply_over_sasl_ssl(broker_factory, pki, topic):
    """Over SASL_SSL the principal is the SASL user as well: alice, with WRITE on the topic,
    produces; bob, without, gets TOPIC_AUTHORIZATION_FAILED; the super user reads alice's
    record."""
    broker = broker_factory(*pki.tls_flags(), *ACL_FLAGS, listeners=("SASL_SSL",),
                            before_start=with_users)

    def tls(user: str) -> dict:
        return sasl(broker, user, listener="SASL_SSL", **{"ssl.ca.location": str(pki.ca.cert)})

    admin = AdminClient(tls("admin"))
    create_topics(admin, topic)
    grant(admin, acl(TOPIC, topic, "User:alice", Op.WRITE))
    send(tls("alice"), [(topic, b"over-tls")]).check(1)
    assert outcomes(send(tls("bob"), [(topic, b"refused")])) == \
        {topic: [TOPIC_AUTHORIZATION_FAILED]}
    assert assigned_read(tls("admin"), topic, 1) == [b"over-tls"]
