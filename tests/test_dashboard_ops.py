"""The dashboard's operations pages over HTTP: orders board and its actions, shipments, webhook
deliveries with replay, subscriptions and invoices, an asset's order history; all scoped."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.routes import dashboard as dashboard_routes
from fleet import service as fleet
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from maintenance.billing import service as billing
from maintenance.events.service import emit
from maintenance.webhooks import service as webhooks
from maintenance.webhooks.schemas import EndpointCreate
from tests.conftest import Tenant
from tests.fixtures.api import TIRE, ok, order_of, predict, setup_customer, stock
from tests.fixtures.maintenance import T0
from tests.test_dashboard import sign_in


@dataclass
class World:
    """Two customers, each with an asset, a subscription and a predicted order with a shipment."""

    a: Tenant
    b: Tenant
    tech_a: Tenant
    asset_a: int
    asset_b: int
    order_a: dict[str, Any]
    order_b: dict[str, Any]


@pytest.fixture
def world(
    client: TestClient,
    db_url: str,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> World:
    client.app.state.clock = ManualClock(T0)  # type: ignore[attr-defined]
    a, b = make_tenant("ops-alpha"), make_tenant("ops-beta")
    tech_a = make_tenant("ops-alpha", role="technician")
    stock(client, operator_headers)
    wa, wb = setup_customer(client, a), setup_customer(client, b)
    predict(db_url, wa["asset"])
    predict(db_url, wb["asset"])
    return World(
        a=a,
        b=b,
        tech_a=tech_a,
        asset_a=wa["asset"],
        asset_b=wb["asset"],
        order_a=order_of(client, a.headers, wa["asset"]),
        order_b=order_of(client, b.headers, wb["asset"]),
    )


def token_of(html: str) -> str:
    """The session's anti-forgery token from a rendered form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no form with a csrf token on the page"
    return found.group(1)


def status_in_board(html: str, order_id: int) -> str | None:
    """The status the board shows for an order (None: not on the board)."""
    found = re.search(
        rf'<tr id="order-{order_id}" data-order="{order_id}" data-status="(\w+)"', html
    )
    return found.group(1) if found else None


HTMX = {"HX-Request": "true"}


