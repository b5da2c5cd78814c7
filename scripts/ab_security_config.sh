#!/bin/bash
# Closed loop of one broker binary in three configurations, alternating, 3 rounds: no authorizer
# and no quota; the authorizer on with the client a super user; client quotas that never bind.
# Same load as ab_closed_loop.sh.   bash scripts/ab_security_config.sh [BINARY]
B="${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/corelog}"
for round in 1 2 3; do for mode in plain authz quota; do
  d=/tmp/ab-data; rm -rf $d
  extra=""; [ $mode = authz ] && extra="--authorizer on --super-users User:ANONYMOUS"
  $B serve --data-dir $d --listen 127.0.0.1:19750 --admin-listen off --shards 1 --cpus 0 $extra > /tmp/ab-srv.log 2>&1 & P=$!
  for t in $(seq 1 200); do grep -q "is ready" /tmp/ab-srv.log && break; sleep 0.05; done
  if [ $mode = quota ]; then $B quota set --user-default --producer-byte-rate 10000000000 --request-percentage 100000 --brokers 127.0.0.1:19750 >/dev/null; fi
  c=$($B bench produce --brokers 127.0.0.1:19750 --topic c --partitions 4 --producers 4 --max-in-flight 32 --batch-size 131072 --duration 8s --cpus 1 --json 2>/dev/null | tail -1)
  kill $P; wait $P; rc=$?
  python3 -c "
import json,sys
c=json.loads(sys.argv[1])
print(f'$mode round $round: closed {c[\"msgs_per_s\"]:.0f} msg/s p99 {c[\"latency_us\"][\"p99\"]} errors {c[\"errors\"]} exit $rc')
" "$c"
done; done
