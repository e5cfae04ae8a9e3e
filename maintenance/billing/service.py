"""Billing: metering usage, closing periods into invoices, issuing, statements, plan advice.

No SQL text, no HTTP. Callers own the transaction. See docs/billing.md for the rules.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from fleetcare.clock import Clock
from fleetcare.errors import Conflict, FleetcareError, Invalid, NotFound
from fleetcare.fleet.schemas import Principal
from fleetcare.kinds import get_kind
from maintenance.billing import repository as repo
from maintenance.billing.pricing import (
    Metering,
    Period,
    days,
    meter,
    overlap,
    parse_period,
    period_of,
    prorated_fee,
    shift,
    to_decimal,
    to_minor,
    usage_charge,
)
from maintenance.billing.schemas import (
    AssetUsage,
    CloseFailure,
    CloseResult,
    CoveredAsset,
    Invoice,
    InvoiceDetail,
    InvoiceLine,
    LineDraft,
    OrderPartUse,
    PartnerStatement,
    StatementTotal,
    UsageRecord,
)
from maintenance.common import Conn, require_customer_side, require_operator, subject
from maintenance.events.service import emit
from maintenance.orders.service import STANDARD_LABOUR_RATE_MINOR
from maintenance.partners import service as partners
from maintenance.plans import service as plans
from maintenance.plans.schemas import Plan
from maintenance.subscriptions import repository as subs_repo
from maintenance.subscriptions.schemas import Subscription

# uuid5 namespace of usage record ids: uuid5(USAGE_NAMESPACE, "<subscription>/<asset>/<period>")
USAGE_NAMESPACE = UUID("6f0c3c52-5b7e-4d1e-9a43-8f1f3a0b7c21")
# Late usage of an issued period is charged as an adjustment on the next invoices that close
# within this many months after it; later than that it is no longer billed.
ADJUSTMENT_LOOKBACK_MONTHS = 3
KIND_ORDER = {"base_fee": 0, "usage": 1, "usage_adjustment": 2, "parts": 3, "labour": 4}
CSV_COLUMNS = (
    "invoice_id",
    "customer_id",
    "period",
    "currency",
    "status",
    "line_no",
    "kind",
    "description",
    "subscription_id",
    "asset_id",
    "plan_id",
    "order_id",
    "part_id",
    "adjusts_period",
    "starts_at",
    "ends_at",
    "quantity",
    "unit",
    "unit_price_minor",
    "unit_quantity",
    "amount_minor",
)


def usage_record_id(subscription_id: int, asset_id: int, period: str) -> UUID:
    """The deterministic id of a usage record: the same inputs always name the same row."""
    return uuid.uuid5(USAGE_NAMESPACE, f"{subscription_id}/{asset_id}/{period}")


# --- coverage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A stretch of a period in which one plan of one subscription covered one asset."""

    subscription: Subscription
    asset: CoveredAsset
    plan: Plan
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


class PlanCache:
    """Plans by id, read once per close."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._plans: dict[int, Plan] = {}

    def get(self, plan_id: int) -> Plan:
        if plan_id not in self._plans:
            self._plans[plan_id] = plans.get_plan(self._conn, plan_id)
        return self._plans[plan_id]


def billable_window(sub: Subscription, period: Period) -> tuple[datetime, datetime] | None:
    """The part of ``period`` a subscription is billed for: after its trial, before its end."""
    start = max(period.start, sub.starts_at, sub.trial_ends_at or sub.starts_at)
    end = min(period.end, sub.ends_at or period.end)
    return (start, end) if start < end else None


def coverage(conn: Conn, sub: Subscription, period: Period, cache: PlanCache) -> list[Segment]:
    """Segments of ``period``: per covered asset and plan period, the time it was billable."""
    window = billable_window(sub, period)
    if window is None:
        return []
    assets = repo.covered_assets(conn, sub)
    found: list[Segment] = []
    for plan_period in subs_repo.periods(conn, sub.id):
        in_plan = overlap(
            window[0], window[1], plan_period.effective_from, plan_period.effective_to
        )
        if in_plan is None:
            continue
        plan = cache.get(plan_period.plan_id)
        for asset in assets:
            if asset.kind not in plan.kinds:
                continue
            alive = overlap(in_plan[0], in_plan[1], asset.installed_at, asset.retired_at)
            if alive is not None:
                found.append(Segment(sub, asset, plan, alive[0], alive[1]))
    return sorted(found, key=lambda s: (s.asset.id, s.start))


def by_asset(segments: Iterable[Segment]) -> dict[int, list[Segment]]:
    grouped: dict[int, list[Segment]] = defaultdict(list)
    for seg in segments:
        grouped[seg.asset.id].append(seg)
    return grouped


def meter_asset(
    conn: Conn, asset: CoveredAsset, windows: list[tuple[datetime, datetime]]
) -> tuple[str, str, Metering]:
    """Meter an asset's usage counter over ``windows`` (sorted); the metric, unit and result."""
    kind = get_kind(asset.kind)
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


