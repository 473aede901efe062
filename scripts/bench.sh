#!/usr/bin/env bash
# Measures report ingest (signature verify + durable SQLite store) and, in
# the same run on the same cores, the raw ECDSA P-256 verify it cannot go
# below; prints both and their ratio. Then measures the agent at rest.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-2s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

go test -run='^$' -bench='^(BenchmarkECDSAP256Verify|BenchmarkAccept)$' -benchtime="$benchtime" -count=1 ./verifier/ingest/ | tee "$out" >&2

awk '
  /^BenchmarkECDSAP256Verify/ { for (i = 1; i <= NF; i++) if ($(i+1) == "ns/op") raw = $i }
  /^BenchmarkAccept/          { for (i = 1; i <= NF; i++) if ($(i+1) == "ns/op") ing = $i }
  END {
    if (raw == "" || ing == "") { print "benchmarks missing from output" > "/dev/stderr"; exit 1 }
    printf "\n%-44s %12s %12s\n", "measure", "µs/op", "per second"
    printf "%-44s %12.1f %12.0f\n", "ECDSA P-256 verify (raw ceiling)", raw/1000, 1e9/raw
    printf "%-44s %12.1f %12.0f\n", "report verify + store (SQLite, durable)", ing/1000, 1e9/ing
    printf "%-44s %12.2f\n", "ingest rate / raw verify rate", raw/ing
  }' "$out"

echo
echo "agent at rest (osquery stand-in, ${IDLE_SECONDS:-60}s; set IDLE_SECONDS to change):" >&2
make --no-print-directory build >/dev/null
scripts/agent-idle.sh | sed 's/^/  /'