def test_orders_board_shows_own_orders_by_status_with_sla(client: TestClient, world: World) -> None:
    sign_in(client, world.a.key)
    page = client.get("/dashboard/orders")
    assert page.status_code == 200
    assert status_in_board(page.text, world.order_a["id"]) == "raised"
    assert status_in_board(page.text, world.order_b["id"]) is None  # beta's order is not shown
    assert 'data-live-on="order."' in page.text
    if world.order_a["sla_deadline"]:
        assert 'class="countdown' in page.text
    assert 'href="/dashboard/orders"' in page.text  # in the navigation
    # the row names the asset by its ref, as the fleet page does, not by its id
    ref = client.get(f"/v1/assets/{world.asset_a}", headers=world.a.headers).json()["ref"]
    row = page.text[page.text.index(f'data-order="{world.order_a["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert f'<a href="/dashboard/assets/{world.asset_a}">{ref}</a>' in row
    assert f">asset {world.asset_a}<" not in row
    fragment = client.get("/dashboard/orders", headers=HTMX)
    assert fragment.text.lstrip().startswith("{#") is False
    assert '<div id="orders-board"' in fragment.text and "<html" not in fragment.text


def test_board_actions_run_the_order_services(client: TestClient, world: World) -> None:
    order_id = world.order_a["id"]
    # the customer books the work ...
    sign_in(client, world.a.key)
    token = token_of(client.get("/dashboard/orders").text)
    booked = client.post(
        f"/dashboard/orders/{order_id}/schedule",
        data={"csrf_token": token, "scheduled_for": "2026-11-28T09:30"},
        headers=HTMX,
    )
    assert booked.status_code == 200
    assert status_in_board(booked.text, order_id) == "scheduled"
    assert f"order {order_id} is scheduled" in booked.text
    detail = ok(client.get(f"/v1/orders/{order_id}", headers=world.a.headers))
    assert detail["scheduled_for"].startswith("2026-11-28T09:30")
    # ... but does not start the work itself: the board says why, nothing changes
    refused = client.post(
        f"/dashboard/orders/{order_id}/start", data={"csrf_token": token}, headers=HTMX
    )
    assert refused.status_code == 200 and "technician" in refused.text
    assert status_in_board(refused.text, order_id) == "scheduled"
    plain = client.post(f"/dashboard/orders/{order_id}/start", data={"csrf_token": token})
    assert plain.status_code == 403
    bad_date = client.post(
        f"/dashboard/orders/{order_id}/schedule",
        data={"csrf_token": token, "scheduled_for": "soon"},
    )
    assert bad_date.status_code == 422 and "not a date and time" in bad_date.text

    # the technician starts and completes it; completing records the shipped part
    sign_in(client, world.tech_a.key)
    token = token_of(client.get("/dashboard/orders").text)
    started = client.post(
        f"/dashboard/orders/{order_id}/start", data={"csrf_token": token}, headers=HTMX
    )
    assert status_in_board(started.text, order_id) == "in_progress"
    done = client.post(
        f"/dashboard/orders/{order_id}/complete", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"].endswith(f"#order-{order_id}")
    assert ok(client.get(f"/v1/orders/{order_id}", headers=world.a.headers))["status"] == (
        "completed"
    )
    again = client.post(
        f"/dashboard/orders/{order_id}/cancel", data={"csrf_token": token}, headers=HTMX
    )
    # a technician does not cancel orders (the API's rule too): the board says so
    assert "may not orders:write" in again.text

    # the asset page shows the order and the part it used
    sign_in(client, world.a.key)
    asset = client.get(f"/dashboard/assets/{world.asset_a}")
    assert asset.status_code == 200
    history = asset.text[asset.text.index('id="order-history"') :]
    assert f'data-order="{order_id}" data-status="completed"' in history
    assert TIRE in history


def test_another_customers_order_answers_404_and_stays_unchanged(
    client: TestClient, world: World
) -> None:
    sign_in(client, world.b.key)
    token = token_of(client.get("/dashboard/orders").text)
    for action in ("schedule", "start", "complete", "cancel"):
        response = client.post(
            f"/dashboard/orders/{world.order_a['id']}/{action}",
            data={"csrf_token": token, "scheduled_for": "2026-11-28T09:30"},
            headers=HTMX,
        )
        assert response.status_code == 404, action
    assert client.get(f"/dashboard/assets/{world.asset_a}").status_code == 404
    a_view = ok(client.get(f"/v1/orders/{world.order_a['id']}", headers=world.a.headers))
    assert a_view["status"] == "raised"
    # beta's own order works with the same token
    own = client.post(
        f"/dashboard/orders/{world.order_b['id']}/cancel",
        data={"csrf_token": token, "reason": "duplicate"},
        headers=HTMX,
    )
    assert status_in_board(own.text, world.order_b["id"]) == "cancelled"


def test_order_actions_refuse_forged_posts(client: TestClient, world: World) -> None:
    order_id = world.order_a["id"]
    assert client.post(f"/dashboard/orders/{order_id}/cancel", follow_redirects=False).status_code
    sign_in(client, world.a.key)
    token = token_of(client.get("/dashboard/orders").text)
    url = f"/dashboard/orders/{order_id}/cancel"
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf_token": "forged"}).status_code == 403
    foreign = client.post(
        url, data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    foreign_referer = client.post(
        url, data={"csrf_token": token}, headers={"Referer": "https://evil.example/x"}
    )
    assert foreign_referer.status_code == 403
    assert ok(client.get(f"/v1/orders/{order_id}", headers=world.a.headers))["status"] == "raised"
    same = client.post(
        url, data={"csrf_token": token}, headers={"Origin": "http://testserver"} | HTMX
    )
    assert same.status_code == 200 and status_in_board(same.text, order_id) == "cancelled"
    # a sign-out ends the token
    client.post("/dashboard/logout")
    sign_in(client, world.a.key)
    assert (
        client.post(
            f"/dashboard/orders/{world.order_a['id']}/schedule",
            data={"csrf_token": token, "scheduled_for": "2026-11-28T09:30"},
        ).status_code
        == 403
    )


def test_shipments_page_is_scoped(client: TestClient, world: World) -> None:
    [shipment_a] = ok(client.get(f"/v1/orders/{world.order_a['id']}", headers=world.a.headers))[
        "shipments"
    ]
    [shipment_b] = ok(client.get(f"/v1/orders/{world.order_b['id']}", headers=world.b.headers))[
        "shipments"
    ]
    sign_in(client, world.a.key)
    page = client.get("/dashboard/shipments")
    assert page.status_code == 200
    assert f'data-shipment="{shipment_a["id"]}" data-status="{shipment_a["status"]}"' in page.text
    assert f'data-shipment="{shipment_b["id"]}"' not in page.text
    assert f"order {world.order_a['id']}" in page.text
    other = client.get("/dashboard/shipments", params={"status": "delivered"})
    assert f'data-shipment="{shipment_a["id"]}"' not in other.text


def test_webhook_deliveries_failures_first_and_replay(
    client: TestClient, world: World, db_url: str
) -> None:
    with connect(db_url) as conn:
        principal = fleet.authenticate(conn, world.a.key)
        for n in (1, 2):
            webhooks.create_endpoint(
                conn,
                principal,
                EndpointCreate(url=f"https://hooks{n}.example/in"),
                allow_private=True,
                resolver=lambda host, port: ["93.184.216.34"],
            )
        event = emit(conn, "order.noted", {"n": 1}, customer_id=world.a.customer.id)
        event_id = conn.execute(
            "SELECT id FROM events WHERE public_id = %s", (str(event.public_id),)
        ).fetchone()
        assert event_id is not None
        # the outbox fans the event out to both endpoints
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM webhook_deliveries WHERE event_id = %s ORDER BY endpoint_id",
                (event_id[0],),
            )
        ]
        assert len(ids) == 2
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed', attempt_count = 3,"
            " last_status_code = 500, last_error = 'boom' WHERE id = %s",
            (ids[1],),
        )
        conn.commit()

    sign_in(client, world.b.key)
    assert "hooks1.example" not in client.get("/dashboard/webhooks").text
    token = token_of(client.get("/dashboard/orders").text)
    assert (
        client.post(
            f"/dashboard/webhooks/deliveries/{ids[1]}/replay", data={"csrf_token": token}
        ).status_code
        == 404
    )

    sign_in(client, world.a.key)
    page = client.get("/dashboard/webhooks")
    assert page.status_code == 200
    # the endpoint with a failure comes first
    assert page.text.index("hooks2.example") < page.text.index("hooks1.example")
    assert f'data-delivery="{ids[1]}" data-status="failed"' in page.text
    token = token_of(page.text)
    replayed = client.post(
        f"/dashboard/webhooks/deliveries/{ids[1]}/replay",
        data={"csrf_token": token},
        headers=HTMX,
    )
    assert replayed.status_code == 200 and "1 re-queued" in replayed.text
    assert f'data-delivery="{ids[1]}" data-status="pending"' in replayed.text


def test_subscriptions_and_invoices(client: TestClient, world: World, db_url: str) -> None:
    with connect(db_url) as conn:
        result = billing.close_period(
            conn, "2026-11", ManualClock(T0), customer_id=world.a.customer.id
        )
        conn.commit()
    assert result is not None
    sign_in(client, world.a.key)
    page = client.get("/dashboard/billing")
    assert page.status_code == 200
    assert page.text.count("data-subscription=") == 1
    assert '<td class="plan">Proactive' in page.text
    invoice_ids = [int(i) for i in re.findall(r'data-invoice="(\d+)"', page.text)]
    assert len(invoice_ids) == 1
    invoice = client.get(f"/dashboard/invoices/{invoice_ids[0]}")
    assert invoice.status_code == 200 and 'data-line="1"' in invoice.text

    sign_in(client, world.b.key)
    other = client.get("/dashboard/billing")
    assert 'data-invoice="' not in other.text
    assert client.get(f"/dashboard/invoices/{invoice_ids[0]}").status_code == 404


def test_asset_page_keeps_the_newest_orders(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_routes, "ASSET_ORDERS", 2)
    ids = [world.order_a["id"]]
    for _ in range(2):
        cancelled = client.post(f"/v1/orders/{ids[-1]}/cancel", json={}, headers=world.a.headers)
        assert cancelled.status_code == 200, cancelled.text
        body = {"asset_id": world.asset_a, "component": "tire", "due_at": "2026-12-10T00:00:00Z"}
        ids.append(ok(client.post("/v1/orders", json=body, headers=world.a.headers), 201)["id"])
    sign_in(client, world.a.key)
    page = client.get(f"/dashboard/assets/{world.asset_a}")
    history = page.text[page.text.index('id="order-history"') :]
    shown = [int(i) for i in re.findall(r'data-order="(\d+)"', history)]
    assert shown == [ids[2], ids[1]]


def test_every_operations_page_renders_for_every_role(
    client: TestClient, world: World, operator_headers: dict[str, str]
) -> None:
    operator_key = operator_headers["Authorization"].removeprefix("Bearer ")
    for key in (world.a.key, world.tech_a.key, operator_key):
        sign_in(client, key)
        for path in ("/dashboard/orders", "/dashboard/shipments", "/dashboard/webhooks"):
            # a technician's role has no webhooks:read: the page refuses, and is not in its nav
            expected = 403 if (key, path) == (world.tech_a.key, "/dashboard/webhooks") else 200
            page = client.get(path)
            assert page.status_code == expected, (path, key[:6])
            if path == "/dashboard/orders":  # the nav lists only the pages the role may open
                assert ('href="/dashboard/webhooks"' in page.text) == (key != world.tech_a.key)
        billing_page = client.get("/dashboard/billing")
        assert billing_page.status_code == (403 if key == world.tech_a.key else 200)
    # the operator sees both customers' orders on the board
    board = client.get("/dashboard/orders").text
    assert status_in_board(board, world.order_a["id"]) == "raised"
    assert status_in_board(board, world.order_b["id"]) == "raised"
