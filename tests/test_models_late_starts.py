"""The wear models are trained on every life once more from a late start, as a part that
joins fleetcare mid-life shows it (its readings from then on, its usage counter counting since
it was fitted), so that a worn part whose history fleetcare has not seen is not read as young."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from psycopg import Connection
from threadpoolctl import threadpool_limits

from evaluation.fleets import FloatArray, run_training_fleet
from evaluation.wear_model import train_wear_model
from fleet import service as fleet
from fleetcare.clock import ManualClock
from models.bundle import JoinedModels, WearModel, dump_model, load_model
from models.estimators import AnomalyScorer, FailureRiskClassifier, RULRegressor
from models.features import WindowFeatures
from models.lifetimes import LATE_START_RANGE, with_late_starts
from tests.fixtures.wear import make_fleet, set_model_setting, train_fast

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


def _late_life_predictions(bundle: WearModel) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Predicted remaining life over the last 2,000 km of held-out tire lives: seen from 60%
    of their rows on (as if connected then, the usage counter counting since fitted), and the
    same km seen whole; and, seen from 60%, by the model without its joined estimators."""
    other = run_training_fleet("tire", 2_022, 12, lives=12)
    cut_rul: list[float] = []
    whole_rul: list[float] = []
    cut_as_before: list[float] = []
    before = copy.copy(bundle)
    before.joined = None  # the model as it scored before the joined estimators
    for n, life in enumerate(other.lives):
        rows = other.log.rows[life.asset][life.start_row : life.end_row].copy()
        if np.isnan(rows).any() or rows.shape[0] < 50:
            continue
        rows[:, 0] -= life.offset
        left = life.usage - rows[:, 0]
        last = np.flatnonzero(left <= 2_000)
        for start in (0, int(0.6 * rows.shape[0])):
            m = np.column_stack([np.full(rows.shape[0] - start, float(n)), rows[start:]])
            X = bundle.features.transform(m)[last - start]
            first = np.full(X.shape[0], rows[start, 0])  # the counter at the first reading
            rul = bundle.predict(X, [life.component], first_usage=first)[life.component]["rul"]
            (whole_rul if start == 0 else cut_rul).extend(rul.tolist())
            if start:
                old = before.predict(X, [life.component], first_usage=first)[life.component]
                cut_as_before.extend(old["rul"].tolist())
    return np.array(cut_rul), np.array(whole_rul), np.array(cut_as_before)


@pytest.mark.slow  # two tire fleets simulated and a model trained: over a CPU-minute
def test_a_worn_tire_first_seen_late_is_read_as_worn() -> None:
    # the kind's own settings, as the product and `fleetcare evaluate` train it; one thread,
    # as `fleetcare evaluate` fits (OpenMP threads spin on a loaded shared machine)
    with threadpool_limits(limits=1):
        training = run_training_fleet("tire", 1_011, 24, lives=24)
        model = train_wear_model("tire", training)
        assert model.bundle.joined is not None
        cut, whole, cut_as_before = _late_life_predictions(model.bundle)
    # within its last 2,000 km a tire must be predicted near its end, whether fleetcare saw
    # its whole life or only its last 40%
    assert np.median(whole) < 12_000
    assert np.median(cut) < 12_000, (
        f"seen from 60% of its life: median RUL {np.median(cut):.0f} km in its last 2,000"
    )
    # the model trained on whole lives alone read them young (the miss this fixes)
    assert np.median(cut_as_before) > 2 * np.median(cut)


def test_parts_first_seen_mid_life_are_scored_by_the_joined_estimators() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3))
    rul = 1_000.0 * (X[:, 0] + 3.0)

    def pair(y: FloatArray) -> tuple[RULRegressor, FailureRiskClassifier]:
        regressor = RULRegressor(max_rul=10_000.0, max_iter=20, calibration_folds=2)
        return regressor.fit(X, y), FailureRiskClassifier(horizon=2_000.0, max_iter=10).fit(X, y)

    (main_rul, main_risk), (late_rul, late_risk) = pair(rul), pair(rul / 4.0)
    model = WearModel(
        kind="tire", usage_metric="odometer_km", setting_names=[], sensor_names=["a", "b"],
        features=WindowFeatures().fit(np.column_stack([np.zeros(400), X])),
        rul={"tire": main_rul}, risk={"tire": main_risk},
        anomaly=AnomalyScorer().fit(X), horizon=2_000.0,
        joined=JoinedModels({"tire": late_rul}, {"tire": late_risk}, after=6_000.0),
    )  # fmt: skip
    probe = X[:6]
    first = np.array([0.0, 5_999.0, 6_001.0, 80_000.0, 100.0, 6_000.0])
    got = model.predict(probe, first_usage=first)["tire"]
    main = model.predict(probe)["tire"]  # no first usage: every row as seen from new
    joined = np.array([False, False, True, True, False, False])
    assert np.array_equal(got["rul"][~joined], main["rul"][~joined])
    assert np.array_equal(got["rul"][joined], late_rul.predict(probe[joined]))
    assert np.array_equal(
        got["failure_probability"][joined], late_risk.predict_proba(probe[joined])[:, 1]
    )
    # stored and loaded, it scores the same
    again = load_model(dump_model(model))
    assert again.joined is not None and again.joined.after == 6_000.0
    assert np.array_equal(again.predict(probe, first_usage=first)["tire"]["rul"], got["rul"])


def test_the_product_trains_on_late_starts_only_when_the_kind_says_so(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    off = train_fast(conn, clock).version.metrics["fit_rows"]["tire"]
    set_model_setting(conn, "tire", "late_starts", True)
    on = train_fast(conn, clock).version.metrics["fit_rows"]["tire"]
    # every training life once more from a late start: more rows to fit on
    assert on > off


def test_the_product_trains_joined_estimators_only_when_the_kind_says_so(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    make_fleet(conn, customer.id, n_assets=10)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    on = train_fast(conn, clock)  # the built-in tire says joined_model: true
    assert on.model.joined is not None and set(on.model.joined.rul) == {"tire"}
    assert on.model.joined.after == 0.05 * 120_000  # JOINED_AFTER_SHARE of the typical life
    set_model_setting(conn, "tire", "joined_model", False)
    off = train_fast(conn, clock)
    assert off.model.joined is None
    # the estimators of the parts seen from new are fitted as without the joined ones
    assert off.version.metrics["fit_rows"] == on.version.metrics["fit_rows"]
    probe = np.zeros((1, on.model.features.get_feature_names_out().shape[0]))
    assert on.model.predict(probe)["tire"]["rul"] == off.model.predict(probe)["tire"]["rul"]
