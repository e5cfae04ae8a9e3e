"""The billing API: a customer sees only its own invoices, usage and advice; CSV export;
operator-only closing and issuing; partner statements for the operator and the partner."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from psycopg import Connection

from api.routes import billing as billing_routes
from fleetcare.clock import ManualClock
from maintenance.partners import service as partners
from maintenance.partners.schemas import PartnerCreate, PartnerKeyCreate
from tests.conftest import Tenant
from tests.fixtures.billing import OPERATOR, add_counter, at, subscribed_customer

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_closing_a_month_that_has_not_ended_needs_open_month_as_on_the_cli(
    client: TestClient, conn: Connection[Any], operator_headers: dict[str, str]
) -> None:
    client.app.state.clock = ManualClock(at(3, month=12))  # type: ignore[attr-defined]
    subscribed_customer(conn, "bill-open", plan="proactive", starts_at=at(1))
    refused = client.post("/v1/billing/close", json={"period": "2026-12"}, headers=operator_headers)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["code"] == "period_not_ended"
    assert "2026-12 has not ended" in problem["detail"] and "open_month" in problem["detail"]
    assert _ok(client.get("/v1/invoices?period=2026-12", headers=operator_headers))["items"] == []
    drafts = _ok(
        client.post(
            "/v1/billing/close",
            json={"period": "2026-12", "open_month": True},
            headers=operator_headers,
        )
    )
    assert drafts["invoices"] and {i["status"] for i in drafts["invoices"]} == {"draft"}
    # an ended month needs no flag
    assert _ok(
        client.post("/v1/billing/close", json={"period": "2026-11"}, headers=operator_headers)
    )["invoices"]


def test_customers_see_only_their_own_billing(
    client: TestClient,
    conn: Connection[Any],
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = ManualClock(at(3, month=12))  # type: ignore[attr-defined]
    a, b = make_tenant("bill-a"), make_tenant("bill-b")
    tech_a = make_tenant("bill-a", role="technician")
    ca = subscribed_customer(conn, "bill-a", plan="full-service-tire", starts_at=at(1))
    cb = subscribed_customer(conn, "bill-b", plan="proactive", starts_at=at(1))
    add_counter(conn, ca.asset_ids[0], [(at(1), 0.0), (at(15), 2_500.0)])

    assert (
        client.post("/v1/billing/close", json={"period": "2026-11"}, headers=a.headers).status_code
        == 403
    )
    assert (
        client.post(
            "/v1/billing/close", json={"period": "2026-13"}, headers=operator_headers
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/v1/billing/close", json={"period": "2027-01"}, headers=operator_headers
        ).status_code
        == 422
    )
    closed = _ok(
        client.post("/v1/billing/close", json={"period": "2026-11"}, headers=operator_headers)
    )
    invoices = {i["customer_id"]: i for i in closed["invoices"]}
    ia, ib = invoices[ca.customer_id], invoices[cb.customer_id]
    assert ia["total_minor"] == 1000 and ib["total_minor"] == 2900

    # A's listing holds only A's invoice, whatever it asks for
    assert [i["id"] for i in _ok(client.get("/v1/invoices", headers=a.headers))["items"]] == [
        ia["id"]
    ]
    assert (
        _ok(client.get("/v1/invoices", params={"customer_id": cb.customer_id}, headers=a.headers))[
            "items"
        ]
        == []
    )
    assert (
        len(
            _ok(client.get("/v1/invoices", params={"period": "2026-11"}, headers=operator_headers))[
                "items"
            ]
        )
        == 2
    )
    # another customer's invoice, lines, CSV, asset usage and plan advice: 404
    for path in (
        f"/v1/invoices/{ib['id']}",
        f"/v1/invoices/{ib['id']}/lines",
        f"/v1/invoices/{ib['id']}/lines.csv",
        f"/v1/assets/{cb.asset_ids[0]}/usage?period=2026-11",
        f"/v1/customers/{cb.customer_id}/plan-advice",
    ):
        assert client.get(path, headers=a.headers).status_code == 404, path
        # ...while its owner and the operator see it
        assert client.get(path, headers=b.headers).status_code == 200, path
        assert client.get(path, headers=operator_headers).status_code == 200, path
    # technicians and partners do not see invoices at all
    assert client.get("/v1/invoices", headers=tech_a.headers).status_code == 403

    detail = _ok(client.get(f"/v1/invoices/{ia['id']}", headers=a.headers))
    assert detail["total_minor"] == sum(line["amount_minor"] for line in detail["lines"])
    assert _ok(client.get(f"/v1/invoices/{ia['id']}/lines", headers=a.headers)) == detail["lines"]

    exported = client.get(f"/v1/invoices/{ia['id']}/lines.csv", headers=a.headers)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == len(detail["lines"]) == 1
    assert rows[0]["kind"] == "usage" and rows[0]["quantity"] == "2500.0000"
    assert sum(int(r["amount_minor"]) for r in rows) == detail["total_minor"]
    assert {r["currency"] for r in rows} == {"EUR"}

    # the period export: A gets its own lines, the operator everybody's
    mine = list(
        csv.DictReader(
            io.StringIO(
                client.get("/v1/invoices.csv", params={"period": "2026-11"}, headers=a.headers).text
            )
        )
    )
    assert {r["customer_id"] for r in mine} == {str(ca.customer_id)}
    everything = client.get(
        "/v1/invoices.csv", params={"period": "2026-11"}, headers=operator_headers
    )
    rows_all = list(csv.DictReader(io.StringIO(everything.text)))
    assert {r["customer_id"] for r in rows_all} == {str(ca.customer_id), str(cb.customer_id)}
    assert sum(int(r["amount_minor"]) for r in rows_all) == 1000 + 2900
    assert (
        client.get("/v1/invoices.csv", params={"period": "2026-1"}, headers=a.headers).status_code
        == 422
    )

    usage = _ok(
        client.get(
            f"/v1/assets/{ca.asset_ids[0]}/usage", params={"period": "2026-11"}, headers=a.headers
        )
    )
    assert usage["quantity"] == "2500.000" and usage["unit"] == "km" and len(usage["records"]) == 1
    assert (
        client.get(
            f"/v1/assets/{ca.asset_ids[0]}/usage", params={"period": "11-2026"}, headers=a.headers
        ).status_code
        == 422
    )
    records = _ok(client.get("/v1/usage", headers=a.headers))["items"]
    assert {r["asset_id"] for r in records} == {ca.asset_ids[0]}

    advice = _ok(
        client.get(
            f"/v1/customers/{ca.customer_id}/plan-advice", params={"months": 1}, headers=a.headers
        )
    )
    assert (
        advice["periods"] == ["2026-11"]
        and advice["subscriptions"][0]["current_cost_minor"] == 1000
    )

    # only the operator issues; issuing emits invoice.issued to the customer
    assert client.post(f"/v1/invoices/{ia['id']}/issue", headers=a.headers).status_code == 403
    issued = _ok(client.post(f"/v1/invoices/{ia['id']}/issue", headers=operator_headers))
    assert issued["status"] == "issued" and issued["total_minor"] == 1000
    assert (
        client.post(f"/v1/invoices/{ia['id']}/issue", headers=operator_headers).status_code == 409
    )
    row = conn.execute(
        "SELECT customer_id FROM events WHERE type = 'invoice.issued' AND subject = %s",
        (f"invoice:{ia['id']}",),
    ).fetchone()
    assert row == (ca.customer_id,)
    voided = _ok(
        client.post(
            f"/v1/invoices/{ib['id']}/void", json={"reason": "duplicate"}, headers=operator_headers
        )
    )
    assert voided["status"] == "void"


def test_partner_statements_are_the_operators_and_the_partners_own(
    client: TestClient,
    conn: Connection[Any],
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    mine = partners.create_partner(conn, OPERATOR, PartnerCreate(code="p-mine", name="Mine"))
    theirs = partners.create_partner(conn, OPERATOR, PartnerCreate(code="p-theirs", name="Theirs"))
    key = partners.issue_key(conn, OPERATOR, mine.id, PartnerKeyCreate()).key
    conn.commit()
    partner_headers = {"Authorization": f"Bearer {key}"}
    customer = make_tenant("stmt-cust")
    path = "/v1/partners/{}/statement?period=2026-11"
    statement = _ok(client.get(path.format(mine.id), headers=partner_headers))
    assert statement["partner_code"] == "p-mine" and statement["lines"] == []
    assert (
        _ok(client.get(path.format(theirs.id), headers=operator_headers))["partner_id"] == theirs.id
    )
    assert client.get(path.format(theirs.id), headers=partner_headers).status_code == 404
    # a customer's role reads no partner's anything
    assert client.get(path.format(mine.id), headers=customer.headers).status_code == 403
    assert (
        client.get(
            f"/v1/partners/{mine.id}/statement?period=bad", headers=partner_headers
        ).status_code
        == 422
    )


def _billing_routes() -> list[APIRoute]:
    # FastAPI 0.165 includes routers lazily (app.routes holds _IncludedRouter objects), so
    # walk the billing router itself.
    return [r for r in billing_routes.router.routes if isinstance(r, APIRoute)]


GARBAGE: list[Any] = [
    None,
    [],
    "nope",
    {"unexpected": "field"},
    {"period": 202611, "customer_id": "x", "issue": "maybe", "reason": ""},
    {"period": "2026-11", "customer_id": 2**70},
]


def test_every_billing_id_route_is_scoped_and_never_answers_500(
    client: TestClient,
    conn: Connection[Any],
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = ManualClock(at(3, month=12))  # type: ignore[attr-defined]
    a, b = make_tenant("walk-a"), make_tenant("walk-b")
    ca = subscribed_customer(conn, "walk-a", plan="proactive", starts_at=at(1))
    mine = partners.create_partner(conn, OPERATOR, PartnerCreate(code="walk-p", name="P"))
    conn.commit()
    closed = _ok(
        client.post("/v1/billing/close", json={"period": "2026-11"}, headers=operator_headers)
    )
    [invoice] = closed["invoices"]
    # A's objects, by path parameter; a new parameter must be added here
    owned = {
        "invoice_id": invoice["id"],
        "asset_id": ca.asset_ids[0],
        "customer_id": ca.customer_id,
        "partner_id": mine.id,
    }
    routes = _billing_routes()
    assert len(routes) >= 12
    for route in routes:
        params = re.findall(r"\{([^}]+)\}", route.path)
        assert set(params) <= set(owned), f"add {params} to owned"
        url = route.path
        for name in params:
            url = url.replace("{" + name + "}", str(owned[name]))
        query = {"period": "2026-11"}
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
            assert client.request(method, url, params=query, json={}).status_code == 401
            if params:
                r = client.request(
                    method, url, params=query, json={"reason": "x"}, headers=b.headers
                )
                # B never reaches A's object: not found, or not allowed for its role at all
                assert r.status_code in (403, 404), (method, url, r.text)
                if method == "GET" and r.status_code != 404:
                    assert r.json()["code"] == "role_not_permitted", (method, url, r.text)
            if method != "POST":
                continue
            for headers in (a.headers, operator_headers):
                for body in GARBAGE:
                    r = client.request(method, url, json=body, headers=headers)
                    assert r.status_code < 500, (method, url, body, r.text)
                    if r.status_code >= 400:
                        assert r.json()["error"] and r.json()["detail"], r.text
    # A's invoice still belongs to A with the same amount (the operator's garbage requests may
    # have moved its status: issue/pay ignore bodies; B's requests never reached it)
    after = _ok(client.get(f"/v1/invoices/{invoice['id']}", headers=a.headers))
    assert (after["customer_id"], after["total_minor"]) == (ca.customer_id, 2900)
