"""`corelog acl add|list|remove` against a broker with the authorizer on: what it creates is what
Kafka's admin protocol lists and what the broker enforces; filters, prefixes, denials, hosts and
JSON; the errors a Kafka admin tool reports (bad operation, unauthorized caller, no authorizer).
"""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from clients import ck_flush, ck_producer
from security_setup import corelog, create_user_offline

TIMEOUT_S = 30
ADMIN_PASSWORD = "admin-secret-314"
BOB_PASSWORD = "bob-secret-2718"


def with_users(data_dir):
    create_user_offline(data_dir, "admin", ADMIN_PASSWORD)
    create_user_offline(data_dir, "bob", BOB_PASSWORD)


@pytest.fixture
def acl_broker(broker_factory):
    """A SASL_PLAINTEXT listener, users admin (super user) and bob, the authorizer on."""
    return broker_factory("--sasl-mechanisms", "SCRAM-SHA-512", "--authorizer", "on",
                          "--super-users", "User:admin", listeners=("SASL_PLAINTEXT",),
                          before_start=with_users)


def as_user(broker, user: str, password: str) -> list[str]:
    return ["--brokers", broker.address("SASL_PLAINTEXT"), "--security-protocol",
            "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", user,
            "--sasl-password", password]


def acl(broker, *args: str, user: str = "admin", password: str = ADMIN_PASSWORD,
        check: bool = True):
    return corelog("acl", *args, *as_user(broker, user, password), check=check)


def listed(broker, *filters: str) -> list[dict]:
    return json.loads(acl(broker, "list", "--json", *filters).stdout)


def bob_produce_error(broker, topic: str) -> KafkaError | None:
    """Produce one message as bob; the delivery error, or None when it was written."""
    producer = ck_producer(broker.address("SASL_PLAINTEXT"), **{
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "bob", "sasl.password": BOB_PASSWORD,
        "message.timeout.ms": 15000})
    errors = []
    producer.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    ck_flush(producer, TIMEOUT_S)
    assert len(errors) == 1
    return errors[0]


def create_topic(broker, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.address("SASL_PLAINTEXT"),
                         "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin",
                         "sasl.password": ADMIN_PASSWORD})
    from confluent_kafka.admin import NewTopic
    for future in admin.create_topics([NewTopic(name, 1)]).values():
        future.result(timeout=TIMEOUT_S)


def test_add_list_remove_round_trip_and_enforcement(acl_broker):
    """`acl add` creates one ACL per operation, `list` shows them (table and JSON, with filters),
    the broker enforces them, and `remove` deletes what its filter matches and says so."""
    create_topic(acl_broker, "orders")
    create_topic(acl_broker, "app.events")
    err = bob_produce_error(acl_broker, "orders")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    out = acl(acl_broker, "add", "--principal", "User:bob", "--operation", "write,describe",
              "--topic", "orders").stdout
    assert out.count("created:") == 2, out
    acl(acl_broker, "add", "--principal", "User:bob", "--operation", "write", "--topic", "app.",
        "--prefixed")
    acl(acl_broker, "add", "--principal", "User:*", "--deny", "--host", "10.1.2.3",
        "--operation", "all", "--group", "g1")
    assert bob_produce_error(acl_broker, "orders") is None
    assert bob_produce_error(acl_broker, "app.events") is None

    everything = listed(acl_broker)
    assert len(everything) == 4, everything
    assert {"resource_type": "TOPIC", "name": "app.", "pattern_type": "PREFIXED",
            "principal": "User:bob", "host": "*", "operation": "WRITE",
            "permission": "ALLOW"} in everything
    assert {"resource_type": "GROUP", "name": "g1", "pattern_type": "LITERAL",
            "principal": "User:*", "host": "10.1.2.3", "operation": "ALL",
            "permission": "DENY"} in everything
    # MATCH finds every ACL that applies to a name: the literal one and the prefix.
    applying = listed(acl_broker, "--topic", "app.events", "--pattern", "match")
    assert [(a["name"], a["operation"]) for a in applying] == [("app.", "WRITE")], applying
    assert len(listed(acl_broker, "--topic", "orders")) == 2
    assert len(listed(acl_broker, "--permission", "deny")) == 1
    table = acl(acl_broker, "list").stdout
    assert "RESOURCE-TYPE" in table and "PREFIXED" in table and "10.1.2.3" in table

    out = acl(acl_broker, "remove", "--topic", "orders", "--operation", "write").stdout
    assert out.count("removed:") == 1 and "WRITE" in out, out
    err = bob_produce_error(acl_broker, "orders")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    out = acl(acl_broker, "remove", "--topic", "nothing-here").stdout
    assert "no ACL matched" in out
    refused = acl(acl_broker, "remove", check=False)
    assert refused.returncode != 0 and "--all" in refused.stderr
    out = acl(acl_broker, "remove", "--all").stdout
    assert out.count("removed:") == 3, out
    assert listed(acl_broker) == []


def test_acl_errors_as_a_kafka_admin_tool_reports_them(acl_broker, broker_factory):
    """A bad operation or a CLUSTER resource with a name is refused before anything is sent; a
    caller without ALTER on the cluster gets ClusterAuthorizationFailed; a broker without an
    authorizer answers SecurityDisabled."""
    bad = acl(acl_broker, "add", "--principal", "User:bob", "--operation", "fly", "--topic", "t",
              check=False)
    assert bad.returncode != 0 and "not an operation" in bad.stderr
    bad = acl(acl_broker, "add", "--principal", "bob", "--operation", "read", "--topic", "t",
              check=False)
    assert bad.returncode != 0 and "User:name" in bad.stderr
    denied = acl(acl_broker, "add", "--principal", "User:bob", "--operation", "alter",
                 "--cluster", user="bob", password=BOB_PASSWORD, check=False)
    assert denied.returncode != 0 and "ClusterAuthorizationFailed" in denied.stderr, \
        denied.stderr
    denied = acl(acl_broker, "list", user="bob", password=BOB_PASSWORD, check=False)
    assert denied.returncode != 0 and "ClusterAuthorizationFailed" in denied.stderr

    # Given DESCRIBE on the cluster, bob may list (but still not add).
    acl(acl_broker, "add", "--principal", "User:bob", "--operation", "describe", "--cluster")
    assert len(json.loads(acl(acl_broker, "list", "--json", user="bob",
                              password=BOB_PASSWORD).stdout)) == 1

    plain = broker_factory()
    off = corelog("acl", "list", "--brokers", plain.bootstrap, check=False)
    assert off.returncode != 0 and "SecurityDisabled" in off.stderr, off.stderr
    # kafka-python's admin client reports the same refusal (librdkafka's describe_acls
    # drops the top-level error and returns an empty list).
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, KafkaAdminClient,
                             ResourcePatternFilter, ACLResourcePatternType, ResourceType)
    from kafka.errors import SecurityDisabledError
    admin = KafkaAdminClient(bootstrap_servers=plain.bootstrap)
    try:
        any_filter = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                               permission_type=ACLPermissionType.ANY,
                               resource_pattern=ResourcePatternFilter(
                                   ResourceType.ANY, None, ACLResourcePatternType.ANY))
        with pytest.raises(SecurityDisabledError):
            admin.describe_acls(any_filter)
    finally:
        admin.close()
