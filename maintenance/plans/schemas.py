"""Records of plans and the entitlements they grant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from fleet.schemas import Strict
from fleetcare.inputs import Money
from kinds.schemas import KindName

PauseRule = Literal["free", "reduced", "full"]


class Entitlements(BaseModel):
    """What a subscription gives, from its plan and its overrides; the policy checks these."""

    model_config = ConfigDict(frozen=True)

    includes_alerts: bool
    includes_orders: bool
    includes_parts: bool
    includes_labour: bool
    order_lead_days: int
    response_sla_hours: int
    risk_threshold: float
    anomaly_threshold: float | None
    visit_margin_hours: float = 12.0  # a moving asset's visit arrives this long before due


class EntitlementOverrides(Strict):
    """Per-subscription changes to what the plan includes; unset fields follow the plan."""

    includes_alerts: bool | None = None
    includes_orders: bool | None = None
    includes_parts: bool | None = None
    includes_labour: bool | None = None
    order_lead_days: int | None = Field(default=None, ge=0, le=365)
    response_sla_hours: int | None = Field(default=None, ge=1, le=8760)
    risk_threshold: float | None = Field(default=None, gt=0, le=1)
    anomaly_threshold: float | None = Field(default=None, gt=0, le=1e9)


class PlanCreate(Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    kinds: list[KindName] = Field(min_length=1)
    includes_alerts: bool = True
    includes_orders: bool = False
    includes_parts: bool = False
    includes_labour: bool = False
    order_lead_days: int = Field(default=14, ge=0, le=365)
    response_sla_hours: int = Field(default=48, ge=1, le=8760)
    risk_threshold: float = Field(default=0.5, gt=0, le=1)
    anomaly_threshold: float | None = Field(default=None, gt=0, le=1e9)
    visit_margin_hours: float = Field(
        default=12.0,
        ge=0,
        le=720,
        description="for a moving asset: its visit arrives at least this long before the due"
        " date (less when the due date is close: a tenth of the time left)",
    )
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    fee_per_asset_month_minor: Money | None = Field(default=None)
    usage_price_minor: Money | None = Field(default=None)
    usage_price_quantity: int = Field(default=1, gt=0, le=10**9)
    failure_credit_bps: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="the promise: a covered component that fails before its predicted due date"
        " earns this share (basis points) of the asset's charges of that month as a credit",
    )
    failure_repair_free: bool = Field(
        default=False,
        description="the promise: the repair of such a failure is free (its billable parts and"
        " labour are credited)",
    )
    pause_rule: PauseRule = Field(
        default="free",
        description="what a paused stretch costs: free, reduced (pause_fee_bps of the fee), full",
    )
    pause_fee_bps: int = Field(default=0, ge=0, le=10000, description="for pause_rule reduced")
    payment_terms_days: int = Field(default=30, ge=0, le=365, description="days to pay")
    dunning_reminder_days: list[Annotated[int, Field(ge=1, le=365)]] = Field(
        default_factory=lambda: [3, 10, 20],
        max_length=10,
        description="days after the due date on which a payment reminder goes out",
    )
    past_due_after_days: int = Field(
        default=15, ge=1, le=365, description="days overdue before the subscription is past due"
    )
    orders_pause_after_days: int = Field(
        default=30, ge=1, le=365, description="days overdue before automatic orders pause"
    )

    @model_validator(mode="after")
    def _coherent(self) -> PlanCreate:
        if not (self.includes_alerts or self.includes_orders):
            raise ValueError("a plan includes alerts, orders or both")
        if (self.includes_parts or self.includes_labour) and not self.includes_orders:
            raise ValueError("parts and labour come with orders: set includes_orders")
        if self.fee_per_asset_month_minor is None and self.usage_price_minor is None:
            raise ValueError("a plan has a fee per asset-month, a usage price, or both")
        self.dunning_reminder_days = sorted(set(self.dunning_reminder_days))
        if (self.pause_rule == "reduced") != (self.pause_fee_bps > 0):
            raise ValueError("pause_fee_bps (1-10000) goes with pause_rule 'reduced' only")
        return self


class Plan(BaseModel):
    id: int
    code: str
    name: str
    description: str
    kinds: list[str]
    includes_alerts: bool
    includes_orders: bool
    includes_parts: bool
    includes_labour: bool
    order_lead_days: int
    response_sla_hours: int
    risk_threshold: float
    anomaly_threshold: float | None
    visit_margin_hours: float = 12.0
    currency: str
    fee_per_asset_month_minor: int | None
    usage_price_minor: int | None
    usage_price_quantity: int
    failure_credit_bps: int | None = None
    failure_repair_free: bool = False
    pause_rule: str
    pause_fee_bps: int
    payment_terms_days: int
    dunning_reminder_days: list[int]
    past_due_after_days: int
    orders_pause_after_days: int
    created_at: datetime
    retired_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def promise(self) -> str | None:
        """The plan's promise in words (None: it promises nothing for failures)."""
        return promise_text(self.failure_credit_bps, self.failure_repair_free)

    def entitlements(self, overrides: dict[str, object] | None = None) -> Entitlements:
        """The plan's entitlements with ``overrides`` applied."""
        base = {name: getattr(self, name) for name in Entitlements.model_fields}
        base.update({k: v for k, v in (overrides or {}).items() if k in base and v is not None})
        return Entitlements.model_validate(base)


def promise_text(credit_bps: int | None, repair_free: bool) -> str | None:
    """What a plan promises when a covered component fails before its predicted due date."""
    earns = []
    if credit_bps is not None:
        share = f"{credit_bps / 100:g} %"
        earns.append(f"earns a service credit of {share} of the asset's charges of that month")
    if repair_free:
        earns.append("its repair is free (billable parts and labour are credited)")
    if not earns:
        return None
    return (
        "A covered component that fails before its predicted due date " + ", and ".join(earns) + "."
    )
