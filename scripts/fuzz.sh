#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time beyond its seed
# corpus (the seeds also run in every plain `go test`).
set -euo pipefail
fuzztime=${1:-10s}
cd "$(dirname "$0")/.."

mapfile -t targets < <(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . |
  while read -r file; do
    dir=$(dirname "$file")
    grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //' | while read -r fn; do
      echo "$dir $fn"
    done
  done | sort)

if [ ${#targets[@]} -eq 0 ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi
for t in "${targets[@]}"; do
  read -r dir fn <<<"$t"
  echo "fuzz: $dir $fn ($fuzztime)"
  go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" -fuzzminimizetime=2s "$dir"
done
echo "fuzz: ${#targets[@]} targets, no failures"
