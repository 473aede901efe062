# Sourced by the scripts that run the real binaries (demo.sh, agent-idle.sh):
# starts background processes, waits for them to become ready without hiding
# why they are not, and stops them on exit.
#
#   require CMD...                   fail at once unless every CMD is on PATH
#   start NAME LOG CMD...            run CMD in the background, output to LOG
#   wait_for SECONDS WHAT PROBE...   run PROBE until it succeeds; fail at once
#                                    when a started process exits or PROBE's
#                                    command is missing, else after SECONDS
#   free_port                        a free TCP port on 127.0.0.1
#   stop_all                         SIGTERM every started process and wait
#
# The caller sets `set -euo pipefail` and `trap stop_all EXIT`.

_names=()
_pids=()
_logs=()

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

require() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "$c: command not found on PATH${HINT:+ ($HINT)}"
  done
}

# start closes fd 9 in the child: a caller's lock (demo.sh) is the caller's,
# not its children's.
start() {
  local name=$1 log=$2
  shift 2
  require "$1"
  "$@" >"$log" 2>&1 9>&- &
  _names+=("$name")
  _pids+=($!)
  _logs+=("$log")
}

# pid_of prints the pid of the started process NAME.
pid_of() {
  local i
  for i in "${!_names[@]}"; do
    if [ "${_names[$i]}" = "$1" ]; then echo "${_pids[$i]}"; return 0; fi
  done
  return 1
}

_tail() { # _tail LOG
  echo "  the end of $1:" >&2
  tail -n "${TAIL_LINES:-20}" "$1" 2>/dev/null | sed 's/^/    /' >&2 || true
}

# check_running fails, with the process's exit status and its log's end, as
# soon as any started process is gone.
check_running() {
  local i rc
  for i in "${!_pids[@]}"; do
    kill -0 "${_pids[$i]}" 2>/dev/null && continue
    rc=0
    wait "${_pids[$i]}" 2>/dev/null || rc=$?
    echo "$(basename "$0"): ${_names[$i]} exited (status $rc)${1:+ while waiting for $1}" >&2
    _tail "${_logs[$i]}"
    exit 1
  done
}

wait_for() {
  local secs=$1 what=$2 out rc deadline
  shift 2
  require "$1"
  out=$(mktemp)
  deadline=$((SECONDS + secs))
  while :; do
    rc=0
    "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
      rm -f "$out"
      return 0
    fi
    # A command missing inside PROBE (a function, a pipeline) will not
    # appear later: say so now rather than after the timeout.
    if [ "$rc" -eq 126 ] || [ "$rc" -eq 127 ] || grep -q ': command not found$' "$out"; then
      echo "$(basename "$0"): waiting for $what: $* failed (status $rc):" >&2
      sed 's/^/    /' "$out" >&2
      rm -f "$out"
      exit 1
    fi
    check_running "$what"
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$(basename "$0"): timed out after ${secs}s waiting for $what; the last try ($*) said:" >&2
      sed 's/^/    /' "$out" >&2
      rm -f "$out"
      local log
      for log in "${_logs[@]}"; do _tail "$log"; done
      exit 1
    fi
    sleep 0.1
  done
}

# free_port prints a port nothing answers on at 127.0.0.1, below the kernel's
# ephemeral range (as internal/localport picks): a port from that range, the
# kernel's own pick for port 0, may become an outgoing connection's source
# port before the server binds it. Another program naming the port may still
# take it first: a server started on it then exits with its own error, which
# wait_for reports.
free_port() {
  local lo=32768 p
  read -r lo _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  ((lo > 16000)) || lo=65536
  for _ in $(seq 50); do
    p=$((15000 + RANDOM % (lo - 15000)))
    ((p <= 65535)) || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

stop_all() {
  local p
  for p in "${_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
