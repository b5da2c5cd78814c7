#!/usr/bin/env bash
# Produce throughput and latency of a three-node cluster on this machine, by replication factor
# and acks, beside one single node, all with the same binary and one shard per node.
#
#   scripts/bench_cluster.sh [BINARY] [ROUNDS] [DURATION]
#
# Every node runs on this one machine, so the figures measure the replication path's cost
# (three logs written and fsynced on one device, Raft over loopback), not a cluster's capacity.
# Prints one line per round and configuration: "<config> <JSON of corelog bench produce>".
set -euo pipefail

BIN=${1:-target/release/corelog}
ROUNDS=${2:-3}
DURATION=${3:-10s}
WORK=$(mktemp -d /tmp/corelog-bench-cluster.XXXXXX)
PIDS=()

stop_all() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "port $1 never opened" >&2
    exit 1
}

# start_cluster RF: three voters, one shard each, topics created with replication factor RF.
start_cluster() {
    local rf=$1 voters="1@127.0.0.1:19101,2@127.0.0.1:19102,3@127.0.0.1:19103"
    for node in 1 2 3; do
        rm -rf "$WORK/n$node"
        "$BIN" serve --node-id "$node" --data-dir "$WORK/n$node" --listen "127.0.0.1:1909$node" \
            --cluster-listen "127.0.0.1:1910$node" --controller-quorum-voters "$voters" \
            --admin-listen off --shards 1 --default-replication-factor "$rf" \
            >"$WORK/n$node.log" 2>&1 &
        PIDS+=($!)
    done
    for node in 1 2 3; do
        wait_port "1909$node"
    done
}

start_single() {
    rm -rf "$WORK/single"
    "$BIN" serve --data-dir "$WORK/single" --listen 127.0.0.1:19091 --admin-listen off \
        --shards 1 >"$WORK/single.log" 2>&1 &
    PIDS+=($!)
    wait_port 19091
}

bench() {
    local name=$1 acks=$2 topic=$3
    local json attempt
    # A new cluster answers NOT_CONTROLLER until it has elected its controller, and a new
    # topic has no leader until its replicas elected one: the set-up is tried again.
    for attempt in $(seq 1 40); do
        if json=$("$BIN" bench produce --brokers 127.0.0.1:19091,127.0.0.1:19092,127.0.0.1:19093 \
            --topic "$topic" --acks "$acks" --duration "$DURATION" --warmup 2s --producers 4 \
            --message-size 1024 --json 2>"$WORK/bench.err" | tail -1) && [ -n "$json" ]; then
            echo "$name acks=$acks $json"
            return 0
        fi
        sleep 0.5
    done
    echo "$name acks=$acks failed: $(cat "$WORK/bench.err")" >&2
    exit 1
}

for round in $(seq 1 "$ROUNDS"); do
    start_single
    bench "single-node" -1 "single-$round"
    stop_all
    for rf in 1 3; do
        start_cluster "$rf"
        bench "cluster-rf$rf" -1 "rf$rf-all-$round"
        bench "cluster-rf$rf" 1 "rf$rf-one-$round"
        stop_all
    done
done
