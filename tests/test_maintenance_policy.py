"""The subscription policy: predictions become orders, shipments or alerts, once."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from psycopg import Connection

from fleet import repository as fleet_repo
from fleetcare.db import connect
from maintenance.orders import service as orders
from maintenance.policy import repository as policy_repo
from maintenance.policy import service as policy
from maintenance.policy.worker import DispatchStats, run_dispatcher
from maintenance.subscriptions import service as subscriptions
from models import repository as model_repo
from tests.fixtures.maintenance import (
    OPERATOR,
    T0,
    clock,
    count,
    event_types,
    insert_prediction,
    make_world,
    stock_depot,
)

Conn = Connection[Any]


def _orders(conn: Conn, asset_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, status, at_risk, at_risk_reason, due_at, reason, priority"
        " FROM maintenance_orders WHERE asset_id = %s ORDER BY id",
        (asset_id,),
    ).fetchall()


def test_order_raised_and_part_shipped_before_the_due_date(conn: Conn) -> None:
    world = make_world(conn, "pol-a")
    stock_depot(conn, "NEAR", on_hand=3, shipping_days=2, latitude=50.1, longitude=4.1)
    stock_depot(conn, "FAR", on_hand=3, shipping_days=1, latitude=10.0, longitude=100.0)
    before = event_types(conn, world.customer_id)
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=10)
    assert policy.process_queue(conn, clock()) == 1
    conn.commit()

    [(order_id, status, at_risk, reason, due_at, why, priority)] = _orders(conn, world.asset_id)
    assert (status, at_risk, reason, why) == ("raised", False, None, "predicted")
    assert due_at == T0 + timedelta(days=10)
    assert priority == "normal"
    # the nearest depot (not the quicker far one) ships, and arrives before the due date
    depot, eta, shipment_status = conn.execute(
        "SELECT d.code, s.eta, s.status FROM shipments s JOIN depots d ON d.id = s.depot_id"
        " WHERE s.order_id = %s",
        (order_id,),
    ).fetchone() or (None, None, None)
    assert depot == "NEAR" and shipment_status == "pending"
    assert eta == T0 + timedelta(days=2) and eta < due_at
    assert (
        count(
            conn,
            "SELECT reserved FROM inventory i JOIN depots d ON d.id = i.depot_id"
            " WHERE d.code = 'NEAR'",
        )
        == 1
    )
    new = event_types(conn, world.customer_id)[len(before) :]
    assert new == ["order.created", "part.reserved", "shipment.created"]
    # the queue row is gone: the prediction is handled once
    assert policy_repo.queue_length(conn) == 0


def test_a_dispatcher_behind_decides_on_the_newest_prediction_at_once(conn: Conn) -> None:
    # A backlog (a loaded machine; `fleetcare up`'s 20,000x clock turns 40 s behind into 10
    # simulated days): 60 older predictions of the asset wait before the one that says it is
    # due. The first batch decides on the newest, instead of working through the older ones.
    world = make_world(conn, "pol-behind")
    stock_depot(conn, "D", on_hand=2, shipping_days=2)
    for minute in range(60):
        insert_prediction(
            conn, world.asset_id, time=T0 + timedelta(minutes=minute), due_in_days=60, commit=False
        )
    insert_prediction(conn, world.asset_id, time=T0 + timedelta(hours=2), due_in_days=10)
    assert policy.process_queue(conn, clock(), limit=50) == 61
    conn.commit()
    [(_, status, _, _, due_at, why, _)] = _orders(conn, world.asset_id)
    assert (status, why) == ("raised", "predicted")
    assert due_at == T0 + timedelta(hours=2, days=10)
    assert policy_repo.queue_length(conn) == 0


def test_a_superseded_risky_prediction_still_raises_the_order(conn: Conn) -> None:
    # behind, the newest prediction is handled first of all; a risk crossed by an older one
    # that the newest supersedes still counts, as when each was handled in turn
    world = make_world(conn, "pol-spike")
    stock_depot(conn, "D", on_hand=2, shipping_days=2)
    for minute in range(30):
        insert_prediction(
            conn,
            world.asset_id,
            time=T0 + timedelta(minutes=minute),
            due_in_days=60,
            failure_probability=0.9 if minute == 12 else 0.1,
            horizon=10_000.0,
            commit=False,
        )
    insert_prediction(conn, world.asset_id, time=T0 + timedelta(hours=1), due_in_days=60)
    assert policy.process_queue(conn, clock(), limit=50) == 31
    conn.commit()
    [(_, status, _, _, _, why, _)] = _orders(conn, world.asset_id)
    assert (status, why) == ("raised", "predicted")
    assert policy_repo.queue_length(conn) == 0


def test_order_at_risk_when_the_part_cannot_arrive_in_time(conn: Conn) -> None:
    world = make_world(conn, "pol-b")
    stock_depot(conn, "SLOW", on_hand=1, shipping_days=6)
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=3)
    policy.process_queue(conn, clock())
    conn.commit()
    [(_, _, at_risk, reason, _, _, priority)] = _orders(conn, world.asset_id)
    assert at_risk is True
    assert reason is not None and "after the due date" in reason
    assert priority == "high"


def test_order_at_risk_when_no_depot_has_the_part(conn: Conn) -> None:
    world = make_world(conn, "pol-c")
    stock_depot(conn, "EMPTY", on_hand=0)
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=5)
    policy.process_queue(conn, clock())
    conn.commit()
    [(order_id, _, at_risk, reason, _, _, _)] = _orders(conn, world.asset_id)
    assert at_risk is True and reason == "no depot has TIRE-315-80R22.5 in stock"
    assert count(conn, "SELECT count(*) FROM shipments WHERE order_id = %s", order_id) == 0
    # the empty depot asked for stock
    assert count(conn, "SELECT count(*) FROM replenishments WHERE status = 'requested'") == 1


def test_no_order_when_not_due_yet(conn: Conn) -> None:
    world = make_world(conn, "pol-d")
    stock_depot(conn, "D", on_hand=1, shipping_days=2)
    # lead time 14 + shipping 2 = 16 days; due in 30 is outside the window
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=30)
    policy.process_queue(conn, clock())
    conn.commit()
    assert _orders(conn, world.asset_id) == []
    # ... but a high failure probability triggers on its own
    insert_prediction(
        conn, world.asset_id, time=T0 + timedelta(hours=1), due_in_days=30, failure_probability=0.7
    )
    policy.process_queue(conn, clock())
    conn.commit()
    assert len(_orders(conn, world.asset_id)) == 1


def test_no_order_and_no_event_for_an_unsubscribed_asset(conn: Conn) -> None:
    world = make_world(conn, "pol-e", plan=None)
    stock_depot(conn, "D", on_hand=1)
    before = event_types(conn)
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=1, failure_probability=0.99)
    decision = policy.handle_prediction(conn, _prediction(conn, world.asset_id, T0), clock())
    conn.commit()
    assert decision.action == "no_subscription"
    assert _orders(conn, world.asset_id) == []
    assert event_types(conn) == before
    # the prediction itself is still recorded
    assert count(conn, "SELECT count(*) FROM predictions WHERE asset_id = %s", world.asset_id) == 1


def test_alerts_only_plan_alerts_once_and_raises_no_order(conn: Conn) -> None:
    world = make_world(conn, "pol-f", plan="monitor")
    stock_depot(conn, "D", on_hand=5)
    for hour in range(3):
        insert_prediction(conn, world.asset_id, time=T0 + timedelta(hours=hour), due_in_days=5)
    policy.process_queue(conn, clock())
    conn.commit()
    assert _orders(conn, world.asset_id) == []
    assert event_types(conn, world.customer_id).count("prediction.alert") == 1
    assert count(conn, "SELECT coalesce(sum(reserved), 0) FROM inventory") == 0


def test_paused_subscription_gets_nothing(conn: Conn) -> None:
    world = make_world(conn, "pol-g")
    stock_depot(conn, "D", on_hand=1)
    assert world.subscription_id is not None
    subscriptions.transition(conn, OPERATOR, world.subscription_id, "paused", clock())
    conn.commit()
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=1)
    policy.process_queue(conn, clock())
    conn.commit()
    assert _orders(conn, world.asset_id) == []


def test_hysteresis_a_wobbling_prediction_does_not_flap(conn: Conn) -> None:
    world = make_world(conn, "pol-h", plan="monitor")  # window = 14 days (alerts only)
    c = clock()
    # 13 (in) -> 15 (out, but inside the exit margin) -> 13 -> 15 -> 30 (clear) -> 13 (in)
    for step, days in enumerate([13, 15, 13, 15, 13, 30, 13]):
        insert_prediction(conn, world.asset_id, time=T0 + timedelta(hours=step), due_in_days=days)
        policy.process_queue(conn, c)
        conn.commit()
    kinds = [t for t in event_types(conn, world.customer_id) if t.startswith("prediction.")]
    assert kinds == ["prediction.alert", "prediction.alert_cleared", "prediction.alert"]


def test_predictions_of_an_ended_life_or_out_of_order_are_ignored(conn: Conn) -> None:
    world = make_world(conn, "pol-i")
    stock_depot(conn, "D", on_hand=2)
    insert_prediction(conn, world.asset_id, time=T0, due_in_days=30)
    policy.process_queue(conn, clock())
    older = insert_prediction(conn, world.asset_id, time=T0 - timedelta(hours=1), due_in_days=1)
    assert (
        policy.handle_prediction(conn, _prediction(conn, world.asset_id, older), clock()).action
        == "stale"
    )
    conn.execute(
        "UPDATE assets SET renewed_at = %s WHERE id = %s", (T0 + timedelta(days=1), world.asset_id)
    )
    insert_prediction(conn, world.asset_id, time=T0 + timedelta(hours=2), due_in_days=1)
    assert (
        policy.handle_prediction(
            conn, _prediction(conn, world.asset_id, T0 + timedelta(hours=2)), clock()
        ).action
        == "stale"
    )
    conn.rollback()


def _prediction(conn: Conn, asset_id: int, time: Any) -> Any:
    found = model_repo.get_prediction(conn, asset_id, "tire", time)
    assert found is not None
    return found


def _race(db_url: str, work: Any, n: int = 2) -> list[BaseException]:
    """Run ``work(conn)`` in ``n`` threads on separate connections, released together."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(db_url) as own:
                barrier.wait(timeout=10)
                work(own)
                own.commit()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return errors


