#!/bin/sh
# A job: reads its topic in its consumer group and handles each record until none has come
# for $SLUICE_IDLE_TIMEOUT, then exits; sluice starts it again when records are waiting.
# sluice sets the variables below; to run it by hand, set them yourself.
set -eu
: "${KAFKA_BOOTSTRAP_SERVERS:?} ${KAFKA_TOPICS:?} ${KAFKA_GROUP_ID:?} ${SLUICE_IDLE_TIMEOUT:?}"
case $KAFKA_TOPICS in
  *,*) echo "consume.sh reads one topic, got $KAFKA_TOPICS" >&2; exit 64 ;;
esac
name=${SLUICE_FUNCTION:-consume}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/records"

# The consumer writes to a FIFO that this shell reads, rather than into a pipeline, so that
# the shell knows its pid: a stop signal is passed on to it, so that it commits what was
# handled before it exits, and its exit status becomes the job's.
"${SLUICE_EXE:-sluice}" -b "$KAFKA_BOOTSTRAP_SERVERS" consume -t "$KAFKA_TOPICS" \
  -g "$KAFKA_GROUP_ID" --from-beginning --idle-exit "$SLUICE_IDLE_TIMEOUT" >"$dir/records" &
consumer=$!
trap 'kill -TERM "$consumer" 2>/dev/null || :' TERM INT HUP

while IFS= read -r record; do
  # The work: here, printing the record with the function's name in front.
  printf '%s: %s\n' "$name" "$record"
done <"$dir/records"
wait "$consumer"
