#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: initdb in a temp dir, owned by and
# run as an unprivileged user (PostgreSQL refuses to run as root), listening
# on 127.0.0.1 only, on a free port, with trust authentication.
#
#   scripts/postgres.sh start         start one; print CLEARANCE_TEST_POSTGRES_DSN=... on stdout
#   scripts/postgres.sh stop          stop it and delete its files
#   scripts/postgres.sh restart [S]   stop it, wait S seconds (default 0), start it again
#                                     on the same port with the same data (tests of
#                                     what clients do when PostgreSQL restarts)
#   scripts/postgres.sh run CMD...    start, run CMD with CLEARANCE_TEST_POSTGRES_DSN exported, stop
#
# start records the cluster in a state file (CLEARANCE_PG_STATE, default
# $TMPDIR/clearance-postgres.state), so stop finds it from another shell;
# give each concurrent cluster its own CLEARANCE_PG_STATE. Progress and
# errors go to stderr, so `eval "$(scripts/postgres.sh start)"` or
# `export "$(scripts/postgres.sh start)"` sets the variable.
#
# Debian's postgresql package is installed when initdb is missing. The
# cluster runs with fsync off: it survives PostgreSQL being killed or
# restarted (the OS still holds the writes) but not the machine crashing,
# which is all a test cluster needs and makes CREATE DATABASE fast.
set -euo pipefail

tmp=${TMPDIR:-/tmp}
state=${CLEARANCE_PG_STATE:-$tmp/clearance-postgres.state}
db_user=clearance

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# pg_bin finds PostgreSQL's server binaries, installing them if needed.
pg_bin() {
  local d
  for d in ${PG_BIN:-} /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then echo "$d"; return; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"; return
  fi
  [[ $(id -u) == 0 ]] || die "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
  log "installing PostgreSQL (apt-get install -y postgresql)"
  # The cluster Debian creates and starts by itself is not used: stop it
  # from starting at all.
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/clearance.conf
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [[ -x $d/initdb ]]; then echo "$d"; return; fi
  done
  die "initdb not found after installing postgresql"
}

# as_owner runs a command as the cluster's owner: the postgres user when we
# are root, ourselves otherwise.
owner=
as_owner() {
  if [[ -n $owner ]]; then
    runuser -u "$owner" -- "$@"
  else
    "$@"
  fi
}

pick_owner() {
  [[ $(id -u) == 0 ]] || return 0
  owner=${CLEARANCE_PG_OWNER:-postgres}
  if ! id "$owner" >/dev/null 2>&1; then
    log "creating system user $owner"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$owner"
  fi
}

# port_free reports whether nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port picks below the kernel's ephemeral range (32768 by default), where
# no outgoing connection's source port can take it before the server binds.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((15000 + RANDOM % 17000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  die "no free port found"
}

start() {
  if [[ -e $state ]]; then
    die "a cluster is already recorded in $state; run '$0 stop' first (or set CLEARANCE_PG_STATE)"
  fi
  local bin dir port dsn
  bin=$(pg_bin)
  pick_owner
  dir=$(mktemp -d "$tmp/clearance-pg.XXXXXX")
  # mktemp makes it 0700 for us; the cluster's owner must own it instead.
  [[ -z $owner ]] || chown "$owner:" "$dir"

  as_owner "$bin/initdb" -D "$dir/data" -U "$db_user" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=trust --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; rm -rf "$dir"; die "initdb failed"; }

  # Another process can take the port between the check and the start:
  # try a few.
  local ok=
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c full_page_writes=off -c max_connections=300" \
      >/dev/null 2>&1; then
      ok=1
      break
    fi
  done
  if [[ -z $ok ]]; then
    cat "$dir/postgres.log" >&2 || true
    rm -rf "$dir"
    die "PostgreSQL did not start"
  fi
  for _ in $(seq 100); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres; then break; fi
    sleep 0.1
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres ||
    { stop_dir "$bin" "$dir"; die "PostgreSQL is not accepting connections on 127.0.0.1:$port"; }

  dsn="postgres://$db_user@127.0.0.1:$port/postgres?sslmode=disable"
  printf 'dir=%s\nbin=%s\nowner=%s\ndsn=%s\n' "$dir" "$bin" "$owner" "$dsn" >"$state"
  log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir/data"
  echo "CLEARANCE_TEST_POSTGRES_DSN=$dsn"
}

# stop_dir stops the cluster in $2 (if it runs) and deletes it.
stop_dir() {
  local bin=$1 dir=$2
  if [[ -f $dir/data/postmaster.pid ]]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  case $dir in
    */clearance-pg.*) rm -rf "$dir" ;;
  esac
}

stop() {
  [[ -f $state ]] || { log "no cluster recorded in $state"; return 0; }
  local dir bin
  dir=$(sed -n 's/^dir=//p' "$state")
  bin=$(sed -n 's/^bin=//p' "$state")
  owner=$(sed -n 's/^owner=//p' "$state")
  stop_dir "$bin" "$dir"
  rm -f "$state"
  log "stopped, removed $dir"
}

restart() {
  [[ -f $state ]] || die "no cluster recorded in $state"
  local dir bin down=${1:-0}
  dir=$(sed -n 's/^dir=//p' "$state")
  bin=$(sed -n 's/^bin=//p' "$state")
  owner=$(sed -n 's/^owner=//p' "$state")
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || die "PostgreSQL did not stop"
  sleep "$down"
  # restart, unlike start, reuses the options of the last start
  # (postmaster.opts): the same port and socket directory.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 restart >/dev/null 2>&1 ||
    { tail -20 "$dir/postgres.log" >&2; die "PostgreSQL did not start again"; }
  log "restarted (down ${down}s)"
}

run() {
  [[ $# -gt 0 ]] || die "usage: $0 run CMD [ARG...]"
  # A state file of our own, so that run never touches a cluster started
  # by start.
  state=$(mktemp "$tmp/clearance-postgres.XXXXXX.state")
  rm -f "$state"
  local line
  line=$(start)
  trap stop EXIT
  export "${line?}"
  "$@"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart) shift; restart "$@" ;;
  run) shift; run "$@" ;;
  *) die "usage: $0 start|stop|restart [SECONDS]|run CMD [ARG...]" ;;
esac
