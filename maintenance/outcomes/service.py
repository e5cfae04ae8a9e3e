"""Order outcomes: what a technician found, as labels of the lives orders end; the model page
(per kind and model version: precision of alerts, missed failures, interval coverage on real
outcomes). No SQL text."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from fleet import service as fleet
from fleet.causes import OTHER_FAULT
from fleet.schemas import AssetContext, Principal
from fleetcare.clock import MAX_DUE_DAYS
from fleetcare.errors import Forbidden, Invalid
from kinds.schemas import KindDefinition
from kinds.service import get_kind
from maintenance.common import Conn
from maintenance.orders.schemas import Order
from maintenance.outcomes import repository as repo
from maintenance.outcomes.schemas import (
    Finding,
    ModelOutcomes,
    ModelPage,
    OrderOutcome,
    OutcomeRow,
)

# orders the policy raised from a prediction: the alerts whose precision the page shows
ALERT_REASONS = ("predicted", "anomaly")
SUMMARY_ROWS = 10_000  # outcomes summarised per request (newest first)


def check_findings(conn: Conn, asset: AssetContext, findings: list[Finding]) -> None:
    """Reject findings that name a component the kind lacks (or twice), or a measurement
    the component has none of or outside its metric's bounds: 422 with a specific code."""
    spec = get_kind(conn, asset.kind)
    seen: set[str] = set()
    for i, f in enumerate(findings):
        where = f"findings[{i}]"
        if f.component not in spec.component_names:
            raise Invalid(
                f"{where}.component: a {asset.kind} has components "
                f"{', '.join(spec.component_names)}, not {f.component!r}",
                code="unknown_component",
            )
        if f.component in seen:
            raise Invalid(
                f"{where}.component: {f.component!r} given twice", code="duplicate_finding"
            )
        seen.add(f.component)
        if f.measured_value is None:
            continue
        metric = _measured_metric(spec, f.component)
        if metric is None:
            raise Invalid(
                f"{where}.measured_value: the {f.component} of a {asset.kind} has no "
                "remaining-life measurement (its kind defines no end-of-life threshold for it)",
                code="no_remaining_life_measurement",
            )
        m = spec.metric(metric)
        if not m.low <= f.measured_value <= m.high:
            raise Invalid(
                f"{where}.measured_value: {f.measured_value:g} is outside {metric}'s bounds "
                f"[{m.low:g}, {m.high:g}] {m.unit}",
                code="measurement_out_of_bounds",
            )


def _measured_metric(spec: KindDefinition, component: str) -> str | None:
    thresholds = spec.thresholds_of(component)
    return thresholds[0].metric if thresholds else None


def remaining_life(
    spec: KindDefinition, component: str, measured: float, first: float | None, usage: float | None
) -> float | None:
    """Life units left, by the measurement's distance to the end-of-life limit at the rate the
    life has used it so far (``first`` reading of the life to ``measured`` over ``usage``):
    tread 3.6 mm with a 1.6 mm limit, new at 15.6 mm after 70,000 km, leaves 10,000 km.
    None when the wear so far gives no rate."""
    threshold = spec.thresholds_of(component)[0]
    falling = threshold.op in ("<=", "<")
    margin = (measured - threshold.value) if falling else (threshold.value - measured)
    if margin <= 0:
        return 0.0
    if first is None or usage is None or usage <= 0:
        return None
    used = (first - measured) if falling else (measured - first)
    return usage * margin / used if used > 0 else None


def record_for_order(
    conn: Conn,
    order: Order,
    findings: list[Finding] | None,
    status: str,
    life_started_at: datetime,
    *,
    now: datetime,
    usage_at_end: float | None = None,
    life_id: int | None = None,
) -> list[dict[str, Any]]:
    """Check and store what was found when ``order`` was closed (``status``); the finding
    on the order's own component labels the life the order ended (``life_id``). Usage at
    the end defaults to the asset's counter. The outcomes as JSON, for the order's event."""
    if not findings:
        return []
    asset = fleet.asset_context(conn, order.asset_id, customer_id=None)
    assert asset is not None
    check_findings(conn, asset, findings)
    if usage_at_end is None:
        usage_at_end = asset.usage_counter
    spec = get_kind(conn, asset.kind)
    order_id, order_component, customer_id = order.id, order.component, order.customer_id
    out = []
    for f in findings:
        metric = _measured_metric(spec, f.component) if f.measured_value is not None else None
        remaining = None
        if metric is not None and f.measured_value is not None:
            first = repo.first_reading(conn, asset.id, metric, life_started_at)
            remaining = remaining_life(spec, f.component, f.measured_value, first, usage_at_end)
        own = f.component == order_component
        outcome = repo.insert_outcome(
            conn,
            {
                "customer_id": customer_id,
                "order_id": order_id,
                "asset_id": asset.id,
                "component": f.component,
                "code": f.code,
                "order_status": status,
                "measured_metric": metric,
                "measured_value": f.measured_value if metric is not None else None,
                "remaining_life": remaining,
                "usage_at_end": usage_at_end,
                "life_id": life_id if own else None,
                "notes": f.notes,
                "recorded_at": now,
            },
        )
        if own and life_id is not None:
            repo.label_life(conn, life_id, f.code, remaining)
        out.append(outcome.model_dump(mode="json"))
    return out


