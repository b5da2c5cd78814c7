#!/usr/bin/env python3
"""Network fuzzer: hostile bytes on many connections while a real client must not notice.

    .venv/bin/python scripts/net_fuzz.py --duration 600 --connections 50 --seed 7 --json
    .venv/bin/python scripts/net_fuzz.py --bootstrap 127.0.0.1:9092 --duration 60

Without --bootstrap it starts the release binary itself (`target/release/corelog serve
--shards 2 --auto-create-topics false`, or $CORELOG_BIN): automatic topic creation is off so
that mutated topic names cannot fill the disk with junk topics.

Fuzz connections (asyncio, --connections of them, from 127.0.0.2 when the broker is on
loopback: see `fuzz_source`) send, at random (seeded by --seed):
- random bytes, and frames of random length holding random bytes;
- mutations of real requests encoded here by hand (ApiVersions v0/v3, Metadata v1/v9,
  Produce v3/v9 with a valid record batch, Fetch v4/v12, ListOffsets v1, FindCoordinator v0,
  JoinGroup v0/v5, Heartbeat v0, InitProducerId v0): flipped bits, inserted and deleted
  bytes, overwritten api keys and versions, huge array counts and lengths, truncation, a
  length prefix that lies (too long, too short, negative, huge);
- valid requests, often several pipelined in one write;
- slow-loris frames: a few bytes at a time, or a length prefix and then silence.
Each connection drains whatever the broker answers, and opens a new connection whenever the
broker closes it. Api keys whose handlers change cluster state (CreateTopics, DeleteTopics,
DeleteRecords, CreatePartitions, AlterConfigs, IncrementalAlterConfigs, DeleteGroups) are
never written into a mutated header, so that the fuzzer cannot delete the client's topic.

Meanwhile a confluent-kafka producer (acks=all, idempotent) and consumer keep producing and
consuming numbered messages on their own topic, with every error callback recorded, and a
probe sends ApiVersions every second on a fresh connection. At the end: the broker is alive
(process running, probe answered), the client saw zero errors, and every produced message was
consumed, exactly once and in order. With --json the totals (frames sent, connections, closes,
duration, client messages) follow as a final JSON line. If the broker dies or stops answering,
the last bytes every fuzz connection sent are written (hex) to --dump for reproduction, and
the fuzzer exits 1.

With --secure the broker also gets SASL_PLAINTEXT and SASL_SSL listeners (a test CA, user alice
with SCRAM-SHA-512), the real client produces and consumes through SASL_SSL, and a third of
the slots fuzz the SASL exchange (handshakes for any mechanism, then mutated PLAIN and SCRAM
tokens, bare tokens after SaslHandshake v0, requests before authentication) and another third
the TLS listener (mutated ClientHellos and TLS records, half handshakes, and mutated SASL
frames inside a real TLS session).

Length prefixes may claim any size up to the broker's limit. Both stalls this fuzzer found
are fixed: a dozen connections that each sent only a prefix claiming 64 MiB and waited used to
fill the shards' request budgets (the budget now follows the bytes read; tests/frame_budget.rs),
and pipelined JoinGroup floods used to slow the coordinator's shard to seconds per request
(tests/join_flood.rs). `--claim-max-bytes N` shrinks larger claims (for runs that must not
hold big frames), and `--skip-apis` leaves api keys out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import random
import signal
import ssl
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from corelog_broker import Broker, api_versions_v0, corelog_bin  # noqa: E402
from security_setup import TestPki, create_user_offline  # noqa: E402

CLIENT_TOPIC = "netfuzz-client"
FUZZ_TOPIC = "netfuzz-target"
FUZZ_GROUP = "netfuzz-group"
PARTITIONS = 2
REQUEST_BYTES_MAX = 100 * 1024 * 1024  # The broker's default socket.request.max.bytes.
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 60.0
SENT_KEPT_BYTES = 16 * 1024  # Per connection: the tail of what it sent, for a crash report.
# Api keys that change cluster state: never forged into a header.
STATEFUL_KEYS = {19, 20, 21, 33, 37, 42, 44, 51}
SASL_USER, SASL_PASSWORD = "alice", "net-fuzz-secret"
SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "", "SCRAM-SHA-1"]
INTERESTING_I32 = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                   100 * 1024 * 1024, 100 * 1024 * 1024 + 1]

_QUIET = logging.getLogger("net_fuzz.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


# ---------------------------------------------------------------- encoding real requests

def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint(n: int) -> bytes:
    return uvarint((n << 1) ^ (n >> 63))


def i8(n): return struct.pack(">b", n)
def i16(n): return struct.pack(">h", n)
def i32(n): return struct.pack(">i", n)
def i64(n): return struct.pack(">q", n)
def string(s: str | None) -> bytes:
    return i16(-1) if s is None else i16(len(s)) + s.encode()
def cstring(s: str | None) -> bytes:
    return uvarint(0) if s is None else uvarint(len(s) + 1) + s.encode()
def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)
def carray(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


TAGS = uvarint(0)


def record_batch(value: bytes) -> bytes:
    """A valid v2 RecordBatch with one record, CRC-32C and all."""
    record_body = i8(0) + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + \
        varint(0)
    record = varint(len(record_body)) + record_body
    now = 1_700_000_000_000
    after_crc = (i16(0) + i32(0) + i64(now) + i64(now) + i64(-1) + i16(-1) + i32(-1) +
                 i32(1) + record)
    crc = struct.pack(">I", crc32c(after_crc))
    rest = i32(0) + i8(2) + crc + after_crc  # partitionLeaderEpoch, magic, crc, ...
    return i64(0) + i32(len(rest)) + rest


def frame(api_key: int, version: int, body: bytes, flexible: bool, correlation_id: int) -> bytes:
    header = i16(api_key) + i16(version) + i32(correlation_id) + string("net-fuzz")
    if flexible:
        header += TAGS
    payload = header + body
    return i32(len(payload)) + payload


def templates(correlation_id: int) -> list[bytes]:
    """One valid frame of each kind the fuzzer starts mutations from."""
    t, g, c = FUZZ_TOPIC, FUZZ_GROUP, correlation_id
    batch = record_batch(b"fuzz-value")
    protocols = array([string("range") + i32(4) + b"meta"])
    return [
        frame(18, 0, b"", False, c),
        frame(18, 3, cstring("net-fuzz") + cstring("1.0") + TAGS, True, c),
        frame(3, 1, array([string(t)]), False, c),
        frame(3, 9, carray([cstring(t) + TAGS]) + b"\x00\x00\x00" + TAGS, True, c),
        frame(0, 3, string(None) + i16(1) + i32(1000) +
              array([string(t) + array([i32(0) + i32(len(batch)) + batch])]), False, c),
        frame(0, 9, cstring(None) + i16(-1) + i32(1000) +
              carray([cstring(t) + carray([i32(1) + uvarint(len(batch) + 1) + batch + TAGS]) +
                      TAGS]) + TAGS, True, c),
        frame(1, 4, i32(-1) + i32(5) + i32(1) + i32(1 << 20) + i8(0) +
              array([string(t) + array([i32(0) + i64(0) + i32(1 << 16)])]), False, c),
        frame(1, 12, i32(-1) + i32(5) + i32(1) + i32(1 << 20) + i8(0) + i32(0) + i32(-1) +
              carray([cstring(t) + carray([i32(1) + i32(-1) + i64(0) + i32(-1) + i64(-1) +
                                           i32(1 << 16) + TAGS]) + TAGS]) +
              carray([]) + cstring("") + TAGS, True, c),
        frame(2, 1, i32(-1) + array([string(t) + array([i32(0) + i64(-1)])]), False, c),
        frame(10, 0, string(g), False, c),
        frame(11, 0, string(g) + i32(6000) + string("") + string("consumer") + protocols,
              False, c),
        frame(11, 5, string(g) + i32(6000) + i32(6000) + string("") + string(None) +
              string("consumer") + protocols, False, c),
        frame(12, 0, string(g) + i32(1) + string("member"), False, c),
        frame(22, 0, string(None) + i32(60000), False, c),
    ]


def sasl_tokens(rng: random.Random) -> list[bytes]:
    """SASL tokens as clients send them, right and wrong."""
    nonce = rng.randbytes(12).hex()
    return [
        f"\0{SASL_USER}\0{SASL_PASSWORD}".encode(),
        f"\0{SASL_USER}\0wrong".encode(),
        f"{SASL_USER}\0{SASL_USER}\0{SASL_PASSWORD}".encode(),
        f"n,,n={SASL_USER},r={nonce}".encode(),
        f"n,a={SASL_USER},n={SASL_USER},r={nonce}".encode(),
        f"n,,n={SASL_USER},r={nonce},tokenauth=true".encode(),
        f"c=biws,r={nonce}server,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".encode(),
        b"y,,n==2C=3D,r=x",
    ]


def sasl_handshake(mechanism: str, version: int, correlation_id: int) -> bytes:
    return frame(17, version, string(mechanism), False, correlation_id)


def sasl_authenticate(token: bytes, version: int, correlation_id: int) -> bytes:
    if version >= 2:
        return frame(36, 2, uvarint(len(token) + 1) + token + TAGS, True, correlation_id)
    return frame(36, version, i32(len(token)) + token, False, correlation_id)


# ---------------------------------------------------------------- mutations

def mutate(rng: random.Random, data: bytes) -> bytes:
    """Apply one to four random mutations; the length prefix is usually fixed up after."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        pos = rng.randrange(len(buf)) if buf else 0
        if kind == 0 and buf:  # Flip a bit.
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:  # Insert bytes.
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == 2 and len(buf) > 4:  # Delete bytes.
            del buf[pos:pos + rng.randint(1, 16)]
        elif kind == 3 and len(buf) >= 8:  # Lie about the api key.
            key = rng.choice([k for k in range(-2, 70) if k not in STATEFUL_KEYS])
            buf[4:6] = i16(key)
        elif kind == 4 and len(buf) >= 8:  # Lie about the api version.
            buf[6:8] = i16(rng.choice([-1, 0, 1, 2, 3, 4, 5, 9, 12, 13, 17, 100, 0x7FFF]))
        elif kind == 5 and len(buf) >= pos + 4:  # A huge or negative 32-bit count/length.
            buf[pos:pos + 4] = i32(rng.choice(INTERESTING_I32))
        elif kind == 6 and len(buf) >= pos + 2:  # A huge or negative 16-bit length.
            buf[pos:pos + 2] = i16(rng.choice([-1, -2, 0x7FFF, 0x100, 0]))
        elif kind == 7 and buf:  # A huge unsigned varint (compact lengths, tags).
            buf[pos:pos] = rng.choice([b"\xff\xff\xff\xff\x0f", b"\x80" * 10, b"\xfe\xff\x7f"])
        elif kind == 8 and len(buf) > 8:  # Truncate.
            del buf[rng.randint(4, len(buf) - 1):]
    body = bytes(buf[4:])
    roll = rng.random()
    if roll < 0.8:
        return i32(len(body)) + body
    if roll < 0.9:  # A prefix shorter than the frame: the rest is read as the next frame.
        return i32(rng.randint(0, max(0, len(body) - 1))) + body
    return i32(rng.choice([-1, -0x80000000, len(body) + rng.randint(1, 64),
                           100 * 1024 * 1024 + 1, 0x7FFFFFFF])) + body


