#!/usr/bin/env bash
# Drain rate: `sluice consume --from-beginning` against confluent-kafka's own consumer, both
# reading the same records from the same embedded broker in the same run, alternating.
# STORAGE=sqlite|memory (default sqlite), COUNT records of SIZE bytes, ROUNDS rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-200000}
SIZE=${SIZE:-100}
ROUNDS=${ROUNDS:-3}
STORAGE=${STORAGE:-sqlite}
PARTITIONS=4
source bench/lib.sh

PORT=$(free_port)
BOOT=127.0.0.1:$PORT
"$BIN" broker --storage "$STORAGE" --listen "$BOOT" --data-dir "$WORK/data" >"$WORK/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

"$BIN" -b "$BOOT" topics create drain --partitions "$PARTITIONS" >/dev/null
"$BIN" -b "$BOOT" produce -t drain --count "$COUNT" --size "$SIZE" >/dev/null 2>&1
echo "records: $COUNT x $SIZE bytes in $PARTITIONS partitions, embedded broker with $STORAGE storage"
printf '%-6s %-22s %-22s %s\n' round "sluice (records/s)" "confluent-kafka (r/s)" ratio
for round in $(seq "$ROUNDS"); do
  started=$(date +%s.%N)
  "$BIN" -b "$BOOT" consume -t drain --from-beginning --count "$COUNT" --format json >/dev/null
  ended=$(date +%s.%N)
  ours=$(python3 -c "print(f'{$COUNT / ($ended - $started):.0f}')")
  theirs=$(python3 bench/consume.py "$BOOT" drain "$PARTITIONS" "$COUNT")
  ratio=$(python3 -c "print(f'{$ours / $theirs:.2f}')")
  printf '%-6s %-22s %-22s %s\n' "$round" "$ours" "$theirs" "$ratio"
done
