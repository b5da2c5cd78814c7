"""Start, stop and restart a real `corelog serve` process for the Python test suite.

A `Broker` owns one data directory and one TCP port for its whole life, so a restart finds the
same log on disk and clients can keep the same bootstrap address. Readiness is judged the way a
client judges it: the port accepts a TCP connection and answers a Kafka ApiVersions request.
The broker's stderr goes to a file (never a pipe, which could fill and block the broker) so that
a failing test can show what the broker said.

A broker that exits without being told to has failed, whatever its exit code: every stop, kill
and restart first checks how the process is doing, and raises `BrokerError` with the exit
status and the stderr tail if it already ended by itself, rather than restarting over it.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import struct
import subprocess
import time
import uuid
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
API_VERSIONS_KEY = 18


def corelog_bin() -> str:
    """The binary under test: $CORELOG_BIN, else target/release/corelog of this checkout."""
    path = os.environ.get("CORELOG_BIN", str(REPO_ROOT / "target" / "release" / "corelog"))
    return str(Path(path).resolve())


# Ports handed out by `free_port`: below the kernel's ephemeral range (32768 up), so that no
# client connection's local port takes a broker's port between two of its starts, and apart
# from the Rust harness's 20000-31999.
_PORT_FIRST = 10_000
_PORT_COUNT = 10_000
_ports_given: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now and was not given before in this process.

    A broker restarted on the same port must find it free: a port the kernel picked from its
    ephemeral range could meanwhile be the local port of some client's connection.
    """
    start = os.getpid() ^ time.time_ns()
    for attempt in range(_PORT_COUNT):
        port = _PORT_FIRST + (start + attempt * 7_919) % _PORT_COUNT
        if port in _ports_given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_FIRST}..{_PORT_FIRST + _PORT_COUNT}")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def api_versions_v0(host: str, port: int, timeout_s: float = 2.0) -> dict[int, tuple[int, int]]:
    """Send ApiVersions v0 and return {api_key: (min_version, max_version)}.

    Raises on a connection error, a short or mismatched response, or a non-zero error code.
    """
    correlation_id = 0x5EED
    client_id = b"corelog-pytest"
    header = struct.pack(">hhih", API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(header)) + header)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        body = _recv_exact(sock, size)
    got_correlation_id, error_code, count = struct.unpack_from(">ihi", body, 0)
    if got_correlation_id != correlation_id:
        raise ValueError(f"correlation id {got_correlation_id} != {correlation_id}")
    if error_code != 0:
        raise ValueError(f"ApiVersions error code {error_code}")
    ranges = {}
    for i in range(count):
        key, lo, hi = struct.unpack_from(">hhh", body, 10 + 6 * i)
        ranges[key] = (lo, hi)
    return ranges


METADATA_KEY = 3


