#!/usr/bin/env bash
# Producer throughput: `sluice produce --count` against confluent-kafka's own producer, both
# writing to the same embedded broker (memory storage) in the same run, two rounds each.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000000}
SIZE=${SIZE:-100}
ROUNDS=${ROUNDS:-2}

cargo build --release --quiet
BIN=$PWD/target/release/sluice
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BOOT=127.0.0.1:$PORT
WORK=$(mktemp -d)
"$BIN" broker --storage memory --listen "$BOOT" --data-dir "$WORK" >"$WORK/broker.log" 2>&1 &
BROKER=$!
trap 'kill -INT $BROKER 2>/dev/null; wait $BROKER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

echo "records: $COUNT x $SIZE bytes, embedded broker with memory storage at $BOOT"
printf '%-6s %-22s %-22s %s\n' round "sluice (records/s)" "confluent-kafka (r/s)" ratio
for round in $(seq "$ROUNDS"); do
  "$BIN" -b "$BOOT" topics create "sluice-$round" --partitions 3 >/dev/null
  "$BIN" -b "$BOOT" topics create "python-$round" --partitions 3 >/dev/null
  line=$("$BIN" -b "$BOOT" produce -t "sluice-$round" --count "$COUNT" --size "$SIZE" 2>&1 | tail -1)
  ours=$(sed -E 's/.*: ([0-9]+) records\/s.*/\1/' <<<"$line")
  theirs=$(python3 bench/produce.py "$BOOT" "python-$round" "$COUNT" "$SIZE")
  ratio=$(python3 -c "print(f'{$ours / $theirs:.2f}')")
  printf '%-6s %-22s %-22s %s\n' "$round" "$ours" "$theirs" "$ratio"
done
