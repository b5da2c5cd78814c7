"""Transactions with real clients: confluent-kafka (librdkafka), kafka-python, aiokafka and
kafkajs producers commit and abort; read_committed consumers see each committed record once
and no aborted one; offsets committed inside a transaction (a consume-transform-produce
pipeline) become the group's only when it commits; a second instance of a transactional id
fences the first (PRODUCER_FENCED); and a pipeline killed with SIGKILL at random moments, it
and the broker in turn, ends with every input record in the output exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from clients import CLIENT_TIMEOUT_S, ck_consumer, ck_producer

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE.parent / "node"


def ck_transactional(bootstrap: str, transactional_id: str, **conf) -> Producer:
    producer = ck_producer(bootstrap, **{"transactional.id": transactional_id, **conf})
    producer.init_transactions(CLIENT_TIMEOUT_S)
    return producer


def read_values(bootstrap: str, topic: str, partitions: int, isolation: str,
                until: str = "end") -> list[str]:
    """Every value a consumer at `isolation` reads from `topic` until each partition has
    given the value `until`, which the test writes last, outside any transaction."""
    consumer = ck_consumer(bootstrap, **{"isolation.level": isolation})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        values: list[str] = []
        ended: set[int] = set()
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(ended) < partitions:
            assert time.monotonic() < deadline, f"read {values} so far"
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            value = msg.value().decode()
            if value == until:
                ended.add(msg.partition())
            else:
                values.append(value)
        return values
    finally:
        consumer.close()


def write_ends(bootstrap: str, topic: str, partitions: int) -> None:
    producer = ck_producer(bootstrap)
    for p in range(partitions):
        producer.produce(topic, value=b"end", partition=p)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def create(broker, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions)])[topic].result(CLIENT_TIMEOUT_S)


def test_confluent_commit_and_abort(broker, topic):
    """librdkafka commits one transaction over three partitions and aborts the next: its
    read_committed consumer reads exactly the committed records, read_uncommitted all."""
    create(broker, topic, 3)
    producer = ck_transactional(broker.bootstrap, "ck-commit-abort")
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=f"c{i}".encode(), partition=i % 3)
    producer.commit_transaction(CLIENT_TIMEOUT_S)
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=f"a{i}".encode(), partition=i % 3)
    producer.flush(CLIENT_TIMEOUT_S)
    producer.abort_transaction(CLIENT_TIMEOUT_S)
    write_ends(broker.bootstrap, topic, 3)
    committed = read_values(broker.bootstrap, topic, 3, "read_committed")
    assert sorted(committed) == sorted(f"c{i}" for i in range(30))
    everything = read_values(broker.bootstrap, topic, 3, "read_uncommitted")
    assert sorted(everything) == sorted([f"c{i}" for i in range(30)] + [f"a{i}" for i in range(30)])


def test_confluent_zombie_is_fenced(broker, topic):
    """A second producer with the same transactional id fences the first: the zombie's
    commit fails with a fatal fencing error and none of its records become visible."""
    create(broker, topic, 1)
    zombie = ck_transactional(broker.bootstrap, "ck-zombie")
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie", partition=0)
    zombie.flush(CLIENT_TIMEOUT_S)
    successor = ck_transactional(broker.bootstrap, "ck-zombie")
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(CLIENT_TIMEOUT_S)
    error = raised.value.args[0]
    assert error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                             KafkaError.INVALID_PRODUCER_EPOCH), error
    successor.begin_transaction()
    successor.produce(topic, value=b"successor", partition=0)
    successor.commit_transaction(CLIENT_TIMEOUT_S)
    write_ends(broker.bootstrap, topic, 1)
    assert read_values(broker.bootstrap, topic, 1, "read_committed") == ["successor"]


def test_confluent_offsets_commit_with_the_transaction(broker, topic, topology):
    """A consume-transform-produce step: offsets sent with an aborted transaction are not
    the group's; with a committed one they are, and (on one node) read back after SIGKILL
    and a restart."""
    source, sink = f"{topic}-in", f"{topic}-out"
    create(broker, source, 2)
    create(broker, sink, 2)
    plain = ck_producer(broker.bootstrap)
    for i in range(20):
        plain.produce(source, value=f"{i}".encode(), partition=i % 2)
    assert plain.flush(CLIENT_TIMEOUT_S) == 0
    group = f"{topic}-group"
    consumer = ck_consumer(broker.bootstrap, **{"group.id": group, "enable.auto.commit": False,
                                                "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(source, p, 0) for p in range(2)])
    producer = ck_transactional(broker.bootstrap, "ck-pipeline")
    seen = 0
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while seen < 20:
        assert time.monotonic() < deadline
        seen += len([m for m in consumer.consume(20, 0.5) if not m.error()])
    positions = consumer.position([TopicPartition(source, p) for p in range(2)])
    # Ten records each, past a replicated partition's leader entry on a cluster.
    ends = [tp.offset for tp in positions]
    assert all(end >= 10 for end in ends), ends
    metadata = consumer.consumer_group_metadata()

    producer.begin_transaction()
    producer.produce(sink, value=b"aborted", partition=0)
    producer.send_offsets_to_transaction(positions, metadata, CLIENT_TIMEOUT_S)
    producer.abort_transaction(CLIENT_TIMEOUT_S)
    committed = consumer.committed([TopicPartition(source, p) for p in range(2)], CLIENT_TIMEOUT_S)
    assert [tp.offset for tp in committed] == [-1001, -1001], "aborted offsets are not the group's"

    producer.begin_transaction()
    producer.produce(sink, value=b"committed", partition=0)
    producer.send_offsets_to_transaction(positions, metadata, CLIENT_TIMEOUT_S)
    producer.commit_transaction(CLIENT_TIMEOUT_S)
    committed = consumer.committed([TopicPartition(source, p) for p in range(2)], CLIENT_TIMEOUT_S)
    assert [tp.offset for tp in committed] == ends
    consumer.close()
    if topology == "single":
        broker.restart(signal.SIGKILL)
    again = ck_consumer(broker.bootstrap, **{"group.id": group})
    try:
        committed = again.committed([TopicPartition(source, p) for p in range(2)], CLIENT_TIMEOUT_S)
        assert [tp.offset for tp in committed] == ends
    finally:
        again.close()
    write_ends(broker.bootstrap, sink, 2)
    assert read_values(broker.bootstrap, sink, 2, "read_committed") == ["committed"]


def test_kafka_python_commit_and_abort(broker, topic):
    """kafka-python 3.0's transactional producer commits and aborts; its read_committed
    consumer reads only what was committed."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    create(broker, topic, 2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kp-txn",
                             request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(10):
        producer.send(topic, value=f"c{i}".encode(), partition=i % 2)
    producer.commit_transaction()
    producer.begin_transaction()
    for i in range(10):
        producer.send(topic, value=f"a{i}".encode(), partition=i % 2)
    producer.flush()
    producer.abort_transaction()
    producer.close()
    write_ends(broker.bootstrap, topic, 2)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False, consumer_timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
    consumer.assign([KTP(topic, 0), KTP(topic, 1)])
    consumer.seek_to_beginning()
    values, ended = [], set()
    for record in consumer:
        if record.value == b"end":
            ended.add(record.partition)
            if len(ended) == 2:
                break
        else:
            values.append(record.value.decode())
    consumer.close()
    assert sorted(values) == sorted(f"c{i}" for i in range(10))


