"""Recognition schedules, pure: how each invoice or credit-note line becomes revenue by month.

- ``base_fee`` (subscription fees): ratably over the line's service period, by time (so by
  day for whole days), split at month boundaries;
- ``usage``: when used — the month(s) of the usage window (a usage line never spans more
  than its period); ``usage_adjustment`` (late usage of an earlier month): in the invoice's
  month, as a catch-up (earlier months are never restated);
- ``parts`` and ``labour``: when the order completed — the invoice's month, the month of
  completion;
- ``service_credit``: a reduction of revenue in the invoice's month;
- a credit-note line reverses its invoice line's schedule in proportion: what was already
  recognised when the note was issued is reversed in the note's month, the rest in the
  months it was scheduled for.

Every split uses the largest-remainder method on integer minor units, so the pieces of a line
always add up to its amount exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from maintenance.billing.pricing import Period, parse_period, period_of, shift

RATABLE = frozenset({"base_fee", "usage"})


@dataclass(frozen=True)
class Piece:
    month: str
    amount_minor: int
    rule: str


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` (any sign) in proportion to non-negative ``weights``: the floors of the
    exact shares, then one more unit to the largest remainders (earliest first on ties)."""
    if not weights or sum(weights) <= 0:
        raise ValueError("largest_remainder needs a positive total weight")
    whole = sum(weights)
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    shares = [magnitude * w // whole for w in weights]
    remainders = [magnitude * w % whole for w in weights]
    left = magnitude - sum(shares)
    for i in sorted(range(len(weights)), key=lambda k: (-remainders[k], k))[:left]:
        shares[i] += 1
    return [sign * s for s in shares]


def months_between(start: datetime, end: datetime) -> list[tuple[Period, int]]:
    """The months ``[start, end)`` touches, with the seconds it spends in each."""
    found: list[tuple[Period, int]] = []
    month = period_of(start)
    while month.start < end:
        seconds = int((min(end, month.end) - max(start, month.start)).total_seconds())
        if seconds > 0:
            found.append((month, seconds))
        month = shift(month, 1)
    return found


def invoice_line_schedule(
    kind: str,
    amount_minor: int,
    invoice_period: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
) -> list[Piece]:
    """The months in which an invoice line is recognised, and how much in each."""
    if kind in RATABLE and starts_at is not None and ends_at is not None and starts_at < ends_at:
        months = months_between(starts_at, ends_at)
        if not months:  # shorter than a second (plan changes in quick succession): its month
            months = [(period_of(starts_at), 1)]
        amounts = largest_remainder(amount_minor, [s for _, s in months])
        rule = "ratable" if kind == "base_fee" else "usage"
        return [Piece(m.name, a, rule) for (m, _), a in zip(months, amounts, strict=True)]
    rule = {
        "usage_adjustment": "catch_up",
        "parts": "completion",
        "labour": "completion",
        "service_credit": "credit",
    }.get(kind, "point")
    return [Piece(parse_period(invoice_period).name, amount_minor, rule)]


def credit_schedule(
    line_schedule: Sequence[Piece], line_amount: int, credited: int, issued_month: str
) -> list[Piece]:
    """A credit-note line of ``credited`` (same sign as the line) as negative pieces: the
    line's schedule in proportion, moved to the note's month where it lies before it."""
    if line_amount == 0 or credited == 0:
        return []
    weights = [abs(p.amount_minor) for p in line_schedule]
    if sum(weights) == 0:
        weights = [1] * len(line_schedule)
    shares = largest_remainder(-credited, weights)
    merged: dict[str, int] = {}
    for piece, share in zip(line_schedule, shares, strict=True):
        month = max(piece.month, issued_month)
        merged[month] = merged.get(month, 0) + share
    return [Piece(m, a, "reversal") for m, a in sorted(merged.items()) if a != 0]
