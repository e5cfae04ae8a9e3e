"""scripts/onboard_cmapss.sh on real C-MAPSS data: a fresh database, public commands only, and
the RUL it reports equals what `fleetcare models cmapss` computes offline on the same split.

Held-out training units of train_FD001.txt (one operating condition) and train_FD002.txt (six:
the features are normalised per regime, found by clustering the settings) are cut at random
cycles (the official test files are not used). A small split keeps the two model fits to well
under a minute each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from models.estimators import CONDITIONS_RUL_PARAMS
from tests.fixtures.services import (
    SERVER_URL,
    create_database,
    drop_database,
    repo_root,
    unique_name,
)

CMAPSS = Path("/work/shared/data/cmapss")
TRAIN_FD001 = CMAPSS / "train_FD001.txt"
pytestmark = [
    pytest.mark.skipif(not TRAIN_FD001.is_file(), reason="C-MAPSS data not present"),
    pytest.mark.slow,
]
ORIGIN = datetime(2020, 1, 1, tzinfo=UTC)  # the example profile's time base: a cycle a day
TRAINING_UNITS = 24
INSERVICE_UNITS = 6


def split_units(
    tmp_path: Path, seed: int, source: Path = TRAIN_FD001
) -> tuple[Path, Path, dict[str, int]]:
    """A training file of whole units and an in-service file of other units cut at random
    cycles, shaped like the official test files (units numbered 1..N, the raw rows' trailing
    spaces kept) with their RUL file beside it (``RUL.txt``: line k, unit k's remaining
    cycles); returns the last kept cycle of each in-service unit."""
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    assert lines[0].endswith("  ")  # the NASA files' trailing spaces
    units: dict[int, list[str]] = {}
    for line in lines:
        units.setdefault(int(line.split()[0]), []).append(line)
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(sorted(units))[: TRAINING_UNITS + INSERVICE_UNITS].tolist()
    training, in_service = sorted(chosen[:TRAINING_UNITS]), sorted(chosen[TRAINING_UNITS:])
    train = tmp_path / "train.txt"
    train.write_text("".join(line + "\n" for u in training for line in units[u]))
    kept: dict[str, int] = {}
    out = []
    rul = []
    for number, u in enumerate(in_service, start=1):
        n = len(units[u])
        k = int(rng.integers(min(31, n), n + 1))
        out += [f"{number} {line.split(' ', 1)[1]}" for line in units[u][:k]]
        kept[str(number)] = k
        rul.append(n - k)
    inservice = tmp_path / "inservice.txt"
    inservice.write_text("".join(line + "\n" for line in out))
    (tmp_path / "RUL.txt").write_text("".join(f"{r}\n" for r in rul))
    return train, inservice, kept


@pytest.mark.parametrize("dataset", ["FD001", "FD002"])
@pytest.mark.timeout(1800)  # two CLI runs of up to 900 s each, not the suite's 300 s
def test_onboarding_reports_the_offline_rul(tmp_path: Path, dataset: str) -> None:
    source = CMAPSS / f"train_{dataset}.txt"
    if not source.is_file():
        pytest.skip(f"{source} not present")
    train, inservice, kept = split_units(tmp_path, seed=18, source=source)
    name = unique_name("fc_onboard")
    url = create_database(SERVER_URL, name)  # empty: the script migrates it
    fleetcare = Path(sys.executable).parent / "fleetcare"
    env = {**os.environ, "FLEETCARE_DATABASE_URL": url, "FLEETCARE_BIN": str(fleetcare)}
    try:
        done = subprocess.run(
            [
                "bash",
                str(repo_root() / "scripts" / "onboard_cmapss.sh"),
                str(train),
                str(inservice),
                str(tmp_path / "RUL.txt"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        online = [json.loads(line) for line in done.stdout.splitlines()]
        assert [p["external_id"] for p in online] == list(kept)  # one line per unit, in order
        for p in online:
            assert (p["customer"], p["kind"], p["life_unit"]) == ("cmapss-airline", "turbofan",
                                                                  "cycles")  # fmt: skip
            assert 0 <= p["rul_low"] <= p["rul"] <= p["rul_high"] <= 125
            assert 0 <= p["failure_probability"] <= 1 and p["due_at"] is not None
            # the RUL at the unit's last row
            last = ORIGIN + timedelta(days=kept[p["external_id"]])
            assert datetime.fromisoformat(p["data_until"]) == last
        assert "lives recorded 24" in done.stderr and "rejected 0" in done.stderr
        # the score against the RUL file: the last line on stderr
        score = json.loads(done.stderr.strip().splitlines()[-1])
        true = [float(v) for v in (tmp_path / "RUL.txt").read_text().split()]
        errors = [p["rul"] - min(true[int(p["external_id"]) - 1], 125.0) for p in online]
        assert score["units"] == INSERVICE_UNITS
        assert score["rmse_capped125"] == pytest.approx(np.sqrt(np.mean(np.square(errors))))

        # offline, on the same split: the units the online model trained on (its held-out
        # units are not in its training data), in the file's order
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT metrics->'training_asset_ids', params->'rul' FROM model_versions"
                " WHERE kind = 'turbofan' AND status = 'active'"
            ).fetchone()
            assert row is not None
            # the RUL model's parameters of the C-MAPSS path (`fleetcare models cmapss`)
            assert row[1].items() >= CONDITIONS_RUL_PARAMS.items()
            refs = conn.execute(
                "SELECT ref FROM assets WHERE id = ANY(%s::bigint[])", (row[0],)
            ).fetchall()
        trained_on = {r[0] for r in refs}
        assert 0 < len(trained_on) < TRAINING_UNITS
        subset = tmp_path / "trained_on.txt"
        subset.write_text(
            "".join(
                line + "\n"
                for line in train.read_text().splitlines()
                if line.split()[0] in trained_on
            )
        )
        offline_out = tmp_path / "offline.jsonl"
        offline = subprocess.run(
            [
                str(fleetcare),
                "models",
                "cmapss",
                "--train",
                str(subset),
                "--test",
                str(inservice),
                "--predictions",
                str(offline_out),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert offline.returncode == 0, offline.stderr[-2000:]
        by_unit = {str(r["unit"]): r for r in map(json.loads, offline_out.read_text().splitlines())}
        for p in online:
            o = by_unit[p["external_id"]]
            assert p["rul"] == pytest.approx(o["rul"], abs=1e-9), p["external_id"]
            assert p["rul_low"] == pytest.approx(o["rul_low"], abs=1e-9)
            assert p["rul_high"] == pytest.approx(o["rul_high"], abs=1e-9)
    finally:
        drop_database(SERVER_URL, name)


def test_a_malformed_file_stops_the_script_with_its_line(tmp_path: Path) -> None:
    """A header line in the training file: one line naming file, line and fault, exit 2,
    nothing on stdout, before any training."""
    train, inservice, _ = split_units(tmp_path, seed=3)
    header = "unit cycle " + " ".join(f"setting{i}" for i in (1, 2, 3))
    header += " " + " ".join(f"s{i}" for i in range(1, 22))
    train.write_text(header + "\n" + train.read_text())
    name = unique_name("fc_onboard_bad")
    url = create_database(SERVER_URL, name)
    fleetcare = Path(sys.executable).parent / "fleetcare"
    env = {**os.environ, "FLEETCARE_DATABASE_URL": url, "FLEETCARE_BIN": str(fleetcare)}
    try:
        done = subprocess.run(
            ["bash", str(repo_root() / "scripts" / "onboard_cmapss.sh"), str(train),
             str(inservice)],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stdout == ""
        assert (
            "error: train.txt:1: cycle = 'cycle' is not a time of format cycle (a header line?"
            in done.stderr
        )
        assert "onboard: training" not in done.stderr
        # the import's own advice is to import again; the script says how (a second run on
        # this database refuses: it wants a fresh one)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"onboard: stopped at: lifetimes of cmapss-lab from {train}")
        assert "run this script again on a fresh database" in last
    finally:
        drop_database(SERVER_URL, name)