def _string(body: bytes, at: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", body, at)
    at += 2
    if length < 0:
        return None, at
    return body[at:at + length].decode(), at + length


def metadata_v1(host: str, port: int, timeout_s: float = 2.0) -> dict:
    """Ask exactly this broker for Metadata v1 (every topic): {"brokers": {id: (host, port)},
    "controller": id, "topics": {name: {partition: leader}}, "replicas" and "in_sync": {name:
    {partition: [node, ...]}}}. Clients may ask any broker they know; a test of what each node says asks it
    directly."""
    correlation_id = 0x3E7A
    client_id = b"corelog-pytest"
    header = struct.pack(">hhih", METADATA_KEY, 1, correlation_id, len(client_id)) + client_id
    request = header + struct.pack(">i", -1)  # topics: null, every topic
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        body = _recv_exact(sock, size)
    (got, count) = struct.unpack_from(">ii", body, 0)
    if got != correlation_id:
        raise ValueError(f"correlation id {got} != {correlation_id}")
    at = 8
    brokers = {}
    for _ in range(count):
        (node,) = struct.unpack_from(">i", body, at)
        broker_host, at = _string(body, at + 4)
        (broker_port,) = struct.unpack_from(">i", body, at)
        _rack, at = _string(body, at + 4)
        brokers[node] = (broker_host, broker_port)
    (controller, count) = struct.unpack_from(">ii", body, at)
    at += 8
    topics = {}
    replica_sets = {}
    in_sync_sets = {}
    for _ in range(count):
        name, at = _string(body, at + 2)
        at += 1  # is_internal
        (partitions,) = struct.unpack_from(">i", body, at)
        at += 4
        leaders = {}
        nodes = {}
        in_sync = {}
        for _ in range(partitions):
            (_error, index, leader, replicas) = struct.unpack_from(">hiii", body, at)
            nodes[index] = list(struct.unpack_from(f">{replicas}i", body, at + 14))
            at += 14 + 4 * replicas
            (isr,) = struct.unpack_from(">i", body, at)
            in_sync[index] = list(struct.unpack_from(f">{isr}i", body, at + 4))
            at += 4 + 4 * isr
            leaders[index] = leader
        topics[name] = leaders
        replica_sets[name] = nodes
        in_sync_sets[name] = in_sync
    return {"brokers": brokers, "controller": controller, "topics": topics,
            "replicas": replica_sets, "in_sync": in_sync_sets}


PRODUCE_KEY = 0


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    """Reads the compact (flexible-version) encoding of a response body."""

    def __init__(self, body: bytes):
        self.body, self.at = body, 0

    def take(self, fmt: str):
        values = struct.unpack_from(fmt, self.body, self.at)
        self.at += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.body[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def string(self) -> str | None:
        length = self.uvarint() - 1
        if length < 0:
            return None
        text = self.body[self.at:self.at + length].decode()
        self.at += length
        return text

    def tags(self) -> dict[int, bytes]:
        found = {}
        for _ in range(self.uvarint()):
            tag, size = self.uvarint(), self.uvarint()
            found[tag] = self.body[self.at:self.at + size]
            self.at += size
        return found


def _flexible_request(host: str, port: int, api_key: int, version: int, body: bytes,
                      timeout_s: float) -> _Reader:
    """Send one request of a flexible version (request header v2) to exactly this broker and
    return a reader of its response body, past the response header."""
    correlation_id = 0x0C0E + api_key
    client_id = b"corelog-pytest"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    request = header + _uvarint(0) + body
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != correlation_id:
        raise ValueError("correlation id mismatch")
    reader.tags()
    return reader


def _leader_tag(tags: dict[int, bytes], tag: int) -> tuple[int, int] | None:
    """The (leader id, leader epoch) a partition's tagged field `tag` names, if it names one."""
    if tag not in tags:
        return None
    node, epoch = struct.unpack_from(">ii", tags[tag], 0)
    return (node, epoch) if node >= 0 else None


def _compact_string(text: str) -> bytes:
    encoded = text.encode()
    return _uvarint(len(encoded) + 1) + encoded


def _last_partition(reader: _Reader, read_partition, by_id: bool = False) -> dict | None:
    """Read a flexible response's topics (named, or by 16-byte id when `by_id`) and their
    partitions, each partition with `read_partition(reader)`, and return what it gave for the
    last one."""
    answer = None
    for _ in range(reader.uvarint() - 1):
        reader.take("16s") if by_id else reader.string()
        for _ in range(reader.uvarint() - 1):
            answer = read_partition(reader)
        reader.tags()
    return answer


def _node_endpoints(tags: dict[int, bytes]) -> dict[int, tuple[str, int]]:
    """The node endpoints a response's tagged field 0 lists (KIP-951), {node: (host, port)}."""
    endpoints = {}
    if 0 in tags:
        endpoint_reader = _Reader(tags[0])
        for _ in range(endpoint_reader.uvarint() - 1):
            node = endpoint_reader.take(">i")
            endpoint_host = endpoint_reader.string()
            endpoint_port = endpoint_reader.take(">i")
            endpoint_reader.string()
            endpoint_reader.tags()
            endpoints[node] = (endpoint_host, endpoint_port)
    return endpoints


def _topic(topic: str | uuid.UUID) -> bytes:
    """A request's topic: a name up to Produce and Fetch v12, an id (KIP-516) from v13."""
    return topic.bytes if isinstance(topic, uuid.UUID) else _compact_string(topic)


def produce_nothing(host: str, port: int, topic: str | uuid.UUID, partition: int,
                    version: int = 11, timeout_s: float = 5.0) -> dict:
    """Ask exactly this broker to Produce (`version`, 11 or more, acks=all) no records to
    `topic`'s `partition` (`topic` a name, or from v13 an id), and return what the partition
    is answered: {"error": code, "current_leader": (node, epoch) or None, "endpoints": {node:
    (host, port)}} (KIP-951's fields: a broker that does not lead the partition names its
    leader)."""
    assert (version >= 13) == isinstance(topic, uuid.UUID), "topics by id from v13"
    body = _uvarint(0) + struct.pack(">hi", -1, 5000)  # no transactional id, acks, timeout
    body += _uvarint(2) + _topic(topic)
    body += _uvarint(2) + struct.pack(">i", partition) + _uvarint(0) + _uvarint(0)  # null records
    body += _uvarint(0) + _uvarint(0)
    reader = _flexible_request(host, port, PRODUCE_KEY, version, body, timeout_s)

    def read_partition(reader: _Reader) -> dict:
        _index, error = reader.take(">ih")
        reader.take(">qqq")
        for _ in range(reader.uvarint() - 1):  # record errors
            reader.take(">i")
            reader.string()
            reader.tags()
        reader.string()
        return {"error": error, "current_leader": _leader_tag(reader.tags(), 0)}

    answer = _last_partition(reader, read_partition, by_id=version >= 13)
    reader.take(">i")  # throttle_time_ms
    assert answer is not None, "no partition answered"
    answer["endpoints"] = _node_endpoints(reader.tags())
    return answer


def producer_batch(values: list[bytes], producer_id: int = -1, epoch: int = -1,
                   sequence: int = -1, transactional: bool = False) -> bytes:
    """One uncompressed v2 record batch of `values`, of an idempotent or transactional
    producer when given one (built by kafka-python's record builder)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0,
                                        is_transactional=transactional, producer_id=producer_id,
                                        producer_epoch=epoch, base_sequence=sequence,
                                        batch_size=1 << 20)
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


def produce_batch(host: str, port: int, topic: str, partition: int, batch: bytes,
                  timeout_s: float = 30.0) -> tuple[int, int]:
    """Produce (v9, acks=all) `batch` to `topic`'s `partition` on exactly this broker; return
    (error code, base offset)."""
    body = _uvarint(0) + struct.pack(">hi", -1, 20000)  # no transactional id, acks, timeout
    body += _uvarint(2) + _compact_string(topic)
    body += _uvarint(2) + struct.pack(">i", partition) + _uvarint(len(batch) + 1) + batch
    body += _uvarint(0) + _uvarint(0) + _uvarint(0)
    reader = _flexible_request(host, port, PRODUCE_KEY, 9, body, timeout_s)

    def read_partition(reader: _Reader) -> tuple[int, int]:
        _index, error, base_offset = reader.take(">ihq")
        reader.take(">qq")
        for _ in range(reader.uvarint() - 1):  # record errors
            reader.take(">i")
            reader.string()
            reader.tags()
        reader.string()
        reader.tags()
        return error, base_offset

    return _last_partition(reader, read_partition)


WRITE_TXN_MARKERS_KEY = 27


def write_txn_markers(host: str, port: int, producer_id: int, epoch: int, commit: bool,
                      topic: str, partitions: list[int], coordinator_epoch: int = 0,
                      timeout_s: float = 30.0) -> list[int]:
    """WriteTxnMarkers (v1) of one producer's transaction in `partitions` of `topic`, to
    exactly this broker; return the error code of each partition."""
    body = _uvarint(2) + struct.pack(">qh?", producer_id, epoch, commit)
    body += _uvarint(2) + _compact_string(topic) + _uvarint(len(partitions) + 1)
    body += b"".join(struct.pack(">i", p) for p in partitions) + _uvarint(0)
    body += struct.pack(">i", coordinator_epoch) + _uvarint(0) + _uvarint(0)
    reader = _flexible_request(host, port, WRITE_TXN_MARKERS_KEY, 1, body, timeout_s)
    errors = []
    for _ in range(reader.uvarint() - 1):
        reader.take(">q")
        for _ in range(reader.uvarint() - 1):
            reader.string()
            for _ in range(reader.uvarint() - 1):
                _index, error = reader.take(">ih")
                reader.tags()
                errors.append(error)
            reader.tags()
        reader.tags()
    return errors


FIND_COORDINATOR_KEY = 10


def find_coordinator(host: str, port: int, key: str, key_type: int = 0,
                     timeout_s: float = 10.0) -> tuple[int, int]:
    """FindCoordinator v3 for a group (`key_type` 0) or transactional id (1), asked of exactly
    this broker; return (error code, coordinator node id)."""
    body = _compact_string(key) + struct.pack(">b", key_type) + _uvarint(0)
    reader = _flexible_request(host, port, FIND_COORDINATOR_KEY, 3, body, timeout_s)
    _throttle, error = reader.take(">ih")
    reader.string()
    return error, reader.take(">i")


FETCH_KEY = 1


def topic_id_on_disk(broker, topic: str) -> uuid.UUID:
    """`topic`'s id as `broker` keeps it beside its replica of partition 0
    (`partition.metadata`, Kafka's format: base64url without padding)."""
    text = (broker.partition_dir(topic, 0) / "partition.metadata").read_text()
    encoded = re.search(r"^topic_id: (\S+)$", text, re.MULTILINE).group(1)
    return uuid.UUID(bytes=base64.urlsafe_b64decode(encoded + "=="))


def fetch_nothing(host: str, port: int, topic: str | uuid.UUID, partition: int,
                  version: int = 12, timeout_s: float = 5.0, current_epoch: int = -1) -> dict:
    """Ask exactly this broker to Fetch (`version`, 12 to 14, or 16 with the endpoints, no
    wait) `topic`'s `partition` (`topic` a name, or from v13 an id) from offset 0, as a
    consumer that believes the partition in leader epoch `current_epoch` (-1: unchecked), and
    return what the partition is answered: {"error": code, "current_leader": (node, epoch) or
    None, "endpoints": {node: (host, port)}} (a broker that does not lead the partition names
    its leader)."""
    assert (version >= 13) == isinstance(topic, uuid.UUID), "topics by id from v13"
    assert version in (12, 13, 14, 16), "request fields of this version are not written"
    # replica_id (a tagged field from v15, left out), max_wait_ms, min_bytes, max_bytes,
    # isolation_level, session id and epoch.
    body = b"" if version >= 15 else struct.pack(">i", -1)
    body += struct.pack(">iiibii", 0, 0, 1 << 20, 0, 0, -1)
    body += _uvarint(2) + _topic(topic)
    # partition, current_leader_epoch, fetch_offset, last_fetched_epoch, log_start_offset,
    # partition_max_bytes.
    body += _uvarint(2) + struct.pack(">iiqiqi", partition, current_epoch, 0, -1, -1, 1 << 20)
    body += _uvarint(0)
    body += _uvarint(0)  # topic tags
    body += _uvarint(1) + _uvarint(1) + _uvarint(0)  # no forgotten topics, rack "", tags
    reader = _flexible_request(host, port, FETCH_KEY, version, body, timeout_s)
    reader.take(">ihi")  # throttle_time_ms, error_code, session_id

    def read_partition(reader: _Reader) -> dict:
        _index, error = reader.take(">ih")
        reader.take(">qqq")
        aborted = reader.uvarint() - 1
        reader.at += max(aborted, 0) * 17  # producer id, first offset, tags: none sent
        reader.take(">i")  # preferred_read_replica
        records = reader.uvarint() - 1
        reader.at += max(records, 0)
        return {"error": error, "current_leader": _leader_tag(reader.tags(), 1)}

    answer = _last_partition(reader, read_partition, by_id=version >= 13)
    assert answer is not None, "no partition answered"
    answer["endpoints"] = _node_endpoints(reader.tags())
    return answer


LIST_OFFSETS_KEY = 2


def list_latest_offset_v7(host: str, port: int, topic: str, partition: int, current_epoch: int,
                          timeout_s: float = 5.0) -> dict:
    """Ask exactly this broker (ListOffsets v7, as a consumer that believes the partition in
    leader epoch `current_epoch`) for the latest offset of `topic`'s `partition`:
    {"error": code, "offset": offset, "leader_epoch": epoch}."""
    body = struct.pack(">ib", -1, 0)  # replica_id: a consumer; read_uncommitted
    body += _uvarint(2) + _compact_string(topic)
    body += _uvarint(2) + struct.pack(">iiq", partition, current_epoch, -1) + _uvarint(0)
    body += _uvarint(0) + _uvarint(0)
    reader = _flexible_request(host, port, LIST_OFFSETS_KEY, 7, body, timeout_s)
    reader.take(">i")  # throttle_time_ms

    def read_partition(reader: _Reader) -> dict:
        _index, error, _timestamp, offset, leader_epoch = reader.take(">ihqqi")
        reader.tags()
        return {"error": error, "offset": offset, "leader_epoch": leader_epoch}

    answer = _last_partition(reader, read_partition)
    assert answer is not None, "no partition answered"
    return answer


OFFSET_FOR_LEADER_EPOCH_KEY = 23


def offset_for_leader_epoch_v4(host: str, port: int, topic: str, partition: int, epoch: int,
                               timeout_s: float = 5.0) -> dict:
    """Ask exactly this broker (OffsetForLeaderEpoch v4, as a consumer) where `epoch` of
    `topic`'s `partition` ends: {"error": code, "leader_epoch": epoch, "end_offset": offset}."""
    body = struct.pack(">i", -1)  # replica_id: a consumer
    body += _uvarint(2) + _compact_string(topic)
    # partition, current_leader_epoch (-1: not checked), leader_epoch.
    body += _uvarint(2) + struct.pack(">iii", partition, -1, epoch) + _uvarint(0)
    body += _uvarint(0) + _uvarint(0)
    reader = _flexible_request(host, port, OFFSET_FOR_LEADER_EPOCH_KEY, 4, body, timeout_s)
    reader.take(">i")  # throttle_time_ms
    answer = None
    for _ in range(reader.uvarint() - 1):
        reader.string()
        for _ in range(reader.uvarint() - 1):
            error, _index, leader_epoch, end_offset = reader.take(">hiiq")
            reader.tags()
            answer = {"error": error, "leader_epoch": leader_epoch, "end_offset": end_offset}
        reader.tags()
    assert answer is not None, "no partition answered"
    return answer


class BrokerError(AssertionError):
    pass


def describe_exit(returncode: int) -> str:
    """`returncode` of a Popen in words: an exit code, or the signal that killed the process."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


class Broker:
    """One `corelog serve` process bound to a fixed data directory and port."""

    def __init__(self, binary: str, data_dir: Path, log_dir: Path, shards: int | None = 2,
                 extra_args: tuple[str, ...] = (), port: int | None = None,
                 listeners: tuple[str, ...] = (), node_id: int = 0, host: str = "127.0.0.1",
                 wrapper: tuple[str, ...] = ()):
        """`shards` None: the broker's default (one per usable core); `port` None: a free one.

        `listeners`: security protocols of listeners beside the PLAINTEXT one on `port`
        ("SASL_SSL", "SSL", ...), each on a free port of its own (`self.ports[name]`).
        `host`: the address every listener binds; `wrapper`: a command that execs the broker's
        (`ip netns exec NAME`), so that the process started is the broker itself."""
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.shards = shards
        self.extra_args = tuple(extra_args)
        self.node_id = node_id
        self.host = host
        self.wrapper = tuple(wrapper)
        self.port = free_port() if port is None else port
        self.ports = {"PLAINTEXT": self.port}
        for name in listeners:
            self.ports[name] = free_port()
        self.proc: subprocess.Popen | None = None
        # True once this helper signalled the process or reported its end: from then on its
        # exit is accounted for. An exit while this is False is a death by itself.
        self.end_accounted = False
        self.starts = 0
        self.stderr_path = self.log_dir / f"corelog-{self.port}.stderr"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def address(self, listener: str) -> str:
        """host:port of the listener named `listener`."""
        return f"{self.host}:{self.ports[listener]}"

    def command(self) -> list[str]:
        shards = [] if self.shards is None else ["--shards", str(self.shards)]
        if len(self.ports) == 1:
            listen = ["--listen", self.bootstrap]
        else:
            listen = ["--listeners",
                      ",".join(f"{name}://{self.address(name)}" for name in self.ports)]
        return [
            *self.wrapper, self.binary, "serve",
            "--data-dir", str(self.data_dir),
            *listen,
            *shards,
            "--node-id", str(self.node_id),
            # An ephemeral admin port, so that brokers of parallel tests never collide.
            "--admin-listen", f"{self.host}:0",
            *self.extra_args,
        ]

    def metrics(self) -> str:
        """The text of this broker's /metrics, from the admin address its log names last."""
        found = re.findall(r"admin listener serving /metrics admin=(\S+)",
                           self.stderr_path.read_text(errors="replace"))
        assert found, "the broker logged no admin address"
        with urllib.request.urlopen(f"http://{found[-1]}/metrics", timeout=10) as answer:
            return answer.read().decode()

    def stderr_text(self, tail_bytes: int = 64 * 1024) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except FileNotFoundError:
            return "<no stderr captured>"
        if len(data) > tail_bytes:
            data = b"...<cut>...\n" + data[-tail_bytes:]
        return data.decode("utf-8", "replace")

    def start(self) -> None:
        """Start the process and block until it answers ApiVersions (or fail with its stderr)."""
        self.check_not_died(f"start #{self.starts + 1}")
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.end_accounted = False
        with open(self.stderr_path, "ab") as err:
            err.write(f"===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            err.flush()
            env = dict(os.environ)
            env.setdefault("RUST_BACKTRACE", "1")
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        self.wait_ready()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.end_accounted = True
                raise BrokerError(
                    f"corelog exited before becoming ready: {describe_exit(self.proc.returncode)}\n"
                    f"--- stderr ---\n{self.stderr_text()}")
            try:
                ranges = api_versions_v0(self.host, self.port)
                if API_VERSIONS_KEY in ranges:
                    return
                last_error = ValueError(f"ApiVersions missing from {ranges}")
            except (OSError, ValueError, struct.error) as e:
                last_error = e
            time.sleep(0.05)  # Polling interval while waiting for the port; not synchronisation.
        self.kill()
        raise BrokerError(
            f"corelog not ready on {self.bootstrap} within {timeout_s}s: {last_error!r}\n"
            f"--- stderr ---\n{self.stderr_text()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died_by_itself(self) -> str | None:
        """How the process ended if it ended without this helper signalling it, once (the end
        is then accounted for); None while it runs or after a stop or kill of ours."""
        if self.proc is None or self.end_accounted or self.proc.poll() is None:
            return None
        self.end_accounted = True
        return describe_exit(self.proc.returncode)

    def check_not_died(self, before: str) -> None:
        """Raise `BrokerError` (exit status, stderr tail) if the broker died by itself."""
        ending = self.died_by_itself()
        if ending is not None:
            raise BrokerError(
                f"corelog died by itself ({ending}) before {before}: a broker that exits "
                f"unasked is a failure, not a restart\n"
                f"--- stderr (tail) ---\n{self.stderr_text(16 * 1024)}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send `sig` and wait for exit; return the exit code (negative = killed by signal).

        Raises `BrokerError` if the broker had already died by itself."""
        assert self.proc is not None, "broker never started"
        self.check_not_died(signal.Signals(sig).name)
        if self.proc.poll() is None:
            self.end_accounted = True
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise BrokerError(
                    f"corelog did not exit within {timeout_s}s of signal {sig}\n"
                    f"--- stderr ---\n{self.stderr_text()}")
        return self.proc.returncode

    def pause(self) -> None:
        """SIGSTOP: the process stays, frozen (a node that hangs), until `resume`."""
        assert self.proc is not None, "broker never started"
        self.check_not_died("SIGSTOP")
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.proc is not None, "broker never started"
        self.proc.send_signal(signal.SIGCONT)

    def stop_clean(self) -> None:
        """SIGTERM and require the clean-shutdown contract: exit code 0."""
        code = self.stop(signal.SIGTERM)
        if code != 0:
            raise BrokerError(
                f"corelog exited with {code} after SIGTERM, expected 0\n"
                f"--- stderr ---\n{self.stderr_text()}")

    def kill(self) -> None:
        """SIGKILL and reap. Raises `BrokerError` if the broker had already died by itself."""
        self.check_not_died("SIGKILL")
        if self.proc is not None and self.proc.poll() is None:
            self.end_accounted = True
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stop (SIGTERM must exit 0; SIGKILL just kills) and start again on the same dir/port."""
        if sig == signal.SIGTERM:
            self.stop_clean()
        else:
            self.stop(sig)
        self.start()

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"


DESCRIBE_QUORUM_KEY = 55


def describe_quorum_v0(host: str, port: int, timeout_s: float = 5.0) -> dict:
    """Ask exactly this broker DescribeQuorum v0 (no contact times, no nodes) for
    `__cluster_metadata` partition 0 and return {"error", "partition_error", "leader",
    "epoch", "high_watermark", "voters": {node: log end}, "observers": count}."""
    body = _uvarint(2) + _compact_string("__cluster_metadata")
    body += _uvarint(2) + struct.pack(">i", 0) + _uvarint(0)  # partition 0, its tags
    body += _uvarint(0) + _uvarint(0)  # topic tags, request tags
    reader = _flexible_request(host, port, DESCRIBE_QUORUM_KEY, 0, body, timeout_s)
    answer = {"error": reader.take(">h")}

    def read_partition(reader: _Reader) -> dict:
        _index, error, leader, epoch, high_watermark = reader.take(">ihiiq")
        voters = {}
        for _ in range(reader.uvarint() - 1):
            node, log_end = reader.take(">iq")
            reader.tags()
            voters[node] = log_end
        observers = reader.uvarint() - 1
        for _ in range(max(observers, 0)):
            reader.take(">iq")
            reader.tags()
        reader.tags()
        return {"partition_error": error, "leader": leader, "epoch": epoch,
                "high_watermark": high_watermark, "voters": voters, "observers": observers}

    answer.update(_last_partition(reader, read_partition) or {})
    reader.tags()
    assert reader.at == len(reader.body), "the whole v0 body read, nothing of v1 or v2"
    return answer
