"""Kafka 4.1's protocol versions asked of corelog directly, where no client in the suite
sends what is asked: topics named by id in Produce and Fetch v13 and later (KIP-516).
kafka-python 3 produces and fetches with those versions in all of its tests."""

from __future__ import annotations

import uuid

from clients import ck_consume, ck_flush, ck_producer, first_offset
from corelog_broker import fetch_nothing, produce_nothing, topic_id_on_disk

UNKNOWN_TOPIC_ID = 100


def test_topics_are_named_by_id_from_produce_and_fetch_v13(broker, topic):
    """A fetch by a topic's id (v13, v14, v16) is served; an id this broker does not know is
    UNKNOWN_TOPIC_ID in Produce v13 and in Fetch, and creates nothing."""
    producer = ck_producer(broker.bootstrap)
    delivered = []
    producer.produce(topic, b"one", on_delivery=lambda err, msg: delivered.append((err, msg)))
    ck_flush(producer)
    [(error, message)] = delivered
    assert error is None, error
    first_offset(broker, message.offset())
    known = topic_id_on_disk(broker, topic)
    for version in (13, 14, 16):
        fetched = fetch_nothing(broker.host, broker.port, known, 0, version=version)
        assert fetched == {"error": 0, "current_leader": None, "endpoints": {}}, (version, fetched)

    unknown = uuid.uuid4()
    for version in (13, 14, 16):
        fetched = fetch_nothing(broker.host, broker.port, unknown, 0, version=version)
        assert fetched["error"] == UNKNOWN_TOPIC_ID, (version, fetched)
    produced = produce_nothing(broker.host, broker.port, unknown, 0, version=13)
    assert produced["error"] == UNKNOWN_TOPIC_ID, produced
    assert [r.value for r in ck_consume(broker.bootstrap, topic, 1)] == [b"one"]
