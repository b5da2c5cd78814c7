#!/bin/bash
# A neighbour's produce latency beside a partition whose batches are recompressed into its
# topic's compression.type (BENCHMARKS.md, "Recompression off the shard"). One broker of
# BINARY in its default configuration on a fresh data directory under /tmp/recompression/LABEL;
# t-gzip and t-probe2 land on the same shard (check the placement file), then three rounds of:
# the probe alone, the probe beside a closed-loop gzip load, a closed loop into a zstd topic.
# Results: one JSON file per run in that directory.
#
# usage: scripts/recompression_neighbour.sh BINARY LABEL
set -euo pipefail
BIN=$1
LABEL=$2
D=/tmp/recompression/$LABEL
rm -rf "$D"
mkdir -p "$D"
"$BIN" serve --data-dir "$D/data" > "$D/broker.log" 2>&1 &
BROKER=$!
for _ in $(seq 50); do "$BIN" topic list > /dev/null 2>&1 && break; sleep 0.2; done
"$BIN" topic create t-gzip -p 1 -c compression.type=gzip
"$BIN" topic create t-probe -p 1
"$BIN" topic create t-probe2 -p 1
"$BIN" topic create t-zstd -p 1 -c compression.type=zstd
curl -s localhost:9644/metrics | grep produced_bytes_total | grep 't-' > "$D/placement"
for round in 1 2 3; do
  "$BIN" bench produce --topic t-probe2 --rate 1000 --duration 10s --json | tail -1 > "$D/alone-$round.json"
  "$BIN" bench produce --topic t-gzip --batch-size 524288 --duration 16s --json | tail -1 > "$D/gzipload-$round.json" &
  LOAD=$!
  sleep 3
  "$BIN" bench produce --topic t-probe2 --rate 1000 --duration 10s --json | tail -1 > "$D/loaded-$round.json"
  wait $LOAD
  "$BIN" bench produce --topic t-zstd --compression none --duration 10s --json | tail -1 > "$D/zstd-$round.json"
done
kill -TERM $BROKER
wait $BROKER
