#!/usr/bin/env bash
# Ingress throughput: `POST /topics/bench` on `sluice up` (embedded broker) under wrk, next to
# nginx answering the same requests with a fixed 202 in the same run, for a plain body and
# for a binary-mode CloudEvent; `sluice produce` to the same broker as a second anchor.
#
# Needs Debian's `nginx` and `wrk` (apt-get install nginx wrk), curl and python3; installs
# nothing itself. Builds the release binary first.
#
# Env: DURATION (wrk seconds, default 20), CONNECTIONS (64), THREADS (2), BODY (bytes, 100),
# COUNT (records for `sluice produce`, 200000), STORAGE (sqlite or memory, default sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
BODY=${BODY:-100}
COUNT=${COUNT:-200000}
STORAGE=${STORAGE:-sqlite}

missing=()
for tool in nginx wrk curl python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "bench/ingress.sh needs: ${missing[*]} (Debian: apt-get install nginx wrk curl python3)" >&2
  exit 1
fi

cargo build --release --quiet
BIN=$PWD/target/release/sluice
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
pids=()
# Stops every started process: SIGINT, up to 10 s, then SIGKILL.
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap stop_all EXIT
# Waits up to 30 s for a TCP port to accept.
wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1 after 30 s" >&2
  return 1
}

broker=$(free_port); admin=$(free_port); public=$(free_port); plain=$(free_port)
BOOT=127.0.0.1:$broker

# sluice: embedded broker, one ingress topic with 3 partitions.
cat >"$WORK/sluice.yaml" <<EOF
topics:
  - name: bench
    partitions: 3
ingress:
  listen: 127.0.0.1:$public
  topics: [bench]
EOF
"$BIN" -c "$WORK/sluice.yaml" up --listen "$BOOT" --admin-listen "127.0.0.1:$admin" \
  --public-listen "127.0.0.1:$public" --data-dir "$WORK/data" --storage "$STORAGE" --grace 5s \
  >"$WORK/sluice.log" 2>&1 &
SLUICE=$!
pids+=("$SLUICE")

# nginx: a fixed 202 for POST /topics/bench, in the foreground, with its own prefix.
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$plain;
    location = /topics/bench {
      limit_except POST { deny all; }
      default_type application/json;
      return 202 '{"topic":"bench","partition":0,"offset":0}';
    }
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" &
NGINX=$!
pids+=("$NGINX")

wait_port "$plain"
wait_port "$public"
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "sluice is not ready after 30 s:" >&2; tail -20 "$WORK/sluice.log" >&2; exit 1; }

# The wrk scripts: a fixed request, or one CloudEvent with its own id per request. Both report
# their counts and percentiles on one line, so nothing depends on wrk's text layout.
report='
function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end'
cat >"$WORK/plain.lua" <<EOF
wrk.method = "POST"
wrk.body = string.rep("x", $BODY)
wrk.headers["Content-Type"] = "text/plain"
$report
EOF
cat >"$WORK/ce.lua" <<EOF
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local body = string.rep("x", $BODY)
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "text/plain",
    ["ce-specversion"] = "1.0",
    ["ce-id"] = "wrk-" .. tid .. "-" .. counter,
    ["ce-source"] = "/bench/wrk",
    ["ce-type"] = "dev.sluice.bench.ingress",
    ["ce-partitionkey"] = "key-" .. (counter % 64),
  }, body)
end
$report
EOF

