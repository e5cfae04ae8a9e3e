"""Records of the SaaS metrics."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Movements(BaseModel):
    """How recurring revenue moved over a month, in minor units a month."""

    opening_mrr_minor: int = Field(description="MRR at the last moment of the month before")
    closing_mrr_minor: int = Field(description="MRR at the last moment of the month")
    new_mrr_minor: int = 0
    expansion_mrr_minor: int = 0
    contraction_mrr_minor: int = 0
    churned_mrr_minor: int = 0


class GroupMetrics(Movements):
    """Metrics of one plan or one asset kind (a customer moving between plans counts as
    churned in one and new in the other)."""

    key: str
    customers: int = Field(description="customers with MRR in this group at the month's end")


class MonthMetrics(Movements):
    month: str
    currency: str
    arr_minor: int = Field(description="closing MRR x 12")
    customers_opening: int = Field(description="live customers at the month's start")
    customers_closing: int
    new_customers: int
    churned_customers: int
    logo_churn_rate: str | None = Field(description="churned / opening customers (4 decimals)")
    gross_revenue_retention: str | None = Field(
        description="of the opening MRR, what stayed without expansion (4 decimals)"
    )
    net_revenue_retention: str | None = Field(
        description="closing MRR of the customers who had MRR at the start / opening MRR"
    )
    renewals_due: int = Field(description="terms that ended in the month")
    renewals: int = Field(description="of those, renewed")
    renewal_rate: str | None
    by_plan: list[GroupMetrics]
    by_kind: list[GroupMetrics]


class MetricsSeries(BaseModel):
    currency: str
    months: list[MonthMetrics]
