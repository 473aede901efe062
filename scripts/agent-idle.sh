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

. scripts/processes.sh
HINT="make bench builds or installs it into ./bin"
require clearance-verifier clearance-agent osquery-sim grpcurl

dir=$(mktemp -d)
cleanup() {
  stop_all
  rm -rf "$dir"
}
trap cleanup EXIT

# Free ports chosen now, never the defaults: another verifier (a demo, a
# developer's) may hold those, and two benches may run at once.
grpc="127.0.0.1:$(free_port)"
http="127.0.0.1:$(free_port)"
sso="127.0.0.1:$(free_port)"
presence="127.0.0.1:$(free_port)"

start clearance-verifier "$dir/verifier.log" clearance-verifier serve --data-dir "$dir/v" --policies examples/policies.yaml \
  --grpc-listen "$grpc" --http-listen "$http" --sso-listen "$sso" --public-url "https://$grpc" \
  --agent-presence-port "${presence##*:}"
wait_for 30 "the verifier" grpcurl -connect-timeout 2 -cacert "$dir/v/ca.pem" "$grpc" grpc.health.v1.Health/Check
secret=$(clearance-verifier secret create --data-dir "$dir/v" 2>"$dir/secret.log" | tail -n 1) ||
  { sed 's/^/    /' "$dir/secret.log" >&2; die "clearance-verifier secret create failed"; }

start osquery-sim "$dir/osquery.log" osquery-sim --socket "$dir/osq.sock" --fixture compliant-mac
wait_for 10 "the osquery socket" test -S "$dir/osq.sock"

# The enroll secret in the agent's environment, not on its command line.
export CLEARANCE_ENROLL_SECRET="$secret"
start clearance-agent "$dir/agent.log" clearance-agent run --verifier "$grpc" --ca-file "$dir/v/ca.pem" \
  --osquery-socket "$dir/osq.sock" --state-dir "$dir/agent" --interval "$INTERVAL" \
  --managed-plist "$dir/none.plist" --presence-listen "$presence"
unset CLEARANCE_ENROLL_SECRET
agent=$(pid_of clearance-agent)
compliant() {
  # The token in grpcurl's environment, not on its command line.
  ADMIN_TOKEN="$(cat "$dir/v/admin.token")" grpcurl -connect-timeout 2 -cacert "$dir/v/ca.pem" \
    -expand-headers -H 'authorization: Bearer ${ADMIN_TOKEN}' "$grpc" \
    clearance.admin.v1.AdminService/ListDevices | grep -q '"compliant": true'
}
wait_for 30 "the agent's first passing report" compliant

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
cpu0=$(cpu)
t0=$(date +%s%N)
peak=0
for _ in $(seq "$IDLE_SECONDS"); do
  check_running "the agent at rest"
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