# CPU ticks (user + system) of a process and its children's threads: nginx's workers are
# processes of their own, so their ticks are added.
ticks() {
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
nginx_pids() { echo "$NGINX" $(ps -o pid= --ppid "$NGINX"); }
high_sum() { "$BIN" -b "$BOOT" topics describe bench | awk '$1 ~ /^[0-9]+$/ && NF == 4 {s += $4} END {print s + 0}'; }
stored_counter() {
  curl -sf "http://127.0.0.1:$admin/api/status" |
    python3 -c 'import json, sys; s = json.load(sys.stdin); print(sum(t["stored"] for t in s["edge"]["ingress"] if t["topic"] == "bench"))'
}
HZ=$(getconf CLK_TCK)

# name url script pids... -> one row of figures in $WORK/rows, and the raw wrk output in $WORK
run() {
  local name=$1 url=$2 script=$3; shift 3
  local t0 t1 out line
  t0=$(ticks "$@")
  out=$WORK/wrk-${name// /-}.txt
  timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$WORK/$script" "$url" >"$out" 2>&1 || { echo "wrk failed against $name:" >&2; cat "$out" >&2; exit 1; }
  t1=$(ticks "$@")
  line=$(grep '^RESULT ' "$out")
  echo "$name|$line|$((t1 - t0))" >>"$WORK/rows"
}

: >"$WORK/rows"
cores=$(nproc)
echo "ingress: POST /topics/bench, ${BODY}-byte body, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $cores cores"
echo "sluice up: embedded broker ($STORAGE) at $BOOT, topic bench with 3 partitions; nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), worker_processes 2, return 202"
started=$(date +%s)

run "nginx plain" "http://127.0.0.1:$plain/topics/bench" plain.lua $(nginx_pids)
h0=$(high_sum); s0=$(stored_counter)
run "sluice plain" "http://127.0.0.1:$public/topics/bench" plain.lua "$SLUICE"
sleep 1
h1=$(high_sum); s1=$(stored_counter)
run "nginx binary CE" "http://127.0.0.1:$plain/topics/bench" ce.lua $(nginx_pids)
run "sluice binary CE" "http://127.0.0.1:$public/topics/bench" ce.lua "$SLUICE"
sleep 1
h2=$(high_sum); s2=$(stored_counter)

# The second anchor: sluice's own librdkafka producer into the same broker and topic.
t0=$(ticks "$SLUICE"); w0=$(date +%s.%N)
produced=$(timeout 300 "$BIN" -b "$BOOT" produce -t bench --count "$COUNT" --size "$BODY" 2>&1 | tail -1)
t1=$(ticks "$SLUICE"); w1=$(date +%s.%N)
rate=$(sed -E 's/.*: ([0-9]+) records\/s.*/\1/' <<<"$produced")
h3=$(high_sum)

python3 - "$WORK/rows" "$DURATION" "$HZ" "$rate" "$COUNT" "$((t1 - t0))" "$h0" "$h1" "$h2" "$h3" "$s0" "$s1" "$s2" "$cores" "$CONNECTIONS" "$w0" "$w1" <<'EOF'
import sys
rows_file, duration, hz, rate, count, produce_ticks = sys.argv[1:7]
h0, h1, h2, h3, s0, s1, s2 = map(int, sys.argv[7:14])
cores, connections = int(sys.argv[14]), int(sys.argv[15])
produce_wall = float(sys.argv[17]) - float(sys.argv[16])
duration, hz, rate, count = float(duration), int(hz), float(rate), int(count)
rows = {}
for line in open(rows_file):
    name, result, ticks = line.rstrip("\n").split("|")
    fields = dict(kv.split("=") for kv in result.split()[1:])
    fields = {k: int(v) for k, v in fields.items()}
    seconds = fields["duration_us"] / 1e6
    ok = fields["requests"] - fields["non2xx"]
    rows[name] = dict(fields, ok=ok, seconds=seconds, rps=fields["requests"] / seconds,
                      ok_rps=ok / seconds, cpu=int(ticks) / hz / seconds,
                      cpu_us=int(ticks) / hz / max(fields["requests"], 1) * 1e6)
print()
print(f"{'run':<18} {'requests/s':>10} {'2xx':>9} {'non-2xx':>8} {'sock err':>8} {'p50':>8} {'p99':>8} "
      f"{'cpu (cores)':>11} {'cpu-us/req':>10} {'ratio':>6}")
for name, base in [("nginx plain", None), ("sluice plain", "nginx plain"),
                   ("nginx binary CE", None), ("sluice binary CE", "nginx binary CE")]:
    r = rows[name]
    errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    ratio = f"{r['ok_rps'] / rows[base]['ok_rps']:.2f}" if base else ""
    print(f"{name:<18} {r['ok_rps']:>10.0f} {r['ok']:>9} {r['non2xx']:>8} {errors:>8} "
          f"{r['p50_us'] / 1000:>6.2f}ms {r['p99_us'] / 1000:>6.2f}ms {r['cpu']:>11.2f} {r['cpu_us']:>10.1f} {ratio:>6}")
# Over the whole `sluice produce` run (start, metadata, sending, flush).
produce_cpu = int(produce_ticks) / hz / produce_wall
# CPU time is counted in 10 ms ticks per thread: over a run shorter than 2 s it says little.
produce_cores = f"{produce_cpu:>11.2f}" if produce_wall >= 2 else f"{'(<2 s)':>11}"
print(f"{'sluice produce':<18} {rate:>10.0f} {count:>9} {'':>8} {'':>8} {'':>8} {'':>8} {produce_cores} "
      f"{'':>10} {rate / rows['nginx plain']['ok_rps']:>6.2f}")
print("(requests/s counts 2xx answers only; ratio: against nginx with the same requests, the produce row against"
      " nginx plain; cpu: sluice's process (broker included) or nginx's master and workers, in cores; "
      "produce cpu is the broker's, in sluice's process)")
print()
print("records stored against 2xx answers (stored: the topic's high watermarks; counter: sluice's ingress `stored`,")
print("which counts acknowledgements that a request still waited for):")
for name, before, after, counted in [("sluice plain", h0, h1, s1 - s0), ("sluice binary CE", h1, h2, s2 - s1)]:
    r = rows[name]
    stored = after - before
    extra = stored - r["ok"]
    errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    bound = connections + errors
    if extra == 0:
        verdict = "equal"
    elif 0 < extra <= bound:
        verdict = (f"{extra:+d}: requests in flight when wrk stopped (at most {connections} connections"
                   f" + {errors} socket errors), stored but never answered")
    else:
        verdict = f"{extra:+d}: MISMATCH, outside 0..{bound}"
    print(f"  {name:<18} 2xx {r['ok']:>8}  stored {stored:>8}  counter {counted:>8}  non-2xx {r['non2xx']}  -> {verdict}")
print(f"  {'sluice produce':<18} sent {count:>7}  stored {h3 - h2:>8}")
ratios = [rows["sluice plain"]["ok_rps"] / rows["nginx plain"]["ok_rps"],
          rows["sluice binary CE"]["ok_rps"] / rows["nginx binary CE"]["ok_rps"]]
print()
print(f"aim: >= 0.5x nginx: plain {ratios[0]:.2f}x, binary CE {ratios[1]:.2f}x -> "
      + ("met" if min(ratios) >= 0.5 else "not met"))
EOF
echo "took $(($(date +%s) - started)) s"
