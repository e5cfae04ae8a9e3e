"""Dashboard logic: who is looking, what they may see, and how series are downsampled.

No SQL text (that is in ``repository.py``) and no HTTP (that is in ``api/routes``).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import Connection

from api.dashboard import repository as repo
from api.dashboard.schemas import (
    AssetHealthPage,
    HealthCount,
    HealthWindows,
    IngestHealth,
    LatestPrediction,
    ModelVersionRow,
    ReadingRate,
    Series,
    SeriesBucket,
    SeriesSet,
)
from fleet import repository as fleet_repo
from fleet import service as fleet
from fleet.schemas import Asset, Customer, MetricRecord, Principal, Site
from fleetcare.cursor import decode_cursor, encode_cursor
from fleetcare.errors import Invalid
from fleetcare.settings import Settings
from ingest.schemas import QuarantineItem
from kinds.repository import find_kind
from maintenance.mobility import service as mobility

Conn = Connection[Any]

# At most this many points per series reach the browser.
MAX_POINTS = 1000
# Up to this span, series come from raw readings; beyond it, from the hourly rollup.
RAW_MAX_SPAN = timedelta(hours=48)
# The longest span a chart may ask for.
MAX_SPAN = timedelta(days=5 * 366)
# Named ranges of the zoom buttons, shortest first.
RANGES: dict[str, timedelta] = {
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "365d": timedelta(days=365),
}
DEFAULT_TELEMETRY_RANGE = "7d"
DEFAULT_RUL_RANGE = "90d"
PAGE_SIZE = 100


def health_windows(settings: Settings, now: datetime) -> HealthWindows:
    """The due and watch horizons measured from ``now``."""
    return HealthWindows(
        now=now,
        due_until=now + timedelta(days=settings.dashboard_due_days),
        watch_until=now + timedelta(days=settings.dashboard_watch_days),
    )


@dataclass(frozen=True)
class OverviewFilters:
    """What the overview list is narrowed to and how it is ordered."""

    customer_id: int | None = None
    site_id: int | None = None
    kind: str | None = None
    health: str | None = None
    sort: str = "due"
    descending: bool = False
    after: str | None = None  # opaque keyset cursor (``next_after`` of the previous page)


def counts_by_site(principal: Principal, filters: OverviewFilters) -> bool:
    """Health counts per site, or (the operator's first view) one line per customer."""
    return principal.scope is not None or filters.customer_id is not None


def fleet_overview(
    conn: Conn, principal: Principal, windows: HealthWindows, filters: OverviewFilters
) -> tuple[list[HealthCount], AssetHealthPage]:
    """Health counts per customer and site, and one page of assets (caller's scope only)."""
    if principal.scope is not None and filters.customer_id not in (None, principal.scope):
        # another customer's fleet looks empty, exactly like a customer that does not exist
        return [], AssetHealthPage(rows=[], total=0, limit=PAGE_SIZE, after=filters.after)
    key = None
    if filters.after is not None:
        key = decode_cursor(filters.after, repo.sort_kinds(filters.sort))
    counts = repo.health_counts(
        conn,
        windows,
        scope=principal.scope,
        customer_id=filters.customer_id,
        site_id=filters.site_id,
        kind=filters.kind,
        by_site=counts_by_site(principal, filters),
    )
    rows, total, more = repo.list_asset_health(
        conn,
        windows,
        scope=principal.scope,
        customer_id=filters.customer_id,
        site_id=filters.site_id,
        kind=filters.kind,
        health=filters.health,
        sort=filters.sort,
        descending=filters.descending,
        limit=PAGE_SIZE,
        after=key,
    )
    next_after = encode_cursor(repo.sort_key(rows[-1], filters.sort)) if more and rows else None
    page = AssetHealthPage(
        rows=rows, total=total, limit=PAGE_SIZE, after=filters.after, next_after=next_after
    )
    return counts, page


@dataclass(frozen=True)
class AssetDetail:
    """Everything the asset page shows above its charts."""

    asset: Asset
    customer: Customer
    site: Site | None
    health: str
    life_unit: str
    metrics: list[MetricRecord]
    predictions: list[LatestPrediction]


def asset_detail(
    conn: Conn, principal: Principal, windows: HealthWindows, asset_id: int
) -> AssetDetail:
    """An asset the caller may see (NotFound otherwise) with its latest predictions."""
    asset = fleet.get_asset(conn, principal, asset_id)
    customer = fleet.get_customer(conn, principal, asset.customer_id)
    site = fleet.get_site(conn, principal, asset.site_id) if asset.site_id else None
    return AssetDetail(
        asset=asset,
        customer=customer,
        site=site,
        health=repo.asset_health_of(conn, windows, asset.id),
        life_unit=_life_unit(conn, asset.kind),
        metrics=fleet_repo.list_metrics(conn, asset.kind),
        predictions=repo.latest_predictions(conn, asset.id),
    )


def _life_unit(conn: Conn, kind: str) -> str:
    row = find_kind(conn, kind)
    return row.life_unit if row else ""


def latest_predictions(conn: Conn, principal: Principal, asset_id: int) -> list[LatestPrediction]:
    """The newest prediction of each component of an asset the caller may see."""
    asset = fleet.get_asset(conn, principal, asset_id)
    return repo.latest_predictions(conn, asset.id)


def resolve_range(
    now: datetime,
    range_name: str | None,
    start: datetime | None,
    stop: datetime | None,
    default: str,
) -> tuple[datetime, datetime]:
    """The [start, stop) a chart asks for: explicit bounds, else a named range ending now."""
    if start is not None or stop is not None:
        if start is None or stop is None:
            raise Invalid("give both start and stop, or neither")
        start, stop = _aware(start, "start"), _aware(stop, "stop")
        if stop <= start:
            raise Invalid("stop must be after start")
        if stop - start > MAX_SPAN:
            raise Invalid(f"a chart covers at most {MAX_SPAN.days} days")
        return start, stop
    name = range_name or default
    if name not in RANGES:
        raise Invalid(f"range must be one of {', '.join(RANGES)}")
    return now - RANGES[name], now


def _aware(value: datetime, label: str) -> datetime:
    if value.tzinfo is None:
        raise Invalid(f"{label} needs a time zone (e.g. 2026-11-26T10:00:00Z)")
    return value.astimezone(UTC)


def bucket_width(start: datetime, stop: datetime, *, whole_hours: bool) -> timedelta:
    """The narrowest bucket that keeps a series over [start, stop) within MAX_POINTS."""
    seconds = (stop - start).total_seconds() / MAX_POINTS
    if whole_hours:
        return timedelta(hours=max(1, math.ceil(seconds / 3600)))
    return timedelta(seconds=max(1, math.ceil(seconds)))


def telemetry_series(
    conn: Conn,
    principal: Principal,
    asset_id: int,
    start: datetime,
    stop: datetime,
    metric_id: int | None = None,
) -> SeriesSet:
    """Each metric of an asset over [start, stop), at most MAX_POINTS per metric.

    Short spans read raw readings; long ones read the hourly rollup, so that a year of one
    asset costs at most ~9,000 rollup rows per metric whatever the reading rate.
    """
    asset = fleet.get_asset(conn, principal, asset_id)
    metrics = [
        m
        for m in fleet_repo.list_metrics(conn, asset.kind)
        if metric_id is None or m.id == metric_id
    ]
    if metric_id is not None and not metrics:
        raise Invalid(f"metric {metric_id} is not a metric of a {asset.kind}")
    ids = [m.id for m in metrics]
    raw = stop - start <= RAW_MAX_SPAN
    width = bucket_width(start, stop, whole_hours=not raw)
    if raw:
        buckets = repo.raw_series(conn, asset.id, ids, start, stop, width)
    else:
        buckets = repo.hourly_series(conn, asset.id, ids, start, stop, width)
    by_metric: dict[int, list[SeriesBucket]] = {m.id: [] for m in metrics}
    for b in buckets:
        by_metric[b.metric_id].append(b)
    series = [
        _columns(
            m.name,
            m.unit,
            [(b.bucket, b.avg_value, b.min_value, b.max_value) for b in by_metric[m.id]],
            width,
        )
        for m in metrics
    ]
    return SeriesSet(
        start=start,
        stop=stop,
        source="raw" if raw else "hourly",
        bucket_seconds=width.total_seconds(),
        series=series,
    )


def rul_series(
    conn: Conn, principal: Principal, asset_id: int, start: datetime, stop: datetime
) -> SeriesSet:
    """Predicted RUL of each component of an asset with its interval, at most MAX_POINTS."""
    asset = fleet.get_asset(conn, principal, asset_id)
    width = bucket_width(start, stop, whole_hours=False)
    rows = repo.rul_series(conn, asset.id, start, stop, width)
    unit = _life_unit(conn, asset.kind)
    components = sorted({r.component for r in rows})
    series = [
        _columns(
            c,
            unit,
            [(r.bucket, r.rul, r.rul_low, r.rul_high) for r in rows if r.component == c],
            width,
            break_gaps=False,  # predictions are sparse by nature: join them up
        )
        for c in components
    ]
    return SeriesSet(
        start=start,
        stop=stop,
        source="predictions",
        bucket_seconds=width.total_seconds(),
        series=series,
    )


def _columns(
    name: str,
    unit: str,
    points: list[tuple[datetime, float, float, float]],
    width: timedelta,
    *,
    break_gaps: bool = True,
) -> Series:
    """Column arrays for uPlot; a gap of over 3 steps becomes a break in the line.

    A step is the bucket width, or the usual spacing of the points when readings are sparser
    than buckets (a reading every 5 min seen through 20 s buckets is not a gap).
    """
    out = Series(name=name, unit=unit)
    times = [when.timestamp() for when, *_ in points]
    step = width.total_seconds()
    if len(times) > 2:
        step = max(step, statistics.median(b - a for a, b in itertools.pairwise(times)))
    gap = 3 * step if break_gaps else math.inf
    previous: float | None = None
    for t, (_, mid, low, high) in zip(times, points, strict=True):
        if previous is not None and t - previous > gap:
            out.t.append(previous + step)
            out.mid.append(None)
            out.low.append(None)
            out.high.append(None)
        out.t.append(t)
        out.mid.append(mid)
        out.low.append(low)
        out.high.append(high)
        previous = t
    return out


def model_versions(conn: Conn) -> list[ModelVersionRow]:
    """Every registered wear-model version with its metrics."""
    return repo.list_model_versions(conn)


# How far back the ingest page looks.
RATE_WINDOWS_S = (60, 300)
QUARANTINE_WINDOW = timedelta(hours=24)
QUARANTINE_PAGE = 100
SAMPLES_PER_REASON = 3


def readings_per_hour(
    conn: Conn, principal: Principal, now: datetime
) -> list[tuple[datetime, int]]:
    """Readings per hour over the last day, from the hourly rollup."""
    return repo.readings_per_hour(conn, now - timedelta(hours=24), principal.scope)


def ingest_health(conn: Conn, principal: Principal, now: datetime) -> IngestHealth:
    """Readings per second, freshness, and quarantine by reason with samples."""
    scope = principal.scope
    rates = [
        ReadingRate(
            seconds=s, readings=repo.readings_since(conn, now - timedelta(seconds=s), scope)
        )
        for s in RATE_WINDOWS_S
    ]
    newest, seen, total = repo.asset_activity(conn, now - timedelta(hours=1), scope)
    reasons = repo.quarantine_by_reason(conn, now - QUARANTINE_WINDOW, scope)
    samples: dict[str, list[Any]] = {r.reason: [] for r in reasons}
    for sample in repo.quarantine_samples(
        conn, [r.reason for r in reasons], SAMPLES_PER_REASON, scope
    ):
        samples[sample.reason].append(sample)
    return IngestHealth(
        rates=rates,
        newest_reading_at=newest,
        assets_seen_last_hour=seen,
        assets_total=total,
        quarantine=reasons,
        samples=samples,
    )


def quarantine_page(
    conn: Conn, principal: Principal, *, reason: str | None, before: int | None
) -> tuple[list[QuarantineItem], int | None]:
    """One page of quarantined items of the caller's scope, newest first, and the cursor of
    the next (older) page."""
    rows = repo.list_quarantine(
        conn, principal.scope, reason=reason, before=before, limit=QUARANTINE_PAGE + 1
    )
    more = len(rows) > QUARANTINE_PAGE
    rows = rows[:QUARANTINE_PAGE]
    return rows, (rows[-1].id if more and rows else None)


def carrier_map(conn: Conn, principal: Principal, now: datetime) -> dict[str, Any]:
    """The carrier map's data, confined to the viewer's customer (JSON-ready)."""
    if principal.partner_scope is not None:  # a partner sees no customer's carriers
        return {"carriers": [], "stations": [], "shipments": [], "visits": []}
    found = mobility.carrier_map(conn, principal, now)
    return {
        name: [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows
        ]
        for name, rows in found.items()
    }
