#!/usr/bin/env bash
# make demo: a verifier on its embedded SQLite, the osquery stand-in playing a
# compliant Mac, and an agent enrolled against both. Shows the Mac passing,
# flips it to failing, and shows it failing, all through grpcurl; and a
# browser holding the Mac's certificate signs in to Okta before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${DATA:-demo-data}
VERIFIER=${VERIFIER:-localhost:8443}
HTTP=${HTTP:-localhost:8080}
SSO=${SSO:-localhost:8444}
# A made-up Okta org: nothing is sent to it, the demo only shows what it would get.
OKTA_AUDIENCE=https://www.okta.com/saml2/service-provider/spclearancedemo
OKTA_ACS=https://example.okta.com/sso/saml2/0oaclearancedemo
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

# sign_in: the browser, presenting the Mac's certificate, brings Okta's
# factor-only AuthnRequest (HTTP-POST binding) to the SSO listener. Prints
# the HTTP status; the page is in $DATA/sign-in.html.
sign_in() {
  local xml
  xml='<saml2p:AuthnRequest xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol"'
  xml+=" AssertionConsumerServiceURL=\"$OKTA_ACS\" Destination=\"https://$SSO/saml/sso\" ForceAuthn=\"false\""
  xml+=" ID=\"id$(date +%s)$RANDOM$RANDOM\" IssueInstant=\"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\""
  xml+=' ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Version="2.0">'
  xml+="<saml2:Issuer xmlns:saml2=\"urn:oasis:names:tc:SAML:2.0:assertion\">$OKTA_AUDIENCE</saml2:Issuer>"
  xml+='<saml2:Subject xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"><saml2:NameID>ada@example.com</saml2:NameID></saml2:Subject>'
  xml+='<saml2p:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"/></saml2p:AuthnRequest>'
  curl -sS --cacert "$DATA/ca.pem" --cert "$DATA/agent/device.pem" --key "$DATA/agent/device.key" \
    -o "$DATA/sign-in.html" -w '%{http_code}' \
    --data-urlencode "SAMLRequest=$(printf '%s' "$xml" | base64 | tr -d '\n')" --data-urlencode "RelayState=demo" \
    "https://$SSO/saml/sso"
}

# decision prints the newest entry of the decision log.
decision() {
  admin ListDecisions '{"page_size": 1}' | awk -F'"' '
    /"reason"/ {r = $4} /"source"/ {s = $4} /"liveCheck"/ {l = $4}
    /"policyId"/ {id = $4} /"status": "POLICY_STATUS_FAIL"/ {failed = failed " " id}
    END {printf "    => decision log: %s%s (source %s, live check %s)\n", r, (failed ? ":" failed : ""), s, l}'
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
  --grpc-listen "$VERIFIER" --http-listen "$HTTP" --sso-listen "$SSO" --public-url "https://$VERIFIER" \
  --sso-public-url "https://$SSO" --okta-audience "$OKTA_AUDIENCE" --okta-acs-url "$OKTA_ACS" \
  >"$DATA/verifier.log" 2>&1 &
pids+=($!)
wait_for 30 "the verifier" grpcurl -cacert "$DATA/ca.pem" "$VERIFIER" grpc.health.v1.Health/Check
ls -l "$DATA" | sed 's/^/    /'

bold "Creating an enroll secret"
SECRET=$(clearance-verifier secret create --data-dir "$DATA" --description "make demo" 2>/dev/null | tail -n 1)
echo "    (a secret: shown once, kept only as a hash)"

bold "Starting the osquery stand-in as a compliant Mac"
cp internal/osquerysim/testdata/compliant-mac.json "$DATA/mac.json"
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

bold "The user signs in to an app: Okta sends the browser to https://$SSO/saml/sso"
status=$(sign_in)
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
status=$(sign_in)
grep -q 'SAMLResponse' "$DATA/sign-in.html" && { echo "a refused sign-in carries a SAMLResponse" >&2; exit 1; }
echo "    HTTP $status: $(sed -n 's:.*<h1>\(.*\)</h1>.*:\1:p' "$DATA/sign-in.html" | head -n 1)"
decision

echo
echo "Logs: $DATA/verifier.log, $DATA/agent.log, $DATA/osquery.log"
if [ -t 0 ] && [ -z "${DEMO_EXIT:-}" ]; then
  echo "The verifier is still running on $VERIFIER; try the grpcurl examples in the README"
  echo "(export VERIFIER=$VERIFIER DATA=$DATA DEVICE=$DEVICE). Press Ctrl-C to stop."
  wait "${pids[0]}"
fi