def outcomes_of_order(conn: Conn, order_id: int) -> list[OrderOutcome]:
    """What was found when the order was closed."""
    return repo.outcomes_of_order(conn, order_id)


# --- the model page ---------------------------------------------------------------------------


def _row(raw: dict[str, Any]) -> OutcomeRow:
    rate = raw["usage_rate_per_day"]
    ended: datetime = raw["ended_at"]
    outcome = raw["outcome"]
    actual_end: datetime | None = None
    if outcome in ("failure", "missed_failure") and raw["cause"] != OTHER_FAULT:
        actual_end = ended  # another fault's end is not the wear end the interval predicts
    elif raw["remaining_life"] is not None and rate:
        actual_end = ended + timedelta(days=raw["remaining_life"] / rate)
    start = end = None
    if raw["prediction_time"] is not None and rate and rate > 0:
        start = raw["prediction_time"] + timedelta(days=min(raw["rul_low"] / rate, MAX_DUE_DAYS))
        end = raw["prediction_time"] + timedelta(days=min(raw["rul_high"] / rate, MAX_DUE_DAYS))
    hit = None if actual_end is None or start is None or end is None else start <= actual_end <= end
    fields = {k: raw[k] for k in OutcomeRow.model_fields if k in raw}
    return OutcomeRow(
        **fields, actual_end=actual_end, interval_start=start, interval_end=end, in_interval=hit
    )


def summarise(rows: list[OutcomeRow]) -> list[ModelOutcomes]:
    """Per kind and model version: alerts and their precision, failures (missed ones apart),
    interval coverage of the outcomes whose end is known."""
    groups: dict[tuple[str, int | None], list[OutcomeRow]] = defaultdict(list)
    for r in rows:
        groups[(r.kind, r.model_version_id)].append(r)
    out = []
    for (kind, version), mine in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or 0)):
        alerts = [r for r in mine if r.source == "order" and r.order_reason in ALERT_REASONS]
        confirmed = sum(1 for r in alerts if r.outcome == "confirmed_wear")
        checked = [r for r in mine if r.in_interval is not None]
        hits = sum(1 for r in checked if r.in_interval)
        out.append(
            ModelOutcomes(
                kind=kind,
                model_version_id=version,
                alerts_with_outcome=len(alerts),
                confirmed=confirmed,
                false_alarms=sum(1 for r in alerts if r.outcome == "false_alarm"),
                other_faults=sum(1 for r in alerts if r.outcome == "other_fault"),
                alert_precision=round(confirmed / len(alerts), 4) if alerts else None,
                failures=sum(1 for r in mine if r.outcome in ("failure", "missed_failure")),
                missed_failures=sum(1 for r in mine if r.outcome == "missed_failure"),
                interval_checked=len(checked),
                interval_hits=hits,
                interval_coverage=round(hits / len(checked), 4) if checked else None,
            )
        )
    return out


def model_page(conn: Conn, principal: Principal, *, kind: str | None, limit: int) -> ModelPage:
    """The model page's figures and its newest ``limit`` rows, confined to the caller's
    customer (the operator sees every customer's)."""
    if principal.role == "partner":
        raise Forbidden("a partner key has no model page", code="partner_forbidden")
    if kind is not None:
        get_kind(conn, kind)  # 404 for a kind that does not exist
    raw = repo.outcome_rows(conn, scope=principal.scope, kind=kind, limit=SUMMARY_ROWS)
    rows = [_row(r) for r in raw]
    return ModelPage(summaries=summarise(rows), rows=rows[:limit])
