#!/bin/sh
# Produces a game's hits to `hits`, one record per hit, keyed by the player:
# mallory hits 12 times, carol 8, alice 5, bob 3.
# Uses $SLUICE as the sluice binary when set, else `sluice` on the PATH.
set -eu
for round in 1 2 3 4 5 6 7 8 9 10 11 12; do
  echo "mallory:round $round"
  if [ "$round" -le 8 ]; then echo "carol:round $round"; fi
  if [ "$round" -le 5 ]; then echo "alice:round $round"; fi
  if [ "$round" -le 3 ]; then echo "bob:round $round"; fi
done | "${SLUICE:-sluice}" produce -t hits -K :
