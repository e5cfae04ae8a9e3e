"""The wear models are trained on every life once more from a late start, as a part that
joins fleetcare mid-life shows it (its readings from then on, its usage counter counting since
it was fitted), so that a worn part whose history fleetcare has not seen is not read as young."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from psycopg import Connection

from evaluation.fleets import run_training_fleet
from evaluation.wear_model import train_wear_model
from fleet import service as fleet
from fleetcare.clock import ManualClock
from models.lifetimes import LATE_START_RANGE, with_late_starts
from tests.fixtures.wear import make_fleet, train_fast

pytestmark = pytest.mark.timeout(900)


def test_every_life_is_copied_once_from_a_late_start() -> None:
    # three lives of 10, 20 and 3 rows; usage in column 1, one sensor
    ids = np.repeat([7.0, 9.0, 4.0], [10, 20, 3])
    usage = np.concatenate([np.arange(10.0), np.arange(20.0), np.arange(3.0)]) * 100
    matrix = np.column_stack([ids, usage, np.arange(33.0)])
    y = np.concatenate([900 - usage[:10], 1900 - usage[10:30], 200 - usage[30:]])
    out, out_y, source = with_late_starts(matrix, y)
    assert np.array_equal(out[:33], matrix) and np.array_equal(out_y[:33], y)
    copies = out[33:]
    new_ids = np.unique(copies[:, 0])
    # the 3-row life's copy would start at its last row: shorter than 2 rows, left out
    assert new_ids.shape[0] == 2 and not set(new_ids) & {7.0, 9.0, 4.0}
    assert set(source[33:]) == {7.0, 9.0}
    for new_id in new_ids.tolist():
        rows = out[out[:, 0] == new_id]
        of = source[out[:, 0] == new_id]
        assert np.unique(of).shape[0] == 1
        life = matrix[matrix[:, 0] == of[0]]
        n = life.shape[0]
        assert LATE_START_RANGE[0] * n <= n - rows.shape[0] <= LATE_START_RANGE[1] * n + 1
        # the copy is the life's last rows, its counter unchanged (counted since fitted)
        assert np.array_equal(rows[:, 1:], life[n - rows.shape[0] :, 1:])
        assert np.array_equal(
            out_y[out[:, 0] == new_id], y[matrix[:, 0] == of[0]][-rows.shape[0] :]
        )
    assert np.array_equal(source[:33], ids)


def _late_life_errors(late_starts: bool) -> tuple[float, float]:
    """Median predicted remaining life over the last 2,000 km of held-out tire lives seen
    from 60% of their rows on (as if connected then), and over the same km seen whole."""
    training = run_training_fleet("tire", 1_011, 24, lives=24)
    model = train_wear_model("tire", training, late_starts=late_starts)
    other = run_training_fleet("tire", 2_022, 12, lives=12)
    bundle = model.bundle
    cut_rul: list[float] = []
    whole_rul: list[float] = []
    for n, life in enumerate(other.lives):
        rows = other.log.rows[life.asset][life.start_row : life.end_row].copy()
        if np.isnan(rows).any() or rows.shape[0] < 50:
            continue
        rows[:, 0] -= life.offset
        left = life.usage - rows[:, 0]
        last = np.flatnonzero(left <= 2_000)
        for start in (0, int(0.6 * rows.shape[0])):
            m = np.column_stack([np.full(rows.shape[0] - start, float(n)), rows[start:]])
            X = bundle.features.transform(m)
            rul = bundle.predict(X[last - start], [life.component])[life.component]["rul"]
            (whole_rul if start == 0 else cut_rul).extend(rul.tolist())
    return float(np.median(cut_rul)), float(np.median(whole_rul))


@pytest.mark.slow  # two tire fleets simulated and a model trained: over a CPU-minute
def test_a_worn_tire_first_seen_late_is_not_read_as_young() -> None:
    cut, whole = _late_life_errors(late_starts=True)
    # within its last 2,000 km a tire must be predicted near its end, whether fleetcare saw
    # its whole life or only its last 40%
    assert whole < 12_000
    assert cut < 12_000, f"seen from 60% of its life: median RUL {cut:.0f} km in its last 2,000"


def test_the_product_trains_on_late_starts_only_when_the_kind_says_so(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    off = train_fast(conn, clock).version.metrics["fit_rows"]["tire"]
    with conn.transaction():
        conn.execute(
            "UPDATE asset_kinds SET definition = jsonb_set(definition, '{model,late_starts}',"
            " 'true') WHERE name = 'tire'"
        )
    on = train_fast(conn, clock).version.metrics["fit_rows"]["tire"]
    # every training life once more from a late start: more rows to fit on
    assert on > off
