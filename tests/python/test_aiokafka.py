"""aiokafka producing to and consuming from corelog (manual assignment, no group)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clients import first_offset

BASE_TS_MS = 1_700_000_000_000
TIMEOUT_S = 20


async def _round_trip(bootstrap: str, topic: str, count: int):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=TIMEOUT_S * 1000)
    await producer.start()
    try:
        offsets = []
        for i in range(count):
            md = await producer.send_and_wait(
                topic, value=f"v{i}".encode(), key=f"k{i}".encode(),
                headers=[("h", f"{i}".encode())], timestamp_ms=BASE_TS_MS + i)
            offsets.append(md.offset)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="none",
                                request_timeout_ms=TIMEOUT_S * 1000)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        records = []
        async with asyncio.timeout(TIMEOUT_S):
            while len(records) < count:
                batch = await consumer.getmany(tp, timeout_ms=500)
                records.extend(batch.get(tp, []))
    finally:
        await consumer.stop()
    return offsets, records


def test_aiokafka_produce_consume_round_trip(broker, topic):
    """aiokafka send_and_wait gets consecutive offsets; assign+seek reads everything back."""
    count = 30
    offsets, records = asyncio.run(_round_trip(broker.bootstrap, topic, count))
    base = first_offset(broker, offsets[0])
    assert offsets == list(range(base, base + count))
    assert [r.offset for r in records] == list(range(base, base + count))
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(count)]
    assert [r.key for r in records] == [f"k{i}".encode() for i in range(count)]
    assert [list(r.headers) for r in records] == [[("h", f"{i}".encode())] for i in range(count)]
    assert [r.timestamp for r in records] == [BASE_TS_MS + i for i in range(count)]
