#!/usr/bin/env bash
# Onboard NASA C-MAPSS data as a customer's own kind, with public commands only:
#   FLEETCARE_DATABASE_URL=postgresql://... scripts/onboard_cmapss.sh TRAIN_FILE INSERVICE_FILE [RUL_FILE]
# On a fresh database: apply the turbofan kind and the C-MAPSS row profile, create two
# customers, import TRAIN_FILE as lifetimes (each unit's last row is its failure) for the
# first, train, import INSERVICE_FILE as in-service history for the second, score, and print
# the second customer's predictions as JSON lines on stdout: one per unit, the RUL at its
# last row. With RUL_FILE (an official RUL_FD00x.txt: line k is the true RUL of unit k of
# INSERVICE_FILE, a test_FD00x.txt) the last line on stderr scores them: RMSE, PHM08 score,
# interval coverage (`fleetcare models cmapss-score`). Everything but the predictions
# (progress, reports, the score) goes to stderr. The files are imported strictly: a row or
# value the import would reject stops the script with its file, line and fault (exit 2).
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: FLEETCARE_DATABASE_URL=... $0 TRAIN_FILE INSERVICE_FILE [RUL_FILE]" >&2
    exit 2
fi
: "${FLEETCARE_DATABASE_URL:?set FLEETCARE_DATABASE_URL to a fresh database}"
for f in "$@"; do
    [ -f "$f" ] || { echo "error: $f: no such file" >&2; exit 2; }
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# FLEETCARE_BIN when set; else this checkout's own .venv (not another fleetcare on PATH,
# which may be another checkout's code); else the one on PATH
if [ -n "${FLEETCARE_BIN:-}" ]; then
    fleetcare="$FLEETCARE_BIN"
elif [ -x "$here/.venv/bin/fleetcare" ]; then
    fleetcare="$here/.venv/bin/fleetcare"
else
    fleetcare=fleetcare
fi
examples="$here/examples/cmapss"
lab="${CMAPSS_TRAINING_CUSTOMER:-cmapss-lab}"
airline="${CMAPSS_INSERVICE_CUSTOMER:-cmapss-airline}"

# once the customers exist, a step that fails (a malformed file, most often) leaves this
# database part-filled: say how to go on, since a second run here refuses (fresh, below)
stopped_at=""
predictions=""
finish() {
    status=$?
    [ -n "$predictions" ] && rm -f "$predictions"
    if [ "$status" -ne 0 ] && [ -n "$stopped_at" ]; then
        echo "onboard: stopped at: $stopped_at (exit $status); fix what the line above names," \
            "then run this script again on a fresh database (createdb a new one): this one" \
            "holds what the steps before it stored" >&2
    fi
    exit "$status"
}
trap finish EXIT
step() { echo "onboard: $*" >&2; [ -z "$stopped_at" ] || stopped_at="$*"; }

step "migrations"
"$fleetcare" migrate >&2
step "kind and profile"
"$fleetcare" kinds apply "$examples/turbofan.yaml" >&2
"$fleetcare" profiles apply "$examples/cmapss-rows.yaml" >&2
step "customers"
fresh() { echo "onboard: this script wants a fresh database (createdb a new one): its lifetimes and model would mix with what is there" >&2; exit 2; }
"$fleetcare" customers create --slug "$lab" --name "Turbofan test lab" >&2 || fresh
"$fleetcare" customers create --slug "$airline" --name "Turbofan operator" >&2 || fresh
stopped_at="customers"
step "lifetimes of $lab from $1"
"$fleetcare" history import --customer "$lab" --kind turbofan --profile cmapss-rows \
    --strict --lifetimes "$1" >&2
step "training"
"$fleetcare" models train turbofan >&2
step "in-service history of $airline from $2"
"$fleetcare" history import --customer "$airline" --kind turbofan --profile cmapss-rows \
    --strict --in-service "$2" >&2
step "scoring"
"$fleetcare" score --once >&2
step "predictions"
if [ $# -lt 3 ]; then
    "$fleetcare" predictions export --kind turbofan --customer "$airline" --format jsonl
    exit 0
fi
predictions="$(mktemp)"
"$fleetcare" predictions export --kind turbofan --customer "$airline" --format jsonl \
    --out "$predictions"
cat "$predictions"
step "score against $3"
"$fleetcare" models cmapss-score --predictions "$predictions" --rul "$3" >&2
