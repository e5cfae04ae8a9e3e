"""The maintenance API: plans, subscriptions, orders, shipments and partners, scoped.

Another customer's object answers 404; a technician updates only its customer's orders; a
partner key sees and updates only the orders assigned to it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from tests.conftest import Tenant
from tests.fixtures.api import ok, order_of, predict, setup_customer, stock
from tests.fixtures.maintenance import T0


def test_orders_and_subscriptions_are_scoped_to_the_customer(
    client: TestClient,
    db_url: str,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = ManualClock(T0)  # type: ignore[attr-defined]
    a, b = make_tenant("api-a"), make_tenant("api-b")
    tech_b = make_tenant("api-b", role="technician")
    stock(client, operator_headers)
    wa, wb = setup_customer(client, a), setup_customer(client, b)
    predict(db_url, wa["asset"])
    predict(db_url, wb["asset"])
    order_a = order_of(client, a.headers, wa["asset"])
    order_b = order_of(client, b.headers, wb["asset"])
    [shipment_a] = ok(client.get(f"/v1/orders/{order_a['id']}", headers=a.headers))["shipments"]

    # B sees none of A's objects, and a listing never leaks them
    for path in (
        f"/v1/orders/{order_a['id']}",
        f"/v1/subscriptions/{wa['subscription']}",
        f"/v1/shipments/{shipment_a['id']}",
    ):
        assert client.get(path, headers=b.headers).status_code == 404, path
        assert client.get(path, headers=tech_b.headers).status_code == 404, path
    listed = ok(client.get("/v1/orders", headers=b.headers))["items"]
    assert [o["id"] for o in listed] == [order_b["id"]]
    assert (
        ok(client.get("/v1/orders", params={"customer_id": a.customer.id}, headers=b.headers))[
            "items"
        ]
        == []
    )
    assert (
        client.post(f"/v1/orders/{order_a['id']}/cancel", json={}, headers=b.headers).status_code
        == 404
    )
    assert (
        client.post(f"/v1/subscriptions/{wa['subscription']}/pause", headers=b.headers).status_code
        == 404
    )
    assert (
        client.post(
            "/v1/orders",
            json={"asset_id": wa["asset"], "component": "tire", "due_at": "2026-12-10T00:00:00Z"},
            headers=b.headers,
        ).status_code
        == 404
    )

    # B's technician works B's order; it cannot touch A's
    assert (
        client.post(f"/v1/orders/{order_a['id']}/start", headers=tech_b.headers).status_code == 404
    )
    started = ok(client.post(f"/v1/orders/{order_b['id']}/start", headers=tech_b.headers))
    assert started["status"] == "in_progress"
    done = ok(client.post(f"/v1/orders/{order_b['id']}/complete", json={}, headers=tech_b.headers))
    assert done["status"] == "completed"
    # a customer key does not complete work itself, and technicians do not manage subscriptions
    assert client.post(f"/v1/orders/{order_a['id']}/start", headers=a.headers).status_code == 403
    assert (
        client.post(
            f"/v1/subscriptions/{wb['subscription']}/pause", headers=tech_b.headers
        ).status_code
        == 403
    )

    # the operator sees both; only it creates plans and depots
    assert len(ok(client.get("/v1/orders", headers=operator_headers))["items"]) == 2
    plan = {"code": "x", "name": "X", "kinds": ["tire"], "fee_per_asset_month_minor": 100}
    assert client.post("/v1/plans", json=plan, headers=a.headers).status_code == 403
    assert ok(client.post("/v1/plans", json=plan, headers=operator_headers), 201)["code"] == "x"
    assert client.get("/v1/depots/1/inventory", headers=a.headers).status_code == 403


def test_partner_key_sees_and_updates_only_its_orders(
    client: TestClient,
    db_url: str,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = ManualClock(T0)  # type: ignore[attr-defined]
    a, b = make_tenant("prt-a"), make_tenant("prt-b")
    stock(client, operator_headers)
    wa, wb = setup_customer(client, a, region="west"), setup_customer(client, b, region="east")
    partner = ok(
        client.post(
            "/v1/partners",
            json={"code": "west-tyres", "name": "West tyres", "commission_bps": 500},
            headers=operator_headers,
        ),
        201,
    )
    ok(
        client.post(
            f"/v1/partners/{partner['id']}/sites",
            json={"site_ids": [wa["site"]]},
            headers=operator_headers,
        )
    )
    key = ok(
        client.post(f"/v1/partners/{partner['id']}/api-keys", json={}, headers=operator_headers),
        201,
    )
    assert key["role"] == "partner" and key["partner_id"] == partner["id"]
    ph = {"Authorization": f"Bearer {key['key']}"}
    predict(db_url, wa["asset"])
    predict(db_url, wb["asset"])
    order_a = order_of(client, operator_headers, wa["asset"])
    order_b = order_of(client, operator_headers, wb["asset"])
    assert order_a["partner_id"] == partner["id"] and order_b["partner_id"] is None

    assert [o["id"] for o in ok(client.get("/v1/orders", headers=ph))["items"]] == [order_a["id"]]
    assert client.get(f"/v1/orders/{order_b['id']}", headers=ph).status_code == 404
    assert client.post(f"/v1/orders/{order_b['id']}/start", headers=ph).status_code == 404
    # the partner key sees nothing of the fleet registry or subscriptions
    assert ok(client.get("/v1/assets", headers=ph))["items"] == []
    for url in ("/v1/subscriptions", f"/v1/subscriptions/{wa['subscription']}"):
        refused = client.get(url, headers=ph)
        assert refused.status_code == 403 and refused.json()["code"] == "role_not_permitted"
    site = {"ref": "X", "name": "X"}
    assert client.post("/v1/sites", json=site, headers=ph).status_code == 403
    assert (
        client.post(
            "/v1/failures", json={"asset_id": wa["asset"], "component": "tire"}, headers=ph
        ).status_code
        == 403
    )
    assert client.get("/v1/partners", headers=a.headers).status_code == 403

    shipments = ok(client.get("/v1/shipments", headers=ph))["items"]
    assert [s["order_id"] for s in shipments] == [order_a["id"]]
    ok(
        client.post(
            f"/v1/shipments/{shipments[0]['id']}/ship",
            json={"carrier": "UPS"},
            headers=operator_headers,
        )
    )
    assert (
        ok(client.post(f"/v1/shipments/{shipments[0]['id']}/deliver", headers=ph))["status"]
        == "delivered"
    )
    ok(
        client.post(
            f"/v1/orders/{order_a['id']}/schedule",
            json={"scheduled_for": "2026-11-28T08:00:00Z"},
            headers=ph,
        )
    )
    ok(client.post(f"/v1/orders/{order_a['id']}/start", headers=ph))
    done = ok(client.post(f"/v1/orders/{order_a['id']}/complete", json={}, headers=ph))
    assert done["status"] == "completed" and done["parts_used"][0]["billable"] is True
    commissions = ok(client.get(f"/v1/partners/{partner['id']}/commissions", headers=ph))["items"]
    assert [(c["order_id"], c["amount_minor"]) for c in commissions] == [
        (order_a["id"], round((45000 + 0.75 * 9000) * 0.05))
    ]


def test_manual_orders_subscription_changes_and_bad_input(
    client: TestClient,
    db_url: str,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    clock = ManualClock(T0)
    client.app.state.clock = clock  # type: ignore[attr-defined]
    a = make_tenant("man-a")
    stock(client, operator_headers)
    w = setup_customer(client, a)
    body = {"asset_id": w["asset"], "component": "tire", "due_at": "2026-12-10T00:00:00Z"}
    order = ok(client.post("/v1/orders", json=body, headers=a.headers), 201)
    assert order["reason"] == "manual" and order["status"] == "raised"
    assert client.post("/v1/orders", json=body, headers=a.headers).status_code == 409
    bad = client.post("/v1/orders", json={**body, "component": "brake"}, headers=a.headers)
    assert bad.status_code == 422 and "components" in bad.json()["detail"]
    assert (
        client.post("/v1/orders", json={**body, "due_at": "soon"}, headers=a.headers).status_code
        == 422
    )
    naive = client.post(
        "/v1/orders", json={**body, "due_at": "2026-12-10T00:00:00"}, headers=a.headers
    )
    assert naive.status_code == 422 and "time zone" in naive.text, naive.text
    assert (
        ok(
            client.post(
                f"/v1/orders/{order['id']}/cancel", json={"reason": "dup"}, headers=a.headers
            )
        )["status"]
        == "cancelled"
    )

    # plan change at term end is pending until then; now is immediate
    plans = {p["code"]: p["id"] for p in ok(client.get("/v1/plans", headers=a.headers))["items"]}
    sub_path = f"/v1/subscriptions/{w['subscription']}"
    changed = ok(
        client.post(
            f"{sub_path}/plan-changes",
            json={"plan_id": plans["monitor"], "at": "term_end"},
            headers=a.headers,
        )
    )
    assert (
        changed["plan_id"] == plans["proactive"] and changed["pending_plan_id"] == plans["monitor"]
    )
    changed = ok(
        client.post(
            f"{sub_path}/plan-changes", json={"plan_id": plans["monitor"]}, headers=a.headers
        )
    )
    assert changed["plan_id"] == plans["monitor"] and changed["pending_plan_id"] is None
    assert changed["entitlements"]["includes_orders"] is False
    # an engine plan cannot cover a tire
    wrong = client.post(
        f"{sub_path}/plan-changes",
        json={"plan_id": plans["full-service-engine"]},
        headers=a.headers,
    )
    assert wrong.status_code == 422
    # only the operator overrides entitlements
    over = {"entitlement_overrides": {"order_lead_days": 30}}
    assert client.patch(sub_path, json=over, headers=a.headers).status_code == 403
    assert (
        ok(client.patch(sub_path, json=over, headers=operator_headers))["entitlements"][
            "order_lead_days"
        ]
        == 30
    )
    # lifecycle
    assert ok(client.post(f"{sub_path}/pause", headers=a.headers))["status"] == "paused"
    # only the operator marks a subscription past due (the permission table)
    assert client.post(f"{sub_path}/past-due", headers=a.headers).status_code == 403
    assert ok(client.post(f"{sub_path}/resume", headers=a.headers))["status"] == "active"
    assert client.post(f"{sub_path}/past-due", headers=a.headers).status_code == 403
    assert ok(client.post(f"{sub_path}/past-due", headers=operator_headers))["status"] == "past_due"
    cancelled = ok(client.post(f"{sub_path}/cancel", json={"at_term_end": True}, headers=a.headers))
    assert cancelled["status"] == "past_due" and cancelled["cancel_at_term_end"] is True
    assert ok(client.post(f"{sub_path}/cancel", headers=a.headers))["status"] == "cancelled"
    assert client.post(f"{sub_path}/activate", headers=operator_headers).status_code == 409
    # unknown fields and bad scopes are 422, not 500
    assert (
        client.post(
            "/v1/subscriptions", json={"plan_id": 1, "scope": "site"}, headers=a.headers
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/v1/subscriptions", json={"plan_id": 1, "colour": "red"}, headers=a.headers
        ).status_code
        == 422
    )
    assert (
        client.post("/v1/subscriptions", json={"plan_id": 999999}, headers=a.headers).status_code
        == 404
    )


def test_lifecycle_trial_ends_and_terms_renew(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    from maintenance.subscriptions import contracts

    clock = ManualClock(T0)
    client.app.state.clock = clock  # type: ignore[attr-defined]
    a = make_tenant("life-a")
    site = ok(client.post("/v1/sites", json={"ref": "S", "name": "S"}, headers=a.headers), 201)
    plans = {p["code"]: p["id"] for p in ok(client.get("/v1/plans", headers=a.headers))["items"]}
    sub = ok(
        client.post(
            "/v1/subscriptions",
            json={
                "plan_id": plans["monitor"],
                "scope": "site",
                "site_id": site["id"],
                "trial_days": 14,
                "term_months": 1,
            },
            headers=a.headers,
        ),
        201,
    )
    assert sub["status"] == "trialing"
    with connect(db_url) as conn:
        clock.advance(timedelta(days=15))
        assert contracts.advance_lifecycles(conn, clock) == 1
        clock.advance(timedelta(days=20))
        assert contracts.advance_lifecycles(conn, clock) == 1
        conn.commit()
        types = [
            r[0]
            for r in conn.execute(
                "SELECT type FROM events WHERE customer_id = %s ORDER BY id", (a.customer.id,)
            )
        ]
    assert types == ["subscription.created", "subscription.activated", "subscription.renewed"]
    renewed = ok(client.get(f"/v1/subscriptions/{sub['id']}", headers=a.headers))
    assert renewed["status"] == "active"
    assert renewed["current_term_ends_at"].startswith("2027-01-26")


def _maintenance_routes() -> list[Any]:
    from fastapi.routing import APIRoute

    from api.routes import logistics, maintenance, subscriptions

    routes = [
        r
        for router in (subscriptions.router, maintenance.router, logistics.router)
        for r in router.routes
        if isinstance(r, APIRoute)
    ]
    assert len(routes) > 30
    return routes


def _fill(path: str, value: int) -> str:
    import re

    return re.sub(r"\{[^}]+\}", str(value), path)


GARBAGE: list[Any] = [
    None,
    [],
    {"unexpected": "field"},
    {"plan_id": "x", "asset_id": [1], "due_at": 5, "scheduled_for": "never", "on_hand": -1},
    {"customer_id": 2**70, "asset_ids": [2**70], "site_ids": "abc"},
]


def test_every_maintenance_route_needs_a_key_and_never_answers_500(
    client: TestClient,
    db_url: str,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = ManualClock(T0)  # type: ignore[attr-defined]
    a = make_tenant("walk-a")
    stock(client, operator_headers)
    w = setup_customer(client, a)
    predict(db_url, w["asset"])
    for route in _maintenance_routes():
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
            url = _fill(route.path, 1)
            r = client.request(method, url, json={})
            assert r.status_code == 401, (method, url, r.text)
            if method not in ("POST", "PUT", "PATCH"):
                continue
            for headers in (a.headers, operator_headers):
                for body in GARBAGE:
                    r = client.request(method, url, json=body, headers=headers)
                    assert r.status_code < 500, (method, url, body, r.text)
                    if r.status_code >= 400:
                        assert r.json()["error"] and r.json()["detail"], r.text
