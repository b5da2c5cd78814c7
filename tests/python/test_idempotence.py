"""Idempotent producers through a proxy that breaks connections mid-request.

Each client produces numbered messages with its idempotence on, through `ChaosProxy`, which
drops connections after forwarding a Produce request (swallowing the broker's response, or
cutting before it): to a single node, and to a 3-node cluster with a proxy before each node. The clients retry; every message must then be in the log exactly once and
in send order per partition, which only holds if the broker answers retried batches with their
original offsets instead of appending them again.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from chaos_proxy import ChaosProxy
from clients import (CLIENT_TIMEOUT_S, DeliveryLog, ck_consumer, ck_flush, ck_producer,
                     ck_record, first_offset, kp_producer)
from cluster_nodes import NODES, start_cluster, wait_formed

PARTITIONS = 2


def _seed() -> int:
    seed = int(os.environ.get("CORELOG_TEST_SEED", random.randrange(1 << 30)))
    print(f"chaos proxy seed {seed} (set CORELOG_TEST_SEED to repeat)")
    return seed


class Proxies:
    """One chaos proxy per node, used as one: clients bootstrap from all of them."""

    def __init__(self, proxies: list[ChaosProxy]):
        self.proxies = proxies

    @property
    def address(self) -> str:
        return ",".join(proxy.address for proxy in self.proxies)

    @property
    def faults(self) -> list[str]:
        return [fault for proxy in self.proxies for fault in proxy.faults]

    def disable(self) -> None:
        for proxy in self.proxies:
            proxy.enabled = False

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()


@pytest.fixture
def proxied(broker_factory, topology):
    """A broker, or node 1 of a 3-node cluster, each node advertising a chaos proxy in front
    of it: (broker, proxies). A proxy comes first, so that its node can advertise its port;
    it learns the node's port after."""
    seed = _seed()
    if topology == "single":
        proxy = ChaosProxy(target_port=0, seed=seed)
        broker = broker_factory("--advertised-listener", proxy.address)
        proxy.target_port = broker.port
        proxies = Proxies([proxy])
    else:
        by_node = {node: ChaosProxy(target_port=0, seed=seed + node) for node in NODES}
        nodes = start_cluster(broker_factory, extra=("--default-replication-factor", "3"),
                              per_node={node: ("--advertised-listener", proxy.address)
                                        for node, proxy in by_node.items()})
        for node, proxy in by_node.items():
            proxy.target_port = nodes[node].port
        wait_formed(nodes)
        broker = nodes[1]
        proxies = Proxies(list(by_node.values()))
    yield broker, proxies
    proxies.close()


def _create_topic(bootstrap: str, topic: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])[topic].result(
        timeout=CLIENT_TIMEOUT_S)


def _read_to_end(bootstrap: str, topic: str, partition: int) -> tuple[list, int]:
    """Every record of `partition` below its high watermark, and the high watermark: the end
    is where the client's fetch position reaches it (a replicated log's control batches are
    never delivered)."""
    consumer = ck_consumer(bootstrap, **{"enable.partition.eof": True})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                 timeout=CLIENT_TIMEOUT_S)
        consumer.assign([TopicPartition(topic, partition, 0)])
        records = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is None:
                records.append(ck_record(message))
            elif message.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"partition {partition}: {message.error()}")
            elif message.offset() >= high:
                return records, high
        raise AssertionError(f"partition {partition} not read to {high}: {len(records)} "
                             f"records")
    finally:
        consumer.close()


def _check_exactly_once(broker, topic: str, sent: dict[int, list[bytes]], proxies: Proxies):
    """Every partition holds exactly the values sent to it, once each, in send order, and
    nothing else up to its high watermark."""
    proxies.disable()
    print(f"faults injected: {proxies.faults}")
    assert "swallow" in proxies.faults, "no response was swallowed: the test proved nothing"
    for partition, values in sent.items():
        records, high = _read_to_end(broker.bootstrap, topic, partition)
        got = [r.value for r in records]
        first_difference = next((i for i, (a, b) in enumerate(zip(got, values)) if a != b), None)
        assert got == values, (f"partition {partition}: {len(got)} records, faults "
                               f"{proxies.faults}; first difference at {first_difference}")
        offsets = [r.offset for r in records]
        first = first_offset(broker, offsets[0])
        if broker.node_id == 0:
            assert (offsets, high) == (list(range(len(values))), len(values))
        else:  # A replicated log may hold control batches between records.
            assert offsets == sorted(set(offsets)) and first >= 1 and high > offsets[-1]


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
    _check_exactly_once(broker, topic, sent, proxy)


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
    _check_exactly_once(broker, topic, sent, proxy)


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
    _check_exactly_once(broker, topic, sent, proxy)
