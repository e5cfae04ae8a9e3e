"""The value report: failures prevented and not, downtime and money saved with the cost
assumptions of `fleetcare evaluate`, service credits, plan advice; the monthly event once per
customer and month, the PDF read back, the API and the dashboard confined to the customer."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from psycopg import Connection
from pypdf import PdfReader

from evaluation.costs import ECONOMICS, PREVENTIVE_QUANTILE
from fleetcare.clock import ManualClock
from kinds.service import get_kind
from maintenance.billing import service as billing
from maintenance.orders import service as orders
from maintenance.orders.schemas import CompleteRequest, FailureCreate, OrderCreate, PartUse
from maintenance.value import service as value
from tests.conftest import Tenant
from tests.fixtures.billing import OPERATOR, at, subscribed_customer
from tests.test_dashboard import sign_in

TIRE = "TIRE-315-80R22.5"
AFTER_NOV = ManualClock(at(3, month=12))
HISTORY_DAYS = [100, 120, 140, 160, 180]
HISTORY_END = at(1, month=5)


def _november(conn: Connection[Any], slug: str) -> tuple[int, int, float]:
    """A customer with two tires: five recorded lives of tire 1 before November, a predicted
    order on tire 1 completed before its due date, and tire 2 failing with nothing predicted.
    Returns the customer id, the prevented order's id and the replaced tire's age (days)."""
    c = subscribed_customer(conn, slug, plan="proactive", starts_at=at(1, month=1), assets=2)
    end = HISTORY_END
    for days in reversed(HISTORY_DAYS):  # contiguous lives ending on 1 October
        conn.execute(
            "INSERT INTO asset_lives (asset_id, component, started_at, ended_at, end_reason)"
            " VALUES (%s, 'tire', %s, %s, 'replacement')",
            (c.asset_ids[0], end - timedelta(days=days), end),
        )
        end -= timedelta(days=days)
    conn.commit()
    order = orders.create_manual_order(
        conn,
        OPERATOR,
        OrderCreate(asset_id=c.asset_ids[0], component="tire", due_at=at(20), ship_parts=False),
        ManualClock(at(5)),
    )
    # as the policy raises it from a prediction (the asset was wearing out)
    conn.execute("UPDATE maintenance_orders SET reason = 'predicted' WHERE id = %s", (order.id,))
    orders.complete_order(
        conn,
        OPERATOR,
        order.id,
        CompleteRequest(parts_used=[PartUse(sku=TIRE, quantity=1)]),
        ManualClock(at(12)),
    )
    orders.report_failure(
        conn,
        OPERATOR,
        FailureCreate(asset_id=c.asset_ids[1], component="tire", failed_at=at(18)),
        ManualClock(at(18, 1)),
    )
    conn.commit()
    return c.customer_id, order.id, (at(12) - HISTORY_END).total_seconds() / 86400


def test_value_report_of_a_month(conn: Connection[Any]) -> None:
    customer_id, order_id, age = _november(conn, "value-a")
    billing.close_period(conn, "2026-11", AFTER_NOV, issue=True)
    conn.commit()
    report = value.value_report(conn, OPERATOR, customer_id, "2026-11", AFTER_NOV)
    tire = ECONOMICS["tire"]
    assert (report.failures_prevented, report.failures_not_prevented) == (1, 1)
    [prevented] = report.prevented
    assert prevented.order_id == order_id and prevented.life_days == round(age, 2)
    assert report.downtime_avoided_h == tire.failure_downtime_h
    failure_eur = tire.failure_downtime_h * tire.downtime_eur_per_hour
    assert report.saved_vs_run_to_failure_eur == failure_eur
    # preventive replaces at the age by which 5 % of the recorded lives had failed: the five
    # of history, the replaced tire's and the failed tire's (installed a year before January)
    failed_age = (at(18) - (at(1, month=1) - timedelta(days=365))).total_seconds() / 86400
    interval = float(np.quantile([*HISTORY_DAYS, age, failed_age], PREVENTIVE_QUANTILE))
    assert age > interval
    part = next(c for c in get_kind(conn, "tire").components if c.name == "tire").parts[0]
    replacement = part.price_minor / 100 + part.labour_hours * tire.labour_eur_per_hour
    assert report.saved_vs_preventive_eur == round((age / interval - 1) * replacement, 2)
    assert report.assumptions[0].preventive_interval_days == round(interval, 2)
    assert report.not_prevented[0].downtime_eur == failure_eur
    # the failure earned the plan's credits; the November invoice applied them
    assert report.service_credits.count == 2 and report.service_credits.pending == 1
    assert report.service_credits.applied_minor == 725  # 25 % of 2900; the repair is pending
    assert report.advice is not None and report.advice.customer_id == customer_id
    # the monthly event: once per customer and month, however often the worker runs
    assert value.send_monthly_reports(conn, "2026-11", at(4, month=12)) == 1
    assert value.send_monthly_reports(conn, "2026-11", at(4, month=12)) == 0
    conn.commit()
    row = conn.execute(
        "SELECT customer_id, payload->'report'->>'failures_prevented' FROM events"
        " WHERE type = 'value_report.ready'"
    ).fetchall()
    assert row == [(customer_id, "1")]


def test_value_report_routes_pdf_and_dashboard(
    client: TestClient,
    conn: Connection[Any],
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = AFTER_NOV  # type: ignore[attr-defined]
    a, b = make_tenant("value-r"), make_tenant("value-s")
    customer_id, _, _ = _november(conn, "value-r")
    url = f"/v1/customers/{customer_id}/value-report"
    got = client.get(url, params={"period": "2026-11"}, headers=a.headers)
    assert got.status_code == 200, got.text
    assert got.json()["failures_prevented"] == 1
    assert client.get(url, params={"period": "2026-11"}, headers=b.headers).status_code == 404
    assert client.get(url, params={"period": "2026-13"}, headers=a.headers).status_code == 422
    assert client.get(url, params={"period": "2027-05"}, headers=a.headers).status_code == 422
    pdf = client.get(f"{url}/pdf", params={"period": "2026-11"}, headers=operator_headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in ("Value report", "Failures prevented", "2026-11", "VALUE-R-1", "Plan advice"):
        assert expected in text, expected
    sign_in(client, a.key)
    page = client.get("/dashboard/value-report", params={"period": "2026-11"})
    assert page.status_code == 200 and 'id="value-prevented">1<' in page.text
    assert (
        client.get("/dashboard/value-report/pdf", params={"period": "2026-11"}).status_code == 200
    )
    sign_in(client, b.key)
    other = client.get("/dashboard/value-report", params={"period": "2026-11"})
    assert other.status_code == 200 and "VALUE-R-1" not in other.text
