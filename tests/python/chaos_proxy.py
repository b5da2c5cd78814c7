"""A TCP proxy between Kafka clients and corelog that breaks connections mid-request.

The proxy forwards whole Kafka frames (4-byte length prefix) in both directions. For requests
of the chosen API keys it injects, at random and up to a budget, one of two faults:
- "swallow": forward the request, wait for the broker's response, and close both connections
  instead of delivering it. The broker did the work (for Produce: the batch is durable), the
  client does not know and must retry: the retry is a duplicate the broker has to recognize.
- "cut": forward the request and close both connections at once; the broker may or may not
  get to process it.

The broker must advertise the proxy's address (`--advertised-listener`), so that clients reach
the partitions through the proxy after bootstrap. Threads, not asyncio: the clients under test
block, and the proxy must keep running while they do.
"""

from __future__ import annotations

import random
import socket
import struct
import threading

PRODUCE_KEY = 0


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    chunks = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> bytes | None:
    """One whole frame including its length prefix, or None at end of stream."""
    prefix = _recv_exact(sock, 4)
    if prefix is None:
        return None
    (length,) = struct.unpack(">i", prefix)
    body = _recv_exact(sock, length)
    return None if body is None else prefix + body


class ChaosProxy:
    """Listens on 127.0.0.1 (`port`) and forwards every connection to `target_port`."""

    def __init__(self, target_port: int, seed: int, fault_rate: float = 0.15,
                 faults_max: int = 8, api_keys: tuple[int, ...] = (PRODUCE_KEY,),
                 sure_fault_at: int = 2):
        """`sure_fault_at`: the request of those keys with this number (from 1) always gets a
        "swallow" fault, so that a short run is never fault-free."""
        self.target_port = target_port
        self.sure_fault_at = sure_fault_at
        self._eligible = 0
        self.fault_rate = fault_rate
        self.faults_max = faults_max
        self.api_keys = api_keys
        self.faults: list[str] = []
        self.enabled = True
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                _shut(sock)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            link = _Link(client, upstream)
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._responses, args=(link,), daemon=True).start()

    def _pick_fault(self, frame: bytes) -> str | None:
        if len(frame) < 8:
            return None
        (api_key,) = struct.unpack_from(">h", frame, 4)
        with self._lock:
            if not self.enabled or api_key not in self.api_keys:
                return None
            self._eligible += 1
            if self._eligible == self.sure_fault_at:
                self.faults.append("swallow")
                return "swallow"
            if len(self.faults) >= self.faults_max or self._random.random() >= self.fault_rate:
                return None
            fault = "swallow" if self._random.random() < 0.75 else "cut"
            self.faults.append(fault)
            return fault

    def _requests(self, link: "_Link") -> None:
        try:
            while True:
                frame = _read_frame(link.client)
                if frame is None:
                    break
                fault = self._pick_fault(frame)
                if fault == "swallow":
                    (correlation_id,) = struct.unpack_from(">i", frame, 8)
                    link.swallow.add(correlation_id)
                link.upstream.sendall(frame)
                if fault == "cut":
                    break
        except OSError:
            pass
        link.close()

    def _responses(self, link: "_Link") -> None:
        try:
            while True:
                frame = _read_frame(link.upstream)
                if frame is None:
                    break
                (correlation_id,) = struct.unpack_from(">i", frame, 4)
                if correlation_id in link.swallow:
                    break
                link.client.sendall(frame)
        except OSError:
            pass
        link.close()


class _Link:
    """One proxied connection: the client side, the broker side, and responses to drop."""

    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.client = client
        self.upstream = upstream
        self.swallow: set[int] = set()

    def close(self) -> None:
        _shut(self.client)
        _shut(self.upstream)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