# ---------------------------------------------------------------- fuzz connections

class Totals:
    def __init__(self):
        self.frames_sent = 0
        self.bytes_sent = 0
        self.connections = 0
        self.closes_by_broker = 0
        self.connect_failures = 0
        self.response_bytes = 0
        self.by_kind: collections.Counter = collections.Counter()


class FuzzConnection:
    """One connection slot: sends hostile traffic, reconnects whenever the broker closes it."""

    def __init__(self, index: int, host: str, port: int, seed: int, totals: Totals,
                 stop: asyncio.Event, kinds: set[str] | None = None, claim_max: int = 0,
                 mode: str = "kafka", tls: ssl.SSLContext | None = None):
        """`mode`: "kafka" (the port serves plain requests), "sasl" (a SASL_PLAINTEXT port)
        or "tls" (a SASL_SSL port; `tls` trusts its certificate)."""
        self.index = index
        self.mode = mode
        self.tls = tls
        self.claim_max = claim_max
        self.skip_apis: set[int] = set()
        self.reset_framing()
        self.kinds = kinds if mode == "kafka" else None
        self.host, self.port = host, port
        self.rng = random.Random(seed * 1000 + index)
        self.totals = totals
        self.stop = stop
        self.correlation_id = 0
        # What this slot sent last, newest at the end: the bytes to replay after a crash.
        self.sent_tail: collections.deque = collections.deque()
        self.sent_tail_bytes = 0
        # The address fuzz connections come from (see `fuzz_source`); None: the default.
        self.source: tuple[str, int] | None = None

    def remember(self, kind: str, data: bytes) -> None:
        self.sent_tail.append((time.time(), kind, data))
        self.sent_tail_bytes += len(data)
        while self.sent_tail_bytes > SENT_KEPT_BYTES and len(self.sent_tail) > 1:
            self.sent_tail_bytes -= len(self.sent_tail.popleft()[2])

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, local_addr=self.source), 5)
            except (OSError, asyncio.TimeoutError):
                self.totals.connect_failures += 1
                await asyncio.sleep(0.1)  # Back off; the probe decides whether that is a hang.
                continue
            self.totals.connections += 1
            self.reset_framing()
            local_port = writer.get_extra_info("sockname")[1]
            self.remember(f"connect:{local_port}", b"")
            drain = asyncio.ensure_future(self.drain(reader))
            session = {"kafka": self.session, "sasl": self.sasl_session,
                       "tls": self.tls_session}[self.mode]
            try:
                await session(writer, drain)
            except (OSError, asyncio.TimeoutError):
                pass
            if drain.done() and not self.stop.is_set():
                self.totals.closes_by_broker += 1
            drain.cancel()
            writer.close()

    async def drain(self, reader: asyncio.StreamReader) -> None:
        """Read and drop responses until the broker closes the connection."""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            self.totals.response_bytes += len(chunk)

    def reset_framing(self) -> None:
        self.body_left = 0
        self.prefix_at: list[int] = []  # Positions in the current send of a partial prefix.
        self.prefix = bytearray()
        self.framing_lost = False

    def cap_claims(self, data: bytes) -> bytes:
        """Follow the broker's framing of this connection's byte stream and shrink every
        length prefix that claims more than --claim-max-bytes, when one is given. A prefix
        split across two sends is left as it is."""
        if not self.claim_max or self.framing_lost:
            return data
        buf = bytearray(data)
        pos = 0
        while pos < len(buf):
            if self.body_left:
                step = min(self.body_left, len(buf) - pos)
                self.body_left -= step
                pos += step
                continue
            self.prefix.append(buf[pos])
            self.prefix_at.append(pos)
            pos += 1
            if len(self.prefix) < 4:
                continue
            (length,) = struct.unpack(">i", bytes(self.prefix))
            whole = len(self.prefix_at) == 4 and self.prefix_at[0] == pos - 4
            if self.claim_max < length <= REQUEST_BYTES_MAX and whole:
                length %= self.claim_max + 1
                buf[pos - 4:pos] = i32(length)
            self.prefix.clear()
            self.prefix_at.clear()
            if length < 0 or length > REQUEST_BYTES_MAX:
                self.framing_lost = True  # The broker closes the connection here.
                break
            self.body_left = length
        self.prefix_at.clear()  # Positions refer to this send only.
        return bytes(buf)

    async def send(self, writer, kind: str, data: bytes) -> None:
        if self.kinds and kind not in self.kinds:
            return
        data = self.cap_claims(data)
        self.remember(kind, data)
        writer.write(data)
        await asyncio.wait_for(writer.drain(), 10)
        self.totals.frames_sent += 1
        self.totals.bytes_sent += len(data)
        self.totals.by_kind[kind] += 1

    def valid(self) -> bytes:
        self.correlation_id += 1
        frames = [f for f in templates(self.correlation_id)
                  if struct.unpack_from(">h", f, 4)[0] not in self.skip_apis]
        return self.rng.choice(frames)

    async def session(self, writer, drain: asyncio.Future) -> None:
        """Send traffic until the broker closes the connection or the slot decides to leave."""
        rng = self.rng
        for _ in range(rng.randint(1, 200)):
            if drain.done() or self.stop.is_set():
                return
            roll = rng.random()
            if roll < 0.05:
                await self.send(writer, "random-bytes", rng.randbytes(rng.randint(1, 4096)))
            elif roll < 0.10:
                body = rng.randbytes(rng.randint(0, 2048))
                await self.send(writer, "random-frame", i32(len(body)) + body)
            elif roll < 0.75:
                await self.send(writer, "mutated", mutate(rng, self.valid()))
            elif roll < 0.92:
                frames = b"".join(self.valid() for _ in range(rng.randint(1, 8)))
                await self.send(writer, "valid", frames)
            elif roll < 0.97:
                await self.slow_loris(writer)
            else:
                await self.send(writer, "truncated", self.valid()[:rng.randint(1, 12)])
                return
            await asyncio.sleep(0)  # Let the other slots and the drains run.
        # Leave politely or abruptly: both happen in the wild.

    async def sasl_session(self, writer, drain: asyncio.Future) -> None:
        """A SASL exchange gone wrong in one of many ways (a SASL_PLAINTEXT port)."""
        rng = self.rng
        c = self.correlation_id = self.correlation_id + 1
        mechanism = rng.choice(SASL_MECHANISMS)
        version = rng.choice([0, 1, 1, 1])
        token = rng.choice(sasl_tokens(rng))
        roll = rng.random()
        if roll < 0.15:  # A request before authentication.
            await self.send(writer, "sasl-early", self.valid())
        elif roll < 0.3:  # A mutated handshake.
            await self.send(writer, "sasl-handshake", mutate(rng, sasl_handshake(mechanism,
                                                                                  version, c)))
        else:
            await self.send(writer, "sasl-handshake", sasl_handshake(mechanism, version, c))
        for _ in range(rng.randint(1, 4)):
            if drain.done() or self.stop.is_set():
                return
            if rng.random() < 0.5:
                token = bytes(mutate(rng, i32(len(token)) + token)[4:])
            if version == 0 and rng.random() < 0.7:  # Bare tokens after a v0 handshake.
                await self.send(writer, "sasl-raw", i32(len(token)) + token)
            else:
                message = sasl_authenticate(token, rng.choice([0, 1, 2]), c + 1)
                await self.send(writer, "sasl-token",
                                mutate(rng, message) if rng.random() < 0.3 else message)
            await asyncio.sleep(0)
        if rng.random() < 0.3:  # Authenticated or not, go on as a client would.
            await self.session(writer, drain)

    async def tls_session(self, writer, drain: asyncio.Future) -> None:
        """TLS gone wrong (a SASL_SSL port): a mutated ClientHello, random records, half a
        handshake, or a real TLS session carrying a SASL exchange gone wrong."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            await self.send(writer, "tls-hello", mutate(rng, i32(0) + client_hello(rng))[4:])
        elif roll < 0.55:
            record = bytes([rng.choice([20, 21, 22, 23, 24, 0x80])]) + b"\x03" + \
                bytes([rng.randrange(5)]) + i16(rng.choice([0, 1, 0x4000, 0x4001, 0xFFFF]))
            await self.send(writer, "tls-record", record + rng.randbytes(rng.randint(0, 600)))
        elif roll < 0.65:
            hello = client_hello(rng)
            await self.send(writer, "tls-half", hello[:rng.randint(1, len(hello) - 1)])
            await asyncio.sleep(rng.uniform(0.1, 2.0))
        else:
            await self.tls_wrapped(writer)

    async def tls_wrapped(self, writer) -> None:
        """A completed TLS handshake, then a SASL exchange gone wrong inside it."""
        try:
            reader, secured = await asyncio.wait_for(asyncio.open_connection(
                self.host, self.port, ssl=self.tls, server_hostname="localhost",
                local_addr=self.source), 5)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            return
        inner = asyncio.ensure_future(self.drain(reader))
        try:
            await self.sasl_session(secured, inner)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
        inner.cancel()
        secured.close()

    async def slow_loris(self, writer) -> None:
        data = self.valid()
        if self.rng.random() < 0.5:
            for start in range(0, len(data), 3):
                await self.send(writer, "slow-loris", data[start:start + 3])
                await asyncio.sleep(self.rng.uniform(0.01, 0.1))
        else:
            await self.send(writer, "slow-loris", data[:self.rng.randint(4, len(data) - 1)])
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))


def client_hello(rng: random.Random) -> bytes:
    """The first flight of a real TLS client (Python's ssl, TLS 1.2 or 1.3)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if rng.random() < 0.5:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# ---------------------------------------------------------------- the real client

class RealClient:
    """An idempotent acks=all producer and a consumer on their own topic, errors recorded."""

    def __init__(self, bootstrap: str, rate: float, security: dict | None = None):
        self.bootstrap = bootstrap
        self.rate = rate
        self.errors: list[str] = []
        self.produced = 0
        self.acked: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        self.consumed: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        self.stop_producing = threading.Event()
        self.stop_consuming = threading.Event()
        common = {"bootstrap.servers": bootstrap, "logger": _QUIET, "error_cb": self._on_error,
                  **(security or {})}
        self.producer = Producer({**common, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "message.timeout.ms": 60_000})
        self.consumer = Consumer({**common, "group.id": "netfuzz-unused",
                                  "enable.auto.commit": False, "auto.offset.reset": "error",
                                  "fetch.wait.max.ms": 100})
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]

    def _on_error(self, error: KafkaError) -> None:
        self.errors.append(f"{time.strftime('%H:%M:%S')} {error}")

    def _on_delivery(self, error, message) -> None:
        if error is not None:
            self.errors.append(f"delivery: {error}")
        else:
            self.acked[message.partition()].append(int(message.value()))

    def _produce(self) -> None:
        started = time.monotonic()
        while not self.stop_producing.is_set():
            wait = started + self.produced / self.rate - time.monotonic()
            if wait > 0:
                self.producer.poll(min(wait, 0.05))
                continue
            try:
                self.producer.produce(CLIENT_TOPIC, str(self.produced).encode(),
                                      partition=self.produced % PARTITIONS,
                                      on_delivery=self._on_delivery)
                self.produced += 1
            except BufferError as error:
                self.errors.append(f"produce: {error}")
                self.producer.poll(0.1)
        left = self.producer.flush(CLIENT_TIMEOUT_S)
        if left:
            self.errors.append(f"{left} messages undelivered after flush")

    def _consume(self) -> None:
        self.consumer.assign([TopicPartition(CLIENT_TOPIC, p, 0) for p in range(PARTITIONS)])
        while not self.stop_consuming.is_set():
            for message in self.consumer.consume(num_messages=1000, timeout=0.2):
                if message.error():
                    self.errors.append(f"consume: {message.error()}")
                else:
                    self.consumed[message.partition()].append(int(message.value()))
        self.consumer.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        """Stop producing, wait until the consumer has every acked message, stop it."""
        self.stop_producing.set()
        self.threads[0].join(CLIENT_TIMEOUT_S + 5)
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline and any(
                len(self.consumed[p]) < len(self.acked[p]) for p in range(PARTITIONS)):
            time.sleep(0.05)  # Polling the consumer thread's progress.
        self.stop_consuming.set()
        self.threads[1].join(10)

    def check(self) -> list[str]:
        problems = list(self.errors[:20])
        for p in range(PARTITIONS):
            if self.consumed[p] != self.acked[p]:
                missing = len(set(self.acked[p]) - set(self.consumed[p]))
                problems.append(f"partition {p}: acked {len(self.acked[p])}, consumed "
                                f"{len(self.consumed[p])} ({missing} missing, order or "
                                f"duplicates differ)" if missing == 0 else
                                f"partition {p}: {missing} acked messages never consumed")
        if sum(len(v) for v in self.acked.values()) != self.produced:
            problems.append(f"produced {self.produced}, acked "
                            f"{sum(len(v) for v in self.acked.values())}")
        return problems


