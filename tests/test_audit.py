"""The audit trail: every change writes who, what, when, from where and the fields before and
after, in the change's transaction, append-only; customers' admins read their own trail."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from fleet import service as fleet
from fleetcare.commandline import cli_conninfo
from fleetcare.db import connect, open_pool
from tests.conftest import Tenant
from tests.fixtures.api import ok, order_of, predict, setup_customer, stock
from tests.test_dashboard import sign_in
from tests.test_dashboard_ops import token_of


def _trail(db_url: str, resource: str, resource_id: object) -> list[dict[str, Any]]:
    with connect(db_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM audit_log WHERE resource = %s AND resource_id = %s ORDER BY id",
            (resource, str(resource_id)),
        ).fetchall()


def _key_id(db_url: str, key: str) -> int:
    with connect(db_url) as conn:
        key_id = fleet.authenticate(conn, key).key_id
    assert key_id is not None
    return key_id


def _one(rows: list[dict[str, Any]], action: str, actor: str) -> dict[str, Any]:
    found = [r for r in rows if r["action"] == action and r["actor"] == actor]
    assert len(found) == 1, rows
    return found[0]


def test_a_change_of_each_domain_leaves_an_audit_row_with_before_and_after(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    tenant = make_tenant()
    h = tenant.headers
    me = f"key:{_key_id(db_url, tenant.key)}"
    operator = f"key:{_key_id(db_url, operator_headers['Authorization'].split()[1])}"
    stock(client, operator_headers)
    ids = setup_customer(client, tenant)

    # asset: created, then changed
    ok(client.patch(f"/v1/assets/{ids['asset']}", json={"attributes": {"axle": 2}}, headers=h))
    rows = _trail(db_url, "assets", ids["asset"])
    created = _one(rows, "insert", me)
    assert created["before"] is None and created["after"]["ref"] == "TRK-1"
    assert created["customer_id"] == tenant.customer.id
    assert created["channel"] == "api" and created["source"] == "testclient"
    assert created["request"] == "POST /v1/assets" and created["actor_role"] == "customer"
    changed = _one(rows, "update", me)
    assert changed["before"] == {"attributes": {}} and changed["after"] == {
        "attributes": {"axle": 2}
    }
    assert changed["request"] == f"PATCH /v1/assets/{ids['asset']}"

    # subscription: paused
    ok(client.post(f"/v1/subscriptions/{ids['subscription']}/pause", headers=h))
    paused = _one(_trail(db_url, "subscriptions", ids["subscription"]), "update", me)
    assert paused["before"]["status"] == "active" and paused["after"]["status"] == "paused"

    # order: raised by the policy (outside the API), cancelled by the customer
    ok(client.post(f"/v1/subscriptions/{ids['subscription']}/resume", headers=h))
    predict(db_url, ids["asset"])
    order = order_of(client, h, ids["asset"])
    ok(client.post(f"/v1/orders/{order['id']}/cancel", json={"reason": "sold"}, headers=h))
    rows = _trail(db_url, "maintenance_orders", order["id"])
    assert _one(rows, "insert", "db:postgres")["after"]["status"] == "raised"
    cancelled = [r for r in rows if r["actor"] == me and r["after"].get("status") == "cancelled"]
    assert cancelled and cancelled[0]["after"]["cancel_reason"] == "sold"

    # webhook endpoint: created, described; its secret never enters the trail
    endpoint = ok(
        client.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=h),
        201,
    )
    ok(
        client.patch(
            f"/v1/webhooks/endpoints/{endpoint['id']}", json={"description": "ops"}, headers=h
        )
    )
    rows = _trail(db_url, "webhook_endpoints", endpoint["id"])
    assert _one(rows, "insert", me)["after"]["secret"] == "[redacted]"
    described = _one(rows, "update", me)
    assert described["before"] == {"description": ""} and described["after"] == {
        "description": "ops"
    }

    # api key: issued and revoked; its hash never enters the trail
    key = ok(client.post("/v1/api-keys", json={"role": "technician"}, headers=h), 201)
    ok(client.delete(f"/v1/api-keys/{key['id']}", headers=h))
    rows = _trail(db_url, "api_keys", key["id"])
    assert _one(rows, "insert", me)["after"]["key_hash"] == "[redacted]"
    revoked = _one(rows, "update", me)
    assert revoked["before"] == {"revoked_at": None} and revoked["after"]["revoked_at"]

    # plan: the operator's catalogue
    plan = {"code": "audited", "name": "A", "kinds": ["tire"], "fee_per_asset_month_minor": 100}
    made = ok(client.post("/v1/plans", json=plan, headers=operator_headers), 201)
    ok(client.delete(f"/v1/plans/{made['id']}", headers=operator_headers))
    rows = _trail(db_url, "plans", made["id"])
    inserted = _one(rows, "insert", operator)
    assert inserted["customer_id"] is None and inserted["actor_role"] == "operator"
    assert _one(rows, "update", operator)["before"] == {"retired_at": None}


def test_a_dashboard_change_is_audited_as_the_dashboard(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    tenant = make_tenant()
    stock(client, operator_headers)
    ids = setup_customer(client, tenant)
    predict(db_url, ids["asset"])
    order = order_of(client, tenant.headers, ids["asset"])
    sign_in(client, tenant.key)
    token = token_of(client.get("/dashboard/orders").text)
    client.post(f"/dashboard/orders/{order['id']}/cancel", data={"csrf_token": token})
    rows = _trail(db_url, "maintenance_orders", order["id"])
    cancelled = [r for r in rows if (r["after"] or {}).get("status") == "cancelled"]
    assert len(cancelled) == 1, rows
    assert cancelled[0]["channel"] == "dashboard"
    assert cancelled[0]["actor"] == f"key:{_key_id(db_url, tenant.key)}"
    assert cancelled[0]["request"] == f"POST /dashboard/orders/{order['id']}/cancel"


def test_a_cli_change_is_audited_as_the_cli(db_url: str) -> None:
    with connect(cli_conninfo(db_url)) as conn, conn.transaction():
        customer = fleet.ensure_customer(conn, "cli-made", "Made by CLI")
    rows = _trail(db_url, "customers", customer.id)
    assert len(rows) == 1
    assert rows[0]["actor"].startswith("cli:") and rows[0]["source"] == "cli"
    assert rows[0]["channel"] == "cli"


def test_the_trail_is_append_only_and_written_in_the_changes_transaction(
    client: TestClient, make_tenant: Callable[..., Tenant], db_url: str
) -> None:
    tenant = make_tenant()
    setup_customer(client, tenant)
    pool = open_pool(db_url, name="audit-probe")  # the application role, every customer
    try:
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone() != (0,)
            for statement in (
                "UPDATE audit_log SET actor = 'someone else'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
                "INSERT INTO audit_log (actor, source, channel, resource, action)"
                " VALUES ('x', 'x', 'x', 'x', 'insert')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                conn.rollback()
            # a change that rolls back leaves no trail
            before = conn.execute("SELECT count(*) FROM audit_log").fetchone()
            conn.execute(
                "UPDATE sites SET name = 'gone' WHERE customer_id = %s", (tenant.customer.id,)
            )
            conn.rollback()
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == before
    finally:
        pool.close()
    # not even the owner may rewrite it (the trigger refuses)
    with connect(db_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM audit_log")


def test_customers_read_their_own_trail_and_the_operator_reads_all(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
) -> None:
    alice, bob = make_tenant(), make_tenant()
    for tenant in (alice, bob):
        setup_customer(client, tenant)
    mine = ok(client.get("/v1/audit", params={"limit": 500}, headers=alice.headers))["items"]
    assert mine and {r["customer_id"] for r in mine} == {alice.customer.id}
    # asking for another customer's trail still answers only one's own
    asked = ok(
        client.get("/v1/audit", params={"customer_id": bob.customer.id}, headers=alice.headers)
    )["items"]
    assert {r["customer_id"] for r in asked} == {alice.customer.id}
    everyone = ok(client.get("/v1/audit", params={"limit": 500}, headers=operator_headers))
    assert {alice.customer.id, bob.customer.id} <= {r["customer_id"] for r in everyone["items"]}
    only_bob = ok(
        client.get("/v1/audit", params={"customer_id": bob.customer.id}, headers=operator_headers)
    )["items"]
    assert only_bob and {r["customer_id"] for r in only_bob} == {bob.customer.id}

    # filters, and pages newest first that join up
    assets = ok(client.get("/v1/audit", params={"resource": "assets"}, headers=alice.headers))
    assert [r["resource"] for r in assets["items"]] == ["assets"]
    pages: list[int] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"before": before} if before else {})
        page = ok(client.get("/v1/audit", params=params, headers=alice.headers))
        pages += [r["id"] for r in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert pages == sorted((r["id"] for r in mine), reverse=True)
    actor = mine[0]["actor"]
    by_actor = ok(client.get("/v1/audit", params={"actor": actor}, headers=alice.headers))
    assert {r["actor"] for r in by_actor["items"]} == {actor}
    late = ok(
        client.get("/v1/audit", params={"since": "2199-01-01T00:00:00Z"}, headers=alice.headers)
    )
    assert late["items"] == []

    # CSV export: the same rows
    exported = client.get("/v1/audit/export.csv", headers=alice.headers)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(r["id"]) for r in rows] == [r["id"] for r in mine]
    assert {r["customer_id"] for r in rows} == {str(alice.customer.id)}

    # bad input is a clear 422, a technician's key may not read the trail
    bad = client.get("/v1/audit", params={"since": "yesterday"}, headers=alice.headers)
    assert bad.status_code == 422
    tech = make_tenant(role="technician")
    assert client.get("/v1/audit", headers=tech.headers).status_code == 403
    assert client.get("/v1/audit/export.csv", headers=tech.headers).status_code == 403


def test_the_dashboard_shows_the_trail(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice, bob = make_tenant(), make_tenant()
    setup_customer(client, alice)
    ok(
        client.post("/v1/sites", json={"ref": "BOBS", "name": "Bob's yard"}, headers=bob.headers),
        201,
    )
    sign_in(client, alice.key)
    page = client.get("/dashboard/audit", params={"resource": "sites"})
    assert page.status_code == 200
    assert "YARD" in page.text and "BOBS" not in page.text
    exported = client.get("/dashboard/audit.csv", params={"resource": "sites"})
    assert exported.status_code == 200 and "YARD" in exported.text and "BOBS" not in exported.text
    assert 'href="/dashboard/audit"' in client.get("/dashboard").text
    # a technician is not linked to the trail, and is refused it
    tech = make_tenant(role="technician")
    sign_in(client, tech.key)
    assert 'href="/dashboard/audit"' not in client.get("/dashboard").text
    assert client.get("/dashboard/audit").status_code == 403


def test_bookkeeping_columns_write_no_row_and_a_real_change_one(
    client: TestClient, make_tenant: Callable[..., Tenant], db_url: str
) -> None:
    tenant = make_tenant()
    ids = setup_customer(client, tenant)
    with connect(db_url) as conn:
        count = "SELECT count(*) FROM audit_log"
        before = conn.execute(count).fetchone()
        # ingest moves the usage counter and last-seen time on every batch (in asset_seen):
        # not a change worth a row
        for usage in (1234, 99):
            conn.execute(
                "INSERT INTO asset_seen (asset_id, usage_counter, usage_at, last_seen_at)"
                " VALUES (%s, %s, now(), now()) ON CONFLICT (asset_id) DO UPDATE"
                " SET usage_counter = EXCLUDED.usage_counter",
                (ids["asset"], usage),
            )
        assert conn.execute(count).fetchone() == before
        conn.execute(
            "UPDATE assets SET attributes = '{\"axle\": 3}' WHERE id = %s", (ids["asset"],)
        )
        row = conn.execute(
            "SELECT before, after FROM audit_log WHERE resource = 'assets' ORDER BY id DESC"
        ).fetchone()
        assert row == ({"attributes": {}}, {"attributes": {"axle": 3}})
        conn.commit()


def test_a_workers_change_is_audited_as_the_worker(
    client: TestClient, make_tenant: Callable[..., Tenant], db_url: str
) -> None:
    tenant = make_tenant()
    ids = setup_customer(client, tenant)
    pool = open_pool(db_url, name="probe-worker")  # as the workers' pools are made
    try:
        with pool.connection() as conn:
            conn.execute("UPDATE sites SET name = 'Renamed' WHERE id = %s", (ids["site"],))
    finally:
        pool.close()
    renamed = _one(_trail(db_url, "sites", ids["site"]), "update", "system:probe-worker")
    assert renamed["channel"] == "worker" and renamed["source"] == "worker"
    assert renamed["before"] == {"name": "Yard"} and renamed["after"] == {"name": "Renamed"}
