"""The second tenant wall: PostgreSQL row-level security under the app's own connections.

A query that forgets its ``WHERE customer_id`` still returns only the caller's rows, because
the API and the workers act as ``fleetcare_app`` (no SUPERUSER, no BYPASSRLS) and every tenant
table has a policy keyed on the transaction's customer. New tenant tables must get one:
``test_every_tenant_table_has_row_level_security`` names the migration helper to call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.tenancy import context_of
from fleet import service as fleet
from fleetcare.clock import ManualClock
from fleetcare.db import connect, open_pool
from fleetcare.migrate import Storage
from fleetcare.tenancy import APP_ROLE, apply_context, operator_lookup
from maintenance.billing.service import close_period
from tests.conftest import Tenant
from tests.fixtures.api import ok, predict, setup_customer, stock

# Columns that make a row belong to an organisation, directly or through its parent.
TENANT_COLUMNS = (
    "customer_id",
    "partner_id",
    "asset_id",
    "site_id",
    "subscription_id",
    "order_id",
    "invoice_id",
    "endpoint_id",
    "delivery_id",
)
# Tables with a tenant column that have no policy, and why. Adding one needs a reason that
# holds; everything else gets ``SELECT fleetcare_tenant_policy(...)`` in its migration.
EXEMPT: dict[str, str] = {
    "telemetry": "loaded with COPY, which PostgreSQL refuses under row-level security; "
    "read only through a customer's assets",
    "telemetry_hourly": "the rollup of telemetry (a continuous aggregate on TimescaleDB)",
}
EXEMPT_ON_TIMESCALEDB: dict[str, str] = {
    "predictions": "a compressed hypertable: TimescaleDB refuses row-level security there",
}
# Tables of later migrations, made before this test existed, that still wait for their policy:
# their owner adds ``SELECT fleetcare_tenant_policy('<table>')`` in a migration of its own
# (numbered after theirs), then removes them here. Reported as a warning until then.
PENDING: dict[str, str] = {}
HELP = (
    "every table with a tenant column needs row-level security: in its migration call\n"
    "    SELECT fleetcare_tenant_policy('<table>');                     -- customer_id column\n"
    "    SELECT fleetcare_tenant_policy('<table>', 'asset_id', 'assets'); -- through a parent\n"
    "    SELECT fleetcare_tenant_policy('<table>', 'partner_id');         -- a partner's rows\n"
    "(migrations/0030_tenant_wall.sql, docs/tenant-wall.md)"
)


def _tenant_tables(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, bool, int]]:
    rows = conn.execute(
        """
        SELECT c.relname, min(a.attname), bool_or(c.relrowsecurity),
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relkind IN ('r', 'p') AND a.attname = ANY (%s)
         GROUP BY c.oid, c.relname
        """,
        (list(TENANT_COLUMNS),),
    ).fetchall()
    return {name: (column, rls, policies) for name, column, rls, policies in rows}


def test_every_tenant_table_has_row_level_security(
    conn: psycopg.Connection[Any], storage: Storage
) -> None:
    exempt = dict(EXEMPT, **(EXEMPT_ON_TIMESCALEDB if storage == "timescaledb" else {}))
    tables = _tenant_tables(conn)
    assert {"assets", "maintenance_orders", "invoices", "audit_log"} <= set(tables)
    unwalled = {
        name: column
        for name, (column, rls, policies) in sorted(tables.items())
        if name not in exempt and not (rls and policies)
    }
    missing = [f"{name} ({column})" for name, column in unwalled.items() if name not in PENDING]
    assert not missing, f"no row-level security on: {', '.join(missing)}\n{HELP}"
    pending = [f"{name} ({PENDING[name]})" for name in unwalled if name in PENDING]
    if pending:
        warnings.warn(f"no row-level security yet on: {', '.join(pending)}\n{HELP}", stacklevel=1)
    # an exemption that no longer applies is dropped, not kept as a loophole
    walled = [n for n in [*exempt, *PENDING] if n in tables and tables[n][1]]
    assert not walled, f"{walled} have row-level security now: remove them from EXEMPT/PENDING"


def test_the_app_role_is_subject_to_policies(db_url: str) -> None:
    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
            (APP_ROLE,),
        ).fetchone()
    assert row == (False, False, False)
    pool = open_pool(db_url, name="probe", per_request=True)
    try:
        with pool.connection() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)
            # no context: not a single tenant row, not even the customers
            assert conn.execute("SELECT count(*) FROM customers").fetchone() == (0,)
    finally:
        pool.close()


def _two_customers_with_everything(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> tuple[Tenant, Tenant]:
    alice, bob = make_tenant(), make_tenant()
    stock(client, operator_headers)
    for tenant in (alice, bob):
        ids = setup_customer(client, tenant)
        predict(db_url, ids["asset"])  # a prediction, and the order the policy raises on it
        ok(
            client.post(
                "/v1/webhooks/endpoints",
                json={"url": "http://127.0.0.1:9/x"},
                headers=tenant.headers,
            ),
            201,
        )
        with connect(db_url) as conn, conn.transaction():
            close_period(
                conn,
                "2026-11",
                ManualClock(datetime(2026, 12, 5, tzinfo=UTC)),
                customer_id=tenant.customer.id,
            )
    return alice, bob


# table → how its rows name their customer
UNFILTERED: dict[str, str] = {
    "customers": "SELECT id FROM customers",
    "assets": "SELECT customer_id FROM assets",
    "sites": "SELECT customer_id FROM sites",
    "maintenance_orders": "SELECT customer_id FROM maintenance_orders",
    "shipments": "SELECT customer_id FROM shipments",
    "subscriptions": "SELECT customer_id FROM subscriptions",
    "invoices": "SELECT customer_id FROM invoices",
    "invoice_lines": "SELECT i.customer_id FROM invoice_lines l, invoices i"
    " WHERE i.id = l.invoice_id",
    "predictions": "SELECT a.customer_id FROM predictions p, assets a WHERE a.id = p.asset_id",
    "latest_predictions": "SELECT a.customer_id FROM latest_predictions p, assets a"
    " WHERE a.id = p.asset_id",
    "events": "SELECT customer_id FROM events",
    "webhook_endpoints": "SELECT customer_id FROM webhook_endpoints",
    "api_keys": "SELECT customer_id FROM api_keys",
    "audit_log": "SELECT customer_id FROM audit_log",
}


def test_an_unfiltered_query_returns_only_the_callers_rows(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
    storage: Storage,
) -> None:
    alice, bob = _two_customers_with_everything(client, make_tenant, operator_headers, db_url)
    both = {alice.customer.id, bob.customer.id}
    tables = dict(UNFILTERED)
    if storage == "timescaledb":
        del tables["predictions"]  # EXEMPT_ON_TIMESCALEDB
    # as the superuser the tests connect as, every table holds rows of both customers
    with connect(db_url) as conn:
        for table, query in tables.items():
            seen = {r[0] for r in conn.execute(query).fetchall()}
            assert both <= seen, (table, seen)
    pool = client.app.state.pool  # type: ignore[attr-defined]
    with pool.connection() as conn:
        # the request path: the key is looked up, then the transaction is the caller's
        with operator_lookup(conn):
            principal = fleet.authenticate(conn, alice.key)
        apply_context(conn, context_of(principal, channel="api", source="test"))
        for table, query in tables.items():
            seen = {r[0] for r in conn.execute(query).fetchall()}
            if table == "events":
                seen.discard(None)  # operator-level events are shared rows (0030, shared_rows)
            assert seen == {alice.customer.id}, (table, seen)
        with conn.cursor(row_factory=dict_row) as cur:
            star = cur.execute("SELECT * FROM assets").fetchall()
        assert star and {r["customer_id"] for r in star} == {alice.customer.id}
        # and it cannot write into another customer's
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO sites (customer_id, ref, name) VALUES (%s, 'X', 'X')",
                (bob.customer.id,),
            )
        conn.rollback()


def test_a_worker_acts_for_every_customer_by_its_own_context(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice, bob = make_tenant(), make_tenant()
    for tenant in (alice, bob):
        setup_customer(client, tenant)
    pool = open_pool(db_url, name="probe-worker")
    try:
        with pool.connection() as conn:
            row = conn.execute("SELECT current_user, current_setting('fleetcare.actor')").fetchone()
            assert row == (APP_ROLE, "system:probe-worker")
            seen = {r[0] for r in conn.execute("SELECT customer_id FROM assets").fetchall()}
            assert {alice.customer.id, bob.customer.id} <= seen
    finally:
        pool.close()


def test_the_callers_lookup_sees_everyone_then_nothing_again(db_url: str) -> None:
    pool = open_pool(db_url, name="probe", per_request=True)
    try:
        with pool.connection() as conn:
            with connect(db_url) as admin:
                fleet.ensure_customer(admin, "lookup-probe", "Lookup probe")
                admin.commit()
            count = "SELECT count(*) FROM customers"
            assert conn.execute(count).fetchone() == (0,)
            with operator_lookup(conn):
                assert conn.execute(count).fetchone() != (0,)
                with operator_lookup(conn):  # nested: the outer lookup still sees everyone
                    pass
                assert conn.execute(count).fetchone() != (0,)
            assert conn.execute(count).fetchone() == (0,)
    finally:
        pool.close()
