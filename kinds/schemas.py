"""The asset-kind definition: the document a kind file (YAML or JSON) or ``POST /v1/kinds``
holds, validated strictly (an unknown field is an error), and the records the API returns."""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
KindName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""The name of an asset kind; which kinds exist is the database's business, not a type's."""

MetricName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

MetricRole = Literal["condition", "usage", "regime"]
Comparison = Literal["<=", "<", ">=", ">"]
THRESHOLD = re.compile(
    r"^\s*(?P<metric>[a-z][a-z0-9_]{0,62})\s*(?P<op><=|>=|<|>)\s*(?P<value>[-+0-9.eE]+)\s*$"
)


class Definition(BaseModel):
    """Parts of a definition: unknown fields are errors, records are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric(Definition):
    """One measured quantity: its unit, physical bounds (inclusive) and role."""

    name: MetricName
    unit: Text
    low: float
    high: float
    role: MetricRole = "condition"
    cumulative: bool = False  # a counter that only grows between renewals (odometer, trips)
    description: LongText = ""

    @model_validator(mode="after")
    def _bounds(self) -> Metric:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.role == "usage" and not self.cumulative:
            raise ValueError("a usage counter must be cumulative (cumulative: true)")
        return self


class Part(Definition):
    """A spare part that fits a component: price in the currency's major unit."""

    sku: Sku
    name: Text
    price: Decimal = Field(ge=0, le=Decimal("1e13"), decimal_places=2)
    currency: Currency = "EUR"
    labour_hours: float = Field(default=1.0, ge=0, le=10_000)

    @property
    def price_minor(self) -> int:
        """The price in minor units (cents)."""
        return int(self.price * 100)


class Component(Definition):
    """A replaceable component of an asset, with the parts that fit it."""

    name: MetricName
    parts: list[Part] = Field(min_length=1)
    description: LongText = ""


class Threshold(Definition):
    """A limit on a condition metric that ends a component's life (``tread_depth_mm <= 1.6``)."""

    metric: MetricName
    op: Comparison
    value: float
    component: MetricName | None = None  # which component's life it ends; needed with several

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = THRESHOLD.match(data)
            if m is None:
                raise ValueError(
                    f"{data!r} is not a threshold; write it as 'metric <= value' (or <, >=, >)"
                )
            return {"metric": m["metric"], "op": m["op"], "value": m["value"]}
        return data

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def reached(self, reading: float) -> bool:
        """Whether ``reading`` is at or past the limit."""
        if self.op == "<=":
            return reading <= self.value
        if self.op == "<":
            return reading < self.value
        if self.op == ">=":
            return reading >= self.value
        return reading > self.value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


class EndOfLife(Definition):
    """What ends a life: thresholds on condition metrics and/or recorded failure events."""

    thresholds: list[Threshold] = Field(default_factory=list)
    failure_events: bool = True  # a recorded failure (an order completing a failed asset)
    description: LongText = ""

    @model_validator(mode="after")
    def _something_ends_it(self) -> EndOfLife:
        if not self.thresholds and not self.failure_events:
            raise ValueError("a life must end somehow: give thresholds or failure_events: true")
        return self


# A due date estimated before an asset's own usage counter gives a measured rate is dated at
# a busy day of its kind: this many times ``life.typical_per_day``. Assets of a kind spread
# around its typical day (the simulated elevators: 320 trips a weekday in residential
# buildings to 950 in hospitals and ~1,000 on a retail weekend, against the kind's 500;
# aircraft 3-7 cycles against 5), and a date estimated at the typical day comes late for
# every asset busier than it: in `fleetcare up` a retail building's elevator door (~1,000
# trips a day) had its risk order due in 20 days (half the 20,000-trip horizon at 500 a day)
# and was seen failing after 13.6. At a busy day the estimate errs early for the quieter
# assets, the side an estimate may err on (an order is never moved later once a rate is
# measured, so an estimate late for a busy asset stays late).
BUSY_DAY_FACTOR = 2.0


