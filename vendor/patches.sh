#!/usr/bin/env bash
# The vendored crates are the crates as published on crates.io plus the patch files in
# vendor/patches/<crate>/, applied in the order of that directory's `series` file.
#
#   vendor/patches.sh verify [CRATE...]   the vendored trees equal the published crates plus
#                                         their patches (exit 1 and a diff when not)
#   vendor/patches.sh apply CRATE...      rebuild vendor/<crate> from the crate and patches
#
# `vendor/upstream` names each crate's version and the sha256 of its .crate file. The .crate
# is taken from cargo's download cache when it is there, else from static.crates.io.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-verify}
shift || true

# Files of the published crate that are not vendored: its tests and benches (they need
# dev-dependencies and fixtures sluice does not carry) and cargo's packaging metadata.
excluded=(tests benches Cargo.lock .cargo_vcs_info.json Cargo.toml.orig)

crates=("$@")
if [ ${#crates[@]} -eq 0 ]; then
  mapfile -t crates < <(awk '!/^#/ && NF { print $1 }' "$here/upstream")
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# crate -> prints the path of a directory holding the published crate, patched
patched() {
  local crate=$1 version sha file cached
  read -r version sha < <(awk -v c="$crate" '$1 == c { print $2, $3 }' "$here/upstream")
  [ -n "${version:-}" ] || { echo "$crate is not in vendor/upstream" >&2; return 1; }
  file="$scratch/$crate-$version.crate"
  cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$version.crate" 2>/dev/null | head -1 || true)
  if [ -n "$cached" ]; then
    cp "$cached" "$file"
  else
    curl -sSfL -o "$file" "https://static.crates.io/crates/$crate/$crate-$version.crate"
  fi
  echo "$sha  $file" | sha256sum --check --quiet - >&2 || {
    echo "$crate-$version.crate does not have the sha256 vendor/upstream names" >&2
    return 1
  }
  tar -xzf "$file" -C "$scratch"
  local tree="$scratch/$crate-$version"
  for path in "${excluded[@]}"; do rm -rf "${tree:?}/$path"; done
  local series="$here/patches/$crate/series"
  if [ -f "$series" ]; then
    while read -r patch; do
      case "$patch" in '' | '#'*) continue ;; esac
      patch -d "$tree" -p1 -F0 -s --no-backup-if-mismatch <"$here/patches/$crate/$patch" >&2 || {
        echo "$crate: $patch does not apply to $crate $version" >&2
        return 1
      }
    done <"$series"
  fi
  echo "$tree"
}

status=0
for crate in "${crates[@]}"; do
  tree=$(patched "$crate")
  case "$mode" in
    verify)
      if diff -r -u "$tree" "$here/$crate" >"$scratch/$crate.diff"; then
        echo "ok: vendor/$crate is $(basename "$tree") plus $(grep -cvE '^(#|$)' "$here/patches/$crate/series" 2>/dev/null || echo 0) patches"
      else
        echo "FAIL: vendor/$crate differs from $(basename "$tree") plus its patches:"
        head -200 "$scratch/$crate.diff"
        status=1
      fi
      ;;
    apply)
      rm -rf "${here:?}/$crate"
      cp -a "$tree" "$here/$crate"
      echo "vendor/$crate rebuilt from $(basename "$tree") and its patches"
      ;;
    *)
      echo "usage: vendor/patches.sh verify|apply [CRATE...]" >&2
      exit 2
      ;;
  esac
done
exit $status
