"""The value report: failures prevented and not, downtime and money saved with the cost
assumptions of `fleetcare evaluate`, service credits, plan advice; the monthly event once per
customer and month, the PDF read back, the API and the dashboard confined to the customer."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from psycopg import Connection
from pypdf import PdfReader

from evaluation.costs import ECONOMICS, PREVENTIVE_QUANTILE
from fleet import service as fleet
from fleet.schemas import AssetCreate, SiteCreate
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from ingest.history import import_history
from ingest.profiles import compile_profile, parse_profile
from kinds import service as kinds
from kinds.loader import parse_definition
from kinds.service import get_kind
from maintenance.billing import service as billing
from maintenance.orders import service as orders
from maintenance.orders.schemas import CompleteRequest, FailureCreate, OrderCreate, PartUse
from maintenance.value import service as value
from tests.conftest import Tenant
from tests.fixtures.billing import OPERATOR, at, subscribed_customer
from tests.test_dashboard import sign_in
from tests.test_kinds import PUMP_FILE

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")

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


def test_value_report_counts_a_detected_failure(
    conn: Connection[Any], db_url: str, tmp_path: Path
) -> None:
    """A failure nobody reported: the tire's telemetry, imported as a lifetime that ended in
    failure on 18 November (the detection path of recorded data), is a failure not prevented,
    earns the plan's credit with no failure report, and the invoice applies it."""
    c = subscribed_customer(conn, "value-d", plan="proactive", starts_at=at(1, month=1), assets=2)
    rows = [f"VALUE-D-2 {day} {800 - 20 * day} {1000 + 300 * day}" for day in range(1, 18)]
    history = tmp_path / "value-d-2.txt"
    history.write_text("\n".join(rows) + "\n")
    profile = compile_profile(
        parse_profile(
            {
                "name": "tire-days",
                "format": "text",
                "columns": ["asset", "day", "pressure", "odometer"],
                "asset": "asset",
                "time": {"field": "day", "format": "cycle", "origin": at(1).isoformat(),
                         "step_s": 86400},
                "metrics": {"pressure_kpa": {"field": "pressure"},
                            "odometer_km": {"field": "odometer"}},
            },
            "test",
        )
    )  # fmt: skip
    with connect(db_url, autocommit=True) as own:
        imported = import_history(
            own, customer_id=c.customer_id, kind="tire", profile=profile, paths=[history],
            mode="lifetimes", end_reason="failure",
        )  # fmt: skip
    assert imported.lives_recorded == 1
    assert conn.execute(
        "SELECT count(*) FROM failure_reports WHERE customer_id = %s", (c.customer_id,)
    ).fetchone() == (0,)
    [invoice] = [
        i
        for i in billing.close_period(conn, "2026-11", AFTER_NOV, issue=True).invoices
        if i.customer_id == c.customer_id
    ]
    conn.commit()
    report = value.value_report(conn, OPERATOR, c.customer_id, "2026-11", AFTER_NOV)
    assert (report.failures_prevented, report.failures_not_prevented) == (0, 1)
    [missed] = report.not_prevented
    assert missed.asset_ref == "VALUE-D-2" and missed.failure_report_id is None
    ended = conn.execute(
        "SELECT ended_at FROM asset_lives WHERE asset_id = %s AND end_reason = 'failure'",
        (c.asset_ids[1],),
    ).fetchone()
    assert ended is not None and datetime.fromisoformat(missed.failed_at) == ended[0]
    assert at(17) <= ended[0] <= at(18)
    assert missed.downtime_eur == ECONOMICS["tire"].failure_downtime_h * (
        ECONOMICS["tire"].downtime_eur_per_hour
    )
    # the plan's promise holds for detected failures too: 25 % of the tire's 2900, applied
    assert report.service_credits.count == 1 and report.service_credits.applied_minor == 725
    credit = conn.execute(
        "SELECT failure_report_id, invoice_id, reason FROM service_credits WHERE asset_id = %s",
        (c.asset_ids[1],),
    ).fetchone()
    assert credit is not None and credit[:2] == (None, invoice.id)
    assert "detected failure" in credit[2]


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
    # without a month the page shows this month so far, and says so (a fresh customer, or
    # the demo, has nothing in last month)
    client.app.state.clock = ManualClock(at(25))  # type: ignore[attr-defined]  # late November
    default = client.get("/dashboard/value-report")
    assert default.status_code == 200
    assert "2026-11, month to date" in default.text and 'id="value-prevented">1<' in default.text
    assert 'id="value-previous" href="/dashboard/value-report?period=2026-10"' in default.text
    client.app.state.clock = AFTER_NOV  # type: ignore[attr-defined]
    # the operator picks the customer by name
    sign_in(client, operator_headers["Authorization"].removeprefix("Bearer "))
    choose = client.get("/dashboard/value-report", params={"period": "2026-11"})
    assert choose.status_code == 200 and "choose a customer" in choose.text
    assert f'<option value="{customer_id}">' in choose.text
    chosen = client.get(
        "/dashboard/value-report", params={"period": "2026-11", "customer_id": customer_id}
    )
    assert "The whole month 2026-11" in chosen.text and 'id="value-prevented">1<' in chosen.text
    assert f'<option value="{customer_id}" selected>' in chosen.text
    sign_in(client, b.key)
    other = client.get("/dashboard/value-report", params={"period": "2026-11"})
    assert other.status_code == 200 and "VALUE-R-1" not in other.text
    # a customer with nothing billed in the advice's months is told so, not shown an empty card
    assert 'id="value-advice-none"' in other.text


