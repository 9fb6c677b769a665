#!/usr/bin/env bash
# Records seed inputs for the fuzz targets: runs a debug-logging broker, drives it with the
# client compatibility scripts (tests/clients) and sluice's own commands, and keeps every
# distinct request frame in fuzz/seeds/.
set -euo pipefail
cd "$(dirname "$0")/.."
# BIN: a sluice binary to record with (default: a debug build of this checkout).
if [ -z "${BIN:-}" ]; then
  cargo build --quiet
  BIN=$PWD/target/debug/sluice
fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BOOT=127.0.0.1:$PORT
log=$(mktemp)
RUST_LOG=nisshi_service::frame=debug "$BIN" broker --listen "$BOOT" --storage memory 2>"$log" &
broker=$!
trap 'kill $broker 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
for script in kafkajs.js kafka_python.py aiokafka_client.py librdkafka_admin.py; do
  case $script in *.js) node "tests/clients/$script" "$BOOT" ;; *) python3 "tests/clients/$script" "$BOOT" ;; esac >/dev/null || true
done
printf 'a:1\nb:2\n' | "$BIN" -b "$BOOT" produce -t seeds -K : -H h=v >/dev/null 2>&1
"$BIN" -b "$BOOT" consume -t seeds -g seeds --from-beginning --count 2 >/dev/null
kill $broker; wait $broker 2>/dev/null || true
python3 fuzz/seeds.py fuzz/seeds <"$log"
