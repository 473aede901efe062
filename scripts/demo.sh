#!/usr/bin/env bash
# make demo: a verifier on its embedded SQLite, the osquery stand-in playing a
# compliant Mac, and an agent enrolled against both. Shows the Mac passing,
# flips it to failing, and shows it failing, all through grpcurl; and a
# browser on the Mac (curl, with a cookie jar and no certificate) signs in to
# Okta before and after, proving it runs on the Mac through the agent's
# loopback endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${DATA:-demo-data}
VERIFIER=${VERIFIER:-localhost:8443}
HTTP=${HTTP:-localhost:8080}
SSO=${SSO:-localhost:8444}
# Where the agent gives the Mac's browser its proof of presence (loopback).
PRESENCE=${PRESENCE:-127.0.0.1:47470}
# A made-up Okta org: nothing is sent to it, the demo only shows what it would get.
# Its requests are unsigned (curl cannot sign them), hence --allow-unsigned-requests
# below; a real verifier is given Okta's request-signing certificate instead.
OKTA_AUDIENCE=https://www.okta.com/saml2/service-provider/spclearancedemo
OKTA_ACS=https://example.okta.com/sso/saml2/0oaclearancedemo
export PATH="$BIN:$PATH"
. scripts/processes.sh
HINT="make demo installs it"

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# A command that fails later (grpcurl, a sign-in) because a process exited
# says which one, with its status and log, before the script stops.
trap check_running ERR

require clearance-verifier clearance-agent osquery-sim grpcurl curl flock

# One demo per data dir: a second one would delete the first one's files
# under it. The lock is held (fd 9) for as long as this script runs, and
# records its pid for the message below.
mkdir -p "$DATA"
exec 9>>"$DATA/.demo.lock"
if ! flock -n 9; then
  pid=$(cat "$DATA/.demo.lock" 2>/dev/null || true)
  die "a demo is already running (pid ${pid:-unknown}) in $DATA; stop it with Ctrl-C in its terminal or kill ${pid:-it}"
fi
echo $$ >"$DATA/.demo.lock"

