"""Revenue recognition: the schedule of every line, and the month's revenue report.

Recognised, deferred (a liability: billed, not yet earned) and unbilled (an asset: earned, not
yet billed) revenue per customer and plan, in minor units, net of tax. The report checks
itself: every schedule adds up to its line, the month's billed revenue equals the invoices
issued minus the credit notes issued (read from their own totals), and deferred minus unbilled
equals everything billed minus everything recognised. See docs/billing.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import FleetcareError, NotFound
from maintenance.billing import repository as billing_repo
from maintenance.billing import service as billing
from maintenance.billing.lines import ADJUSTMENT_LOOKBACK_MONTHS
from maintenance.billing.pricing import Period, parse_period, period_of, shift
from maintenance.common import Conn
from maintenance.revenue import repository as repo
from maintenance.revenue.schedule import Piece, credit_schedule, invoice_line_schedule
from maintenance.revenue.schemas import (
    DeferredRoll,
    LineSchedule,
    RevenueCheck,
    RevenueReport,
    RevenueRow,
    SchedulePiece,
    UnbilledRoll,
)

EVER = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class Entry:
    """One amount billed (or to be billed) at one moment, and the months it is earned in."""

    customer_id: int
    plan_id: int | None
    currency: str
    billed_at: datetime | None  # None: a draft
    amount_minor: int
    pieces: list[Piece] = field(default_factory=list)
    tax_minor: int = 0


def _entries(
    conn: Conn, scope: int | None, invoice_id: int | None = None
) -> tuple[list[Entry], dict[int, LineSchedule], list[str]]:
    """Every invoice and credit-note line as an entry, the schedules by line, and problems."""
    lines = repo.invoice_lines(conn, scope, invoice_id)
    entries: list[Entry] = []
    schedules: dict[int, LineSchedule] = {}
    problems: list[str] = []
    by_id = {}
    for line in lines:
        pieces = invoice_line_schedule(
            line.kind, line.amount_minor, line.period, line.starts_at, line.ends_at
        )
        if sum(p.amount_minor for p in pieces) != line.amount_minor:
            problems.append(f"invoice {line.invoice_id} line {line.line_no}: schedule != amount")
        by_id[line.line_id] = (line, pieces)
        entries.append(
            Entry(line.customer_id, line.plan_id, line.currency, line.issued_at,
                  line.amount_minor, pieces, line.tax_minor)
        )  # fmt: skip
        schedules[line.line_id] = LineSchedule(
            invoice_id=line.invoice_id,
            line_no=line.line_no,
            kind=line.kind,
            amount_minor=line.amount_minor,
            plan_id=line.plan_id,
            pieces=[SchedulePiece(**vars(p)) for p in pieces],
            credits=[],
        )
    for credit in repo.credited_lines(conn, scope, invoice_id):
        line, pieces = by_id[credit.invoice_line_id]
        reversal = credit_schedule(
            pieces, line.amount_minor, credit.amount_minor, period_of(credit.issued_at).name
        )
        if sum(p.amount_minor for p in reversal) != -credit.amount_minor:
            problems.append(f"credit note {credit.number}: reversal != amount")
        entries.append(
            Entry(line.customer_id, line.plan_id, line.currency, credit.issued_at,
                  -credit.amount_minor, reversal, -credit.tax_minor)
        )  # fmt: skip
        schedules[line.line_id].credits += [SchedulePiece(**vars(p)) for p in reversal]
    return entries, schedules, problems


def invoice_schedule(conn: Conn, principal: Principal, invoice_id: int) -> list[LineSchedule]:
    """The recognition schedule of every line of an invoice (its customer's, or operator)."""
    principal.require("billing:read")
    _, schedules, _ = _entries(conn, principal.scope, invoice_id)
    if not schedules:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return sorted(schedules.values(), key=lambda s: s.line_no)


@dataclass
class _Sums:
    deferred_open: int = 0
    unbilled_open: int = 0
    billed: int = 0
    from_unbilled: int = 0
    recognised_billed: int = 0
    recognised_unbilled: int = 0
    deferred_close: int = 0
    unbilled_close: int = 0
    tax_billed: int = 0

    def add(self, other: _Sums) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def row(self, customer_id: int, plan_id: int | None, currency: str) -> RevenueRow:
        return RevenueRow(
            customer_id=customer_id,
            plan_id=plan_id,
            currency=currency,
            recognised_minor=self.recognised_billed + self.recognised_unbilled,
            tax_billed_minor=self.tax_billed,
            deferred=DeferredRoll(
                opening_minor=self.deferred_open,
                billed_minor=self.billed,
                recognised_minor=self.recognised_billed,
                from_unbilled_minor=self.from_unbilled,
                closing_minor=self.deferred_close,
            ),
            unbilled=UnbilledRoll(
                opening_minor=self.unbilled_open,
                recognised_minor=self.recognised_unbilled,
                billed_minor=self.from_unbilled,
                closing_minor=self.unbilled_close,
            ),
        )


def _sums(entry: Entry, month: str, start: datetime, end: datetime) -> _Sums:
    before = sum(p.amount_minor for p in entry.pieces if p.month < month)
    now = sum(p.amount_minor for p in entry.pieces if p.month == month)
    at = entry.billed_at
    s = _Sums()
    if at is not None and at < start:
        s.deferred_open = entry.amount_minor - before
    else:
        s.unbilled_open = before
    if at is not None and start <= at < end:
        s.billed = entry.amount_minor
        s.tax_billed = entry.tax_minor
        s.from_unbilled = before
    if at is not None and at < end:
        s.recognised_billed = now
        s.deferred_close = entry.amount_minor - before - now
    else:
        s.recognised_unbilled = now
        s.unbilled_close = before + now
    return s


# How many months up to the report's a customer's charges are computed when no invoice of
# them exists yet (the billing worker closes as many).
UNBILLED_LOOKBACK_MONTHS = ADJUSTMENT_LOOKBACK_MONTHS


def _provisional_drafts(conn: Conn, month: Period, clock: Clock) -> int:
    """Draft the invoices that closing each month up to ``month`` would make now, where none
    exists yet: their lines are unbilled revenue (usage of a month not yet closed, fees
    billed in arrears). The caller rolls them back. A period whose invoice was voided and not
    billed again is waived, not unbilled. How many were drafted."""
    now = clock.now()
    drafted = 0
    for back in range(UNBILLED_LOOKBACK_MONTHS - 1, -1, -1):
        period = shift(month, -back)
        if period.start > now:
            continue
        for customer in billing_repo.customers_to_bill(conn, period.start, period.end, None):
            try:
                with conn.transaction():
                    if billing.close_customer(conn, customer, period, clock, rebill_void=False):
                        drafted += 1
            except FleetcareError:
                continue  # the close reports it (e.g. no tax rule); nothing to forecast
    return drafted


def revenue_report(
    conn: Conn, principal: Principal, month_name: str, clock: Clock
) -> RevenueReport:
    """Recognised, deferred and unbilled revenue of a month per customer and plan (operator),
    with the checks that reconcile it to the invoices and credit notes to the cent.

    Unbilled revenue covers every month: where no invoice of a month exists yet, the report
    drafts what closing it now would bill (in a savepoint it rolls back: the report writes
    nothing), so it must run on the primary database, not a replica."""
    principal.require("revenue:read")
    month = parse_period(month_name)
    with conn.transaction() as savepoint:
        _provisional_drafts(conn, month, clock)
        report = _report(conn, month)
        raise psycopg.Rollback(savepoint)
    return report


def _report(conn: Conn, month: Period) -> RevenueReport:
    entries, _, problems = _entries(conn, None)
    groups: dict[tuple[int, int | None, str], _Sums] = defaultdict(_Sums)
    totals: dict[str, _Sums] = defaultdict(_Sums)
    ever_recognised: dict[str, int] = defaultdict(int)
    for entry in entries:
        sums = _sums(entry, month.name, month.start, month.end)
        groups[(entry.customer_id, entry.plan_id, entry.currency)].add(sums)
        totals[entry.currency].add(sums)
        ever_recognised[entry.currency] += sum(
            p.amount_minor for p in entry.pieces if p.month <= month.name
        )
    rows = [
        s.row(c, p, cur)
        for (c, p, cur), s in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
        if any(vars(s).values())
    ]
    checks = _checks(conn, month, totals, ever_recognised, rows, problems)
    return RevenueReport(
        month=month.name,
        rows=rows,
        totals={cur: s.row(0, None, cur) for cur, s in sorted(totals.items())},
        checks=checks,
        reconciled=all(c.ok for c in checks),
    )


def _checks(
    conn: Conn,
    month: Period,
    totals: dict[str, _Sums],
    ever_recognised: dict[str, int],
    rows: list[RevenueRow],
    problems: list[str],
) -> list[RevenueCheck]:
    checks = [
        RevenueCheck(
            name="schedules_sum_to_lines",
            ok=not problems,
            detail="; ".join(problems[:5]) or "every line's schedule adds up to its amount",
        )
    ]
    billed = repo.billed_totals(conn, None, month.start, month.end)
    ever_billed = repo.billed_totals(conn, None, EVER, month.end)
    for currency in sorted(set(totals) | set(billed)):
        s = totals.get(currency, _Sums())
        documents = billed.get(currency, 0)
        checks.append(
            RevenueCheck(
                name=f"billed_matches_documents_{currency}",
                ok=s.billed == documents,
                detail=f"lines billed {s.billed}; invoices minus credit notes issued {documents}",
            )
        )
        balance = ever_billed.get(currency, 0) - ever_recognised.get(currency, 0)
        net = s.deferred_close - s.unbilled_close
        checks.append(
            RevenueCheck(
                name=f"deferred_minus_unbilled_{currency}",
                ok=net == balance,
                detail=f"deferred - unbilled at the end of {month.name}: {net}; billed to date"
                f" - recognised to date: {balance}",
            )
        )
    broken = [
        f"customer {r.customer_id} plan {r.plan_id}"
        for r in rows
        if r.deferred.closing_minor
        != r.deferred.opening_minor
        + r.deferred.billed_minor
        - r.deferred.recognised_minor
        - r.deferred.from_unbilled_minor
        or r.unbilled.closing_minor
        != r.unbilled.opening_minor + r.unbilled.recognised_minor - r.unbilled.billed_minor
    ]
    checks.append(
        RevenueCheck(
            name="rollforward",
            ok=not broken,
            detail="; ".join(broken[:5]) or "closing = opening + billed - recognised per row",
        )
    )
    return checks
