"""Records of order outcomes (what the technician found) and of the model page."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from fleet.schemas import Strict

OutcomeCode = Literal["confirmed_wear", "false_alarm", "other_fault"]
OUTCOME_CODES: tuple[OutcomeCode, ...] = ("confirmed_wear", "false_alarm", "other_fault")
MAX_FINDINGS = 20


class Finding(Strict):
    """What a technician found on one component when completing or cancelling an order."""

    component: str = Field(min_length=1, max_length=100)
    code: OutcomeCode = Field(
        description="confirmed_wear: the predicted wear was there; false_alarm: the component "
        "was fine; other_fault: something else was wrong"
    )
    measured_value: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="the kind's remaining-life measurement for this component (the metric of "
        "its end-of-life threshold, e.g. tread_depth_mm), in that metric's unit",
    )
    notes: str = Field(default="", max_length=2000)


class OrderOutcome(BaseModel):
    id: int
    customer_id: int
    order_id: int
    asset_id: int
    component: str
    code: str
    order_status: str
    measured_metric: str | None
    measured_value: float | None
    remaining_life: float | None
    usage_at_end: float | None
    life_id: int | None
    notes: str
    recorded_at: datetime


class OutcomeRow(BaseModel):
    """One outcome beside the prediction it judges (the model page's rows)."""

    source: Literal["order", "failure"]
    source_id: int
    customer_id: int
    asset_id: int
    asset_ref: str
    kind: str
    component: str
    model_version_id: int | None
    outcome: str  # confirmed_wear | false_alarm | other_fault | failure | missed_failure
    cause: str | None = None  # a failure's reported cause (FailureCause); None for orders
    ended_at: datetime
    order_reason: str | None
    prediction_time: datetime | None
    rul: float | None
    rul_low: float | None
    rul_high: float | None
    usage_rate_per_day: float | None
    remaining_life: float | None
    # when the life really ended (or will, by the measured remaining life at the usage rate)
    actual_end: datetime | None
    # the prediction's interval as dates: now + rul_low / rate .. now + rul_high / rate
    interval_start: datetime | None
    interval_end: datetime | None
    in_interval: bool | None


class ModelOutcomes(BaseModel):
    """Per kind and model version: how the predictions fared against what was found."""

    kind: str
    model_version_id: int | None
    alerts_with_outcome: int = Field(description="predicted orders closed with an outcome")
    confirmed: int
    false_alarms: int
    other_faults: int
    alert_precision: float | None = Field(description="confirmed / alerts with an outcome")
    failures: int = Field(description="failures reported")
    missed_failures: int = Field(description="failures no open order anticipated")
    interval_checked: int = Field(description="outcomes with a known end and a prediction")
    interval_hits: int
    interval_coverage: float | None


class ModelPage(BaseModel):
    summaries: list[ModelOutcomes]
    rows: list[OutcomeRow]
