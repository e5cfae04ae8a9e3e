"""Invoice lines: what a subscription covered (segments), metered usage, and the line rules.

Shared by closing invoices (``service``) and plan advice (``advice``). No SQL text, no HTTP.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from fleetcare.errors import Invalid
from kinds.service import get_kind
from maintenance.billing import repository as repo
from maintenance.billing.contract_lines import commitment_lines, early_termination_line
from maintenance.billing.pricing import (
    Metering,
    Period,
    days,
    meter,
    parse_period,
    prorated_fee,
    shift,
    to_decimal,
    to_minor,
    usage_charge,
)
from maintenance.billing.schemas import Invoice, InvoiceLine, LineDraft, OrderPartUse
from maintenance.billing.segments import (
    PlanCache,
    Segment,
    by_asset,
    contract_year,
    coverage,
    monthly_fee,
    usage_price,
)
from maintenance.common import Conn
from maintenance.orders.service import STANDARD_LABOUR_RATE_MINOR
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import CoveredAsset, Subscription

# uuid5 namespace of usage record ids: uuid5(USAGE_NAMESPACE, "<subscription>/<asset>/<period>")
USAGE_NAMESPACE = UUID("6f0c3c52-5b7e-4d1e-9a43-8f1f3a0b7c21")
# Late usage of an issued period is charged as an adjustment on the next invoices that close
# within this many months after it; later than that it is no longer billed.
ADJUSTMENT_LOOKBACK_MONTHS = 3
KIND_ORDER = {
    "base_fee": 0,
    "usage": 1,
    "usage_adjustment": 2,
    "parts": 3,
    "labour": 4,
    "service_credit": 5,
}


def usage_record_id(subscription_id: int, asset_id: int, period: str) -> UUID:
    """The deterministic id of a usage record: the same inputs always name the same row."""
    return uuid.uuid5(USAGE_NAMESPACE, f"{subscription_id}/{asset_id}/{period}")


def meter_asset(
    conn: Conn, asset: CoveredAsset, windows: list[tuple[datetime, datetime]]
) -> tuple[str, str, Metering]:
    """Meter an asset's usage counter over ``windows`` (sorted); the metric, unit and result."""
    kind = get_kind(conn, asset.kind)
    empty = Metering(per_window=[Decimal(0)] * len(windows))
    metric = repo.metric_id(conn, asset.kind, kind.usage_metric)
    if metric is None or not windows:
        return kind.usage_metric, kind.life_unit, empty
    start, end = windows[0][0], windows[-1][1]
    baseline, readings = repo.counter_readings(conn, asset.id, metric, start, end)
    baseline_at = baseline[0] if baseline else None
    metering = meter(
        baseline[1] if baseline else None,
        readings,
        windows,
        renewals=repo.renewals(conn, asset.id, baseline_at, end),
        baseline_at=baseline_at,
    )
    return kind.usage_metric, kind.life_unit, metering


# --- lines ---------------------------------------------------------------------------------


def _check_currency(what: str, currency: str, invoice_currency: str) -> None:
    if currency.strip() != invoice_currency:
        raise Invalid(f"{what} is priced in {currency}; the invoice is in {invoice_currency}")


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def _fee_note(seg: Segment) -> str:
    notes = []
    if seg.contract_year:
        notes.append(
            f"contract year {seg.contract_year + 1}, +{seg.subscription.escalation_bps} bps/year"
        )
    if seg.paused:
        rule = seg.plan.pause_rule
        notes.append(
            f"paused: {seg.plan.pause_fee_bps / 100:g}% of the fee"
            if rule == "reduced"
            else f"paused: {rule}"
        )
    return f" [{'; '.join(notes)}]" if notes else ""


def fee_line(seg: Segment, period: Period, currency: str) -> LineDraft | None:
    """The base fee of a segment: the monthly fee (escalated, by the pause rule when paused)
    times the share of the period covered."""
    fee = monthly_fee(seg)
    if fee is None:
        return None
    _check_currency(f"plan {seg.plan.code!r}", seg.plan.currency, currency)
    return LineDraft(
        kind="base_fee",
        description=f"{seg.plan.name} fee, {seg.asset.ref}, {_span(seg.start, seg.end)}"
        f" ({days(seg.seconds)} of {period.days} days){_fee_note(seg)}",
        quantity=days(seg.seconds),
        unit="asset-days",
        unit_price_minor=fee,
        unit_quantity=1,
        amount_minor=prorated_fee(fee, seg.seconds, period),
        subscription_id=seg.subscription.id,
        asset_id=seg.asset.id,
        plan_id=seg.plan.id,
        starts_at=seg.start,
        ends_at=seg.end,
    )