def test_concurrent_policy_runs_raise_one_order(db_url: str, conn: Conn) -> None:
    worlds = [make_world(conn, f"race-{i}", ref=f"TRK-{i}") for i in range(5)]
    stock_depot(conn, "D", on_hand=20)
    for w in worlds:
        insert_prediction(conn, w.asset_id, time=T0, due_in_days=5)

    def handle_all(own: Conn) -> None:
        for w in worlds:
            with own.transaction():
                policy.handle_prediction(own, _prediction(own, w.asset_id, T0), clock())

    assert _race(db_url, handle_all) == []
    for w in worlds:
        assert len(_orders(conn, w.asset_id)) == 1
    assert count(conn, "SELECT sum(reserved) FROM inventory") == 5


def test_the_database_refuses_a_second_open_order_even_without_the_policy_lock(
    db_url: str, conn: Conn
) -> None:
    world = make_world(conn, "race-db")
    stock_depot(conn, "D", on_hand=5)
    raised: list[int] = []

    def raise_directly(own: Conn) -> None:
        asset = fleet_repo.asset_context(own, world.asset_id, customer_id=None)
        assert asset is not None
        order = orders.raise_order(
            own,
            asset=asset,
            component="tire",
            reason="predicted",
            due_at=T0 + timedelta(days=5),
            priority="normal",
            now=T0,
            coverage=subscriptions.coverage_for(own, asset.id, T0),
        )
        if order is not None:
            raised.append(order.id)

    assert _race(db_url, raise_directly, n=4) == []
    assert len(raised) == 1
    assert len(_orders(conn, world.asset_id)) == 1
    assert count(conn, "SELECT sum(reserved) FROM inventory") == 1


