"""The value report: what the service prevented and saved a customer in a month."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import AppClock, Caller, ReadConn
from api.routes.documents import PDF, pdf_response
from fleetcare.inputs import Id
from maintenance.billing.schemas import PERIOD_REGEX
from maintenance.documents import files
from maintenance.value import service as value
from maintenance.value.schemas import ValueReport

router = APIRouter(prefix="/v1")
Month = Annotated[str, Query(pattern=PERIOD_REGEX, description="the month, YYYY-MM (UTC)")]


@router.get("/customers/{customer_id}/value-report", tags=["billing"])
def value_report(
    customer_id: Id, period: Month, conn: ReadConn, caller: Caller, clock: AppClock
) -> ValueReport:
    """Failures prevented and not, downtime and money saved (with the cost assumptions of
    ``fleetcare evaluate``), parts on time, service credits, plan advice."""
    return value.value_report(conn, caller, customer_id, period, clock)


@router.get(
    "/customers/{customer_id}/value-report/pdf",
    tags=["billing"],
    response_class=Response,
    responses=PDF,
)
def value_report_pdf(
    customer_id: Id, period: Month, conn: ReadConn, caller: Caller, clock: AppClock
) -> Response:
    """The value report as a PDF document."""
    return pdf_response(files.value_report_pdf(conn, caller, customer_id, period, clock))