def fee_line(seg: Segment, period: Period, currency: str) -> LineDraft | None:
    """The base fee of a segment: the monthly fee times the share of the period covered."""
    fee = seg.plan.fee_per_asset_month_minor
    if fee is None:
        return None
    _check_currency(f"plan {seg.plan.code!r}", seg.plan.currency, currency)
    return LineDraft(
        kind="base_fee",
        description=f"{seg.plan.name} fee, {seg.asset.ref}, {_span(seg.start, seg.end)}"
        f" ({days(seg.seconds)} of {period.days} days)",
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
    price = seg.plan.usage_price_minor
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
    return sum(
        usage_charge(units, seg.plan.usage_price_minor, seg.plan.usage_price_quantity)
        for seg, units in zip(segments, per_window, strict=True)
        if seg.plan.usage_price_minor is not None
    )


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
    for segments in by_asset(coverage(conn, sub, period, cache)).values():
        asset = segments[0].asset
        metric, unit, metering = meter_asset(conn, asset, [(s.start, s.end) for s in segments])
        record = repo.upsert_usage_record(
            conn, _record_values(sub, asset, period, metric, unit, segments, metering, now)
        )
        records.append(record.id)
        for seg, units in zip(segments, metering.per_window, strict=True):
            for line in (
                fee_line(seg, period, currency),
                usage_line(seg, units, unit, record.id, currency),
            ):
                if line is not None:
                    lines.append(line)
    return lines, records


def _adjustment_lines(
    conn: Conn, customer_id: int, period: Period, cache: PlanCache, currency: str, now: datetime
) -> list[LineDraft]:
    """Usage that arrived after an earlier period's invoice was issued, charged now."""
    earlier = [shift(period, -k).name for k in range(1, ADJUSTMENT_LOOKBACK_MONTHS + 1)]
    lines: list[LineDraft] = []
    for record in repo.billed_usage_records(conn, customer_id, earlier):
        sub = repo.fetch_one(
            conn, "subscriptions", Subscription, record.subscription_id, scope=None
        )
        assert sub is not None
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
    for sub in repo.subscriptions_in(conn, customer_id, period.start, period.end):
        sub_lines, sub_records = _subscription_lines(conn, sub, period, cache, currency, now)
        lines += sub_lines
        records += sub_records
    lines += _adjustment_lines(conn, customer_id, period, cache, currency, now)
    lines += order_lines(
        repo.completed_order_parts(conn, customer_id, period.start, period.end),
        currency,
        parts_billable=lambda use: use.billable,
        labour_billable=lambda use: not use.labour_included,
    )
    ranked = sorted(enumerate(lines), key=lambda pair: (KIND_ORDER[pair[1].kind], pair[0]))
    return [line for _, line in ranked], records


def _as_draft(line: InvoiceLine) -> LineDraft:
    return LineDraft(**{f.name: getattr(line, f.name) for f in fields(LineDraft)})


# --- closing and issuing -------------------------------------------------------------------


def close_customer(conn: Conn, customer_id: int, period: Period, clock: Clock) -> Invoice | None:
    """Create or refresh a customer's draft for ``period``; an issued invoice is returned as is.

    Idempotent and safe under concurrent closers: the draft row is unique per customer and
    period and locked before anything is computed, so a second closer waits and then finds
    lines equal to what it computes (and leaves them alone). None: nothing to bill.
    """
    now = clock.now()
    currency = repo.customer_currency(conn, customer_id)
    if currency is None:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    repo.ensure_invoice(
        conn,
        customer_id=customer_id,
        period=period.name,
        start=period.start,
        end=period.end,
        currency=currency,
        now=now,
    )
    invoice = repo.lock_invoice(conn, customer_id, period.name)
    assert invoice is not None
    if invoice.status != "draft":
        return invoice
    lines, records = compute_lines(conn, customer_id, period, invoice.currency, now)
    if not lines:
        repo.delete_draft(conn, invoice.id)
        repo.delete_stale_usage(conn, customer_id, period.name, records)
        return None
    if [_as_draft(line) for line in repo.invoice_lines(conn, invoice.id)] != lines:
        invoice = repo.replace_lines(conn, invoice.id, lines, now)
    repo.delete_stale_usage(conn, customer_id, period.name, records)
    return invoice


def _issue(conn: Conn, invoice: Invoice, now: datetime) -> Invoice:
    repo.mark_usage_billed(conn, invoice.id, invoice.customer_id, invoice.period)
    issued = repo.set_invoice(conn, invoice.id, {"status": "issued", "issued_at": now}, now)
    lines = repo.invoice_lines(conn, issued.id)
    emit(
        conn,
        "invoice.issued",
        {"invoice": InvoiceDetail(**issued.model_dump(), lines=lines).model_dump(mode="json")},
        customer_id=issued.customer_id,
        subject=subject("invoice", issued.id),
        occurred_at=now,
    )
    return issued


def _check_issuable(period: Period, now: datetime) -> None:
    if now < period.end:
        raise Invalid(f"period {period.name} is not over yet; it can be closed as a draft only")


def close_period(
    conn: Conn,
    period_name: str,
    clock: Clock,
    *,
    customer_id: int | None = None,
    issue: bool = False,
) -> CloseResult:
    """Close ``period`` for every customer with something to bill (or one customer).

    Each customer runs in a savepoint: one customer's error (e.g. a plan in another
    currency) is reported and does not stop the others. ``issue`` also issues the drafts.
    """
    period = parse_period(period_name)
    now = clock.now()
    if period.start > now:
        raise Invalid(f"period {period.name} has not started")
    if issue:
        _check_issuable(period, now)
    if conn.autocommit:
        raise RuntimeError("close_period must run inside the caller's transaction")
    result = CloseResult(period=period.name, invoices=[])
    for customer in repo.customers_to_bill(conn, period.start, period.end, customer_id):
        try:
            # a savepoint (the query above opened the caller's transaction): never a commit
            with conn.transaction():
                invoice = close_customer(conn, customer, period, clock)
                if invoice is not None and issue and invoice.status == "draft":
                    invoice = _issue(conn, invoice, now)
        except FleetcareError as exc:
            result.failures.append(CloseFailure(customer_id=customer, error=exc.detail))
            continue
        if invoice is not None:
            result.invoices.append(invoice)
    return result


def bill_due_periods(
    conn: Conn, clock: Clock, grace: timedelta, catch_up_months: int = ADJUSTMENT_LOOKBACK_MONTHS
) -> list[CloseResult]:
    """The worker's job: close the last ``catch_up_months`` months, oldest first, and issue
    each once ``grace`` has passed since its end.

    During the grace period the drafts are refreshed on every run, so late telemetry lands
    on the right invoice; after it, late usage goes to the next invoice as an adjustment.
    Looking back more than one month lets a worker that was down catch up; periods already
    issued cost one locked read per customer.
    """
    now = clock.now()
    current = period_of(now)
    results = []
    for months_ago in range(max(catch_up_months, 1), 0, -1):
        period = shift(current, -months_ago)
        results.append(close_period(conn, period.name, clock, issue=now >= period.end + grace))
    return results


def _invoice_for_update(conn: Conn, principal: Principal, invoice_id: int) -> Invoice:
    require_operator(principal)
    invoice = repo.get_invoice(conn, invoice_id, None, for_update=True)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return invoice


def issue_invoice(conn: Conn, principal: Principal, invoice_id: int, clock: Clock) -> Invoice:
    """Refresh a draft from the latest data and issue it (operator); emits invoice.issued."""
    invoice = _invoice_for_update(conn, principal, invoice_id)
    if invoice.status != "draft":
        raise Conflict(f"invoice {invoice.id} is {invoice.status}; only a draft can be issued")
    period = parse_period(invoice.period)
    now = clock.now()
    _check_issuable(period, now)
    refreshed = close_customer(conn, invoice.customer_id, period, clock)
    if refreshed is None:
        raise Conflict(f"invoice {invoice.id} has nothing left to bill; the draft was removed")
    return _issue(conn, refreshed, now)


def pay_invoice(conn: Conn, principal: Principal, invoice_id: int, clock: Clock) -> Invoice:
    """Record the payment of an issued invoice (operator)."""
    invoice = _invoice_for_update(conn, principal, invoice_id)
    if invoice.status != "issued":
        raise Conflict(f"invoice {invoice.id} is {invoice.status}; only an issued one is paid")
    now = clock.now()
    paid = repo.set_invoice(conn, invoice.id, {"status": "paid", "paid_at": now}, now)
    emit(
        conn,
        "invoice.paid",
        {"invoice": paid.model_dump(mode="json")},
        customer_id=paid.customer_id,
        subject=subject("invoice", paid.id),
        occurred_at=now,
    )
    return paid


def void_invoice(
    conn: Conn, principal: Principal, invoice_id: int, reason: str, clock: Clock
) -> Invoice:
    """Void a draft or an unpaid issued invoice (operator). It stays, with its lines."""
    invoice = _invoice_for_update(conn, principal, invoice_id)
    if invoice.status not in ("draft", "issued"):
        raise Conflict(f"invoice {invoice.id} is {invoice.status}; it cannot be voided")
    now = clock.now()
    voided = repo.set_invoice(
        conn, invoice.id, {"status": "void", "voided_at": now, "void_reason": reason}, now
    )
    emit(
        conn,
        "invoice.voided",
        {"invoice": voided.model_dump(mode="json"), "previous_status": invoice.status},
        customer_id=voided.customer_id,
        subject=subject("invoice", voided.id),
        occurred_at=now,
    )
    return voided


# --- reading -------------------------------------------------------------------------------


def list_invoices(
    conn: Conn,
    principal: Principal,
    *,
    customer_id: int | None,
    period: str | None,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[Invoice], int | None]:
    """Invoices the caller may see: its customer's, or all (operator)."""
    require_customer_side(principal)
    if period is not None:
        parse_period(period)
    return repo.list_invoices(
        conn,
        scope=principal.scope,
        customer_id=customer_id,
        period=period,
        status=status,
        after=after,
        limit=limit,
    )


def get_invoice(conn: Conn, principal: Principal, invoice_id: int) -> InvoiceDetail:
    """One invoice with its lines; another customer's invoice is not found."""
    require_customer_side(principal)
    invoice = repo.get_invoice(conn, invoice_id, principal.scope)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return InvoiceDetail(**invoice.model_dump(), lines=repo.invoice_lines(conn, invoice.id))


def _write_lines(writer: Any, invoice: Invoice, lines: list[InvoiceLine]) -> None:
    head = {
        "invoice_id": invoice.id,
        "customer_id": invoice.customer_id,
        "period": invoice.period,
        "currency": invoice.currency,
        "status": invoice.status,
    }
    for line in lines:
        values = {**line.model_dump(mode="json"), **head}
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])


