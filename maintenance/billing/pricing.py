"""Pure billing arithmetic: periods, metering cumulative counters, proration and rounding.

No SQL, no I/O: the service feeds these functions rows and gets numbers back, so the rules
can be tested on their own.

Rounding rule: every amount is computed exactly in ``Decimal`` and rounded to whole minor
units once per invoice line, half to even (banker's rounding). Totals are sums of the rounded
lines, never rounded again.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from fleetcare.errors import Invalid

PERIOD_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
SECONDS_PER_DAY = Decimal(86_400)
QUANTITY_STEP = Decimal("0.001")
DAYS_STEP = Decimal("0.0001")
# A drop to at most this fraction of the highest value seen is a counter reset (a renewed
# asset's counter starts again at 0); a smaller drop is sensor jitter and is ignored.
RESET_FRACTION = Decimal("0.5")


@dataclass(frozen=True)
class Period:
    """A billing period: one calendar month in UTC, ``[start, end)``."""

    name: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def parse_period(text: str) -> Period:
    """``'2026-11'`` as a Period; Invalid for anything else."""
    match = PERIOD_PATTERN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise Invalid(f"period {text!r} is not a month written YYYY-MM")
    year, month = int(match.group(1)), int(match.group(2))
    if not 2000 <= year <= 2999:
        raise Invalid(f"period {text!r} is out of range")
    return month_period(year, month)


def month_period(year: int, month: int) -> Period:
    """The period of a calendar month."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return Period(f"{year:04d}-{month:02d}", start, end)


def period_of(moment: datetime) -> Period:
    """The period that contains ``moment``."""
    moment = moment.astimezone(UTC)
    return month_period(moment.year, moment.month)


def shift(period: Period, months: int) -> Period:
    """The period ``months`` later (negative: earlier)."""
    index = period.start.year * 12 + period.start.month - 1 + months
    return month_period(index // 12, index % 12 + 1)


def to_minor(amount: Decimal) -> int:
    """Round an exact amount to whole minor units, half to even (the one rounding per line)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def to_decimal(value: float) -> Decimal:
    """A float reading as the decimal it prints as (no binary noise such as 0.1000000001)."""
    return Decimal(repr(float(value)))


def quantity(value: Decimal) -> Decimal:
    """A usage quantity as stored (three decimals, half to even)."""
    return value.quantize(QUANTITY_STEP, rounding=ROUND_HALF_EVEN)


def days(seconds: int) -> Decimal:
    """Seconds as days with four decimals (for showing proration on a line)."""
    return (Decimal(seconds) / SECONDS_PER_DAY).quantize(DAYS_STEP, rounding=ROUND_HALF_EVEN)


def prorated_fee(fee_per_month_minor: int, active_seconds: int, period: Period) -> int:
    """A monthly fee for ``active_seconds`` of ``period``: exact fraction, rounded once."""
    return to_minor(Decimal(fee_per_month_minor) * active_seconds / period.seconds)


def usage_charge(units: Decimal, price_minor: int, per_quantity: int) -> int:
    """``units`` at ``price_minor`` per ``per_quantity`` units, rounded once."""
    return to_minor(units * price_minor / per_quantity)


def overlap(
    a_start: datetime, a_end: datetime | None, b_start: datetime, b_end: datetime | None
) -> tuple[datetime, datetime] | None:
    """The intersection of two half-open intervals (None: open end), or None when empty."""
    start = max(a_start, b_start)
    ends = [e for e in (a_end, b_end) if e is not None]
    if not ends:
        raise ValueError("overlap needs at least one closed interval")
    end = min(ends)
    return (start, end) if start < end else None


@dataclass
class Metering:
    """What a cumulative counter says about usage in some windows."""

    per_window: list[Decimal]
    readings: int = 0
    resets: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    baseline: Decimal | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return quantity(sum(self.per_window, Decimal(0)))


def meter(
    baseline: float | None,
    readings: Sequence[tuple[datetime, float]],
    windows: Sequence[tuple[datetime, datetime]],
    *,
    renewals: Sequence[datetime] = (),
    baseline_at: datetime | None = None,
) -> Metering:
    """Usage per window from a cumulative counter's readings (sorted by time).

    ``baseline`` is the last reading before the first window (None: none exists, and the
    first reading becomes the baseline: usage before it is not measurable). Each increase
    counts in the window that holds the reading that shows it; gaps therefore cost nothing
    (the increase appears with the next reading) and duplicates add nothing. A drop to at
    most ``RESET_FRACTION`` of the highest value since the last reset is a reset: the counter
    restarted at 0, so the new value is usage since the reset, and counting goes on from it.
    A smaller drop is jitter: ignored, and the counter must climb back above its highest value
    before anything more counts — unless a recorded renewal (``renewals``: times an order
    renewed the asset) lies between the previous reading (or ``baseline_at``) and this one:
    then any drop is a reset. Readings outside every window move the counter but bill nothing.
    """
    starts = [w[0] for w in windows]
    renewed = sorted(renewals)
    result = Metering(per_window=[Decimal(0)] * len(windows))
    high = None if baseline is None else to_decimal(baseline)
    result.baseline = high
    previous = baseline_at
    for moment, raw in readings:
        value = to_decimal(raw)
        i = bisect.bisect_right(starts, moment) - 1
        inside = i >= 0 and moment < windows[i][1]
        renewal_since = _any_between(renewed, previous, moment)
        previous = moment
        if high is None:
            increment, high = Decimal(0), value
        elif value >= high:
            increment, high = value - high, value
        elif renewal_since or value <= high * RESET_FRACTION:
            increment, high = value, value
            if inside:
                result.resets += 1
        else:
            increment = Decimal(0)
        if inside:
            result.per_window[i] += increment
            result.readings += 1
            result.first_at = result.first_at or moment
            result.last_at = moment
    result.per_window = [quantity(q) for q in result.per_window]
    return result


def _any_between(moments: Sequence[datetime], after: datetime | None, until: datetime) -> bool:
    """Whether a sorted ``moments`` has one in ``(after, until]`` (``after`` None: unbounded)."""
    last = bisect.bisect_right(moments, until)
    if after is None:
        return last > 0
    return last > bisect.bisect_right(moments, after)