def test_dispatchers_share_the_queue_and_handle_each_prediction_once(
    db_url: str, conn: Conn
) -> None:
    worlds = [make_world(conn, f"disp-{i}", ref=f"TRK-{i}") for i in range(6)]
    stock_depot(conn, "D", on_hand=50)
    stop = threading.Event()
    stats = [DispatchStats(), DispatchStats()]
    threads = [
        threading.Thread(
            target=run_dispatcher,
            args=(db_url,),
            kwargs={"stop": stop, "clock": clock(), "poll_interval": 0.2, "stats": s},
        )
        for s in stats
    ]
    for t in threads:
        t.start()
    try:
        for s in stats:
            assert s.idle.wait(10), "dispatcher did not start"
        for step in range(4):
            for w in worlds:
                insert_prediction(
                    conn, w.asset_id, time=T0 + timedelta(minutes=step), due_in_days=5, commit=False
                )
        conn.commit()  # one commit: the dispatchers are woken by the notifications
        deadline = threading.Event()
        for _ in range(200):
            if sum(s.handled for s in stats) >= 24 and policy_repo.queue_length(conn) == 0:
                break
            conn.rollback()
            deadline.wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert sum(s.handled for s in stats) == 24
    for w in worlds:
        assert len(_orders(conn, w.asset_id)) == 1
    assert count(conn, "SELECT count(*) FROM events WHERE type = 'order.created'") == 6