def usage_line(
    seg: Segment, units: Decimal, unit: str, record: UUID | None, currency: str
) -> LineDraft | None:
    """The usage charge of a segment at its plan's rate."""
    price = usage_price(seg)
    if price is None:
        return None
    _check_currency(f"plan {seg.plan.code!r}", seg.plan.currency, currency)
    per = seg.plan.usage_price_quantity
    return LineDraft(
        kind="usage",
        description=f"{seg.plan.name} usage, {seg.asset.ref}: {units} {unit}"
        f" at {price} per {per} {unit}, {_span(seg.start, seg.end)}",
        quantity=units,
        unit=unit,
        unit_price_minor=price,
        unit_quantity=per,
        amount_minor=usage_charge(units, price, per),
        subscription_id=seg.subscription.id,
        asset_id=seg.asset.id,
        plan_id=seg.plan.id,
        usage_record_id=record,
        starts_at=seg.start,
        ends_at=seg.end,
    )


def order_lines(
    uses: list[OrderPartUse],
    currency: str,
    *,
    parts_billable: Callable[[OrderPartUse], bool],
    labour_billable: Callable[[OrderPartUse], bool],
) -> list[LineDraft]:
    """Parts and labour of completed orders that the plan does not include."""
    lines: list[LineDraft] = []
    hours: dict[int, Decimal] = defaultdict(Decimal)
    first: dict[int, OrderPartUse] = {}
    for use in uses:
        _check_currency(f"part {use.sku}", use.currency, currency)
        if parts_billable(use):
            lines.append(
                LineDraft(
                    kind="parts",
                    description=f"{use.part_name} ({use.sku}) x{use.quantity}, order {use.order_id}"
                    f" on {use.asset_ref} ({use.component})",
                    quantity=Decimal(use.quantity),
                    unit="pcs",
                    unit_price_minor=use.price_minor,
                    amount_minor=use.price_minor * use.quantity,
                    asset_id=use.asset_id,
                    subscription_id=use.subscription_id,
                    order_id=use.order_id,
                    part_id=use.part_id,
                )
            )
        if labour_billable(use):
            hours[use.order_id] += to_decimal(use.labour_hours) * use.quantity
            first.setdefault(use.order_id, use)
    for order_id, total_hours in hours.items():
        use = first[order_id]
        lines.append(
            LineDraft(
                kind="labour",
                description=f"Labour, order {order_id} on {use.asset_ref} ({use.component}):"
                f" {total_hours} h",
                quantity=total_hours,
                unit="h",
                unit_price_minor=STANDARD_LABOUR_RATE_MINOR,
                amount_minor=to_minor(total_hours * STANDARD_LABOUR_RATE_MINOR),
                asset_id=use.asset_id,
                subscription_id=use.subscription_id,
                order_id=order_id,
            )
        )
    return lines


def _usage_amount(segments: list[Segment], per_window: list[Decimal]) -> int:
    total = 0
    for seg, units in zip(segments, per_window, strict=True):
        price = usage_price(seg)
        if price is not None:
            total += usage_charge(units, price, seg.plan.usage_price_quantity)
    return total


def _record_values(
    sub: Subscription,
    asset: CoveredAsset,
    period: Period,
    metric: str,
    unit: str,
    segments: list[Segment],
    metering: Metering,
    now: datetime,
) -> dict[str, object]:
    return {
        "id": usage_record_id(sub.id, asset.id, period.name),
        "customer_id": sub.customer_id,
        "subscription_id": sub.id,
        "asset_id": asset.id,
        "period": period.name,
        "metric": metric,
        "unit": unit,
        "window_start": segments[0].start,
        "window_end": segments[-1].end,
        "quantity": metering.total,
        "readings": metering.readings,
        "resets": metering.resets,
        "computed_at": now,
    }