def test_aiokafka_commit_and_abort(broker, topic):
    """aiokafka's transactional producer commits and aborts (with offsets of a group sent in
    the committed transaction); its read_committed consumer reads only what was committed."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as ATP
    create(broker, topic, 2)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="aio-txn",
                                    request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(10):
                    await producer.send(topic, value=f"c{i}".encode(), partition=i % 2)
                await producer.send_offsets_to_transaction({ATP(topic, 0): 5}, "aio-group")
            try:
                async with producer.transaction():
                    for i in range(10):
                        await producer.send(topic, value=f"a{i}".encode(), partition=i % 2)
                    raise RuntimeError("abort")
            except RuntimeError:
                pass
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="aio-group",
                                    isolation_level="read_committed", enable_auto_commit=False)
        await consumer.start()
        try:
            committed = await consumer.committed(ATP(topic, 0))
        finally:
            await consumer.stop()
        return committed

    assert asyncio.run(run()) == 5
    write_ends(broker.bootstrap, topic, 2)
    values = read_values(broker.bootstrap, topic, 2, "read_committed")
    assert sorted(values) == sorted(f"c{i}" for i in range(10))


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir(),
                    reason="node and kafkajs are needed (scripts/test.sh installs kafkajs)")
def test_kafkajs_commit_and_abort(broker, topic):
    """kafkajs's transactional producer commits one transaction and aborts the next (with
    offsets sent in the committed one); read_committed reads only the committed records."""
    create(broker, topic, 2)
    config = {"brokers": [broker.bootstrap], "topic": topic, "count": 10,
              "transactionalId": "kafkajs-txn", "group": f"{topic}-group"}
    proc = subprocess.run(["node", str(NODE_DIR / "transactions.js"), json.dumps(config)],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=90)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"], f"kafkajs failed: {result.get('error')}\n{proc.stderr}"
    assert result["committedOffset"] == "10"
    write_ends(broker.bootstrap, topic, 2)
    values = read_values(broker.bootstrap, topic, 2, "read_committed")
    assert sorted(values) == sorted(f"c{i}" for i in range(10))


def run_pipeline(bootstrap: str, source: str, sink: str, group: str) -> subprocess.Popen:
    args = [sys.executable, str(HERE / "eos_pipeline.py"), bootstrap, source, sink, group,
            "eos-pipeline", "10", "15"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.single_node("SIGKILLs its broker")
def test_exactly_once_pipeline_survives_sigkill(broker, topic):
    """A read_committed consume-transform-produce pipeline (transactional output, offsets in
    the transaction) is SIGKILLed at random moments, and so is the broker, in turn; a last
    instance finishes the input. Every input record is in the output exactly once."""
    source, sink, group = f"{topic}-in", f"{topic}-out", f"{topic}-group"
    create(broker, source, 2)
    create(broker, sink, 2)
    total = 3000
    plain = ck_producer(broker.bootstrap)
    for i in range(total):
        plain.produce(source, value=f"{i}".encode(), partition=i % 2)
    assert plain.flush(CLIENT_TIMEOUT_S) == 0
    seed = int(os.environ.get("EOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    for round_ in range(6):
        pipeline = run_pipeline(broker.bootstrap, source, sink, group)
        time.sleep(rng.uniform(0.3, 1.2))
        if round_ % 2:
            broker.restart(signal.SIGKILL)
            time.sleep(rng.uniform(0.1, 0.5))
        pipeline.kill()
        _, stderr = pipeline.communicate(timeout=30)
        # Killed (-9), or ended by itself: finished (0) or a client error after the broker
        # went away (3). Anything else is a failure of the pipeline's own logic.
        assert pipeline.returncode in (-signal.SIGKILL, 0, 3), (seed, pipeline.returncode, stderr)
    last = run_pipeline(broker.bootstrap, source, sink, group)
    _, stderr = last.communicate(timeout=180)
    assert last.returncode == 0, (seed, stderr)
    write_ends(broker.bootstrap, sink, 2)
    output = read_values(broker.bootstrap, sink, 2, "read_committed")
    duplicates = {v for v in output if output.count(v) > 1}
    assert not duplicates, (seed, sorted(duplicates)[:10])
    assert sorted(output, key=int) == [f"{i}" for i in range(total)], seed
