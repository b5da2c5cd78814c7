"""Idempotent producers through a proxy that breaks connections mid-request.

Each client produces numbered messages with its idempotence on, through `ChaosProxy`, which
drops connections after forwarding a Produce request (swallowing the broker's response, or
cutting before it). The clients retry; every message must then be in the log exactly once and
in send order per partition, which only holds if the broker answers retried batches with their
original offsets instead of appending them again.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from chaos_proxy import ChaosProxy
from clients import (CLIENT_TIMEOUT_S, DeliveryLog, ck_consume, ck_consumer, ck_flush,
                     ck_producer, kp_producer)

PARTITIONS = 2


def _seed() -> int:
    seed = int(os.environ.get("CORELOG_TEST_SEED", random.randrange(1 << 30)))
    print(f"chaos proxy seed {seed} (set CORELOG_TEST_SEED to repeat)")
    return seed


@pytest.fixture
def proxied(broker_factory):
    """A broker that advertises a chaos proxy in front of it: (broker, proxy). The proxy
    comes first, so that the broker can advertise its port; it learns the broker's port after."""
    proxy = ChaosProxy(target_port=0, seed=_seed())
    broker = broker_factory("--advertised-listener", proxy.address)
    proxy.target_port = broker.port
    yield broker, proxy
    proxy.close()


def _create_topic(bootstrap: str, topic: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[
        topic].result(timeout=CLIENT_TIMEOUT_S)


def _check_exactly_once(bootstrap: str, topic: str, sent: dict[int, list[bytes]],
                        proxy: ChaosProxy):
    """Every partition holds exactly the values sent to it, once each, in send order."""
    proxy.enabled = False
    print(f"faults injected: {proxy.faults}")
    assert "swallow" in proxy.faults, "no response was swallowed: the test proved nothing"
    for partition, values in sent.items():
        records = ck_consume(bootstrap, topic, len(values), partition=partition)
        got = [r.value for r in records]
        first_difference = next((i for i, (a, b) in enumerate(zip(got, values)) if a != b), None)
        assert got == values, (f"partition {partition}: {len(got)} records, faults "
                               f"{proxy.faults}; first difference at {first_difference}")
        assert [r.offset for r in records] == list(range(len(values)))
    # Nothing beyond: a duplicate appended at the end would show up as a higher watermark.
    consumer = ck_consumer(bootstrap)
    try:
        for partition, values in sent.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=CLIENT_TIMEOUT_S)
            assert (low, high) == (0, len(values)), f"partition {partition} watermarks"
    finally:
        consumer.close()


def test_confluent_idempotent_producer_exactly_once(proxied, topic):
    """librdkafka with enable.idempotence=true: retries after dropped connections are
    deduplicated and order is kept."""
    broker, proxy = proxied
    _create_topic(broker.bootstrap, topic)
    producer = ck_producer(proxy.address, **{
        "enable.idempotence": True, "linger.ms": 2, "batch.num.messages": 20,
        "message.timeout.ms": 60_000, "retry.backoff.ms": 20})
    log = DeliveryLog()
    sent: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    count = 400
    for i in range(count):
        partition = i % PARTITIONS
        value = f"ck-{partition}-{i:05d}".encode()
        sent[partition].append(value)
        producer.produce(topic, partition=partition, value=value, on_delivery=log)
        producer.poll(0)
    ck_flush(producer, 90)
    log.check(count)
    _check_exactly_once(broker.bootstrap, topic, sent, proxy)


def test_kafka_python_default_producer_exactly_once(proxied, topic):
    """kafka-python 3 with its defaults (idempotent): retries after dropped connections are
    deduplicated and order is kept."""
    broker, proxy = proxied
    _create_topic(broker.bootstrap, topic)
    producer = kp_producer(proxy.address, linger_ms=2, batch_size=2048,
                           retry_backoff_ms=20, request_timeout_ms=10_000)
    assert producer.config["enable_idempotence"], "kafka-python 3 is idempotent by default"
    sent: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    futures = []
    try:
        for i in range(300):
            partition = i % PARTITIONS
            value = f"kp-{partition}-{i:05d}".encode() + b"." * 100
            sent[partition].append(value)
            futures.append(producer.send(topic, value=value, partition=partition))
        producer.flush(timeout=90)
        for future in futures:
            future.get(timeout=CLIENT_TIMEOUT_S)
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)
    _check_exactly_once(broker.bootstrap, topic, sent, proxy)


def test_aiokafka_idempotent_producer_exactly_once(proxied, topic):
    """aiokafka with enable_idempotence=True (InitProducerId v0): retries after dropped
    connections are deduplicated and order is kept."""
    from aiokafka import AIOKafkaProducer
    broker, proxy = proxied
    _create_topic(broker.bootstrap, topic)
    sent: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=proxy.address, enable_idempotence=True,
                                    linger_ms=2, max_batch_size=2048, retry_backoff_ms=20,
                                    request_timeout_ms=10_000)
        await producer.start()
        try:
            # Waves of 20, so that the run takes many Produce requests for the proxy to break.
            for wave in range(10):
                futures = []
                for i in range(wave * 20, wave * 20 + 20):
                    partition = i % PARTITIONS
                    value = f"aio-{partition}-{i:05d}".encode() + b"." * 100
                    sent[partition].append(value)
                    futures.append(await producer.send(topic, value=value, partition=partition))
                async with asyncio.timeout(60):
                    await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(produce())
    _check_exactly_once(broker.bootstrap, topic, sent, proxy)
