#!/usr/bin/env bash
# Memory under load: `sluice up` with a trigger whose function is down while 1,000,000
# records pile up (lag grows), against the same process idle before the load. The broker
# runs as its own process (`sluice broker`, memory storage) so only the trigger is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000000}

. bench/lib.sh
bport=$(free_port); admin=$(free_port); down=$(free_port)
"$BIN" broker --storage memory --listen "127.0.0.1:$bport" --data-dir "$WORK" >"$WORK/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$bport) 2>/dev/null && break; sleep 0.1; done
cat >"$WORK/sluice.yaml" <<YAML
kafka: {bootstrap_servers: "127.0.0.1:$bport"}
admin: {listen: "127.0.0.1:$admin"}
topics: [{name: load, partitions: 4}]
triggers:
  - name: down
    topics: [load]
    url: http://127.0.0.1:$down/
    initial_offset: earliest
    ordering: unordered
YAML
"$BIN" -c "$WORK/sluice.yaml" up >"$WORK/up.log" 2>&1 &
pids+=($!)
up=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 3
idle=$(awk '/VmRSS/ {print $2}' "/proc/$up/status")

"$BIN" -b "127.0.0.1:$bport" produce -t load --count "$COUNT" --size 100 2>&1 | tail -1
sleep 10
peak=$(awk '/VmHWM/ {print $2}' "/proc/$up/status")
now=$(awk '/VmRSS/ {print $2}' "/proc/$up/status")
lag=$(curl -sf "http://127.0.0.1:$admin/api/status" | python3 -c 'import json, sys; t = json.load(sys.stdin)["triggers"][0]; print(t["lag"], t["in_flight"], t["waiting"])')
python3 - "$idle" "$peak" "$now" $lag <<'PY'
import sys
idle, peak, now, lag, in_flight, waiting = map(int, sys.argv[1:])
print(f"function down, lag {lag} records, {in_flight} in flight, {waiting} buffered")
print(f"sluice up RSS: idle {idle/1024:.1f} MiB, peak under load {peak/1024:.1f} MiB, now {now/1024:.1f} MiB")
print(f"peak / idle = {peak/idle:.2f}; peak / 128 MiB budget = {peak/1024/128:.2f}")
PY
