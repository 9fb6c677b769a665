#!/usr/bin/env bash
# Idle footprint with 100 `command` functions scaled to zero: resident memory and CPU of
# `sluice up` over a quiet interval, next to the 40 MiB / 1% budget and to `sluice broker`
# alone in the same run. Measured twice: the functions alone, and with one trigger as well
# (a trigger's consumer polls the broker even when nothing arrives).
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-10}
FUNCTIONS=${FUNCTIONS:-100}

cargo build --release --quiet
BIN=$PWD/target/release/sluice
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -INT $p 2>/dev/null; wait $p 2>/dev/null; done; rm -rf "$WORK"' EXIT

measure() { # name pid -> prints rss MiB and CPU % of one core over $IDLE seconds
  local name=$1 pid=$2 hz ticks0 ticks1 rss
  hz=$(getconf CLK_TCK)
  ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep "$IDLE"
  ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  python3 -c "print(f'%-44s rss %6.1f MiB (%.2f of 40 MiB)   cpu %5.2f%% of one core' % ('$name', $rss / 1024, $rss / 1024 / 40, 100 * ($ticks1 - $ticks0) / $hz / $IDLE))"
}

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
measure "sluice up, $FUNCTIONS functions at zero" "$alone" &
m1=$!
measure "sluice up, $FUNCTIONS functions at zero + 1 trigger" "$with_trigger" &
m2=$!
measure "sluice broker (baseline)" "$broker" &
m3=$!
wait "$m1" "$m2" "$m3"
