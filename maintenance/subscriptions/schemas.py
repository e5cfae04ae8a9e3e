"""Records of subscriptions, their plan periods and coverage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from fleet.schemas import Strict
from fleetcare.inputs import Id, Moment, PatchRecord
from fleetcare.lifecycle import Lifecycle
from maintenance.plans.schemas import EntitlementOverrides, Entitlements, Plan


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELLED = "cancelled"


Scope = Literal["assets", "site"]
CancellationRule = Literal["none", "remainder", "notice"]
BillingTiming = Literal["advance", "arrears"]

# Statuses that receive service. past_due keeps service during dunning (the grace period);
# paused and cancelled do not.
ENTITLED_STATUSES = (
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
)
# from -> what it may become. Who may ask for which move is the service's business.
SUBSCRIPTION_LIFECYCLE = Lifecycle(
    "subscription",
    {
        SubscriptionStatus.TRIALING: {SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELLED},
        SubscriptionStatus.ACTIVE: {
            SubscriptionStatus.PAST_DUE,
            SubscriptionStatus.PAUSED,
            SubscriptionStatus.CANCELLED,
        },
        SubscriptionStatus.PAST_DUE: {
            SubscriptionStatus.ACTIVE,
            SubscriptionStatus.PAUSED,
            SubscriptionStatus.CANCELLED,
        },
        SubscriptionStatus.PAUSED: {SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELLED},
        SubscriptionStatus.CANCELLED: set(),
    },
)


class ContractTerms(Strict):
    """The commercial terms of a subscription (the operator's to change once it runs)."""

    notice_days: int = Field(
        default=30, ge=0, le=365, description="non-renewal must come this many days before"
    )
    renewal_reminder_days: int = Field(
        default=60, ge=1, le=365, description="subscription.renewal_upcoming this many days before"
    )
    committed_assets: int | None = Field(
        default=None, ge=1, le=1_000_000, description="assets billed at least, each month"
    )
    committed_usage: Decimal | None = Field(
        default=None, gt=0, le=Decimal("1e15"), description="usage units billed at least, monthly"
    )
    escalation_bps: int = Field(
        default=0, ge=0, le=5000, description="yearly price rise at each anniversary (bps)"
    )
    cancellation_rule: CancellationRule = Field(
        default="none",
        description="what cancelling before the term ends owes: none, remainder, notice",
    )
    billing_timing: BillingTiming = Field(
        default="arrears", description="fees billed in advance (next month) or in arrears"
    )


class SubscriptionCreate(Strict):
    customer_id: Id | None = Field(
        default=None, description="required for operator keys; a customer key uses its own"
    )
    plan_id: Id
    scope: Scope = "assets"
    site_id: Id | None = Field(default=None, description="the site, when scope is 'site'")
    asset_ids: list[Id] = Field(
        default_factory=list, max_length=1000, description="when scope is 'assets'"
    )
    starts_at: Moment | None = Field(default=None, description="default: now")
    term_months: int = Field(default=12, ge=1, le=120)
    auto_renew: bool = True
    trial_days: int = Field(default=0, ge=0, le=365, description="0: starts active")
    entitlement_overrides: EntitlementOverrides = Field(default_factory=EntitlementOverrides)
    contract: ContractTerms = Field(default_factory=ContractTerms)
    trial_asset_limit: int | None = Field(
        default=None, ge=1, le=1_000_000, description="a trial (pilot) covers at most this many"
    )
    trial_converts: bool = Field(
        default=True, description="at the trial's end: true converts to paid, false ends it"
    )

    @model_validator(mode="after")
    def _scope_matches(self) -> SubscriptionCreate:
        if self.scope == "site" and (self.site_id is None or self.asset_ids):
            raise ValueError("a site subscription names site_id and no asset_ids")
        if self.scope == "assets" and self.site_id is not None:
            raise ValueError("an assets subscription lists asset_ids, not site_id")
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            raise ValueError("starts_at needs a time zone")
        if self.trial_days == 0 and (self.trial_asset_limit is not None or not self.trial_converts):
            raise ValueError("trial_asset_limit and trial_converts need trial_days > 0")
        if self.trial_asset_limit is not None and len(self.asset_ids) > self.trial_asset_limit:
            raise ValueError(
                f"the trial covers at most {self.trial_asset_limit} asset(s);"
                f" {len(self.asset_ids)} listed"
            )
        if self.trial_asset_limit is not None and self.scope == "site":
            raise ValueError("a trial with an asset limit lists its assets (scope 'assets')")
        return self


class SubscriptionUpdate(Strict, PatchRecord):
    nullable = frozenset({"entitlement_overrides", "committed_assets", "committed_usage"})

    auto_renew: bool | None = None
    term_months: int | None = Field(default=None, ge=1, le=120)
    entitlement_overrides: EntitlementOverrides | None = None
    notice_days: int | None = Field(default=None, ge=0, le=365)
    renewal_reminder_days: int | None = Field(default=None, ge=1, le=365)
    committed_assets: int | None = Field(default=None, ge=1, le=1_000_000)
    committed_usage: Decimal | None = Field(default=None, gt=0, le=Decimal("1e15"))
    escalation_bps: int | None = Field(default=None, ge=0, le=5000)
    cancellation_rule: CancellationRule | None = None
    billing_timing: BillingTiming | None = None


class PlanChange(Strict):
    plan_id: Id
    at: Literal["now", "term_end"] = Field(
        default="now", description="now, or the end of the current term"
    )


class CancelRequest(Strict):
    at_term_end: bool = Field(default=False, description="keep service until the term ends")


class AssetList(Strict):
    asset_ids: list[Id] = Field(min_length=1, max_length=1000)


class Subscription(BaseModel):
    id: int
    customer_id: int
    scope: str
    site_id: int | None
    status: SubscriptionStatus
    starts_at: datetime
    current_term_ends_at: datetime
    term_months: int
    auto_renew: bool
    trial_ends_at: datetime | None
    ends_at: datetime | None
    cancel_at_term_end: bool
    cancelled_at: datetime | None
    entitlement_overrides: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    notice_days: int
    renewal_reminder_days: int
    renewal_reminded_for: datetime | None
    cancel_effective_at: datetime | None
    committed_assets: int | None
    committed_usage: Decimal | None
    escalation_bps: int
    cancellation_rule: str
    trial_asset_limit: int | None
    trial_converts: bool
    billing_timing: str = "arrears"
    orders_paused_at: datetime | None = Field(
        default=None, description="dunning paused the automatic orders (alerts instead)"
    )


class StatusPeriod(BaseModel):
    """One stretch of a subscription's status history: [valid_from, valid_to)."""

    id: int
    customer_id: int
    subscription_id: int
    status: SubscriptionStatus
    valid_from: datetime
    valid_to: datetime | None
    reason: str
    recorded_at: datetime


class PlanPeriod(BaseModel):
    id: int
    subscription_id: int
    plan_id: Id
    effective_from: datetime
    effective_to: datetime | None
    created_at: datetime


class SubscriptionView(Subscription):
    """A subscription with the plan in effect now, the pending change and the listed assets."""

    plan_id: Id
    pending_plan_id: int | None = None
    pending_plan_from: datetime | None = None
    asset_ids: list[int] = Field(default_factory=list)
    covered_asset_count: int = Field(
        default=0, description="live assets it covers now: the listed ones, or its site's"
    )
    entitlements: Entitlements


@dataclass(frozen=True)
class CoveredAsset:
    """An asset a subscription covers, with the times it existed."""

    id: int
    customer_id: int
    ref: str
    kind: str
    installed_at: datetime
    retired_at: datetime | None


class Coverage(BaseModel):
    """An entitled subscription that covers an asset at a moment, with its plan."""

    subscription: Subscription
    plan: Plan
    entitlements: Entitlements