def test_a_site_subscription_covers_assets_moved_there_and_plan_changes_apply(conn: Conn) -> None:
    from fleet import service as fleet
    from fleet.schemas import AssetCreate
    from maintenance.subscriptions.schemas import PlanChange, SubscriptionCreate
    from tests.fixtures.maintenance import plan_id

    world = make_world(conn, "pol-site", plan=None)
    stock_depot(conn, "D", on_hand=5)
    sub = subscriptions.create_subscription(
        conn,
        OPERATOR,
        SubscriptionCreate(
            customer_id=world.customer_id,
            plan_id=plan_id(conn, "proactive"),
            scope="site",
            site_id=world.site_id,
            starts_at=T0 - timedelta(days=1),
        ),
        clock(),
    )
    later = fleet.create_asset(
        conn,
        OPERATOR,
        AssetCreate(
            customer_id=world.customer_id,
            site_id=world.site_id,
            kind="tire",
            ref="TRK-LATER",
            installed_at=T0 - timedelta(days=10),
        ),
    )
    conn.commit()
    insert_prediction(conn, later.id, time=T0, due_in_days=5)
    policy.process_queue(conn, clock())
    conn.commit()
    assert len(_orders(conn, later.id)) == 1
    # switched to alerts only from now: the other asset gets an alert, not an order
    c = clock()
    c.advance(timedelta(hours=1))
    subscriptions.change_plan(
        conn, OPERATOR, sub.id, PlanChange(plan_id=plan_id(conn, "monitor")), c
    )
    conn.commit()
    insert_prediction(conn, world.asset_id, time=T0 + timedelta(hours=2), due_in_days=5)
    c.advance(timedelta(hours=2))
    policy.process_queue(conn, c)
    conn.commit()
    assert _orders(conn, world.asset_id) == []
    assert event_types(conn, world.customer_id).count("prediction.alert") == 1