def _subscription_lines(
    conn: Conn, sub: Subscription, period: Period, cache: PlanCache, currency: str, now: datetime
) -> tuple[list[LineDraft], list[UUID]]:
    lines: list[LineDraft] = []
    records: list[UUID] = []
    segments = coverage(conn, sub, period, cache)
    metered: list[tuple[Segment, Decimal]] = []
    for asset_segments in by_asset(segments).values():
        asset = asset_segments[0].asset
        windows = [(s.start, s.end) for s in asset_segments]
        metric, unit, metering = meter_asset(conn, asset, windows)
        record = repo.upsert_usage_record(
            conn,
            _record_values(sub, asset, period, metric, unit, asset_segments, metering, now),
        )
        records.append(record.id)
        for seg, units in zip(asset_segments, metering.per_window, strict=True):
            metered.append((seg, units))
            for line in (
                fee_line(seg, period, currency),
                usage_line(seg, units, unit, record.id, currency),
            ):
                if line is not None:
                    lines.append(line)
    lines += commitment_lines(sub, segments, metered, period)
    ended = _early_termination(conn, sub, period, cache)
    if ended is not None:
        lines.append(ended)
    return lines, records


def _early_termination(
    conn: Conn, sub: Subscription, period: Period, cache: PlanCache
) -> LineDraft | None:
    """What an immediate cancellation in ``period`` owes under the contract's rule."""
    if sub.ends_at is None or not period.start <= sub.ends_at < period.end:
        return None
    last = sub.ends_at - timedelta(microseconds=1)
    plan_id = subscriptions.plan_at(conn, sub.id, last)
    years = contract_year(sub, last)
    return early_termination_line(
        sub, cache.get(plan_id), subscriptions.covered_asset_stretches(conn, sub), years, period
    )


def _advance_credit(sub: Subscription, period: Period, amount: int, invoice_id: int) -> LineDraft:
    """The fees of ``period`` an earlier invoice billed in advance, credited against the real
    fee lines of the period (so the month costs what it really cost)."""
    return LineDraft(
        kind="base_fee",
        description=f"Fees of {period.name} billed in advance on invoice {invoice_id}",
        quantity=Decimal(1),
        unit="advance",
        unit_price_minor=-amount,
        amount_minor=-amount,
        contract_charge="advance_credit",
        subscription_id=sub.id,
        starts_at=period.start,
        ends_at=period.end,
    )


def _advance_fees(
    conn: Conn, sub: Subscription, period: Period, cache: PlanCache, currency: str
) -> list[LineDraft]:
    """Next month's fees as the contract stands now (billing in advance), ending where a
    cancellation, a scheduled non-renewal or a term without renewal ends it."""
    stops = [
        sub.ends_at,
        sub.cancel_effective_at if sub.cancel_at_term_end else None,
        None if sub.auto_renew else sub.current_term_ends_at,
    ]
    ends = min((t for t in stops if t is not None), default=None)
    forecast = sub.model_copy(update={"ends_at": ends})
    following = shift(period, 1)
    lines = []
    for seg in coverage(conn, forecast, following, cache):
        line = fee_line(seg, following, currency)
        if line is not None:
            lines.append(
                replace(
                    line,
                    description=f"In advance: {line.description}",
                    contract_charge="advance",
                )
            )
    return lines