def test_value_report_counts_a_kinds_own_costs_from_its_definition(
    conn: Connection[Any],
) -> None:
    """A customer's own kind: without an ``economics:`` block its failure is listed with no
    costs and the report says so; once a new version of the definition states its costs
    (applied to the database, as a customer would), the report counts with them."""
    doc = yaml.safe_load(PUMP_FILE.read_text())
    kinds.apply_definition(conn, parse_definition(doc, "pump"))
    conn.commit()
    # no plan covers a kind defined today: a customer with a pump and no subscription
    customer = fleet.ensure_customer(conn, "value-p", "Value-P")
    site = fleet.create_site(
        conn, OPERATOR, SiteCreate(customer_id=customer.id, ref="PLANT", name="Plant")
    )
    asset = fleet.create_asset(
        conn,
        OPERATOR,
        AssetCreate(
            customer_id=customer.id, site_id=site.id, kind="pump", ref="VALUE-P-1",
            installed_at=at(1, month=1),
        ),
    )  # fmt: skip
    orders.report_failure(
        conn,
        OPERATOR,
        FailureCreate(asset_id=asset.id, component="bearing", failed_at=at(18)),
        ManualClock(at(18, 1)),
    )
    conn.commit()
    report = value.value_report(conn, OPERATOR, customer.id, "2026-11", AFTER_NOV)
    [missed] = report.not_prevented
    assert missed.kind == "pump" and missed.downtime_h is None and missed.downtime_eur is None
    assert report.assumptions == []
    assert "Costs of a kind without stated assumptions are not counted: pump." in report.notes
    doc["economics"] = {
        "per_group": 1, "step_h": 1, "order_lead_days": 3, "shipping_days": 1,
        "labour_eur_per_hour": 95, "failure_downtime_h": 20, "downtime_eur_per_hour": 400,
        "max_rul": 15000, "risk_threshold": 0.5, "history_max_days": 900,
        "note": "a seized pump stops the line 20 h",
    }  # fmt: skip
    assert kinds.apply_definition(conn, parse_definition(doc, "pump")).changes == [
        "changed economics"
    ]
    conn.commit()
    report = value.value_report(conn, OPERATOR, customer.id, "2026-11", AFTER_NOV)
    [missed] = report.not_prevented
    assert (missed.downtime_h, missed.downtime_eur) == (20.0, 20.0 * 400)
    [stated] = report.assumptions
    assert (stated.kind, stated.labour_eur_per_hour, stated.note) == (
        "pump",
        95.0,
        "a seized pump stops the line 20 h",
    )
    assert not any("not counted" in n for n in report.notes)
