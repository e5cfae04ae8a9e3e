"""The pure rules: periods, metering cumulative counters, proration and rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fleetcare.errors import Invalid
from maintenance.billing.pricing import (
    meter,
    parse_period,
    period_of,
    prorated_fee,
    shift,
    to_minor,
    usage_charge,
)

NOV = parse_period("2026-11")


def t(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_periods() -> None:
    assert NOV.start == t(1) and NOV.end == datetime(2026, 12, 1, tzinfo=UTC)
    assert NOV.days == 30
    assert shift(NOV, 1).name == "2026-12" and shift(NOV, 2).name == "2027-01"
    assert shift(NOV, -11).name == "2025-12"
    assert period_of(datetime(2026, 2, 28, 23, 59, tzinfo=UTC)).days == 28
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01", ""):
        with pytest.raises(Invalid):
            parse_period(bad)


def test_rounding_is_half_even_once_per_line() -> None:
    assert to_minor(Decimal("0.5")) == 0
    assert to_minor(Decimal("1.5")) == 2
    assert to_minor(Decimal("2.5")) == 2
    # 2900 for 10 of 30 days = 966.666..., 20 of 30 days = 1933.333...
    ten_days = int(timedelta(days=10).total_seconds())
    assert prorated_fee(2900, ten_days, NOV) == 967
    assert prorated_fee(2900, 2 * ten_days, NOV) == 1933
    assert prorated_fee(2900, NOV.seconds, NOV) == 2900
    # 1250 km at 400 per 1000 km = 500; 1001.25 km at 2 per 1 = 2002.5 -> 2002 (half even)
    assert usage_charge(Decimal(1250), 400, 1000) == 500
    assert usage_charge(Decimal("1001.25"), 2, 1) == 2002


def test_meter_sums_increments_and_survives_resets_gaps_duplicates_and_jitter() -> None:
    readings = [
        (t(2), 10_500.0),
        (t(3), 10_500.0),  # standing still (or a duplicate value)
        (t(10), 11_000.0),  # after a gap: the increase counts when it shows
        (t(11), 10_999.9),  # jitter: ignored
        (t(12), 11_000.0),  # back to the high: nothing more
        (t(15), 200.0),  # renewed tire: counter restarted at 0 -> 200 km since
        (t(20), 700.0),
    ]
    result = meter(10_000.0, readings, [(NOV.start, NOV.end)])
    assert result.total == Decimal("1700.000")
    assert result.resets == 1
    assert result.readings == 7
    assert result.first_at == t(2) and result.last_at == t(20)


def test_meter_splits_by_window_and_bills_nothing_outside() -> None:
    readings = [(t(5), 100.0), (t(10), 300.0), (t(16), 600.0), (t(25), 1000.0)]
    # two plan periods with a gap (not covered 13th-20th) in between
    windows = [(t(1), t(13)), (t(20), NOV.end)]
    result = meter(0.0, readings, windows)
    assert result.per_window == [Decimal("300.000"), Decimal("400.000")]
    assert result.readings == 3


def test_meter_without_baseline_starts_at_the_first_reading() -> None:
    result = meter(None, [(t(3), 5_000.0), (t(4), 5_100.5)], [(NOV.start, NOV.end)])
    assert result.total == Decimal("100.500")
    assert meter(None, [], [(NOV.start, NOV.end)]).total == 0


def test_a_recorded_renewal_makes_any_drop_a_reset() -> None:
    readings = [(t(5), 1_000.0), (t(13), 600.0), (t(20), 900.0)]
    # without knowing of the renewal, 600 after 1000 looks like jitter
    assert meter(0.0, readings, [(NOV.start, NOV.end)]).total == Decimal("1000.000")
    renewed = meter(0.0, readings, [(NOV.start, NOV.end)], renewals=[t(12)], baseline_at=t(1))
    assert renewed.total == Decimal("1900.000") and renewed.resets == 1
    # a renewal before the baseline, or after the drop, changes nothing
    for when in (datetime(2026, 10, 1, tzinfo=UTC), t(21)):
        late = meter(0.0, readings, [(NOV.start, NOV.end)], renewals=[when], baseline_at=t(1))
        assert late.total == Decimal("1000.000")
