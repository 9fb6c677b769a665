#!/usr/bin/env bash
# Idle footprint of `sluice up` with the quickstart config: resident memory and CPU over a
# quiet interval, next to the budget (60 MiB) and to `sluice broker` alone in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-10}

. bench/lib.sh

port=$(free_port); admin=$(free_port)
"$BIN" -c examples/quickstart/sluice.yaml up --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --data-dir "$WORK/up" >"$WORK/up.log" 2>&1 &
pids+=($!)
up=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

bport=$(free_port)
"$BIN" broker --listen "127.0.0.1:$bport" --data-dir "$WORK/broker" >"$WORK/broker.log" 2>&1 &
pids+=($!)
broker=$!
sleep 2

measure "sluice up (quickstart)" "$up" &
m1=$!
measure "sluice broker (baseline)" "$broker" &
m2=$!
wait "$m1" "$m2"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$up/status")
python3 -c "print(f'sluice up idle RSS / 60 MiB budget = {$rss / 1024 / 60:.2f}')"
