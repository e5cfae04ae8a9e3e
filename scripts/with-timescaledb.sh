#!/usr/bin/env bash
# with-timescaledb.sh COMMAND...
# Run COMMAND with FLEETCARE_TEST_TIMESCALE_URL set to a private TimescaleDB cluster started for
# this run only (its own port and data directory, stopped and removed afterwards), so that the
# test suite covers both storage paths. The cluster comes from a TimescaleDB kit built for this
# machine's PostgreSQL 15 (FLEETCARE_TIMESCALEDB_KIT, default ../shared/timescaledb): it is for
# development and CI only, and the product never needs it (users bring TimescaleDB from
# Timescale's own packages or image).
#   - FLEETCARE_TEST_TIMESCALE_URL already set: COMMAND runs against that server.
#   - no kit (a developer's laptop), or not root: COMMAND runs and the TimescaleDB path is
#     skipped; with CI=true this is an error instead (and the suite fails on it too).
# The plain PostgreSQL path gets a private cluster too (FLEETCARE_TEST_DATABASE_URL): the
# machine's PostgreSQL 15, initdb'd for this run with the settings of the TimescaleDB one (fsync
# off, same locale and port rules) and no extension. Each test copies and drops a database, and on
# a durable server each CREATE/DROP DATABASE is a forced checkpoint with fsyncs (about 0.5 s on a
# quiet machine, 5 s under load, against 0.05-0.3 s here). FLEETCARE_TEST_DATABASE_URL already
# set, or no initdb, or not root: the tests use that server or the machine's 127.0.0.1:5432.
# Both clusters' data folders are on /dev/shm (a RAM file system) when it has 2 GB free, else in
# /tmp; FLEETCARE_TEST_CLUSTER_BASE chooses another folder. Each test's copy of the template
# creates ~800 files and its drop deletes them. On an ext4 without a journal (this machine's /)
# every new file's inode search skips the inodes deleted in the last 30 s, so under the suite's
# own churn (and other jobs') a copy costs seconds of kernel CPU in the server: 20 copies and
# drops took 78 s in /tmp against 3.7 s in /dev/shm (load 15-17). fsync is off either way, and
# a run's two clusters hold ~150 MB.
set -euo pipefail
KIT=${FLEETCARE_TIMESCALEDB_KIT:-../shared/timescaledb}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ci() { [[ ${CI:-} =~ ^(1|true|yes)$ ]]; }
as_pg() {
  if [[ $(id -un) == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}
can_run_clusters() { [[ $(id -u) -eq 0 || $(id -un) == postgres ]]; }

want_plain=""
if [[ -z ${FLEETCARE_TEST_DATABASE_URL:-} && -x $PGBIN/initdb ]] && can_run_clusters; then
  want_plain=1
fi
if [[ -n ${FLEETCARE_TEST_TIMESCALE_URL:-} && -z $want_plain ]]; then
  exec "$@"
fi
want_tsdb=""
reason=""
if [[ -n ${FLEETCARE_TEST_TIMESCALE_URL:-} ]]; then
  : # that server is used as it is
elif [[ ! -x $KIT/start-cluster.sh || ! -x $KIT/install.sh ]]; then
  reason="no TimescaleDB kit at $KIT (set FLEETCARE_TIMESCALEDB_KIT or FLEETCARE_TEST_TIMESCALE_URL)"
elif [[ $(id -u) -ne 0 ]]; then
  reason="the TimescaleDB kit at $KIT needs root to install and start its cluster"
else
  want_tsdb=1
fi
if [[ -n $reason ]]; then
  if ci; then
    echo "with-timescaledb: $reason; CI must test the TimescaleDB path" >&2
    exit 1
  fi
  echo "with-timescaledb: $reason; the TimescaleDB path will be skipped" >&2
  [[ -n $want_plain ]] || exec "$@"
fi

cluster_base() {
  if [[ -n ${FLEETCARE_TEST_CLUSTER_BASE:-} ]]; then
    echo "$FLEETCARE_TEST_CLUSTER_BASE"
  elif [[ -d /dev/shm && -w /dev/shm && $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] &&
    (($(df -Pk /dev/shm | awk 'NR == 2 { print $4 }') >= 2 * 1024 * 1024)); then
    echo /dev/shm
  else
    echo /tmp
  fi
}
WORK=$(mktemp -d "$(cluster_base)/fc-tsdb.XXXXXX")
chmod 755 "$WORK" # the server runs as postgres and must be able to enter it
cleanup() {
  if [[ -f $WORK/pgdata/PG_VERSION ]]; then
    "$KIT/stop-cluster.sh" "$WORK/pgdata" >&2 || true
  fi
  if [[ -f $WORK/plain/PG_VERSION ]]; then
    as_pg "$PGBIN/pg_ctl" -D "$WORK/plain" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [[ -n $want_tsdb ]]; then
  "$KIT/install.sh" >&2
  url=""
  for _ in 1 2 3; do # another process may take the free port between the probe and the start
    if url=$("$KIT/start-cluster.sh" "$(free_port)" "$WORK/pgdata"); then
      break
    fi
    url=""
  done
  if [[ -z $url ]]; then
    echo "with-timescaledb: the private TimescaleDB cluster did not start; see $WORK/pgdata/server.log" >&2
    cat "$WORK/pgdata/server.log" >&2 || true
    exit 1
  fi
  FLEETCARE_TEST_TIMESCALE_URL=$url
  export FLEETCARE_TEST_TIMESCALE_URL
  echo "with-timescaledb: TimescaleDB for the tests at $url" >&2
fi

start_plain() { # PORT: initdb (once) and start the plain cluster; fails when the port is taken
  local data=$WORK/plain
  if [[ ! -f $data/PG_VERSION ]]; then
    mkdir -p "$data"
    [[ $(id -un) == postgres ]] || chown postgres:postgres "$data"
    chmod 700 "$data"
    as_pg "$PGBIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust \
      --no-sync >/dev/null
  fi
  as_pg "$PGBIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -o "-p $1 \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_connections=100 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
}
if [[ -n $want_plain ]]; then
  plain=""
  for _ in 1 2 3; do
    port=$(free_port)
    if start_plain "$port"; then
      plain="postgresql://postgres@127.0.0.1:$port/postgres"
      break
    fi
  done
  if [[ -n $plain ]]; then
    FLEETCARE_TEST_DATABASE_URL=$plain
    export FLEETCARE_TEST_DATABASE_URL
    echo "with-timescaledb: plain PostgreSQL for the tests at $plain" >&2
  else
    echo "with-timescaledb: the private plain cluster did not start (see $WORK/plain/server.log);" \
      "the tests use the machine's PostgreSQL" >&2
  fi
fi
set +e
"$@"
status=$?
set -e
exit $status
