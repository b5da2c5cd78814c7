#!/usr/bin/env bash
# Runs the same confluent-kafka workload (scripts/bench_baseline.py) against two corelog
# binaries, alternating between them, so that a change is measured side by side in one run on
# a noisy machine. Prints one table row per run, prefixed with the build's label.
#
#   scripts/compare_builds.sh BEFORE_BIN AFTER_BIN [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

before="$1"
after="$2"
rounds="${3:-3}"
port=19700
python=.venv/bin/python

run_one() {
    local label="$1" binary="$2" round="$3"
    local data
    data="$(mktemp -d)"
    "$binary" serve --data-dir "$data" --listen "127.0.0.1:$port" --admin-listen off \
        2>"$data.log" &
    local pid=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    "$python" scripts/bench_baseline.py --bootstrap "127.0.0.1:$port" --topic "t$round" \
        --size 1024 --count 200000 --acks all --latency-count 5000 2>/dev/null \
        | grep -E '^\| (throughput|latency)' | sed "s/^/$label /"
    kill -TERM "$pid"
    wait "$pid" || true
    rm -rf "$data" "$data.log"
}

echo "label | scenario | in flight | linger.ms | messages | msgs/s | MB/s | p50 | p99 | p99.9 | max"
for round in $(seq 1 "$rounds"); do
    run_one before "$before" "$round"
    run_one after "$after" "$round"
done
