"""Lists that do not stop at one page: keyset cursors on the dashboard's overview (every sort,
both directions, nulls and ties), the operations pages (orders, shipments, webhook deliveries,
invoices, quarantine) and the API's usage list; a forged cursor is a 422, never a 500."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from api.dashboard import repository as dash_repo
from api.dashboard import service as dash_service
from api.routes import dashboard_ops
from fleet import service as fleet
from fleet.schemas import AssetCreate, Principal, SiteCreate
from fleetcare.cursor import decode_cursor, encode_cursor
from fleetcare.errors import Invalid
from tests.fixtures.maintenance import T0
from tests.test_dashboard import sign_in
from tests.test_dashboard_ops import World, world  # noqa: F401  (the fixture)

OPERATOR = Principal(key_id=0, role="operator")


def ids_on(html: str, attribute: str) -> list[int]:
    return [int(x) for x in re.findall(rf'data-{attribute}="(\d+)"', html)]


def next_link(html: str) -> str | None:
    found = re.search(r'class="next-page" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def walk(client: TestClient, url: str, attribute: str) -> list[int]:
    """Every id a paged list shows, following its next links to the end."""
    seen: list[int] = []
    next_url: str | None = url
    for _ in range(100):
        if next_url is None:
            return seen
        page = client.get(next_url)
        assert page.status_code == 200, page.text
        seen += ids_on(page.text, attribute)
        next_url = next_link(page.text)
    raise AssertionError("the pages never end")


def test_cursor_round_trip_and_forgeries() -> None:
    key = [T0, 0.25, "TRK-1", None, 7]
    text = encode_cursor(key)
    assert decode_cursor(text, ["time", "float", "str", "str", "int"]) == key
    for bad in (
        "",
        "x",
        text + "x",
        encode_cursor([1]),
        encode_cursor(["nope", 0.1, "a", None, 1]),
    ):
        with pytest.raises(Invalid) as err:
            decode_cursor(bad, ["time", "float", "str", "str", "int"])
        assert err.value.code == "bad_cursor"
    with pytest.raises(Invalid):
        decode_cursor(encode_cursor(["2026-11", None, 1]), ["str", "int", "int"], nullable=False)


def test_overview_pages_by_keyset_in_every_order(
    client: TestClient, conn: Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = fleet.ensure_customer(conn, "paging", "Paging Co")
    site = fleet.create_site(
        conn, OPERATOR, SiteCreate(customer_id=customer.id, ref="S1", name="Site 1")
    )
    assets = []
    for i in range(9):
        asset = fleet.create_asset(
            conn,
            OPERATOR,
            AssetCreate(
                customer_id=customer.id,
                kind="tire",
                ref=f"T-{i % 4}-{i}",
                site_id=site.id if i % 3 else None,
            ),
        )
        assets.append(asset.id)
        if i % 4 != 3:  # some have no prediction: null due date and risk (sorted last)
            due = T0 + timedelta(days=i % 3)  # ties
            conn.execute(
                "INSERT INTO asset_health (asset_id, component, predicted_at, rul, rul_low,"
                " rul_high, failure_probability, anomaly_score, due_at, due_at_conservative)"
                " VALUES (%s, 'tread', %s, 1, 0, 2, %s, 0, %s, %s)",
                (asset.id, T0, (i % 2) / 2, due, due),
            )
    conn.commit()
    admin = fleet.issue_api_key(conn, role="operator", customer_id=None).key
    conn.commit()
    sign_in(client, admin)
    monkeypatch.setattr(dash_service, "PAGE_SIZE", 2)
    windows = dash_service.health_windows(client.app.state.settings, T0)  # type: ignore[attr-defined]
    for sort in dash_repo.SORTS:
        for desc in (False, True):
            everything, total, _ = dash_repo.list_asset_health(
                conn,
                windows,
                scope=None,
                customer_id=customer.id,
                sort=sort,
                descending=desc,
                limit=100,
            )
            expected = [r.asset_id for r in everything]
            assert total == 9 and sorted(expected) == sorted(assets)
            url = f"/dashboard?customer_id={customer.id}&sort={sort}" + (
                "&desc=true" if desc else ""
            )
            assert walk(client, url, "asset") == expected, (sort, desc)
    forged = client.get("/dashboard", params={"after": "not-a-cursor"})
    assert forged.status_code == 422 and forged.json()["code"] == "bad_cursor"
    wrong_shape = client.get("/dashboard", params={"sort": "ref", "after": encode_cursor([1, 2])})
    assert wrong_shape.status_code == 422


def test_operations_pages_follow_their_cursors(
    client: TestClient,
    world: World,  # noqa: F811
    db_url: str,
    conn: Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dashboard_ops, "PAGE", 1)
    monkeypatch.setattr(dash_service, "QUARANTINE_PAGE", 2)
    admin = fleet.issue_api_key(conn, role="operator", customer_id=None).key
    for n in range(5):
        customer_id = (world.a if n % 2 else world.b).customer.id
        conn.execute(
            "INSERT INTO quarantine (received_at, topic, device_ref, customer_id, reason, detail,"
            " payload) VALUES (%s, 't', 'd', %s, %s, 'x', 'raw')",
            (T0, customer_id, "bad_json" if n < 4 else "oversized"),
        )
    conn.commit()
    sign_in(client, admin)
    both = sorted([world.order_a["id"], world.order_b["id"]])
    assert walk(client, "/dashboard/orders?status=raised", "order") == both
    board = client.get("/dashboard/orders").text
    assert re.search(r"/dashboard/orders\?status=raised&(amp;)?after=\d+", board)  # more raised
    shipments = walk(client, "/dashboard/shipments", "shipment")
    assert len(shipments) == 2 and shipments == sorted(shipments)
    everything = walk(client, "/dashboard/quarantine", "quarantine")
    assert len(everything) == 5 and everything == sorted(everything, reverse=True)
    assert len(walk(client, "/dashboard/quarantine?reason=bad_json", "quarantine")) == 4
    # a customer pages through its own only
    sign_in(client, world.a.key)
    assert walk(client, "/dashboard/orders?status=raised", "order") == [world.order_a["id"]]
    assert len(walk(client, "/dashboard/quarantine", "quarantine")) == 2
    for url in ("/dashboard/orders?after=-1", "/dashboard/shipments?after=x"):
        assert client.get(url).status_code == 422


def test_usage_api_pages_with_an_opaque_cursor(
    client: TestClient,
    world: World,  # noqa: F811
    conn: Connection[Any],
) -> None:
    row = conn.execute(
        "SELECT id FROM subscriptions WHERE customer_id = %s", (world.a.customer.id,)
    ).fetchone()
    assert row is not None
    for month in (9, 10, 11):
        conn.execute(
            "INSERT INTO usage_records (id, customer_id, subscription_id, asset_id, period,"
            " metric, unit, window_start, window_end, quantity, readings, resets, computed_at)"
            " VALUES (gen_random_uuid(), %s, %s, %s, %s, 'odometer_km', 'km', %s, %s, 10, 1,"
            " 0, %s)",
            (world.a.customer.id, row[0], world.asset_a, f"2026-{month:02d}", T0, T0, T0),
        )
    conn.commit()
    periods: list[str] = []
    after: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 1} | ({"after": after} if after else {})
        page = client.get("/v1/usage", params=params, headers=world.a.headers)
        assert page.status_code == 200, page.text
        periods += [r["period"] for r in page.json()["items"]]
        after = page.json()["next_after"]
        if after is None:
            break
    assert periods == ["2026-11", "2026-10", "2026-09"]
    other = client.get("/v1/usage", headers=world.b.headers).json()
    assert other == {"items": [], "next_after": None}  # another customer's usage is not seen
    forged = client.get("/v1/usage", params={"after": "e30"}, headers=world.a.headers)
    assert forged.status_code == 422 and forged.json()["code"] == "bad_cursor"


def test_webhook_deliveries_page_per_endpoint(
    client: TestClient,
    world: World,  # noqa: F811
    conn: Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from maintenance.events.service import emit
    from maintenance.webhooks import service as webhooks
    from maintenance.webhooks.schemas import EndpointCreate

    monkeypatch.setattr(dashboard_ops, "PAGE", 1)
    principal = fleet.authenticate(conn, world.a.key)
    endpoint = webhooks.create_endpoint(
        conn,
        principal,
        EndpointCreate(url="https://hooks.example/in"),
        allow_private=True,
        resolver=lambda host, port: ["93.184.216.34"],
    )
    for n in range(3):
        emit(conn, "order.noted", {"n": n}, customer_id=world.a.customer.id)
    conn.commit()
    sign_in(client, world.a.key)
    first = client.get("/dashboard/webhooks").text
    assert len(ids_on(first, "delivery")) == 1
    assert f"/dashboard/webhooks?endpoint_id={endpoint.id}" in (next_link(first) or "")
    deliveries = walk(client, f"/dashboard/webhooks?endpoint_id={endpoint.id}", "delivery")
    assert len(deliveries) == 3 and deliveries == sorted(deliveries)
    sign_in(client, world.b.key)  # another customer's endpoint is not found
    assert client.get(f"/dashboard/webhooks?endpoint_id={endpoint.id}").status_code == 404
