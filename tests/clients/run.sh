#!/usr/bin/env bash
# Runs every client compatibility script against a running broker and reports which failed.
#
#   tests/clients/run.sh BOOTSTRAP        (e.g. 127.0.0.1:9092)
#
# Set-up, once:  (cd tests/clients && npm ci --no-audit --no-fund)
#                python3 -m pip install -r tests/clients/requirements.txt
# After each script, when a sluice binary is found ($SLUICE, else target/release/sluice),
# `sluice -b BOOTSTRAP topics list` says whether the broker still serves.
# Exit code: 0 when every script passed, 1 when any failed, 2 on bad usage.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BOOTSTRAP" >&2
  exit 2
fi
bootstrap=$1
here=$(cd "$(dirname "$0")" && pwd)
sluice=${SLUICE:-$here/../../target/release/sluice}

if [ ! -d "$here/node_modules/kafkajs" ]; then
  echo "kafkajs is not installed: run (cd $here && npm ci --no-audit --no-fund)" >&2
fi

# label, interpreter, script
scripts=(
  "kafkajs node kafkajs.js"
  "kafka-python python3 kafka_python.py"
  "aiokafka python3 aiokafka_client.py"
  "librdkafka-admin python3 librdkafka_admin.py"
)

failed=()
passed=()
for entry in "${scripts[@]}"; do
  read -r label interpreter script <<<"$entry"
  echo "=== $label"
  # Each script bounds itself; this is the backstop.
  timeout -k 5 180 "$interpreter" "$here/$script" "$bootstrap"
  status=$?
  if [ "$status" -eq 0 ]; then
    passed+=("$label")
  else
    [ "$status" -eq 124 ] && echo "FAIL: $label was killed after 180 s"
    failed+=("$label (exit $status)")
  fi
  if [ -x "$sluice" ]; then
    if timeout 20 "$sluice" -b "$bootstrap" topics list >/dev/null 2>&1; then
      echo "info: after $label the broker still serves (sluice topics list succeeded)"
    else
      echo "info: after $label the broker does not serve (sluice topics list failed)"
    fi
  fi
done

echo "=== summary"
echo "passed: ${passed[*]:-none}"
echo "failed: ${failed[*]:-none}"
[ "${#failed[@]}" -eq 0 ]