# ---------------------------------------------------------------- the run

def probe(host: str, port: int) -> float:
    started = time.monotonic()
    api_versions_v0(host, port, timeout_s=PROBE_TIMEOUT_S)
    return time.monotonic() - started


def fuzz_source(host: str) -> tuple[str, int] | None:
    """Fuzz connections to a broker on loopback come from 127.0.0.2, the real client and the
    probe from 127.0.0.1: the broker throttles an address that fails authentication in a loop
    (as it must), so hostile traffic from the client's own address would rightly disturb it."""
    return ("127.0.0.2", 0) if host.startswith("127.") else None


async def fuzz(host: str, port: int, args, totals: Totals, health,
               secure: dict | None = None) -> list[FuzzConnection]:
    """`secure`: the SASL_PLAINTEXT and SASL_SSL ports and a TLS context trusting the broker;
    then two thirds of the slots fuzz those listeners."""
    stop = asyncio.Event()
    kinds = set(args.kinds.split(",")) if args.kinds else None

    def slot(i: int) -> FuzzConnection:
        mode = ["kafka", "sasl", "tls"][i % 3] if secure else "kafka"
        slot_port = {"kafka": port, "sasl": secure and secure["sasl_port"],
                     "tls": secure and secure["tls_port"]}[mode]
        return FuzzConnection(i, host, slot_port, args.seed, totals, stop, kinds,
                              args.claim_max_bytes, mode, secure and secure["context"])

    slots = [slot(i) for i in range(args.connections)]
    for slot in slots:
        slot.skip_apis = {int(k) for k in args.skip_apis.split(",") if k}
        slot.source = fuzz_source(host)
    tasks = [asyncio.ensure_future(slot.run()) for slot in slots]
    deadline = time.monotonic() + args.duration
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline and health["failure"] is None:
        await asyncio.sleep(PROBE_INTERVAL_S)
        try:
            latency = await loop.run_in_executor(None, probe, host, port)
            health["probe_max_s"] = max(health["probe_max_s"], latency)
            health["probes"] += 1
        except (OSError, ValueError, struct.error) as error:
            health["failure"] = f"probe failed: {error!r}"
        if health["alive"] is not None and not health["alive"]():
            health["failure"] = "broker process exited"
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()
    return slots