def _adjustment_lines(
    conn: Conn, customer_id: int, period: Period, cache: PlanCache, currency: str, now: datetime
) -> list[LineDraft]:
    """Usage that arrived after an earlier period's invoice was issued, charged now."""
    earlier = [shift(period, -k).name for k in range(1, ADJUSTMENT_LOOKBACK_MONTHS + 1)]
    lines: list[LineDraft] = []
    for record in repo.billed_usage_records(conn, customer_id, earlier):
        sub = subscriptions.subscription_by_id(conn, record.subscription_id)
        then = parse_period(record.period)
        segments = [s for s in coverage(conn, sub, then, cache) if s.asset.id == record.asset_id]
        if not segments:
            continue
        asset = segments[0].asset
        metric, unit, metering = meter_asset(conn, asset, [(s.start, s.end) for s in segments])
        repo.upsert_usage_record(
            conn, _record_values(sub, asset, then, metric, unit, segments, metering, now)
        )
        assert record.billed_amount_minor is not None and record.billed_quantity is not None
        delta_amount = _usage_amount(segments, metering.per_window) - record.billed_amount_minor
        if delta_amount == 0:
            continue
        last = segments[-1].plan
        _check_currency(f"plan {last.code!r}", last.currency, currency)
        delta_units = metering.total - record.billed_quantity
        lines.append(
            LineDraft(
                kind="usage_adjustment",
                description=f"Late usage for {record.period}, {asset.ref}: {delta_units} {unit}"
                f" (billed {record.billed_quantity}, now measured {metering.total})",
                quantity=delta_units,
                unit=unit,
                unit_price_minor=last.usage_price_minor or 0,
                unit_quantity=last.usage_price_quantity,
                amount_minor=delta_amount,
                subscription_id=sub.id,
                asset_id=asset.id,
                plan_id=last.id,
                usage_record_id=record.id,
                adjusts_period=record.period,
                starts_at=segments[0].start,
                ends_at=segments[-1].end,
            )
        )
    return lines


def compute_lines(
    conn: Conn, customer_id: int, period: Period, currency: str, now: datetime
) -> tuple[list[LineDraft], list[UUID]]:
    """Every line of a customer's invoice for ``period`` (usage records are written too)."""
    cache = PlanCache(conn)
    lines: list[LineDraft] = []
    records: list[UUID] = []
    advance = repo.billed_in_advance(conn, customer_id, period.start, period.end)
    subs = subscriptions.running_in(conn, customer_id, period.start, period.end)
    subs += [
        subscriptions.subscription_by_id(conn, sid)
        for sid in sorted(set(advance) - {s.id for s in subs})
    ]
    for sub in subs:
        sub_lines, sub_records = _subscription_lines(conn, sub, period, cache, currency, now)
        lines += sub_lines
        records += sub_records
        if sub.id in advance:
            lines.append(_advance_credit(sub, period, *advance[sub.id]))
        if sub.billing_timing == "advance":
            lines += _advance_fees(conn, sub, period, cache, currency)
    lines += _adjustment_lines(conn, customer_id, period, cache, currency, now)
    lines += order_lines(
        repo.completed_order_parts(conn, customer_id, period.start, period.end),
        currency,
        parts_billable=lambda use: use.billable,
        labour_billable=lambda use: not use.labour_included,
    )
    ranked = sorted(enumerate(lines), key=lambda pair: (KIND_ORDER[pair[1].kind], pair[0]))
    return [line for _, line in ranked], records


def as_draft(line: InvoiceLine) -> LineDraft:
    """A stored line as the draft it was written from (to compare with a fresh close)."""
    return LineDraft(**{f.name: getattr(line, f.name) for f in fields(LineDraft)})


# --- the draft a close writes -------------------------------------------------------------


def open_draft(
    conn: Conn,
    customer_id: int,
    period: Period,
    currency: str,
    now: datetime,
    *,
    replaces: int | None = None,
    rebills: int | None = None,
) -> Invoice:
    """The customer's live invoice of ``period``, created as a draft unless it exists, and
    row-locked (a concurrent closer waits here): the regular one, or the supplementary one
    answering the re-billing correction ``rebills``; a new one names the void invoice it
    ``replaces``. It may be issued already: the caller leaves an issued one as it is."""
    repo.ensure_invoice(
        conn,
        customer_id=customer_id,
        period=period.name,
        start=period.start,
        end=period.end,
        currency=currency,
        now=now,
        replaces=replaces,
        rebills=rebills,
    )
    invoice = repo.lock_invoice(conn, customer_id, period.name, rebills=rebills)
    assert invoice is not None
    return invoice


def store_lines(
    conn: Conn, invoice: Invoice, lines: list[LineDraft], now: datetime
) -> Invoice | None:
    """Write a fresh close's ``lines`` into the draft ``invoice``: deleted when there is
    nothing to bill (None), left alone when its lines are already these."""
    if not lines:
        repo.delete_draft(conn, invoice.id)
        return None
    if [as_draft(line) for line in repo.invoice_lines(conn, invoice.id)] != lines:
        return repo.replace_lines(conn, invoice.id, lines, now)
    return invoice
