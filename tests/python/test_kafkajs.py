"""kafkajs 2.2 (Node.js), a client with its own protocol code, against corelog: plaintext and
SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, each a produce (acks -1) then a consumer
group read from the beginning (tests/node/roundtrip.js), and a wrong password refused with
kafkajs's SASL authentication error while the broker keeps serving.

scripts/test.sh installs kafkajs with `npm ci` in tests/node (pinned by its package-lock.json).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from clients import first_offset, wait_until
# The secure broker's fixtures and helpers, shared with the other clients' security tests.
from test_security import (MECHANISMS, PASSWORD, TIMEOUT_S, assert_still_serves,  # noqa: F401
                           pki, secure_broker)

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
ROUNDTRIP_JS = NODE_DIR / "roundtrip.js"
# roundtrip.js gives up by itself after 60 s; this only catches a node that cannot even do that.
NODE_TIMEOUT_S = 90
COUNT = 20

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None,
                       reason="node not installed (Node.js is needed for the kafkajs tests)"),
    pytest.mark.skipif(not (NODE_DIR / "node_modules" / "kafkajs").is_dir(),
                       reason="kafkajs not installed in tests/node/node_modules "
                              "(scripts/test.sh installs it with npm ci)"),
]


def kafkajs_roundtrip(brokers: str, topic: str, ca: Path | None = None,
                      sasl: dict | None = None, count: int = COUNT) -> dict:
    """Run tests/node/roundtrip.js once; its JSON result (`ok` says whether it succeeded)."""
    config = {"brokers": [brokers], "ca": str(ca) if ca else None, "sasl": sasl,
              "topic": topic, "count": count}
    proc = subprocess.run(["node", str(ROUNDTRIP_JS), json.dumps(config)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"roundtrip.js printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert proc.returncode == (0 if result["ok"] else 1), (proc.returncode, result, proc.stderr)
    result["stderr"] = proc.stderr
    return result


def kafkajs_sasl(mechanism: str, password: str = PASSWORD) -> dict:
    # kafkajs spells mechanisms in lower case: 'plain', 'scram-sha-256', 'scram-sha-512'.
    return {"mechanism": mechanism.lower(), "username": "alice", "password": password}


def assert_round_trip(result: dict, broker, count: int = COUNT) -> None:
    """All `count` records went to partition 0 of `broker` in one batch from its first offset
    and came back in order with their keys and values."""
    assert result["ok"], f"kafkajs failed: {result['error']}\n{result['stderr']}"
    base = first_offset(broker, int(result["produced"][0]["baseOffset"]))
    assert result["produced"] == [{"partition": 0, "errorCode": 0, "baseOffset": str(base)}], result
    assert result["consumed"] == [
        {"partition": 0, "offset": str(base + i), "key": f"k{i}", "value": f"v{i}"}
        for i in range(count)
    ], result


def test_kafkajs_plaintext_round_trip(broker, topic):
    """kafkajs produces with acks -1 to a new topic on the PLAINTEXT listener and a consumer
    group of its own reads every record back from the beginning, in order."""
    assert_round_trip(kafkajs_roundtrip(broker.bootstrap, topic), broker)


@pytest.mark.parametrize("mechanism", MECHANISMS.split(","))
def test_kafkajs_sasl_ssl_each_mechanism(secure_broker, pki, topic, mechanism):  # noqa: F811
    """kafkajs authenticates over SASL_SSL (server certificate checked against the test CA)
    with each mechanism, then produces and consumes through a group the same records."""
    result = kafkajs_roundtrip(secure_broker.address("SASL_SSL"), topic, ca=pki.ca.cert,
                               sasl=kafkajs_sasl(mechanism))
    assert_round_trip(result, secure_broker)
    assert PASSWORD not in secure_broker.stderr_text(), "the password reached the log"


@pytest.mark.parametrize("mechanism", MECHANISMS.split(","))
def test_kafkajs_wrong_password_is_refused(secure_broker, pki, topic, mechanism):  # noqa: F811
    """A wrong password makes kafkajs fail with its non-retriable KafkaJSSASLAuthenticationError
    carrying the broker's SASL_AUTHENTICATION_FAILED message; the broker keeps serving: kafkajs
    with the right password, and a plaintext client, get through afterwards."""
    wrong = "not-the-password"
    result = kafkajs_roundtrip(secure_broker.address("SASL_SSL"), topic, ca=pki.ca.cert,
                               sasl=kafkajs_sasl(mechanism, wrong))
    assert not result["ok"], result
    error = result["error"]
    assert error["name"] == "KafkaJSSASLAuthenticationError", error
    assert error["retriable"] is False, error
    # "SASL <mechanism> authentication failed: <detail>". kafkajs takes the detail from the
    # SaslAuthenticate response's error_message only when its error_code is 58
    # (SASL_AUTHENTICATION_FAILED), so finding it in the broker's log shows what was answered.
    prefix, _, detail = error["message"].partition(" authentication failed: ")
    assert prefix.startswith("SASL ") and detail, error
    wait_until(lambda: detail in secure_broker.stderr_text(), TIMEOUT_S,
               f"the broker's log line for the refusal ({detail!r})")
    assert wrong not in secure_broker.stderr_text(), "the password reached the log"
    secure_broker.check_not_died("the round trip after the refusal")
    assert_round_trip(kafkajs_roundtrip(secure_broker.address("SASL_SSL"), topic + "-ok",
                                        ca=pki.ca.cert, sasl=kafkajs_sasl(mechanism)),
                      secure_broker)
    assert_still_serves(secure_broker, topic + "-plain")
