"""Records the dashboard reads: fleet health, predictions, series, ingest health."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ingest.schemas import QuarantineItem
from kinds.schemas import BUSY_DAY_FACTOR
from models.schemas import Explanation

Health = Literal["overdue", "due", "watch", "ok", "undated", "unknown"]
HEALTHS: tuple[Health, ...] = ("overdue", "due", "watch", "ok", "undated", "unknown")
# What an "undated" asset lacks, in the words the pages use.
UNDATED_REASON = (
    "no usage rate yet to turn the RUL into a due date (and its kind states no typical usage)"
)
# What an estimated due date is, in the words the pages use.
ESTIMATED_DUE = (
    f"estimated at a busy day of the kind, {BUSY_DAY_FACTOR:g} times its typical usage per day: "
    "less than a day of this asset's own usage counter since its last renewal gives no "
    "measured rate yet"
)
SortKey = Literal["due", "ref", "customer", "site", "risk", "kind"]


class HealthWindows(BaseModel):
    """The instants that split assets into health classes."""

    now: datetime
    due_until: datetime
    watch_until: datetime


class HealthCount(BaseModel):
    """How many assets of one customer's site are in each health class."""

    customer_id: int
    customer_name: str
    site_id: int | None
    site_ref: str | None
    site_name: str | None
    overdue: int
    due: int
    watch: int
    ok: int
    undated: int = 0
    unknown: int
    total: int


class AssetHealthRow(BaseModel):
    """One asset in the overview list: who owns it, where it is, when it is due."""

    asset_id: int
    ref: str
    kind: str
    customer_id: int
    customer_name: str
    site_id: int | None
    site_ref: str | None
    health: Health
    component: str | None
    predicted_at: datetime | None
    rul: float | None
    rul_low: float | None
    rul_high: float | None
    failure_probability: float | None
    due_at: datetime | None
    due_at_conservative: datetime | None
    last_seen_at: datetime | None
    # the conservative due date, or without one its estimate at a busy day of the kind
    due_at_shown: datetime | None = None
    due_estimated: bool = False


class AssetHealthPage(BaseModel):
    """One keyset page of the overview list, how many assets match in all, and the cursor of
    the next page (opaque: the sort key of the last row)."""

    rows: list[AssetHealthRow]
    total: int
    limit: int
    after: str | None = None  # the cursor this page started after (None: the first page)
    next_after: str | None = None


class LatestPrediction(BaseModel):
    """The newest prediction of one component of an asset, with its model version."""

    component: str
    time: datetime
    model_version_id: int | None
    algorithm: str | None
    model_status: str | None
    rul: float
    rul_low: float
    rul_high: float
    failure_probability: float
    anomaly_score: float
    due_at: datetime | None
    due_at_conservative: datetime | None
    explanation: Explanation | None = None  # why it says so (models.explain)
    low_confidence: bool = False  # broken sensors: shown, never acted on automatically
    # without a due date: the conservative one at a busy day of the kind (an estimate)
    due_estimated_at: datetime | None = None


class SeriesBucket(BaseModel):
    """One downsampled point of a metric: mean, extremes and how many readings it covers."""

    metric_id: int
    bucket: datetime
    avg_value: float
    min_value: float
    max_value: float
    n: int


class RulBucket(BaseModel):
    """One downsampled point of a component's predicted RUL with its interval."""

    component: str
    bucket: datetime
    rul: float
    rul_low: float
    rul_high: float
    failure_probability: float


class Series(BaseModel):
    """A chart's data: columns of epoch seconds and values, ready for uPlot."""

    name: str
    unit: str
    t: list[float] = Field(default_factory=list)
    mid: list[float | None] = Field(default_factory=list)
    low: list[float | None] = Field(default_factory=list)
    high: list[float | None] = Field(default_factory=list)


class SeriesSet(BaseModel):
    """All charts of one kind (telemetry or RUL) over one time range."""

    start: datetime
    stop: datetime
    source: str
    bucket_seconds: float
    series: list[Series]


class ModelVersionRow(BaseModel):
    """A registered wear-model version (without its artifact)."""

    id: int
    kind: str
    kind_version: int | None = None  # the kind definition's version it was trained under
    algorithm: str
    status: str
    metrics: dict[str, Any]
    trained_from: datetime | None
    trained_to: datetime | None
    training_assets: int
    training_rows: int
    created_at: datetime
    promoted_at: datetime | None


class QuarantineReason(BaseModel):
    """Quarantined messages of one reason in a time window."""

    reason: str
    count: int
    last_at: datetime


class ReadingRate(BaseModel):
    """Readings stored with a reading time inside the last ``seconds``."""

    seconds: int
    readings: int

    @property
    def per_second(self) -> float:
        """Readings per second over the window."""
        return self.readings / self.seconds


class IngestHealth(BaseModel):
    """What the ingest-health page shows."""

    rates: list[ReadingRate]
    newest_reading_at: datetime | None
    assets_seen_last_hour: int
    assets_total: int
    quarantine: list[QuarantineReason]
    samples: dict[str, list[QuarantineItem]]


class LiveAsset(BaseModel):
    """What the live feed sends when an asset gets a new prediction."""

    asset_id: int
    customer_id: int
    ref: str
    component: str
    predicted_at: datetime
    rul: float
    rul_low: float
    rul_high: float
    due_at_conservative: datetime | None
    failure_probability: float


class LiveEvent(BaseModel):
    """What the live feed sends for an outbox event."""

    id: int
    public_id: str
    customer_id: int | None
    type: str
    subject: str
    occurred_at: datetime
