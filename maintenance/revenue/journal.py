"""The revenue report as journal entries (CSV) for an accounting system. No SQL, no HTTP.

Per customer, plan and currency, at the month's last day, each entry balanced (debits equal
credits; a negative amount changes sides):

- billing: receivable (gross) / deferred revenue (net) + tax payable;
- billed revenue recognised earlier: deferred revenue / unbilled revenue;
- recognised out of billed revenue: deferred revenue / revenue;
- recognised before billing: unbilled revenue / revenue.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from datetime import timedelta

from fleetcare.errors import Invalid
from maintenance.billing.pricing import parse_period
from maintenance.revenue.schemas import RevenueReport

COLUMNS = (
    "entry",
    "date",
    "account",
    "debit_minor",
    "credit_minor",
    "currency",
    "customer_id",
    "plan_id",
    "memo",
)


@dataclass(frozen=True)
class Accounts:
    """The ledger accounts the entries post to (codes of the user's chart of accounts)."""

    receivable: str = "1200"
    unbilled: str = "1250"
    deferred: str = "2400"
    tax: str = "2200"
    revenue: str = "4000"

    @classmethod
    def parse(cls, items: list[str]) -> Accounts:
        """From ``name=code`` items (CLI); Invalid on an unknown name or an empty code."""
        known = {f.name for f in fields(cls)}
        values: dict[str, str] = {}
        for item in items:
            name, sep, code = item.partition("=")
            if not sep or name.strip() not in known or not code.strip() or len(code) > 40:
                raise Invalid(
                    f"account {item!r}: write NAME=CODE with NAME one of {', '.join(sorted(known))}"
                )
            values[name.strip()] = code.strip()
        return cls(**values)


def _legs(debit: str, credit: str, amount: int) -> list[tuple[str, int, int]]:
    if amount == 0:
        return []
    if amount < 0:
        debit, credit, amount = credit, debit, -amount
    return [(debit, amount, 0), (credit, 0, amount)]


def journal_csv(report: RevenueReport, accounts: Accounts) -> str:
    """The month's journal entries as CSV (amounts in minor units)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    day = (parse_period(report.month).end - timedelta(days=1)).date().isoformat()
    n = 0
    for row in report.rows:
        a, d, u = accounts, row.deferred, row.unbilled
        billing = [
            *_legs(a.receivable, a.deferred, d.billed_minor),
            *_legs(a.receivable, a.tax, row.tax_billed_minor),
        ]
        entries = [
            ("billed", billing),
            ("billed, recognised earlier", _legs(a.deferred, a.unbilled, d.from_unbilled_minor)),
            ("recognised from deferred", _legs(a.deferred, a.revenue, d.recognised_minor)),
            ("recognised before billing", _legs(a.unbilled, a.revenue, u.recognised_minor)),
        ]
        for memo, legs in entries:
            if not legs:
                continue
            n += 1
            for account, debit, credit in legs:
                writer.writerow(
                    [n, day, account, debit, credit, row.currency, row.customer_id,
                     "" if row.plan_id is None else row.plan_id, memo]
                )  # fmt: skip
    return out.getvalue()