class Life(Definition):
    """The unit life is counted in, the metric that counts it, a typical life, and (optional)
    a typical usage per day: until the asset's own usage counter gives a measured rate, its
    predictions are dated at a busy day, :data:`BUSY_DAY_FACTOR` times it (the dashboard's
    estimate, labelled as such, and the policy's orders)."""

    unit: Text
    usage_counter: MetricName
    typical: float = Field(gt=0, allow_inf_nan=False)
    typical_per_day: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class ModelSettings(Definition):
    """The wear model's per-kind settings, in the kind's life unit."""

    max_rul: float = Field(gt=0, allow_inf_nan=False)  # RUL targets are capped here
    horizon: float = Field(ge=0, allow_inf_nan=False)  # failure risk: within this much usage
    # "by_operating_conditions": the feature windows of the C-MAPSS evaluation, chosen by the
    # number of operating conditions in the training data (models.features.conditions_features)
    features: Literal["default", "by_operating_conditions"] = "default"
    # "balanced": every life gets the same number of training rows; "all": every row once
    # (as `fleetcare models cmapss` fits)
    training_rows: Literal["balanced", "all"] = "balanced"
    # also train on every life once more from a late start, as a part that joins fleetcare
    # mid-life shows it (models.lifetimes.with_late_starts): its readings begin then, its
    # usage counter counts since the part was fitted. Off unless the kind's policy was
    # validated with it (docs/evaluate.md, "Parts that join mid-life").
    late_starts: bool = False
    # score the parts first seen mid-life (usage counter at the first reading fleetcare has
    # of the life above models.lifetimes.JOINED_AFTER_SHARE of the typical life) with their
    # own RUL and risk models, trained with the late starts; the parts seen from new keep
    # the model trained on whole lives (models.bundle.JoinedModels; docs/evaluate.md,
    # "Parts that join mid-life: their own model")
    joined_model: bool = False
    # the failure-risk classifier's row weights. "life": every training life weighs the same
    # (1/rows of the life). "life_per_horizon": every life counts once in each stretch of
    # usage since renewal as long as the horizon that it lived through, so a life that failed
    # early counts as one of the lives of its age, not with a whole life's weight among new
    # parts (models.lifetimes.risk_weights; docs/evaluate.md, "Tire seed 56").
    risk_weights: Literal["life", "life_per_horizon"] = "life"
    # per component, the coverage of the RUL interval whose low end gives the conservative
    # due date (the safety margin orders plan on); a component not named takes the model's
    # default (models.bundle.DEFAULT_COVERAGE). `fleetcare evaluate` scores with the same.
    coverage: dict[str, float] = Field(default_factory=dict, max_length=100)

    @model_validator(mode="after")
    def _horizon_within_rul(self) -> ModelSettings:
        if self.horizon > self.max_rul:
            raise ValueError(
                f"horizon ({self.horizon:g}) must not exceed max_rul ({self.max_rul:g})"
            )
        for component, value in self.coverage.items():
            if not 0 < value < 1:
                raise ValueError(
                    f"coverage.{component}: must be between 0 and 1 (exclusive), got {value:g}"
                )
        return self


class Economics(Definition):
    """What a kind's work costs and how it is planned (optional): the customers' value reports
    count savings with it and `fleetcare evaluate` simulates with it. A kind without it gets
    no costs in its value report (the report says so)."""

    per_group: int = Field(ge=1, le=10_000)  # assets per truck / building / aircraft
    step_h: float = Field(gt=0, allow_inf_nan=False)  # one reading per asset per step
    order_lead_days: int = Field(ge=0, le=365)  # the plan's lead time
    shipping_days: int = Field(ge=0, le=365)  # from the nearest depot
    labour_eur_per_hour: float = Field(ge=0, allow_inf_nan=False)
    failure_downtime_h: float = Field(ge=0, allow_inf_nan=False)  # an unplanned failure's
    downtime_eur_per_hour: float = Field(ge=0, allow_inf_nan=False)
    max_rul: float = Field(gt=0, allow_inf_nan=False)  # the evaluation's wear-model RUL cap
    risk_threshold: float = Field(gt=0, lt=1)  # the full-service plan's (the demo's)
    history_max_days: float = Field(gt=0, allow_inf_nan=False)  # the training fleet's span
    note: LongText = ""


