#!/usr/bin/env bash
# Measures clearance-agent at rest: a verifier, the osquery stand-in and an
# enrolled agent reporting every INTERVAL; after the first report, samples the
# agent's RSS and CPU time from /proc over IDLE_SECONDS. Prints two lines of
# "name value unit" for bench.sh's table.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
IDLE_SECONDS=${IDLE_SECONDS:-60}
INTERVAL=${INTERVAL:-10s}
export PATH="$BIN:$PATH"

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

port() { python3 - 2>/dev/null <<'PY' || echo $((20000 + RANDOM % 20000))
import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}
grpc="127.0.0.1:$(port)"
http="127.0.0.1:$(port)"

clearance-verifier serve --data-dir "$dir/v" --policies examples/policies.yaml \
  --grpc-listen "$grpc" --http-listen "$http" --public-url "https://$grpc" >"$dir/verifier.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -f "$dir/v/admin.token" ] && grpcurl -cacert "$dir/v/ca.pem" "$grpc" grpc.health.v1.Health/Check >/dev/null 2>&1 && break; sleep 0.1; done
secret=$(clearance-verifier secret create --data-dir "$dir/v" 2>/dev/null | tail -n 1)

osquery-sim --socket "$dir/osq.sock" --fixture compliant-mac >"$dir/osquery.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/osq.sock" ] && break; sleep 0.1; done

clearance-agent run --verifier "$grpc" --ca-file "$dir/v/ca.pem" --enroll-secret "$secret" \
  --osquery-socket "$dir/osq.sock" --state-dir "$dir/agent" --interval "$INTERVAL" \
  --managed-plist "$dir/none.plist" >"$dir/agent.log" 2>&1 &
agent=$!
pids+=($agent)
token=$(cat "$dir/v/admin.token")
for _ in $(seq 300); do
  grpcurl -cacert "$dir/v/ca.pem" -H "authorization: Bearer $token" "$grpc" clearance.admin.v1.AdminService/ListDevices 2>/dev/null | grep -q '"compliant": true' && break
  sleep 0.1
done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
cpu0=$(cpu)
t0=$(date +%s%N)
peak=0
for _ in $(seq "$IDLE_SECONDS"); do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$agent/status")
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
cpu1=$(cpu)
t1=$(date +%s%N)
awk -v c0="$cpu0" -v c1="$cpu1" -v hz="$ticks" -v t0="$t0" -v t1="$t1" -v rss="$peak" -v iv="$INTERVAL" -v secs="$IDLE_SECONDS" 'BEGIN {
  printf "agent idle RSS (peak over %ss, interval %s) %.1f MiB\n", secs, iv, rss / 1024
  printf "agent idle CPU (over %ss, interval %s) %.3f %%\n", secs, iv, 100 * (c1 - c0) / hz / ((t1 - t0) / 1e9)
}'
