"""Test certificates, users and raw SASL frames for the security tests.

`TestPki` makes a throw-away CA with openssl (as an operator would): a server certificate for
localhost/127.0.0.1, client certificates signed by the CA, one signed by an unrelated CA, and
expired ones. `raw_*` speak just enough of the Kafka protocol over a plain socket to drive
SASL by hand (SaslHandshake v0 with bare tokens, requests before authentication).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from corelog_broker import corelog_bin

OPENSSL_TIMEOUT_S = 30
# The names a server certificate for the test brokers carries.
LOCALHOST = "DNS:localhost,IP:127.0.0.1"


def openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=OPENSSL_TIMEOUT_S)
    assert proc.returncode == 0, f"openssl {' '.join(args)}:\n{proc.stderr}"


@dataclass
class KeyPair:
    cert: Path
    key: Path
    # Certificate and key in one file (what kafka-python's ssl_certfile takes).
    bundle: Path


class TestPki:
    __test__ = False  # Not a pytest class.

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self._ca("ca", "corelog-test-ca")
        self.rogue_ca = self._ca("rogue-ca", "somebody-else")
        self.server = self.issue("server", "/CN=localhost", san=LOCALHOST)
        self.client = self.issue("client", "/O=corelog-test/CN=alice-cert")

    def _ca(self, name: str, common_name: str) -> KeyPair:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.pem", "-days", "3", "-subj", f"/CN={common_name}", cwd=self.dir)
        return KeyPair(self.dir / f"{name}.pem", self.dir / f"{name}.key", self.dir / f"{name}.pem")

    def issue(self, name: str, subject: str, san: str | None = None, days: int = 3,
              ca: KeyPair | None = None) -> KeyPair:
        """A key and an X.509 v3 certificate for `subject`, signed by `ca` (the test CA by
        default): a server certificate for the names in `san`, else a client certificate.
        `days` 0 gives a certificate that expires the second it is made."""
        ca = ca or self.ca
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", subject, cwd=self.dir)
        usage = f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n" if san \
            else "extendedKeyUsage=clientAuth\n"
        (self.dir / f"{name}.ext").write_text(usage)
        extensions = ["-extfile", f"{name}.ext"]
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key),
                "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days), *extensions,
                cwd=self.dir)
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        bundle = self.dir / f"{name}-bundle.pem"
        bundle.write_bytes(cert.read_bytes() + key.read_bytes())
        if days == 0:
            # Valid until the second it was made: wait until that second is over.
            time.sleep(1.1)  # A deadline in wall-clock seconds; nothing to poll.
        return KeyPair(cert, key, bundle)

    def tls_flags(self, client_auth: str | None = None) -> list[str]:
        flags = ["--tls-cert", str(self.server.cert), "--tls-key", str(self.server.key)]
        if client_auth:
            flags += ["--tls-client-ca", str(self.ca.cert), "--tls-client-auth", client_auth]
        return flags


def corelog(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([corelog_bin(), *args], input=stdin, capture_output=True, text=True,
                          timeout=60)
    if check:
        assert proc.returncode == 0, f"corelog {' '.join(args)} exited {proc.returncode}:\n" \
                                     f"{proc.stdout}\n{proc.stderr}"
    return proc


def create_user_offline(data_dir: Path, user: str, password: str,
                        mechanism: str = "SCRAM-SHA-512") -> None:
    corelog("user", "create", user, "--password", password, "--mechanism", mechanism,
            "--data-dir", str(data_dir))


# ------------------------------------------------------------------------- raw Kafka frames

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
METADATA = 3
API_VERSIONS = 18


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def raw_request(api_key: int, version: int, body: bytes, correlation_id: int = 1) -> bytes:
    """A non-flexible request frame (header v1)."""
    header = struct.pack(">hhi", api_key, version, correlation_id) + _string("corelog-raw")
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    return recv_exact(sock, size)


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the peer closes the connection within `timeout_s` (reads until end of stream)."""
    sock.settimeout(timeout_s)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def handshake(sock: socket.socket, mechanism: str, version: int) -> tuple[int, list[str]]:
    """SaslHandshake: (error code, enabled mechanisms)."""
    sock.sendall(raw_request(SASL_HANDSHAKE, version, _string(mechanism)))
    body = recv_frame(sock)
    error, count = struct.unpack_from(">hi", body, 4)
    mechanisms, at = [], 10
    for _ in range(count):
        (length,) = struct.unpack_from(">h", body, at)
        mechanisms.append(body[at + 2:at + 2 + length].decode())
        at += 2 + length
    return error, mechanisms


def authenticate_v1(sock: socket.socket, token: bytes) -> tuple[int, str | None, bytes, int]:
    """SaslAuthenticate v1: (error code, message, server token, session lifetime ms)."""
    sock.sendall(raw_request(SASL_AUTHENTICATE, 1, struct.pack(">i", len(token)) + token))
    body = recv_frame(sock)
    (error,) = struct.unpack_from(">h", body, 4)
    (length,) = struct.unpack_from(">h", body, 6)
    at = 8
    message = None
    if length >= 0:
        message = body[at:at + length].decode()
        at += length
    (token_length,) = struct.unpack_from(">i", body, at)
    server_token = body[at + 4:at + 4 + token_length]
    (lifetime,) = struct.unpack_from(">q", body, at + 4 + token_length)
    return error, message, server_token, lifetime


def metadata_v1_answers(sock: socket.socket) -> bool:
    """Sends Metadata v1 for no topics; whether an answer came (not a closed connection)."""
    sock.sendall(raw_request(METADATA, 1, struct.pack(">i", 0), correlation_id=7))
    try:
        body = recv_frame(sock)
    except (ConnectionError, OSError):
        return False
    return struct.unpack_from(">i", body, 0)[0] == 7
