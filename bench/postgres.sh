#!/usr/bin/env bash
# The embedded broker on PostgreSQL next to SQLite: `sluice produce --count` and
# `sluice consume --from-beginning` against a broker on each storage, in the same run.
# It starts a PostgreSQL server of its own (Debian's, as the postgres user when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-100000}
SIZE=${SIZE:-100}
source bench/lib.sh

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
chmod 777 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGPORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U sluice --auth=trust -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1" -w start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null; for p in "${pids[@]}"; do kill -INT $p 2>/dev/null; wait $p 2>/dev/null; done; rm -rf "$WORK"' EXIT
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U sluice broker

printf '%-10s %-22s %-22s\n' storage "produce (records/s)" "consume (records/s)"
for storage in sqlite "postgres://sluice@127.0.0.1:$PGPORT/broker"; do
  PORT=$(free_port)
  BOOT=127.0.0.1:$PORT
  "$BIN" broker --storage "$storage" --listen "$BOOT" --data-dir "$WORK/data-$PORT" >"$WORK/broker-$PORT.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  "$BIN" -b "$BOOT" topics create rates --partitions 4 >/dev/null
  line=$("$BIN" -b "$BOOT" produce -t rates --count "$COUNT" --size "$SIZE" 2>&1 | tail -1)
  produced=$(sed -E 's/.*: ([0-9]+) records\/s.*/\1/' <<<"$line")
  started=$(date +%s.%N)
  "$BIN" -b "$BOOT" consume -t rates --from-beginning --count "$COUNT" --format json >/dev/null
  ended=$(date +%s.%N)
  consumed=$(python3 -c "print(f'{$COUNT / ($ended - $started):.0f}')")
  printf '%-10s %-22s %-22s\n' "${storage%%:*}" "$produced" "$consumed"
done