class KindDefinition(Definition):
    """Everything fleetcare knows about one kind of asset."""

    name: KindName
    display_name: Text
    description: LongText = ""
    # assets of a mobile kind ride on carriers (an engine on a tail, a tire on a truck): their
    # work is planned at the stations of the carrier's itinerary
    mobile: bool = False
    metrics: list[Metric] = Field(min_length=1, max_length=500)
    life: Life
    components: list[Component] = Field(min_length=1, max_length=100)
    end_of_life: EndOfLife
    model: ModelSettings
    economics: Economics | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KindDefinition:
        seen: set[str] = set()
        for i, m in enumerate(self.metrics):
            if m.name in seen:
                raise ValueError(f"metrics[{i}]: metric {m.name!r} is defined twice")
            seen.add(m.name)
        usage = [m.name for m in self.metrics if m.role == "usage"]
        counter = self.life.usage_counter
        if counter not in seen:
            raise ValueError(f"life.usage_counter: {counter!r} is not one of the metrics")
        if usage != [counter]:
            raise ValueError(
                f"life.usage_counter: {counter!r} must be the one metric with role 'usage'"
                f" (role 'usage' on: {', '.join(usage) or 'none'})"
            )
        if not any(m.role == "condition" for m in self.metrics):
            raise ValueError("metrics: at least one metric must have role 'condition'")
        names = [c.name for c in self.components]
        for i, c in enumerate(self.components):
            if c.name in names[:i]:
                raise ValueError(f"components[{i}]: component {c.name!r} is defined twice")
        skus = [p.sku for c in self.components for p in c.parts]
        doubles = sorted({s for s in skus if skus.count(s) > 1})
        if doubles:
            raise ValueError(f"components: part SKU {', '.join(doubles)} appears more than once")
        for component in self.model.coverage:
            if component not in names:
                raise ValueError(
                    f"model.coverage: {component!r} is not one of the components"
                    f" ({', '.join(names)})"
                )
        for i, t in enumerate(self.end_of_life.thresholds):
            where = f"end_of_life.thresholds[{i}]"
            if t.metric not in seen:
                raise ValueError(f"{where}: {t.metric!r} is not one of the metrics")
            if self.metric(t.metric).role != "condition":
                raise ValueError(f"{where}: {t.metric!r} is not a condition metric")
            if t.component is not None and t.component not in names:
                raise ValueError(f"{where}: {t.component!r} is not one of the components")
            if t.component is None and len(names) > 1:
                raise ValueError(
                    f"{where}: say which component's life it ends (component: one of"
                    f" {', '.join(names)})"
                )
            m = self.metric(t.metric)
            if not m.low <= t.value <= m.high:
                raise ValueError(
                    f"{where}: {t.value:g} is outside {t.metric}'s bounds [{m.low:g}, {m.high:g}]"
                )
        return self

    # --- what the rest of fleetcare reads ------------------------------------------------

    def metric(self, name: str) -> Metric:
        """The metric called ``name``; KeyError when the kind has none."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"{self.name} has no metric {name!r}")

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    @property
    def usage_metric(self) -> str:
        return self.life.usage_counter

    @property
    def life_unit(self) -> str:
        return self.life.unit

    @property
    def typical_life(self) -> float:
        return self.life.typical

    @property
    def regime_metrics(self) -> tuple[str, ...]:
        """Operating-condition settings (altitude, throttle, ...), in definition order."""
        return tuple(m.name for m in self.metrics if m.role == "regime")

    @property
    def sensor_names(self) -> tuple[str, ...]:
        """Metrics that describe condition: neither the usage counter nor a regime setting."""
        return tuple(m.name for m in self.metrics if m.role == "condition")

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    def thresholds_of(self, component: str) -> list[Threshold]:
        """The end-of-life thresholds that end ``component``'s life."""
        return [t for t in self.end_of_life.thresholds if t.component in (None, component)]


class KindRecord(BaseModel):
    """A stored kind: its current definition, version and when it was last changed."""

    name: str
    display_name: str
    version: int
    updated_at: datetime
    definition: KindDefinition


class KindSummary(BaseModel):
    """One line of ``fleetcare kinds list`` / ``GET /v1/kinds``."""

    name: str
    display_name: str
    version: int
    life_unit: str
    usage_metric: str
    metrics: int
    components: int
    assets: int
    updated_at: datetime


class ApplyResult(BaseModel):
    """What applying a definition did: the version now current and the changes made."""

    name: str
    version: int
    created: bool
    changed: bool
    changes: list[str]