def invoice_lines_csv(conn: Conn, principal: Principal, invoice_id: int) -> str:
    """The lines of an invoice as CSV (one header row, amounts in minor units)."""
    detail = get_invoice(conn, principal, invoice_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    _write_lines(writer, detail, detail.lines)
    return out.getvalue()


def period_lines_csv(conn: Conn, principal: Principal, period_name: str) -> str:
    """The lines of every invoice of a period the caller may see, as one CSV."""
    require_customer_side(principal)
    period = parse_period(period_name)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for invoice, lines in repo.invoices_with_lines(conn, principal.scope, period.name):
        _write_lines(writer, invoice, lines)
    return out.getvalue()


def list_usage(
    conn: Conn,
    principal: Principal,
    *,
    asset_id: int | None,
    period: str | None,
    limit: int,
) -> list[UsageRecord]:
    """Usage records billing wrote, scoped to the caller's customer."""
    require_customer_side(principal)
    if period is not None:
        parse_period(period)
    return repo.list_usage(
        conn, scope=principal.scope, asset_id=asset_id, period=period, after=None, limit=limit
    )


def asset_usage(conn: Conn, principal: Principal, asset_id: int, period_name: str) -> AssetUsage:
    """An asset's usage over a whole period, metered now from its telemetry."""
    require_customer_side(principal)
    period = parse_period(period_name)
    asset = repo.asset(conn, asset_id, principal.scope)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found", code="asset_not_found")
    metric, unit, metering = meter_asset(conn, asset, [(period.start, period.end)])
    return AssetUsage(
        asset_id=asset.id,
        asset_ref=asset.ref,
        kind=asset.kind,
        metric=metric,
        unit=unit,
        period=period.name,
        quantity=metering.total,
        readings=metering.readings,
        resets=metering.resets,
        first_reading_at=metering.first_at,
        last_reading_at=metering.last_at,
        records=repo.list_usage(
            conn,
            scope=asset.customer_id,
            asset_id=asset.id,
            period=period.name,
            after=None,
            limit=100,
        ),
    )


def partner_statement(
    conn: Conn, principal: Principal, partner_id: int, period_name: str
) -> PartnerStatement:
    """A partner's commissions on orders completed in a period, with totals per currency."""
    partner = partners.get_partner(conn, principal, partner_id)
    period = parse_period(period_name)
    lines = repo.commissions_in(conn, partner.id, period.start, period.end)
    totals: dict[str, StatementTotal] = {}
    for line in lines:
        total = totals.setdefault(
            line.currency,
            StatementTotal(currency=line.currency, orders=0, basis_minor=0, amount_minor=0),
        )
        total.orders += 1
        total.basis_minor += line.basis_minor
        total.amount_minor += line.amount_minor
    return PartnerStatement(
        partner_id=partner.id,
        partner_code=partner.code,
        period=period.name,
        lines=lines,
        totals=sorted(totals.values(), key=lambda t: t.currency),
    )
