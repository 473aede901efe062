#!/usr/bin/env bash
# make demo: a verifier on its embedded SQLite, the osquery stand-in playing a
# compliant Mac, and an agent enrolled against both. Shows the Mac passing,
# flips it to failing, and shows it failing, all through grpcurl.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${DATA:-demo-data}
VERIFIER=${VERIFIER:-localhost:8443}
HTTP=${HTTP:-localhost:8080}
SSO=${SSO:-localhost:8444}
export PATH="$BIN:$PATH"

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

admin() { # admin METHOD [JSON]
  local args=(-cacert "$DATA/ca.pem" -H "authorization: Bearer $(cat "$DATA/admin.token")")
  [ $# -gt 1 ] && args+=(-d "$2")
  grpcurl "${args[@]}" "$VERIFIER" "clearance.admin.v1.AdminService/$1"
}

# policies prints "STATUS  policy  name" lines from the "policies" list of a
# GetDevice/RequestCheck answer (grpcurl's JSON, one field per line).
policies() {
  awk -F'"' '
    /^  "policies": \[/ {on = 1}
    on && /"policyId"/ {id = $4}
    on && /"name"/     {name = $4}
    on && /"status"/   {s = $4; sub("POLICY_STATUS_", "", s); printf "    %-5s %-14s %s\n", s, id, name}'
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what; logs are in $DATA/*.log" >&2
  exit 1
}

bold "Starting clearance-verifier with an empty data dir ($DATA)"
rm -rf "$DATA"
mkdir -p "$DATA"
clearance-verifier serve --data-dir "$DATA" --policies examples/policies.yaml \
  --grpc-listen "$VERIFIER" --http-listen "$HTTP" --sso-listen "$SSO" --public-url "https://$VERIFIER" >"$DATA/verifier.log" 2>&1 &
pids+=($!)
wait_for 30 "the verifier" grpcurl -cacert "$DATA/ca.pem" "$VERIFIER" grpc.health.v1.Health/Check
ls -l "$DATA" | sed 's/^/    /'

bold "Creating an enroll secret"
SECRET=$(clearance-verifier secret create --data-dir "$DATA" --description "make demo" 2>/dev/null | tail -n 1)
echo "    (a secret: shown once, kept only as a hash)"

bold "Starting the osquery stand-in as a compliant Mac"
cp pkg/osquerysim/testdata/compliant-mac.json "$DATA/mac.json"
osquery-sim --socket "$DATA/osquery.sock" --fixture "$DATA/mac.json" >"$DATA/osquery.log" 2>&1 &
pids+=($!)
wait_for 10 "the osquery socket" test -S "$DATA/osquery.sock"

bold "Starting clearance-agent (enrolls, connects, reports)"
clearance-agent run --verifier "$VERIFIER" --ca-file "$DATA/ca.pem" --enroll-secret "$SECRET" \
  --osquery-socket "$DATA/osquery.sock" --state-dir "$DATA/agent" >"$DATA/agent.log" 2>&1 &
pids+=($!)
compliant() { admin ListDevices | grep -q '"compliant": true'; }
wait_for 30 "a passing report" compliant
DEVICE=$(admin ListDevices | awk -F'"' '/"deviceId"/ {print $4; exit}')
echo "    device $DEVICE enrolled and reported"

bold "grpcurl ... AdminService/GetDevice: the Mac passes"
admin GetDevice "{\"device_id\": \"$DEVICE\"}" | tee "$DATA/pass.json" | policies
grep -q '"compliant": true' "$DATA/pass.json" && echo "    => compliant"

bold "The user turns FileVault and the firewall off (the stand-in flips to failing)"
cp pkg/osquerysim/testdata/failing-mac.json "$DATA/mac.json"
sleep 1

bold "grpcurl ... AdminService/RequestCheck: a live check, answered in moments"
start=$(date +%s%N)
admin RequestCheck "{\"device_id\": \"$DEVICE\", \"timeout\": \"5s\"}" | tee "$DATA/fail.json" | policies
echo "    => fresh signed report in $(( ($(date +%s%N) - start) / 1000000 )) ms"
admin GetDevice "{\"device_id\": \"$DEVICE\"}" | grep -q '"compliant": true' && { echo "device still compliant?" >&2; exit 1; }
echo "    => not compliant: FileVault and the firewall fail"

echo
echo "Logs: $DATA/verifier.log, $DATA/agent.log, $DATA/osquery.log"
if [ -t 0 ] && [ -z "${DEMO_EXIT:-}" ]; then
  echo "The verifier is still running on $VERIFIER; try the grpcurl examples in the README"
  echo "(export VERIFIER=$VERIFIER DATA=$DATA DEVICE=$DEVICE). Press Ctrl-C to stop."
  wait "${pids[0]}"
fi
