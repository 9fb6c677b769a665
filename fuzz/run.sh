#!/usr/bin/env bash
# Fuzzes the embedded broker's request decoding and dispatch, the CESQL parser and
# evaluator, the ingress's reading of requests, the config loader, record → CloudEvent
# conversion and Retry-After parsing, for a bounded time each, and reports executions and
# crashes.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET]      (default 300)
#
# Needs the nightly toolchain (libFuzzer instrumentation) and cargo-fuzz, which it installs
# from crates.io when missing. Seeds: the request frames that Kafka clients sent to a broker,
# recorded by fuzz/seeds.sh into fuzz/seeds/ (committed). Crashes land in
# fuzz/artifacts/<target>/; each one is a request that must become a regression test.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-300}
# TARGETS="cesql ingress" runs only those.
read -r -a targets <<<"${TARGETS:-request_frames_memory request_frames_sqlite cesql ingress config event retry_after}"

rustup toolchain list | grep -q '^nightly' || { echo "the nightly toolchain is needed" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  seeds=seeds
  [ "$target" = cesql ] && seeds=seeds-cesql
  [ "$target" = ingress ] && seeds=seeds-ingress
  [ "$target" = config ] && seeds=seeds-config
  # Built from the fuzzer's own structured input: no seeds.
  [ "$target" = event ] || [ "$target" = retry_after ] && seeds=/nonexistent
  cp -n "$seeds"/* "corpus/$target/" 2>/dev/null || true
  log=$(mktemp)
  set +e
  cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 -timeout=10 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"$log" 2>&1
  code=$?
  set -e
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  crashes=$(find "artifacts/$target" -type f | wc -l)
  echo "$target: ${SECONDS_PER_TARGET}s, ${runs:-?} executions, $crashes crash files, exit $code"
  if [ "$code" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|^error' "$log" | head -20 || true
  fi
  rm -f "$log"
done
exit $status
