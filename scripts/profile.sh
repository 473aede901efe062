#!/usr/bin/env bash
# Profiles the sign-in path: BenchmarkSSOBesidePeer, one row at a time, with
# -cpuprofile and -memprofile, then `go tool pprof -top` of each profile.
#
#   PROFILE_ROWS       which rows (default: clearance-agent clearance-certificate
#                      crewjam; clearance-assertion is the agent row with only
#                      the Assertion signed)
#   PROFILE_BENCHTIME  benchtime of each round (default 3s; five rounds)
#   PROFILE_NODES      lines of each top (default 30)
#   PROFILE_DIR        where the test binary and profiles are kept (default: a
#                      temporary directory, removed at the end); open one with
#                      `go tool pprof -http=: $PROFILE_DIR/server.test $PROFILE_DIR/cpu-<row>.pprof`
#
# For each row it prints: the process's flat CPU (what the cycles are
# spent in; the browsers share the process), the cumulative CPU of the
# identity provider's goroutines (labelled side=idp: its handlers, its
# connections' TLS, the store's writer) less the RSA signatures and the
# setup (what each step of a sign-in costs beyond the signatures every IdP
# pays), and the bytes allocated under the handlers.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${PROFILE_ROWS:-clearance-agent clearance-certificate crewjam}
benchtime=${PROFILE_BENCHTIME:-3s}
nodes=${PROFILE_NODES:-30}
dir=${PROFILE_DIR:-}
if [ -z "$dir" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
bin=$dir/server.test
go test -c -o "$bin" ./verifier/server/

# The handlers of each server in the benchmark: the verifier's SSO listener
# (its presence endpoint, and the goroutines a sign-in starts: the
# certificate lookup beside the request ID's write, the response signed
# beside the decision's) and the peer's crewjam IdP.
focus='signin\.\(\*Handler\)\.(sso|presence)$|signin\.\(\*Handler\)\.(sso|finish)\.func[0-9]+$|saml\.\(\*IdentityProvider\)\.ServeSSO$'
# What the benchmark does before timing, left out of the whole-process
# view: the verifier, the peer and the enrolled Macs (keys, enrollment, the
# agents' streams: idle while sign-ins are timed, since every report is
# fresh) and the Okta requests, signed in advance.
setup='startSSOBench|startCrewjamPeer|ssoBench\)\.(browser|requests)|rsaIdentity|google\.golang\.org/grpc'

for row in $rows; do
  cpu=$dir/cpu-$row.pprof mem=$dir/mem-$row.pprof
  echo "== $row: $benchtime x 5 rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  # The test binary runs in its package directory, as go test runs it.
  (cd verifier/server && "$bin" -test.run='^$' -test.bench="^BenchmarkSSOBesidePeer\$/^$row(#[0-9]+)?\$" \
    -test.benchtime="$benchtime" -test.count=1 -test.cpuprofile="$cpu" -test.memprofile="$mem" \
    -test.memprofilerate=65536) | grep -E '^(Benchmark|PASS|FAIL|ok)'
  echo
  echo "-- $row: CPU, flat, whole process but the setup"
  go tool pprof -top -nodecount="$nodes" -ignore="$setup" "$bin" "$cpu" 2>/dev/null | sed 1,4d
  echo
  echo "-- $row: CPU, cumulative, the identity provider's goroutines, the RSA signatures and the setup left out"
  go tool pprof -top -cum -nodecount="$nodes" -tagfocus=side=idp -ignore="rsa\.SignPKCS1v15|$setup" "$bin" "$cpu" 2>/dev/null | sed 1,4d
  echo
  echo "-- $row: bytes allocated under the SSO handlers"
  go tool pprof -top -nodecount="$nodes" -sample_index=alloc_space -focus="$focus" "$bin" "$mem" 2>/dev/null | sed 1,4d
  echo
done
