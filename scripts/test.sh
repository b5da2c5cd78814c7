#!/usr/bin/env bash
# Runs every test of corelog: Rust unit and integration tests, then the Python client suite
# against the release binary. Needs only the Rust toolchain, Python 3.11 and apt; installs the
# rest (a virtualenv with pinned Kafka clients in .venv, kcat from Debian, and kafkajs from npm in
# tests/node when Node.js is there).
# A failing Rust test does not stop the Python suite: every suite runs, and the script exits
# non-zero at the end if any failed. A failed build or install stops at once.
# Extra arguments are passed to pytest, e.g. `scripts/test.sh -k kcat`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==== %s ====\n' "$*"; }
failed=()

section "cargo build --release"
cargo build --release

section "cargo test --release"
cargo test --release --no-fail-fast || failed+=("cargo test")

section "Python environment (.venv)"
python_bin="$(command -v python3.11 || command -v python3)"
if [[ ! -x .venv/bin/python ]]; then
    "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r tests/python/requirements.txt

section "kcat"
if ! command -v kcat >/dev/null 2>&1; then
    sudo_cmd=()
    if [[ "$(id -u)" -ne 0 ]]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq kcat
fi
kcat -V 2>&1 | sed -n 1p

section "Node.js client (kafkajs, tests/node)"
if command -v node >/dev/null 2>&1; then
    node --version
    (cd tests/node && npm ci --no-audit --no-fund --silent)
else
    echo "node not found: the kafkajs tests will be skipped"
fi

section "pytest tests/python"
CORELOG_BIN="$PWD/target/release/corelog" .venv/bin/python -m pytest tests/python "$@" \
    || failed+=("pytest tests/python")

section "summary"
if (( ${#failed[@]} )); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all test suites passed"
