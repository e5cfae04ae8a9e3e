"""The value report: what the service prevented and saved a customer in a month.

- **failures prevented**: orders raised from predictions (the asset was wearing out) and
  completed no later than their due date;
- **failures not prevented**: lives that ended in failure (reported or detected);
- **downtime avoided** and **money saved**, with the cost assumptions of the kind's
  definition (its ``economics:`` block, as ``fleetcare evaluate``; stated in the report; a
  kind without one gets no costs, and the report says so): against *run to failure* each
  prevented failure saves the kind's unplanned downtime (hours x cost per hour); against a
  *preventive* programme that replaces a component at the age by which
  ``PREVENTIVE_QUANTILE`` of the customer's recorded lives had failed, a component that lived
  L days instead of that interval P saves (L/P - 1) replacements (part + labour at the kind's
  labour rate), and one that failed before P would have failed under it too (its downtime);
- parts shipped and on time, service credits earned, and the plan advice.

No SQL text, no HTTP. See docs/billing.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from fleet.schemas import Principal
from fleetcare.clock import Clock, ManualClock
from fleetcare.errors import FleetcareError, Invalid, NotFound
from kinds.economics import PREVENTIVE_QUANTILE
from kinds.schemas import Economics
from kinds.service import all_kinds, get_kind
from maintenance.billing import advice
from maintenance.billing.pricing import Period, parse_period
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.value import repository as repo
from maintenance.value.schemas import (
    CreditsEarned,
    FailureNotPrevented,
    KindAssumptions,
    PreventedFailure,
    Shipments,
    ValueReport,
)

MIN_LIVES_FOR_PREVENTIVE = 5  # fewer recorded lives: no preventive interval is stated
ADVICE_MONTHS = 3
OPERATOR = Principal(key_id=0, role="operator")


def _replacement_eur(conn: Conn, kind: str, component: str, econ: Economics) -> float:
    """A planned replacement: the component's first part and its labour (as evaluate)."""
    spec = get_kind(conn, kind)
    part = next(c for c in spec.components if c.name == component).parts[0]
    return part.price_minor / 100.0 + part.labour_hours * econ.labour_eur_per_hour


def _prevented(
    conn: Conn, row: dict[str, Any], interval: float | None, econ: Economics | None
) -> PreventedFailure:
    life = None if row["life_days"] is None else float(row["life_days"])
    downtime = rtf = prev = None
    if econ is not None:
        downtime = econ.failure_downtime_h
        rtf = econ.failure_downtime_h * econ.downtime_eur_per_hour
        if interval is not None and life is not None:
            if life >= interval:
                replacement = _replacement_eur(conn, row["kind"], row["component"], econ)
                prev = (life / interval - 1.0) * replacement
            else:
                prev = rtf  # it would have failed before the preventive replacement
    return PreventedFailure(
        order_id=row["order_id"],
        asset_id=row["asset_id"],
        asset_ref=row["asset_ref"],
        kind=row["kind"],
        component=row["component"],
        reason=row["reason"],
        due_at=row["due_at"].isoformat(),
        completed_at=row["completed_at"].isoformat(),
        life_days=None if life is None else round(life, 2),
        downtime_avoided_h=downtime,
        saved_vs_run_to_failure_eur=None if rtf is None else round(rtf, 2),
        saved_vs_preventive_eur=None if prev is None else round(prev, 2),
    )