admin() { # admin METHOD [JSON]
  # The token reaches grpcurl through its environment, never its command
  # line, which every user of the machine can read.
  local args=(-cacert "$DATA/ca.pem" -expand-headers -H 'authorization: Bearer ${ADMIN_TOKEN}')
  [ $# -gt 1 ] && args+=(-d "$2")
  ADMIN_TOKEN="$(cat "$DATA/admin.token")" grpcurl "${args[@]}" "$VERIFIER" "clearance.admin.v1.AdminService/$1"
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

# hop prints one step of the ceremony: the method, where it went (without
# its query, which holds the one-time challenge or the signed statement) and
# the answer.
hop() { # hop METHOD URL STATUS [WHAT]
  printf '    %-4s %-46s -> %s%s\n' "$1" "${2%%\?*}" "$3" "${4:+ ($4)}"
}

# sign_in: the browser brings Okta's factor-only AuthnRequest (HTTP-POST
# binding) to the SSO listener, which sends it to the agent on loopback;
# the agent signs the Mac's proof of presence and sends it back; the
# verifier decides. Each hop is printed; the last page is in
# $DATA/sign-in.html and its HTTP status is in $status.
sign_in() {
  local xml
  xml='<saml2p:AuthnRequest xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol"'
  xml+=" AssertionConsumerServiceURL=\"$OKTA_ACS\" Destination=\"https://$SSO/saml/sso\" ForceAuthn=\"false\""
  xml+=" ID=\"id$(date +%s)$RANDOM$RANDOM\" IssueInstant=\"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\""
  xml+=' ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Version="2.0">'
  xml+="<saml2:Issuer xmlns:saml2=\"urn:oasis:names:tc:SAML:2.0:assertion\">$OKTA_AUDIENCE</saml2:Issuer>"
  xml+='<saml2:Subject xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"><saml2:NameID>ada@example.com</saml2:NameID></saml2:Subject>'
  xml+='<saml2p:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"/></saml2p:AuthnRequest>'
  local jar="$DATA/browser-cookies.txt" out agent back
  # 1. Okta's request: the verifier sends the browser to the agent.
  out=$(curl -sS --cacert "$DATA/ca.pem" -b "$jar" -c "$jar" -o /dev/null -w '%{http_code} %{redirect_url}' \
    --data-urlencode "SAMLRequest=$(printf '%s' "$xml" | base64 | tr -d '\n')" --data-urlencode "RelayState=demo" \
    "https://$SSO/saml/sso")
  agent=${out#* }
  hop POST "https://$SSO/saml/sso" "${out%% *}" "to the agent on this Mac"
  # 2. The agent signs the proof with the device key and sends it back.
  out=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$agent")
  back=${out#* }
  hop GET "$agent" "${out%% *}" "proof signed by the device key"
  # 3. The verifier checks the proof and decides.
  status=$(curl -sS --cacert "$DATA/ca.pem" -b "$jar" -c "$jar" -o "$DATA/sign-in.html" -w '%{http_code}' "$back")
  hop GET "$back" "$status"
}

# decision prints the newest entry of the decision log.
decision() {
  admin ListDecisions '{"page_size": 1}' | awk -F'"' '
    /"reason"/ {r = $4} /"source"/ {s = $4} /"liveCheck"/ {l = $4} /"binding"/ {b = $4}
    /"policyId"/ {id = $4} /"status": "POLICY_STATUS_FAIL"/ {failed = failed " " id}
    END {printf "    => decision log: %s%s (bound by %s, source %s, live check %s)\n", r, (failed ? ":" failed : ""), b, s, l}'
}

bold "Starting clearance-verifier with an empty data dir ($DATA)"
find "$DATA" -mindepth 1 -maxdepth 1 ! -name .demo.lock -exec rm -rf {} +
start clearance-verifier "$DATA/verifier.log" clearance-verifier serve --data-dir "$DATA" --policies examples/policies.yaml \
  --grpc-listen "$VERIFIER" --http-listen "$HTTP" --sso-listen "$SSO" --public-url "https://$VERIFIER" \
  --sso-public-url "https://$SSO" --okta-audience "$OKTA_AUDIENCE" --okta-acs-url "$OKTA_ACS" \
  --agent-presence-port "${PRESENCE##*:}" --allow-unsigned-requests
wait_for 30 "the verifier" grpcurl -cacert "$DATA/ca.pem" "$VERIFIER" grpc.health.v1.Health/Check
ls -l "$DATA" | sed 's/^/    /'

bold "Creating an enroll secret"
SECRET=$(clearance-verifier secret create --data-dir "$DATA" --description "make demo" 2>"$DATA/secret.log" | tail -n 1) ||
  { sed 's/^/    /' "$DATA/secret.log" >&2; die "clearance-verifier secret create failed"; }
echo "    (a secret: shown once, kept only as a hash)"

bold "Starting the osquery stand-in as a compliant Mac"
cp internal/osquerysim/testdata/compliant-mac.json "$DATA/mac.json"
start osquery-sim "$DATA/osquery.log" osquery-sim --socket "$DATA/osquery.sock" --fixture "$DATA/mac.json"
wait_for 10 "the osquery socket" test -S "$DATA/osquery.sock"

bold "Starting clearance-agent (enrolls, connects, reports)"
# The secret in the environment, not on a command line (env's included),
# where any local user can read it with ps.
export CLEARANCE_ENROLL_SECRET="$SECRET"
start clearance-agent "$DATA/agent.log" \
  clearance-agent run --verifier "$VERIFIER" --ca-file "$DATA/ca.pem" \
  --osquery-socket "$DATA/osquery.sock" --state-dir "$DATA/agent" \
  --presence-listen "$PRESENCE"
unset CLEARANCE_ENROLL_SECRET
compliant() { admin ListDevices | grep -q '"compliant": true'; }
wait_for 30 "a passing report" compliant
DEVICE=$(admin ListDevices | awk -F'"' '/"deviceId"/ {print $4; exit}')
echo "    device $DEVICE enrolled and reported"

bold "grpcurl ... AdminService/GetDevice: the Mac passes"
admin GetDevice "{\"device_id\": \"$DEVICE\"}" | tee "$DATA/pass.json" | policies
grep -q '"compliant": true' "$DATA/pass.json" && echo "    => compliant"

bold "The user signs in to an app: Okta sends the browser to https://$SSO/saml/sso"
sign_in
grep -q 'name="SAMLResponse"' "$DATA/sign-in.html" || { echo "no SAMLResponse (HTTP $status)" >&2; exit 1; }
echo "    HTTP $status: a signed SAMLResponse, auto-posted to $OKTA_ACS"
decision

bold "The user turns FileVault and the firewall off (the stand-in flips to failing)"
cp internal/osquerysim/testdata/failing-mac.json "$DATA/mac.json"
sleep 1

bold "grpcurl ... AdminService/RequestCheck: a live check, answered in moments"
start=$(date +%s%N)
admin RequestCheck "{\"device_id\": \"$DEVICE\", \"timeout\": \"5s\"}" | tee "$DATA/fail.json" | policies
echo "    => fresh signed report in $(( ($(date +%s%N) - start) / 1000000 )) ms"
admin GetDevice "{\"device_id\": \"$DEVICE\"}" | grep -q '"compliant": true' && { echo "device still compliant?" >&2; exit 1; }
echo "    => not compliant: FileVault and the firewall fail"

bold "The user signs in again: refused, with what to fix"
sign_in
grep -q 'SAMLResponse' "$DATA/sign-in.html" && { echo "a refused sign-in carries a SAMLResponse" >&2; exit 1; }
echo "    HTTP $status: $(sed -n 's:.*<h1>\(.*\)</h1>.*:\1:p' "$DATA/sign-in.html" | head -n 1)"
decision

echo
echo "Logs: $DATA/verifier.log, $DATA/agent.log, $DATA/osquery.log"
if [ -t 0 ] && [ -z "${DEMO_EXIT:-}" ]; then
  echo "The verifier is still running on $VERIFIER; try the grpcurl examples in the README"
  echo "(export VERIFIER=$VERIFIER DATA=$DATA DEVICE=$DEVICE). Press Ctrl-C to stop."
  # Until Ctrl-C, or until a process exits on its own, which is then
  # reported with its log. Ctrl-C here is the way to stop a demo that is
  # done, not an interruption: exit 0, so make reports no error.
  trap 'exit 0' INT
  while :; do
    check_running
    sleep 1
  done
fi
