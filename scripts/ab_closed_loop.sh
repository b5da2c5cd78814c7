#!/bin/bash
# Closed-loop A/B of broker binaries, alternating, 3 rounds: each binary serves 1 shard on
# CPU 0 and target/release/corelog bench produces on CPU 1 for 8 s (4 producers, 4 partitions,
# 32 in flight, 128 KiB batches).   bash scripts/ab_closed_loop.sh OLD_BINARY NEW_BINARY
# The default configuration (2 shards, no pinning), 5 rounds:
#   ROUNDS=5 SERVE_FLAGS= CLIENT_FLAGS= bash scripts/ab_closed_loop.sh OLD_BINARY NEW_BINARY
B="$(cd "$(dirname "$0")/.." && pwd)/target/release/corelog"
SERVE_FLAGS=${SERVE_FLAGS---shards 1 --cpus 0}
CLIENT_FLAGS=${CLIENT_FLAGS---cpus 1}
for round in $(seq 1 "${ROUNDS:-3}"); do for name in "$@"; do
  bin=$name; d=/tmp/ab-data; rm -rf $d
  $bin serve --data-dir $d --listen 127.0.0.1:19750 --admin-listen off $SERVE_FLAGS > /tmp/ab-srv.log 2>&1 & P=$!
  for t in $(seq 1 200); do grep -q "is ready" /tmp/ab-srv.log && break; sleep 0.05; done
  c=$($B bench produce --brokers 127.0.0.1:19750 --topic c --partitions 4 --producers 4 --max-in-flight 32 --batch-size 131072 --duration 8s $CLIENT_FLAGS --json 2>/dev/null | tail -1)
  kill $P; wait $P; rc=$?
  python3 -c "
import json,sys
c=json.loads(sys.argv[1])
print(f'$(basename $bin) round $round: closed {c[\"msgs_per_s\"]:.0f} msg/s p99 {c[\"latency_us\"][\"p99\"]} errors {c[\"errors\"]} exit $rc')
" "$c"
done; done
