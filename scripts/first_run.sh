#!/bin/bash
# First run of `fleetcare up` on a fresh database: when the API answers, when each model is
# active, when the first predicted order is raised, its parts shipped and delivered, and the
# first order completed (seconds from the start of `up`, polled every 2 s); the training logs'
# wall and CPU seconds; the load average. Never touches the shared `fleetcare` database.
#
#   scripts/first_run.sh NAME [PORT] [SECONDS]   # creates database fc_firstrun_NAME (dropped first)
#
# Output in /tmp/fleetcare-first-run-NAME/ (measure.txt, up.out, data/logs/).
set -u
NAME=$1; PORT=${2:-8811}; SECS=${3:-330}
ROOT=$(cd "$(dirname "$0")/.." && pwd); PY=${PYTHON:-$ROOT/.venv/bin/python}
PGHOST=${PGHOST:-127.0.0.1}; DB=fc_firstrun_$NAME; OUT=/tmp/fleetcare-first-run-$NAME
[ "$DB" = fleetcare ] && exit 2
rm -rf "$OUT"; mkdir -p "$OUT"
dropdb -h "$PGHOST" -U postgres --if-exists "$DB"; createdb -h "$PGHOST" -U postgres "$DB"
URL=postgresql://postgres@$PGHOST:5432/$DB
Q() { psql -h "$PGHOST" -U postgres -d "$DB" -Atc "$1" 2>/dev/null; }
say() { echo "$1" | tee -a "$OUT/measure.txt"; }
say "load at start: $(cat /proc/loadavg)"
T0=$(date +%s.%N)
cd "$ROOT"
env -u FLEETCARE_MQTT_URL FLEETCARE_DATABASE_URL="$URL" FLEETCARE_DATA_DIR="$OUT/data" \
  "$PY" -m cli up --port "$PORT" > "$OUT/up.out" 2>&1 < /dev/null &
UPPID=$!
say "up pid $UPPID started $(date -u +%T) UTC"
declare -A seen
E=0; ord=0; shp=0; dlv=0; cmp=0; fail=0
while true; do
  sleep 2
  E=$(python3 -c "import time; print(round(time.time() - $T0))")
  [ "$E" -ge "$SECS" ] && break
  kill -0 $UPPID 2>/dev/null || { say "up exited at $E s"; break; }
  if [ -z "${seen[api]:-}" ] && curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz"; then
    seen[api]=$E; say "API up at $E s"
  fi
  for k in tire elevator engine; do
    if [ -z "${seen[m$k]:-}" ] && [ "$(Q "select count(*) from model_versions where status = 'active' and kind = '$k'")" = 1 ]; then
      seen[m$k]=$E; say "model $k active at $E s"
    fi
  done
  S=$(Q "select (select count(*) from maintenance_orders where prediction_time is not null),
    (select count(*) from shipments where shipped_at is not null),
    (select count(*) from shipments where delivered_at is not null),
    (select count(*) from maintenance_orders where status = 'completed'),
    (select count(*) from failure_reports)")
  [ -n "$S" ] && IFS='|' read -r ord shp dlv cmp fail <<< "$S"
  for pair in "raised:$ord" "shipped:$shp" "delivered:$dlv" "completed:$cmp"; do
    n=${pair%%:*}; v=${pair#*:}
    if [ -z "${seen[$n]:-}" ] && [ "${v:-0}" -gt 0 ]; then seen[$n]=$E; say "first order $n at $E s"; fi
  done
  if [ $((E % 30)) -lt 2 ]; then
    say "$E s: predicted orders $ord, shipped $shp, delivered $dlv, completed $cmp, failures $fail; load $(cut -d' ' -f1-3 /proc/loadavg)"
  fi
done
say "final $E s: predicted orders $ord, shipped $shp, delivered $dlv, completed $cmp, failures $fail"
grep -h "trained in" "$OUT"/data/logs/train-*.log 2>/dev/null | tee -a "$OUT/measure.txt"
say "load at end: $(cat /proc/loadavg)"
kill -TERM $UPPID; wait $UPPID; say "up exit $?"