def test_an_open_order_is_brought_forward_when_wear_speeds_up_never_later(conn: Conn) -> None:
    world = make_world(conn, "pol-r")
    stock_depot(conn, "D", on_hand=2, shipping_days=2)
    c = clock()

    def predict(time: Any, due_in_days: float) -> None:
        """A risky prediction (the risk's own due date, half the 10,000 km horizon at 100 km
        a day, is later than the conservative one here), handled by the policy."""
        insert_prediction(
            conn,
            world.asset_id,
            time=time,
            due_in_days=due_in_days,
            failure_probability=0.9,
            horizon=10_000.0,
        )
        policy.process_queue(conn, c)
        conn.commit()

    # raised weeks ahead on failure risk: due on the prediction's conservative date
    predict(T0, 40)
    [(order_id, _, at_risk, _, due_at, _, priority)] = _orders(conn, world.asset_id)
    assert (due_at, at_risk, priority) == (T0 + timedelta(days=40), False, "normal")
    before = event_types(conn, world.customer_id)

    # wear speeds up: the conservative due date is now 10 days away -> brought forward
    t1 = T0 + timedelta(hours=1)
    predict(t1, 10)
    [(same_id, status, at_risk, _, due_at, _, _)] = _orders(conn, world.asset_id)
    assert (same_id, status, at_risk, due_at) == (
        order_id,
        "raised",
        False,
        t1 + timedelta(days=10),
    )
    assert event_types(conn, world.customer_id)[len(before) :] == ["order.rescheduled"]
    payload = conn.execute(
        "SELECT payload FROM events WHERE type = 'order.rescheduled' AND customer_id = %s",
        (world.customer_id,),
    ).fetchone()
    assert payload is not None
    assert payload[0]["previous_due_at"].startswith(str((T0 + timedelta(days=40)).date()))

    # a hopeful prediction never postpones it; a wobble inside the tolerance changes nothing
    for hours, days in ((2, 30), (3, 10 - 3 / 24 - 0.05)):
        predict(T0 + timedelta(hours=hours), days)
        assert _orders(conn, world.asset_id)[0][4] == t1 + timedelta(days=10)

    # brought forward past the part's ETA (2 days): at risk, urgent work
    t4 = T0 + timedelta(hours=4)
    predict(t4, 1)
    [(_, _, at_risk, reason, due_at, _, priority)] = _orders(conn, world.asset_id)
    assert due_at == t4 + timedelta(days=1) and at_risk is True and priority == "high"
    assert reason is not None and "after the due date" in reason
    assert event_types(conn, world.customer_id)[-2:] == ["order.rescheduled", "order.at_risk"]
    assert (
        count(conn, "SELECT count(*) FROM maintenance_orders WHERE asset_id = %s", world.asset_id)
        == 1
    )


def test_a_fired_failure_risk_brings_the_due_date_forward() -> None:
    """The interval's low end lags after a sudden step in wear; when the failure-risk trigger
    fires, the work is due within half the model's horizon at the recent usage rate."""
    from models.schemas import Prediction

    base = Prediction(
        time=T0, asset_id=1, component="door_operator", model_version_id=None, rul=30_000,
        rul_low=20_000, rul_high=40_000, coverage=0.8, failure_probability=0.1, horizon=20_000,
        anomaly_score=0.0, usage_rate_per_day=1_000, due_at=T0 + timedelta(days=30),
        due_at_conservative=T0 + timedelta(days=20),
    )  # fmt: skip
    assert policy.risk_due_at(base, 0.4) is None
    assert policy.order_due_at(base, 14, T0, 0.4) == T0 + timedelta(days=20)
    risky = base.model_copy(update={"failure_probability": 0.6})
    assert policy.risk_due_at(risky, 0.4) == T0 + timedelta(days=10)  # 0.5 * 20,000 / 1,000
    assert policy.order_due_at(risky, 14, T0, 0.4) == T0 + timedelta(days=10)
    assert policy.order_due_at(risky, 14, T0) == T0 + timedelta(days=20)  # no risk trigger
    soon = risky.model_copy(update={"due_at_conservative": T0 + timedelta(days=3)})
    assert policy.order_due_at(soon, 14, T0, 0.4) == T0 + timedelta(days=3)  # earliest wins
    no_rate = risky.model_copy(update={"usage_rate_per_day": None})
    assert policy.risk_due_at(no_rate, 0.4) is None
    # an open order due in 20 days is brought forward once the risk fires, never later
    assert policy.rescheduled_due_at(T0 + timedelta(days=20), risky, 14, 0.4) == T0 + timedelta(
        days=10
    )
    assert policy.rescheduled_due_at(T0 + timedelta(days=5), risky, 14, 0.4) is None
