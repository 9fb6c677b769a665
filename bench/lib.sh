# Shared by the benchmark scripts: builds the release binary, gives free ports, a work
# directory removed at exit, and stops every process listed in `pids` at exit.
# shellcheck shell=bash
cargo build --release --quiet
BIN=$PWD/target/release/sluice
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -INT $p 2>/dev/null; wait $p 2>/dev/null; done; rm -rf "$WORK"' EXIT

# name pid [budget MiB] -> prints RSS and CPU % of one core over $IDLE seconds
measure() {
  local name=$1 pid=$2 budget=${3:-} hz ticks0 ticks1 rss
  hz=$(getconf CLK_TCK)
  ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep "$IDLE"
  ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  python3 -c "
rss, budget = $rss / 1024, float('${budget:-0}')
share = ' (%.2f of %g MiB)' % (rss / budget, budget) if budget else ''
print('%-44s rss %6.1f MiB%s   cpu %5.2f%% of one core' % ('$name', rss, share, 100 * ($ticks1 - $ticks0) / $hz / $IDLE))"
}
