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
set -euo pipefail
KIT=${FLEETCARE_TIMESCALEDB_KIT:-../shared/timescaledb}
ci() { [[ ${CI:-} =~ ^(1|true|yes)$ ]]; }

if [[ -n ${FLEETCARE_TEST_TIMESCALE_URL:-} ]]; then
  exec "$@"
fi
reason=""
if [[ ! -x $KIT/start-cluster.sh || ! -x $KIT/install.sh ]]; then
  reason="no TimescaleDB kit at $KIT (set FLEETCARE_TIMESCALEDB_KIT or FLEETCARE_TEST_TIMESCALE_URL)"
elif [[ $(id -u) -ne 0 ]]; then
  reason="the TimescaleDB kit at $KIT needs root to install and start its cluster"
fi
if [[ -n $reason ]]; then
  if ci; then
    echo "with-timescaledb: $reason; CI must test the TimescaleDB path" >&2
    exit 1
  fi
  echo "with-timescaledb: $reason; the TimescaleDB path will be skipped" >&2
  exec "$@"
fi

"$KIT/install.sh" >&2
WORK=$(mktemp -d /tmp/fc-tsdb.XXXXXX)
chmod 755 "$WORK" # the server runs as postgres and must be able to enter it
cleanup() {
  "$KIT/stop-cluster.sh" "$WORK/pgdata" >&2 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
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
set +e
"$@"
status=$?
set -e
exit $status