def dump_sent(slots: list[FuzzConnection], path: Path) -> None:
    with open(path, "w") as out:
        for slot in slots:
            out.write(f"# connection slot {slot.index}\n")
            for at, kind, data in slot.sent_tail:
                out.write(f"{at:.3f} {kind} {data.hex()}\n")


def setup_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET})
    futures = admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1)
                                   for t in (CLIENT_TOPIC, FUZZ_TOPIC)])
    for topic, future in futures.items():
        try:
            future.result(timeout=CLIENT_TIMEOUT_S)
        except Exception as error:  # An existing topic from an earlier run is fine.
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", default=None, help="a running broker; default: start one")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of fuzzing")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rate", type=float, default=200.0, help="client messages per second")
    ap.add_argument("--dump", type=Path, default=Path("net_fuzz_sent.txt"),
                    help="where the sent bytes go if the broker fails")
    ap.add_argument("--kinds", default=None,
                    help="only these traffic kinds, comma-separated (random-bytes, "
                         "random-frame, mutated, valid, slow-loris, truncated)")
    ap.add_argument("--claim-max-bytes", type=int, default=0,
                    help="largest frame length a prefix may claim; 0 (default): no limit")
    ap.add_argument("--skip-apis", default="",
                    help="api keys whose requests are not used as templates, e.g. 11,12")
    ap.add_argument("--secure", action="store_true",
                    help="also fuzz SASL and TLS listeners; the client uses SASL_SSL")
    ap.add_argument("--json", action="store_true")
    return ap.parse_args(argv)


