"""The policy: what each new prediction means for a subscribed asset. No SQL text, no HTTP.

Rule: an asset covered by an entitled subscription enters the *due* state when the
conservative due date (from the low end of the RUL interval) falls within the plan's lead
time plus the part's shipping time from the nearest depot that has it, or when the failure
probability reaches the plan's risk threshold (or the anomaly score its anomaly threshold).
On entering, a plan with orders raises one order (parts reserved and shipped); an
alerts-only plan emits ``prediction.alert``. It leaves *due* only when the prediction is
comfortably clear again (exit thresholds wider than the enter ones), so a prediction that
wobbles around the threshold does not flap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from fleet import service as fleet
from fleet.schemas import AssetContext
from fleetcare.clock import MAX_DUE_DAYS, Clock
from kinds import service as kinds
from kinds.schemas import BUSY_DAY_FACTOR
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.logistics import service as logistics
from maintenance.mobility import service as mobility
from maintenance.mobility import visits
from maintenance.orders import service as orders
from maintenance.orders.schemas import OrderStatus
from maintenance.plans.schemas import Entitlements
from maintenance.policy import repository as repo
from maintenance.policy.schemas import Decision, QueuedPrediction
from maintenance.policy_state import service as policy_state
from maintenance.policy_state.schemas import PolicyState
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import Coverage
from models import service as models
from models.schemas import Prediction

log = logging.getLogger(__name__)

# Hysteresis: leave "due" only when the due date is this much beyond the window ...
EXIT_MARGIN_FRACTION = 0.25
EXIT_MARGIN_MIN_DAYS = 2.0
# ... and risk and anomaly scores are below this fraction of their thresholds.
EXIT_RATIO = 0.8
# A failed queue row is retried after this long (times the attempts so far).
RETRY_AFTER = timedelta(seconds=30)


def window_days(
    conn: Conn,
    asset: AssetContext,
    component: str,
    ent: Entitlements,
    prediction: Prediction | None = None,
    now: datetime | None = None,
) -> float:
    """Lead time plus the part's shipping time from the nearest depot that has it, in days;
    for a carried asset, what its itinerary needs (``visits.window_days``: with ``prediction``,
    early enough that a stop whose part arrives before the carrier is left)."""
    if not ent.includes_orders:
        return float(ent.order_lead_days)
    carried = visits.window_days(conn, asset, component, ent, prediction, now)
    if carried is not None:  # a carried asset's part travels a lane to a station
        return carried
    part = logistics.part_for(conn, asset.kind, component)
    if part is None:
        return float(ent.order_lead_days)
    options = logistics.supply_options(conn, part.id, asset.latitude, asset.longitude)
    nearest = logistics.nearest_in_stock(options)
    if nearest is not None:
        shipping = nearest.shipping_days
    else:  # nobody has it now: count the quickest depot that stocks it at all
        shipping = min((o.shipping_days for o in options), default=0)
    return float(ent.order_lead_days + shipping)


def _days_left(prediction: Prediction, now: datetime) -> float | None:
    if prediction.due_at_conservative is None:
        return None
    return (prediction.due_at_conservative - now).total_seconds() / 86_400


def triggers(
    prediction: Prediction, ent: Entitlements, window: float, now: datetime
) -> tuple[list[str], bool]:
    """(what puts it in the due state now, whether it is clear enough to leave it)."""
    days_left = _days_left(prediction, now)
    fired = []
    if days_left is not None and days_left <= window:
        fired.append("due_window")
    if prediction.failure_probability >= ent.risk_threshold:
        fired.append("risk")
    anomaly = ent.anomaly_threshold
    if anomaly is not None and prediction.anomaly_score >= anomaly:
        fired.append("anomaly")
    margin = max(EXIT_MARGIN_MIN_DAYS, window * EXIT_MARGIN_FRACTION)
    clear = (
        (days_left is None or days_left > window + margin)
        and prediction.failure_probability < ent.risk_threshold * EXIT_RATIO
        and (anomaly is None or prediction.anomaly_score < anomaly * EXIT_RATIO)
    )
    return fired, clear


@dataclass(frozen=True)
class DueStep:
    """What one prediction does to the due state: the state after it and why."""

    state: str  # "clear" | "due"
    entered: bool  # clear -> due now
    left: bool  # due -> clear now
    fired: list[str]


def next_due_state(
    state: str, prediction: Prediction, ent: Entitlements, window: float, now: datetime
) -> DueStep:
    """The hysteresis, pure: the due state after ``prediction`` when it was ``state``.

    The product's policy (``handle_prediction``) and the offline evaluation
    (``evaluation.strategies``) both decide through this function.
    """
    fired, clear = triggers(prediction, ent, window, now)
    if state == "clear" and fired:
        return DueStep("due", entered=True, left=False, fired=fired)
    if state == "due" and clear:
        return DueStep("clear", entered=False, left=True, fired=fired)
    return DueStep(state, entered=False, left=False, fired=fired)


# When the failure-risk trigger fires (the component may fail within the model's horizon),
# the work is due after this share of the horizon at the recent usage rate at the latest:
# wear-out failures grow more likely towards the end of the horizon, so half of it keeps the
# risk well under the threshold, while the interval's low end may still be weeks out (it lags
# after a sudden step in wear).
RISK_DUE_SHARE = 0.5


def risk_due_at(prediction: Prediction, risk_threshold: float | None) -> datetime | None:
    """The latest due date that the failure risk allows, or None when it has not fired."""
    rate = prediction.usage_rate_per_day
    if risk_threshold is None or prediction.failure_probability < risk_threshold:
        return None
    if rate is None or rate <= 0:
        return None
    return prediction.time + timedelta(days=RISK_DUE_SHARE * prediction.horizon / rate)


def _due_from(prediction: Prediction, risk_threshold: float | None) -> datetime | None:
    """The due date ``prediction`` sets: its conservative due date, brought forward by a fired
    failure risk (:func:`risk_due_at`); None when it has neither."""
    known = [
        d
        for d in (prediction.due_at_conservative, risk_due_at(prediction, risk_threshold))
        if d is not None
    ]
    return min(known) if known else None


def dated(prediction: Prediction, typical_per_day: float | None) -> Prediction:
    """The prediction an order's due date is taken from: one with no usage rate of its own
    (less than a day of the asset's usage counter since renewal: ``models.scoring``) dated at
    a busy day of its kind, :data:`BUSY_DAY_FACTOR` times its typical usage per day
    (``life.typical_per_day``); any other prediction, or one of a kind that states no typical
    usage, as it is. Whether the asset is due is still judged on the prediction as scored (an
    estimate of the rate does not raise orders by itself: the due-window trigger stays off
    until a rate is measured).

    Undated, a prediction can only fire the failure-risk trigger, and its order was due at the
    end of the window (the plan's lead time, 14 days or more) however little life was left:
    an engine a few cycles from failure got an order due weeks out, and a part that wears
    through its life within a day of renewal (every part of the 20,000x demo) failed while it
    was open. Dated at the typical day, the order of an asset busier than typical still came
    late (:data:`BUSY_DAY_FACTOR`)."""
    rate = prediction.usage_rate_per_day
    if rate is not None or typical_per_day is None or typical_per_day <= 0:
        return prediction
    busy_per_day = BUSY_DAY_FACTOR * typical_per_day

    def at(rul: float) -> datetime:
        days = min(max(rul, 0.0), MAX_DUE_DAYS * busy_per_day) / busy_per_day
        return prediction.time + timedelta(days=days)

    return prediction.model_copy(
        update={
            "usage_rate_per_day": busy_per_day,
            "due_at": at(prediction.rul),
            "due_at_conservative": at(prediction.rul_low),
        }
    )


def order_due_at(
    prediction: Prediction, window: float, now: datetime, risk_threshold: float | None = None
) -> datetime:
    """The due date of an order raised on ``prediction`` (:func:`_due_from`), or the end of the
    window when the prediction sets none."""
    return _due_from(prediction, risk_threshold) or now + timedelta(days=window)


# An open order is brought forward only when a prediction moves its due date earlier by more
# than this share of the window (at least RESCHEDULE_MIN): small wobbles change nothing.
RESCHEDULE_FRACTION = 0.1
RESCHEDULE_MIN = timedelta(hours=6)


def rescheduled_due_at(
    current_due: datetime,
    prediction: Prediction,
    window: float,
    risk_threshold: float | None = None,
) -> datetime | None:
    """The earlier due date an open order should get from ``prediction``, or None.

    A component can wear faster than forecast after its order was raised (an order raised on
    failure risk weeks ahead keeps the due date of that moment): a newer prediction whose due
    date (:func:`_due_from`) is clearly earlier brings the order forward. Never later — a
    hopeful prediction does not postpone work already planned. The product's policy and
    ``evaluation.strategies`` both decide through this function.
    """
    new = _due_from(prediction, risk_threshold)
    if new is None:
        return None
    tolerance = max(RESCHEDULE_MIN, timedelta(days=window * RESCHEDULE_FRACTION))
    return new if new < current_due - tolerance else None


def _priority(days_left: float | None, window: float) -> str:
    if days_left is None:
        return "high"
    if days_left <= 0:
        return "urgent"
    if days_left <= window / 2:
        return "high"
    return "normal"


def _alert_payload(
    asset: AssetContext,
    prediction: Prediction,
    coverage: Coverage,
    fired: list[str],
    window: float,
) -> dict[str, object]:
    return {
        "asset_id": asset.id,
        "asset_ref": asset.ref,
        "component": prediction.component,
        "subscription_id": coverage.subscription.id,
        "plan": coverage.plan.code,
        "triggers": fired,
        "window_days": window,
        "prediction": prediction.model_dump(mode="json"),
    }


def handle_prediction(conn: Conn, prediction: Prediction, clock: Clock) -> Decision:
    """Apply the policy to one prediction inside the caller's transaction."""
    asset = fleet.asset_context(conn, prediction.asset_id)
    if asset is None or asset.retired_at is not None:
        return Decision("ignored", "asset unknown or retired")
    if prediction.time < asset.renewed_at:
        return Decision("stale", "the prediction is about a life that has ended")
    if prediction.low_confidence:
        # the data-quality gate found broken sensors: the asset page shows the prediction and
        # why it is not trusted; no automatic order or alert is raised on it
        issues = prediction.explanation.data_quality if prediction.explanation else []
        return Decision("low_confidence", "; ".join(issues) or "data failed the quality gate")
    now = clock.now()
    coverage = subscriptions.coverage_for(conn, asset.id, now)
    if coverage is None:
        return Decision("no_subscription")
    ent = coverage.entitlements
    state = policy_state.lock(conn, asset.id, prediction.component)
    if state.last_prediction_time is not None and prediction.time <= state.last_prediction_time:
        return Decision("stale", "a newer prediction was already handled")
    # whether it is due is judged on the prediction as scored; the due date of its order on
    # the prediction dated at a busy day of its kind when it has no rate (:func:`dated`)
    window = window_days(conn, asset, prediction.component, ent, prediction, now)
    step = next_due_state(state.state, prediction, ent, window, now)
    shown, prediction = prediction, dated(prediction, kinds.typical_per_day(conn, asset.kind))
    fired = step.fired
    values = state.model_dump(include=set(PolicyState.model_fields) - {"updated_at"})
    values["last_prediction_time"] = prediction.time
    decision = Decision("held" if state.state == "due" else "clear")
    if step.entered:
        values |= {"state": "due", "entered_at": now, "alerted_at": None, "order_id": None}
    elif step.left:
        if state.alerted_at is not None:
            emit(
                conn,
                "prediction.alert_cleared",
                _alert_payload(asset, shown, coverage, fired, window),
                customer_id=asset.customer_id,
                subject=subject("asset", asset.id),
            )
        values |= {"state": "clear", "entered_at": None, "alerted_at": None, "order_id": None}
        decision = Decision("clear", "left the due state")
    if values["state"] == "due":
        decision = _act_while_due(
            conn, asset, prediction, shown, coverage, fired, window, values, now
        )
    policy_state.save(conn, asset.id, prediction.component, values)
    return decision


def _act_while_due(
    conn: Conn,
    asset: AssetContext,
    prediction: Prediction,
    shown: Prediction,
    coverage: Coverage,
    fired: list[str],
    window: float,
    values: dict[str, object],
    now: datetime,
) -> Decision:
    """In the due state: raise the order once (orders plans) or alert once (alerts only).
    ``prediction`` decides (:func:`dated`); ``shown`` is the one the alert carries."""
    ent = coverage.entitlements
    # dunning paused this subscription's automatic orders (its plan's orders_pause_after_days):
    # the policy alerts instead, until payment resumes them
    orders_paused = coverage.subscription.orders_paused_at is not None
    if ent.includes_orders and not orders_paused:
        if values["order_id"] is not None:
            open_order = orders.open_order_for(conn, asset.id, prediction.component)
            if open_order is not None and open_order.status != OrderStatus.IN_PROGRESS:
                earlier = rescheduled_due_at(
                    open_order.due_at, prediction, window, ent.risk_threshold
                )
                if earlier is not None:
                    moved = orders.bring_forward(
                        conn,
                        open_order,
                        due_at=earlier,
                        priority=_priority(_days_left(prediction, now), window),
                    )
                    visits.plan_order(conn, moved.id, now, cause="the due date moved earlier")
                    return Decision("rescheduled", f"due {earlier:%Y-%m-%d %H:%M}", moved.id)
            return Decision("held", "order already raised in this due period")
        days_left = _days_left(prediction, now)
        due_at = order_due_at(prediction, window, now, ent.risk_threshold)
        carried = mobility.mount_of(conn, asset.id) is not None
        order = orders.raise_order(
            conn,
            asset=asset,
            component=prediction.component,
            reason="anomaly" if fired == ["anomaly"] else "predicted",
            due_at=due_at,
            priority=_priority(days_left, window),
            now=now,
            coverage=coverage,
            prediction_time=prediction.time,
            notes=f"raised by the policy ({', '.join(fired) or 'still due'})",
            supply_later=carried,
            explanation=prediction.explanation,
        )
        if order is not None and carried:
            visits.plan_order(conn, order.id, now, cause="order raised")
        if order is None:
            existing = orders.open_order_for(conn, asset.id, prediction.component)
            existing_id = existing.id if existing else None
            values["order_id"] = existing_id
            return Decision("exists", "an order is already open", existing_id)
        values["order_id"] = order.id
        return Decision("order", ", ".join(fired), order.id)
    if (ent.includes_alerts or orders_paused) and values["alerted_at"] is None:
        payload = _alert_payload(asset, shown, coverage, fired, window)
        if orders_paused and ent.includes_orders:
            payload["orders_paused"] = True
        emit(
            conn,
            "prediction.alert",
            payload,
            customer_id=asset.customer_id,
            subject=subject("asset", asset.id),
        )
        values["alerted_at"] = now
        if orders_paused and ent.includes_orders:
            return Decision("alert", "automatic orders paused (payment overdue)")
        return Decision("alert", ", ".join(fired))
    return Decision("held", "already alerted in this due period")


def process_queue(conn: Conn, clock: Clock, *, limit: int = 50) -> int:
    """Handle the queued predictions of up to ``limit`` components in the caller's
    transaction; how many queue rows were done.

    Of each component's queued predictions only the decisive ones are handled, oldest
    first: the newest, and of the older ones those that would fire a trigger if any does
    (the highest failure risk, the highest anomaly score, the earliest conservative due
    date); the rest are superseded and dropped unread. So a dispatcher that fell behind (a
    loaded machine; ``fleetcare up``'s 20,000x clock, where each second behind is 5.6
    simulated hours) decides on the latest predictions in its next batch instead of working
    through every older one first -- one 40 s behind raised orders ~10 simulated days after
    the risk was predicted -- and a threshold crossed by a prediction that a newer one
    supersedes still counts, as it did when each was handled in turn.
    Rows are taken with FOR UPDATE SKIP LOCKED, so several dispatchers share the queue
    without handling a prediction twice; each is handled in a savepoint so that one bad
    prediction is retried later without blocking the rest.
    """
    taken = repo.take_queued(conn, clock.now(), limit)
    by_component: dict[tuple[int, str], list[QueuedPrediction]] = {}
    for job in taken:
        by_component.setdefault((job.asset_id, job.component), []).append(job)
    jobs = [job for rows in by_component.values() for job in _decisive(conn, rows)]
    kept = {job.id for job in jobs}
    repo.delete_queued_rows(conn, [job.id for job in taken if job.id not in kept])
    jobs.sort(key=lambda job: (job.prediction_time, job.id))
    for job in jobs:
        try:
            with conn.transaction():
                prediction = models.get_prediction(
                    conn, job.asset_id, job.component, job.prediction_time
                )
                if prediction is not None:
                    decision = handle_prediction(conn, prediction, clock)
                    log.debug("prediction %s/%s: %s", job.asset_id, job.component, decision)
                repo.delete_queued(conn, job.id)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            # Two batches locked the same rows in different orders: retry in the next batch.
            log.info("policy retrying queue row %s: %s", job.id, exc)
            repo.postpone_queued(conn, job.id, f"{type(exc).__name__}: {exc}", clock.now())
        except Exception as exc:  # one bad prediction must not stop the dispatcher
            log.warning("policy failed on queue row %s: %s", job.id, exc)
            repo.postpone_queued(
                conn,
                job.id,
                f"{type(exc).__name__}: {exc}",
                clock.now() + RETRY_AFTER * (job.attempts + 1),
            )
    return len(taken)


def _decisive(conn: Conn, rows: list[QueuedPrediction]) -> list[QueuedPrediction]:
    """Of one component's queued predictions, those whose handling can change what the
    policy does (see ``process_queue``): the newest, and the older extremes that go further
    than the newest (a trigger fires on a higher risk or anomaly score, an earlier date)."""
    newest = max(rows, key=lambda job: (job.prediction_time, job.id))
    if len(rows) == 1:
        return rows
    latest = models.get_prediction(conn, newest.asset_id, newest.component, newest.prediction_time)
    if latest is None:
        return rows  # handled one by one, as they come
    older = [
        (job, found)
        for job in rows
        if job is not newest
        and (found := models.get_prediction(conn, job.asset_id, job.component, job.prediction_time))
        is not None
    ]
    picked = {newest.id: newest}
    if older:
        risk = max(older, key=lambda o: o[1].failure_probability)
        if risk[1].failure_probability > latest.failure_probability:
            picked[risk[0].id] = risk[0]
        anomaly = max(older, key=lambda o: o[1].anomaly_score)
        if anomaly[1].anomaly_score > latest.anomaly_score:
            picked[anomaly[0].id] = anomaly[0]
        dated_rows = [(j, p.due_at_conservative) for j, p in older if p.due_at_conservative]
        if dated_rows:
            job, due = min(dated_rows, key=lambda o: o[1])
            if latest.due_at_conservative is None or due < latest.due_at_conservative:
                picked[job.id] = job
    return list(picked.values())
