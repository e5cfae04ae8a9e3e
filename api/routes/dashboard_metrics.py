"""The operator's SaaS metrics page: MRR and its movements, retention and churn by month,
drawn with uPlot from the same computation as ``GET /v1/billing/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from api.dashboard.rendering import (
    PageViewer,
    not_found_page,
    render,
    request_clock,
    script_json,
)
from api.deps import ReadConn
from fleetcare.errors import Forbidden, Invalid, NotFound
from maintenance.billing.pricing import period_of
from maintenance.metrics.service import MAX_MONTHS, metrics_series

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


@router.get("/metrics", response_class=HTMLResponse)
def metrics_page(
    request: Request,
    conn: ReadConn,
    viewer: PageViewer,
    month: Annotated[str | None, Query(max_length=7, description="last month, YYYY-MM")] = None,
    months: Annotated[int, Query(ge=1, le=MAX_MONTHS)] = 12,
    currency: Annotated[str, Query(max_length=3)] = "EUR",
) -> HTMLResponse:
    """MRR, ARR, movements, retention, logo churn and renewals (operator only)."""
    clock = request_clock(request)
    last = month or period_of(clock.now()).name
    try:
        series = metrics_series(conn, viewer, last, clock, months=months, currency=currency)
    except Forbidden:
        return not_found_page(request, viewer, NotFound("page not found"))
    except Invalid as exc:
        return render(
            request, "metrics.html", viewer, status_code=422, error=exc.detail, series=None,
            month=last, months=months, currency=currency, metrics_json="null",
        )  # fmt: skip
    return render(
        request,
        "metrics.html",
        viewer,
        error=None,
        series=series,
        month=last,
        months=months,
        currency=currency,
        metrics_json=script_json(series.model_dump_json()),
    )
