"""A prediction without a usage rate of its own (less than a day of the asset's counter since
renewal) is dated at a busy day of its kind (``policy.BUSY_DAY_FACTOR`` times its typical usage
per day) before the policy decides: an order raised on it is due when that life runs out, not
at the end of the plan's window, and not later than an asset busier than typical allows.

Before this, such an order (the failure-risk trigger was the only one that could fire) was
due 14 days out whatever life was left: in the 20,000x demo every engine life is shorter than
a day, and the engines failed while their orders waited for that due date."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import Connection

from maintenance.policy import service as policy
from models.repository import track_predictions
from models.schemas import Prediction
from tests.fixtures.maintenance import T0, clock, make_world, stock_depot

Conn = Connection[Any]


def _undated(conn: Conn, asset_id: int, *, rul_low: float, probability: float) -> None:
    cur = conn.execute(
        """
        INSERT INTO predictions (time, asset_id, component, rul, rul_low, rul_high,
                                 failure_probability, horizon, anomaly_score,
                                 usage_rate_per_day, due_at, due_at_conservative)
        VALUES (%s, %s, 'tire', %s, %s, %s, %s, 10000, 0, NULL, NULL, NULL)
        RETURNING asset_id, component, time
        """,
        (T0, asset_id, rul_low * 1.5, rul_low, rul_low * 2, probability),
    )
    track_predictions(conn, cur.fetchall())
    conn.commit()


def test_an_order_on_an_undated_prediction_is_due_when_its_life_at_typical_usage_ends(
    conn: Conn,
) -> None:
    world = make_world(conn, "undated-a")
    stock_depot(conn, "NEAR", on_hand=2, shipping_days=1)
    # 800 km left: 2 days at the tire's typical 400 km a day (1 at a busy day's), though the
    # window is 10+ days
    _undated(conn, world.asset_id, rul_low=800, probability=0.6)
    assert policy.process_queue(conn, clock()) == 1
    conn.commit()
    row = conn.execute(
        "SELECT due_at, reason, priority FROM maintenance_orders WHERE asset_id = %s",
        (world.asset_id,),
    ).fetchone()
    assert row is not None
    due_at, reason, priority = row
    assert reason == "predicted"
    assert due_at <= T0 + timedelta(days=2)  # not T0 + the window (14 days and more)
    assert priority == "high"
    # the stored prediction is as scored: only the decision used the estimate
    stored = conn.execute(
        "SELECT usage_rate_per_day FROM predictions WHERE asset_id = %s", (world.asset_id,)
    ).fetchone()
    assert stored == (None,)


def test_an_estimated_rate_alone_raises_no_order(conn: Conn) -> None:
    """Whether it is due is judged on the prediction as scored: 2 days of life at typical
    usage, but no failure risk, raises nothing until a rate is measured."""
    world = make_world(conn, "undated-b")
    stock_depot(conn, "NEAR", on_hand=2, shipping_days=1)
    _undated(conn, world.asset_id, rul_low=800, probability=0.05)
    assert policy.process_queue(conn, clock()) == 1
    conn.commit()
    count = conn.execute(
        "SELECT count(*) FROM maintenance_orders WHERE asset_id = %s", (world.asset_id,)
    ).fetchone()
    assert count == (0,)


def test_dated_uses_a_busy_days_rate_only_without_a_measured_one() -> None:
    base = Prediction(
        time=T0, asset_id=1, component="hpc_module", model_version_id=None, rul=20,
        rul_low=10, rul_high=30, coverage=0.8, failure_probability=0.6, horizon=30,
        anomaly_score=0.0, usage_rate_per_day=None, due_at=None, due_at_conservative=None,
    )  # fmt: skip
    est = policy.dated(base, 5.0)  # a typical day: 5 cycles; a busy one: 10
    assert est.usage_rate_per_day == 10.0
    assert est.due_at_conservative == T0 + timedelta(days=1)
    assert est.due_at == T0 + timedelta(days=2)
    assert policy.risk_due_at(est, 0.3) == T0 + timedelta(days=1.5)  # half of 30 cycles at 10
    assert policy.order_due_at(est, 21, T0, 0.3) == T0 + timedelta(days=1)
    assert policy.order_due_at(base, 21, T0, 0.3) == T0 + timedelta(days=21)  # the old answer
    assert policy.dated(base, None) is base
    measured = base.model_copy(update={"usage_rate_per_day": 7.0})
    assert policy.dated(measured, 5.0) is measured


def test_a_busy_assets_estimated_due_date_comes_before_its_failure() -> None:
    """`fleetcare up`'s case: a retail building's elevator runs ~1,000 trips a day against the
    kind's typical 500. A new door operator's failure risk fired before a day of its own
    counter gave a rate; its order, dated at 500 trips a day, was due in 20 days (half the
    20,000-trip horizon), and the door failed 13.6 days after the order was raised. Dated at
    a busy day, the order is due by the time half the horizon has run at that building's
    rate; the interval's low end, dated the same way, is not later than that rate allows
    either."""
    typical, building_per_day, horizon = 500.0, 1_000.0, 20_000.0
    door = Prediction(
        time=T0, asset_id=1, component="door_operator", model_version_id=None, rul=90_000,
        rul_low=40_000, rul_high=150_000, coverage=0.85, failure_probability=0.55,
        horizon=horizon, anomaly_score=0.0, usage_rate_per_day=None, due_at=None,
        due_at_conservative=None,
    )  # fmt: skip
    est = policy.dated(door, typical)
    due = policy.order_due_at(est, 14, T0, 0.4)
    half_horizon_at_the_buildings_rate = timedelta(
        days=policy.RISK_DUE_SHARE * horizon / building_per_day
    )
    assert due <= T0 + half_horizon_at_the_buildings_rate  # 10 days; was 20
    assert due < T0 + timedelta(days=13.6)  # before the door failed
    assert est.due_at_conservative is not None
    assert est.due_at_conservative <= T0 + timedelta(days=door.rul_low / building_per_day)
    # a measured rate is used as it is, however it compares with the estimate
    quiet = door.model_copy(update={"usage_rate_per_day": 320.0})
    assert policy.order_due_at(policy.dated(quiet, typical), 14, T0, 0.4) == T0 + timedelta(
        days=policy.RISK_DUE_SHARE * horizon / 320.0
    )
