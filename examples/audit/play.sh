#!/bin/sh
# A game's event provider: POSTs each hit to sluice's ingress as a CloudEvent, keyed by the
# player (`ce-partitionkey`): mallory hits 12 times, carol 8, alice 5, bob 3.
# Uses $INGRESS as the ingress address when set, else http://127.0.0.1:8080.
set -eu
ingress="${INGRESS:-http://127.0.0.1:8080}"
game="$(date +%s)"
for round in 1 2 3 4 5 6 7 8 9 10 11 12; do
  for player in mallory carol alice bob; do
    case "$player" in
      carol) [ "$round" -le 8 ] || continue ;;
      alice) [ "$round" -le 5 ] || continue ;;
      bob) [ "$round" -le 3 ] || continue ;;
    esac
    # 202 comes back only once the hit is stored; anything else stops the game.
    curl --silent --show-error --fail-with-body --output /dev/null \
      -H "ce-specversion: 1.0" \
      -H "ce-id: game-$game-$player-$round" \
      -H "ce-source: /game/$game" \
      -H "ce-type: com.example.hit" \
      -H "ce-partitionkey: $player" \
      -H "content-type: application/json" \
      -d "{\"player\": \"$player\", \"round\": $round}" \
      "$ingress/topics/hits"
  done
done
echo "posted 28 hits to $ingress/topics/hits"
