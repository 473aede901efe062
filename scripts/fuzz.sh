#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time beyond its seed
# corpus (the seeds also run in every plain `go test`).
#
#   scripts/fuzz.sh [FUZZTIME]      every target, FUZZTIME each (default 10s)
#
# One fuzzing test binary is built per package (`go test -c -fuzz`), and the
# targets run from those binaries FUZZJOBS at a time (default 2, each with one
# fuzzing worker): `go test -fuzz` would build, link and vet the package again
# for each of its targets. Failing inputs are written where `go test -fuzz`
# writes them (the package's testdata/fuzz) and the generated corpus is kept
# in the same cache (`go env GOCACHE`/fuzz), so `go test` reruns both.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_of() { # dir: the package's fuzzing test binary
  local d=${1#./}
  echo "$FUZZ_WORK/${d//\//_}.test"
}
crashers() { # dir fn: the failing inputs on disk, one name a line
  ls "$1/testdata/fuzz/$2" 2>/dev/null || true
}

case "${1:-}" in
--build) # dir: exits 255 on failure so that xargs starts nothing more
  go test -c -fuzz=. -o "$(bin_of "$2")" "$2" || exit 255
  exit 0
  ;;
--run) # dir fn
  dir=$2 fn=$3
  bin=$(bin_of "$dir")
  log="${bin%.test}.$fn.log"
  run_target() {
    (cd "$dir" && "$bin" -test.run='^$' -test.fuzz="^${fn}\$" -test.fuzztime="$FUZZTIME" \
      -test.fuzzminimizetime=2s -test.parallel=1 -test.timeout=10m \
      -test.fuzzcachedir="$FUZZ_CACHE/$FUZZ_MODULE/${dir#./}") >"$log" 2>&1
  }
  # Go 1.26's fuzzing coordinator can fail a target with a bare "context
  # deadline exceeded" at the -fuzztime boundary when the machine is busy
  # (golang/go#75804, fixed in Go 1.27): nothing is found and no failing
  # input is written. Such a run is tried again, up to three runs in all; a
  # run that writes a failing input under testdata/fuzz, or fails any other
  # way, fails at once.
  for attempt in 1 2 3; do
    before=$(crashers "$dir" "$fn")
    if run_target; then
      echo "fuzz: $dir $fn ($FUZZTIME): ok"
      exit 0
    fi
    if [ "$(crashers "$dir" "$fn")" != "$before" ] || ! grep -q '^    context deadline exceeded$' "$log" ||
      grep -q 'Failing input written' "$log"; then
      break
    fi
    echo "fuzz: $dir $fn stopped on the coordinator's deadline race with nothing found (run $attempt)" >&2
  done
  echo "fuzz: $dir $fn ($FUZZTIME): FAILED" >&2
  cat "$log" >&2
  exit 255
  ;;
esac

export FUZZTIME=${1:-10s}
FUZZ_CACHE="$(go env GOCACHE)/fuzz"
FUZZ_MODULE=$(go list -m)
FUZZ_WORK=$(mktemp -d)
export FUZZ_CACHE FUZZ_MODULE FUZZ_WORK
trap 'rm -rf "$FUZZ_WORK"' EXIT
jobs=${FUZZJOBS:-2}

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
  case $t in
  *[!A-Za-z0-9_./\ -]*)
    echo "fuzz: a target's package path has characters this script does not pass on: $t" >&2
    exit 1
    ;;
  esac
done

self="$PWD/scripts/fuzz.sh"
printf '%s\n' "${targets[@]}" | cut -d' ' -f1 | sort -u | xargs -P "$jobs" -n 1 "$self" --build
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -n 2 "$self" --run
echo "fuzz: ${#targets[@]} targets, no failures"
