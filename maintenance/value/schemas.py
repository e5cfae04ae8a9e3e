"""Records of the value report."""

from __future__ import annotations

from pydantic import BaseModel, Field

from maintenance.billing.schemas import PlanAdvice


class PreventedFailure(BaseModel):
    order_id: int
    asset_id: int
    asset_ref: str
    kind: str
    component: str
    reason: str
    due_at: str
    completed_at: str
    life_days: float | None = Field(description="age of the replaced component, days")
    downtime_avoided_h: float | None
    saved_vs_run_to_failure_eur: float | None
    saved_vs_preventive_eur: float | None


class FailureNotPrevented(BaseModel):
    life_id: int
    asset_id: int
    asset_ref: str
    kind: str
    component: str
    failed_at: str
    failure_report_id: int | None
    downtime_h: float | None
    downtime_eur: float | None


class KindAssumptions(BaseModel):
    kind: str
    failure_downtime_h: float
    downtime_eur_per_hour: float
    labour_eur_per_hour: float
    preventive_interval_days: float | None = Field(
        description="the age by which PREVENTIVE_QUANTILE of the recorded lives had failed"
    )
    recorded_lives: int
    note: str


class Shipments(BaseModel):
    delivered: int
    on_time: int = Field(description="delivered no later than the order's due date")
    late: int
    parts: int = Field(description="pieces delivered")


class CreditsEarned(BaseModel):
    count: int
    applied_minor: int = Field(description="what invoices have credited so far")
    pending: int = Field(description="credits the next invoice will apply")
    currency: str


class ValueReport(BaseModel):
    customer_id: int
    customer_name: str
    period: str
    failures_prevented: int
    failures_not_prevented: int
    prevented: list[PreventedFailure]
    not_prevented: list[FailureNotPrevented]
    downtime_avoided_h: float
    saved_vs_run_to_failure_eur: float
    saved_vs_preventive_eur: float
    shipments: Shipments
    service_credits: CreditsEarned
    assumptions: list[KindAssumptions]
    advice: PlanAdvice | None
    notes: list[str]