def run(args, broker: Broker | None, pki: TestPki | None = None) -> int:
    bootstrap = args.bootstrap or broker.bootstrap
    host, port = bootstrap.rsplit(":", 1)
    port = int(port)
    setup_topics(bootstrap)
    secure = client_security = None
    if pki is not None:
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        secure = {"sasl_port": broker.ports["SASL_PLAINTEXT"],
                  "tls_port": broker.ports["SASL_SSL"], "context": context}
        bootstrap = broker.address("SASL_SSL")
        client_security = {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                           "sasl.username": SASL_USER, "sasl.password": SASL_PASSWORD,
                           "ssl.ca.location": str(pki.ca.cert)}
    client = RealClient(bootstrap, args.rate, client_security)
    client.start()
    totals = Totals()
    health = {"failure": None, "probe_max_s": 0.0, "probes": 0,
              "alive": broker.running if broker else None}
    started = time.monotonic()
    slots = asyncio.run(fuzz(host, port, args, totals, health, secure))
    duration = time.monotonic() - started
    failures = []
    if health["failure"] is None:
        client.finish()
        failures += [f"client: {p}" for p in client.check()]
        try:
            probe(host, port)
        except (OSError, ValueError, struct.error) as error:
            failures.append(f"final probe failed: {error!r}")
    else:
        failures.append(health["failure"])
    if broker is not None and (ending := broker.died_by_itself()) is not None:
        failures.append(f"broker died by itself: {ending}")
    if broker is not None and not failures:
        code = broker.stop(signal.SIGTERM)
        if code != 0:
            failures.append(f"broker exit code {code} after SIGTERM")
    consumed = sum(len(v) for v in client.consumed.values())
    summary = {
        "seed": args.seed, "duration_s": round(duration, 1), "connections": totals.connections,
        "closes_by_broker": totals.closes_by_broker, "frames_sent": totals.frames_sent,
        "bytes_sent": totals.bytes_sent, "response_bytes": totals.response_bytes,
        "connect_failures": totals.connect_failures, "frames_by_kind": dict(totals.by_kind),
        "probes": health["probes"], "probe_max_ms": round(health["probe_max_s"] * 1000, 1),
        "client_produced": client.produced, "client_consumed": consumed,
        "client_errors": len(client.errors), "failures": len(failures),
    }
    print(f"{summary['duration_s']} s, {totals.connections} connections, "
          f"{totals.closes_by_broker} closed by the broker, {totals.frames_sent} frames "
          f"({totals.bytes_sent} bytes) sent; client produced {client.produced}, consumed "
          f"{consumed}, {len(client.errors)} errors; probe max {summary['probe_max_ms']} ms")
    if failures:
        dump_sent(slots, args.dump)
        print(f"FAILED (seed {args.seed}); sent bytes of every slot in {args.dump}")
        for failure in failures:
            print(f"  {failure}")
        if broker is not None:
            print("--- broker stderr (tail) ---")
            print(broker.stderr_text(8192))
    else:
        print("OK: broker alive, client saw no error and every message")
    if args.json:
        print(json.dumps(summary))
    return 1 if failures else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    print(f"net fuzz: seed {args.seed}, {args.connections} connections, {args.duration} s",
          flush=True)
    if args.bootstrap:
        return run(args, None)
    with tempfile.TemporaryDirectory(prefix="corelog-netfuzz-") as tmp:
        extra, listeners, pki = ["--auto-create-topics", "false"], (), None
        if args.secure:
            pki = TestPki(Path(tmp) / "pki")
            extra += [*pki.tls_flags(), "--sasl-mechanisms", "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"]
            listeners = ("SASL_PLAINTEXT", "SASL_SSL")
        broker = Broker(corelog_bin(), Path(tmp) / "data", Path(tmp), shards=2,
                        extra_args=tuple(extra), listeners=listeners)
        if args.secure:
            create_user_offline(broker.data_dir, SASL_USER, SASL_PASSWORD)
        broker.start()
        try:
            return run(args, broker, pki)
        finally:
            broker.kill()


if __name__ == "__main__":
    sys.exit(main())
