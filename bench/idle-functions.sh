#!/usr/bin/env bash
# Idle footprint with 100 `command` functions scaled to zero: resident memory and CPU of
# `sluice up` over a quiet interval, next to the 40 MiB / 1% budget and to `sluice broker`
# alone in the same run. Measured twice: the functions alone, and with one trigger as well
# (a trigger's consumer polls the broker even when nothing arrives).
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-10}
FUNCTIONS=${FUNCTIONS:-100}

. bench/lib.sh

config() { # file with-trigger
  {
    echo "topics: [{name: events, partitions: 4}]"
    echo "functions:"
    for i in $(seq "$FUNCTIONS"); do
      printf '  f%03d: {command: [python3, -m, http.server, --bind, 127.0.0.1], min: 0}\n' "$i"
    done
    if [ "$2" = yes ]; then
      echo "triggers: [{name: t, topics: [events], function: f001}]"
    fi
  } >"$1"
}

start_up() { # name config -> pid
  local port admin
  port=$(free_port); admin=$(free_port)
  "$BIN" -c "$2" up --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --data-dir "$WORK/$1" >"$WORK/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  UP_PID=$!
}

config "$WORK/functions.yaml" no
config "$WORK/trigger.yaml" yes
start_up functions "$WORK/functions.yaml"; alone=$UP_PID
start_up trigger "$WORK/trigger.yaml"; with_trigger=$UP_PID
bport=$(free_port)
"$BIN" broker --listen "127.0.0.1:$bport" --data-dir "$WORK/broker" >"$WORK/broker.log" 2>&1 &
pids+=($!)
broker=$!
sleep 2

children=$(pgrep -P "$alone" -c || true)
children_trigger=$(pgrep -P "$with_trigger" -c || true)
echo "function processes running: $children (functions alone), $children_trigger (with a trigger)"
measure "sluice up, $FUNCTIONS functions at zero" "$alone" 40 &
m1=$!
measure "sluice up, $FUNCTIONS functions at zero + 1 trigger" "$with_trigger" 40 &
m2=$!
measure "sluice broker (baseline)" "$broker" 40 &
m3=$!
wait "$m1" "$m2" "$m3"