def build_report(
    conn: Conn, customer_id: int, period: Period, clock: Clock, principal: Principal
) -> ValueReport:
    """The value report of a customer for a month (no permission check: callers check)."""
    found = repo.customer(conn, customer_id)
    if found is None:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    name, currency = found
    lives = repo.life_days(conn, customer_id, period.end)
    intervals = {
        key: float(np.quantile(days, PREVENTIVE_QUANTILE))
        for key, days in lives.items()
        if len(days) >= MIN_LIVES_FOR_PREVENTIVE
    }
    # the costs each kind's definition states (the database's current version)
    economics = {name: k.economics for name, k in all_kinds(conn).items() if k.economics}
    prevented = [
        _prevented(
            conn, row, intervals.get((row["kind"], row["component"])), economics.get(row["kind"])
        )
        for row in repo.prevented(conn, customer_id, period.start, period.end)
    ]
    not_prevented = []
    for row in repo.failures(conn, customer_id, period.start, period.end):
        econ = economics.get(row["kind"])
        not_prevented.append(
            FailureNotPrevented(
                life_id=row["life_id"],
                asset_id=row["asset_id"],
                asset_ref=row["asset_ref"],
                kind=row["kind"],
                component=row["component"],
                failed_at=row["failed_at"].isoformat(),
                failure_report_id=row["failure_report_id"],
                downtime_h=None if econ is None else econ.failure_downtime_h,
                downtime_eur=None
                if econ is None
                else econ.failure_downtime_h * econ.downtime_eur_per_hour,
            )
        )
    kinds = sorted({p.kind for p in prevented} | {f.kind for f in not_prevented})
    assumptions = [
        KindAssumptions(
            kind=kind,
            failure_downtime_h=economics[kind].failure_downtime_h,
            downtime_eur_per_hour=economics[kind].downtime_eur_per_hour,
            labour_eur_per_hour=economics[kind].labour_eur_per_hour,
            preventive_interval_days=min(
                (round(v, 2) for (k, _), v in intervals.items() if k == kind), default=None
            ),
            recorded_lives=sum(len(d) for (k, _), d in lives.items() if k == kind),
            note=economics[kind].note,
        )
        for kind in kinds
        if kind in economics
    ]
    notes = [
        f"Costs of a kind without stated assumptions are not counted: {kind}."
        for kind in kinds
        if kind not in economics
    ]
    if any(p.saved_vs_preventive_eur is None for p in prevented):
        notes.append(
            f"The preventive baseline needs {MIN_LIVES_FOR_PREVENTIVE} recorded lives of a"
            " component; without them no saving against it is counted."
        )
    ship = repo.shipments(conn, customer_id, period.start, period.end)
    credit = repo.credits(conn, customer_id, period.name)
    try:
        plan_advice = advice.plan_advice(
            conn, principal, customer_id, ADVICE_MONTHS, ManualClock(period.end)
        )
    except FleetcareError as exc:  # e.g. nothing to compare yet
        plan_advice = None
        notes.append(f"No plan advice: {exc.detail}")
    return ValueReport(
        customer_id=customer_id,
        customer_name=name,
        period=period.name,
        failures_prevented=len(prevented),
        failures_not_prevented=len(not_prevented),
        prevented=prevented,
        not_prevented=not_prevented,
        downtime_avoided_h=sum(p.downtime_avoided_h or 0.0 for p in prevented),
        saved_vs_run_to_failure_eur=round(
            sum(p.saved_vs_run_to_failure_eur or 0.0 for p in prevented), 2
        ),
        saved_vs_preventive_eur=round(sum(p.saved_vs_preventive_eur or 0.0 for p in prevented), 2),
        shipments=Shipments(
            delivered=ship["delivered"],
            on_time=ship["on_time"],
            late=ship["delivered"] - ship["on_time"],
            parts=ship["parts"],
        ),
        service_credits=CreditsEarned(
            count=credit["count"],
            applied_minor=credit["applied_minor"],
            pending=credit["pending"],
            currency=currency,
        ),
        assumptions=assumptions,
        advice=plan_advice,
        notes=notes,
    )


def value_report(
    conn: Conn, principal: Principal, customer_id: int, period_name: str, clock: Clock
) -> ValueReport:
    """A customer's value report of a month: its own, or any for the operator."""
    principal.require("billing:read")
    if principal.scope is not None and principal.scope != customer_id:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    period = parse_period(period_name)
    if period.start > clock.now():
        raise Invalid(f"period {period.name} has not started", code="period_not_started")
    return build_report(conn, customer_id, period, clock, principal)


def send_monthly_reports(conn: Conn, period_name: str, now: datetime) -> int:
    """Emit ``value_report.ready`` once per customer whose invoice of the month is issued;
    how many were sent now (the worker's step; safe to repeat, also concurrently)."""
    period = parse_period(period_name)
    sent = 0
    for customer_id in repo.invoiced_customers(conn, period.name):
        if not repo.mark_sent(conn, customer_id, period.name, now):
            continue
        report = build_report(conn, customer_id, period, ManualClock(now), OPERATOR)
        emit(
            conn,
            "value_report.ready",
            {
                "customer_id": customer_id,
                "period": period.name,
                "report": report.model_dump(mode="json"),
            },
            customer_id=customer_id,
            subject=subject("customer", customer_id),
            occurred_at=now,
        )
        sent += 1
    return sent
