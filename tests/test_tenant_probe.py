"""A prober's walk over the tenant wall: customer A's data, customer B's callers.

``tests/test_isolation.py`` checks every ``/v1`` path that names an object. This walk adds what
it does not reach: every GET route of the app, the dashboard's included, with A's ids in its
path *and* in each id filter of its query (``?asset_id=``, ``?customer_id=``, ...), as B's API
key, as a signed-in B user of a weaker role and as a partner's technician; A's ids nested in
B's request bodies (``site_id``, ``asset_ids``, ``endpoint_id``, station and carrier refs, the
dashboard's buttons); then two invariants read as the superuser: not one of A's rows changed,
and no row of one customer points at another customer's row.

A leak is any answer that carries A's marker text (A's customer, site, asset and carrier names
all contain ``zqalice``/``zqsecret``) or a JSON object with A's ``customer_id``, or a 2xx for a
document of A (a PDF cannot be searched for text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.permissions import PUBLIC, app_routes
from fleetcare.db import connect
from tests.conftest import Tenant
from tests.fixtures.api import ok, predict, setup_customer
from tests.fixtures.people import person
from tests.test_isolation import OWNED, _owned_objects

MARKER = re.compile(rb"zq-?alice|zqsecret", re.IGNORECASE)
# query parameters that name an object, and which of A's objects to put there
ID_FILTERS = {
    "customer_id": "customer_id",
    "site_id": "site_id",
    "asset_id": "asset_id",
    "order_id": "order_id",
    "invoice_id": "invoice_id",
    "endpoint_id": "endpoint_id",
    "resource_id": "asset_id",
    "ref": "asset_ref",
}
# body fields that hold an id or a reference, and where the walk below nests A's; the rest of
# the body fields named *_id are not objects of a customer (global catalogues, foreign ids)
NOT_CUSTOMER_OBJECTS = {"plan_id", "depot_id", "vat_id", "client_id", "legs[].leg_id"}


def _body_id_fields(client: TestClient) -> set[tuple[str, str, str]]:
    """(METHOD, path, field) of every body field named *_id or *_ids, or a carrier/station."""
    spec = client.app.openapi()  # type: ignore[attr-defined]
    comps = spec["components"]["schemas"]
    found: set[tuple[str, str, str]] = set()

    def walk(schema: dict[str, Any], at: str, seen: frozenset[str], out: set[str]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(comps[name], at, seen | {name}, out)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, at, seen, out)
        if "items" in schema:
            walk(schema["items"], at + "[]", seen, out)
        for prop, sub in schema.get("properties", {}).items():
            path = f"{at}.{prop}" if at else prop
            if prop.endswith(("_id", "_ids")) or prop in ("carrier", "station", "from", "to"):
                out.add(path)
            walk(sub, path, seen, out)

    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                fields: set[str] = set()
                walk(content["schema"], "", frozenset(), fields)
                found |= {(method.upper(), path, f) for f in fields}
    return found


def _customer_ids(doc: Any, out: set[int]) -> None:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "customer_id" and isinstance(value, int):
                out.add(value)
            _customer_ids(value, out)
    elif isinstance(doc, list):
        for value in doc:
            _customer_ids(value, out)


def _snapshot(db_url: str, customer_id: int) -> dict[str, Any]:
    """A digest of every row of the customer (telemetry by its assets)."""
    with connect(db_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                """
                SELECT c.relname FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
                  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'customer_id'
                 WHERE c.relkind IN ('r', 'p') AND NOT a.attisdropped
                """
            ).fetchall()
        ]
        out = {
            t: conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), ''))"
                f" FROM {t} x WHERE customer_id = %s",
                (customer_id,),
            ).fetchone()
            for t in tables
        }
        out["telemetry"] = conn.execute(
            "SELECT count(*) FROM telemetry t JOIN assets a ON a.id = t.asset_id"
            " WHERE a.customer_id = %s",
            (customer_id,),
        ).fetchone()
    return out


def _cross_customer_references(db_url: str) -> list[str]:
    """Foreign keys between two tables that both have customer_id, whose rows disagree."""
    found: list[str] = []
    with connect(db_url) as conn:
        keys = conn.execute(
            """
            SELECT cl.relname, a.attname, rcl.relname, ra.attname
              FROM pg_constraint k
              JOIN pg_class cl ON cl.oid = k.conrelid
              JOIN pg_class rcl ON rcl.oid = k.confrelid
              JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
              JOIN pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1]
             WHERE k.contype = 'f' AND cardinality(k.conkey) = 1 AND a.attname <> 'customer_id'
               AND EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = k.conrelid
                            AND x.attname = 'customer_id' AND NOT x.attisdropped)
               AND EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = k.confrelid
                            AND x.attname = 'customer_id' AND NOT x.attisdropped)
            """
        ).fetchall()
        assert len(keys) >= 10, keys  # assets → sites, orders → assets, ...
        for table, column, parent, parent_column in keys:
            (n,) = conn.execute(
                f"SELECT count(*) FROM {table} x JOIN {parent} y ON y.{parent_column} ="
                f" x.{column} WHERE x.customer_id <> y.customer_id"
            ).fetchone() or (0,)
            if n:
                found.append(f"{table}.{column} → {parent}: {n} rows of another customer")
    return found


def test_customer_b_never_sees_or_touches_customer_a(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice, bob = make_tenant("zq-alice"), make_tenant("bob")
    a = _owned_objects(client, alice, operator_headers, db_url)  # stocks the depot too
    h = alice.headers
    site = ok(
        client.post(
            "/v1/sites",
            json={"ref": "ZQSECRET-S", "name": "zqsecret site", "latitude": 50, "longitude": 4},
            headers=h,
        ),
        201,
    )
    ok(client.put(f"/v1/sites/{site['id']}/station", json={}, headers=h))
    asset = ok(
        client.post(
            "/v1/assets",
            json={"kind": "tire", "ref": "ZQSECRET-A", "site_id": site["id"]},
            headers=h,
        ),
        201,
    )
    ok(
        client.post("/v1/carriers", json={"ref": "ZQSECRET-C", "carrier_type": "truck"}, headers=h),
        201,
    )
    a |= {"asset_ref": "ZQSECRET-A", "secret_site_id": site["id"], "secret_asset_id": asset["id"]}
    b = setup_customer(client, bob)
    b_endpoint = ok(
        client.post(
            "/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/b"}, headers=bob.headers
        ),
        201,
    )
    predict(db_url, b["asset"])  # an order, and events to replay
    b_carrier = ok(
        client.post(
            "/v1/carriers", json={"ref": "B-TAIL", "carrier_type": "truck"}, headers=bob.headers
        ),
        201,
    )
    b_event = ok(
        client.get(f"/v1/webhooks/endpoints/{b_endpoint['id']}/deliveries", headers=bob.headers)
    )["items"][0]["event_public_id"]
    partner = ok(
        client.post(
            "/v1/partners", json={"code": "probe-p", "name": "P"}, headers=operator_headers
        ),
        201,
    )
    technician = person(client, db_url, "customer:technician", customer_id=bob.customer.id)
    admin = person(client, db_url, "customer:admin", customer_id=bob.customer.id)
    partner_tech = person(client, db_url, "partner:technician", partner_id=partner["id"])
    callers: dict[str, Callable[..., Any]] = {
        "B's key": lambda method, url, **kw: client.request(method, url, headers=bob.headers, **kw),
        "B's technician": technician.request,
        "a partner's technician": partner_tech.request,
    }
    before = _snapshot(db_url, alice.customer.id)
    leaks: list[str] = []

    def look(
        who: str, method: str, url: str, answer: Any, owned_path: bool, sent: Any = None
    ) -> None:
        where = f"{who}: {method} {url} → {answer.status_code}"
        content = answer.content
        for echoed in re.findall(r"ZQSECRET-[A-Z]", str(sent or "")):  # B's own words back
            content = content.replace(echoed.encode(), b"")
        if answer.status_code >= 500:
            leaks.append(f"{where}: {answer.text[:200]}")
        elif (m := MARKER.search(content)) is not None:
            leaks.append(f"{where}: carries {m.group(0)!r}")
        elif owned_path and answer.is_success:
            leaks.append(f"{where}: answered an object of A")
        elif "json" in answer.headers.get("content-type", "") and answer.is_success:
            seen: set[int] = set()
            _customer_ids(answer.json(), seen)
            if alice.customer.id in seen:
                leaks.append(f"{where}: an object of A's customer_id")

    # 1. every GET route, A's ids in its path and, one at a time, in each id filter
    fill = {**a, "kind": "tire", "action": "start"}
    walked = 0
    for method, path, route in app_routes(client.app.routes):  # type: ignore[attr-defined]
        if method != "GET" or (method, path) in PUBLIC or path == "/dashboard/live":
            continue
        assert isinstance(route, APIRoute)
        names = re.findall(r"\{([^}]+)\}", path)
        url = re.sub(r"\{([^}]+)\}", lambda m: str(fill.get(m.group(1), 1)), path)
        owned = bool(set(names) & OWNED)
        queries: list[dict[str, Any]] = [{}] + [
            {q.name: a[ID_FILTERS[q.name]]}
            for q in route.dependant.query_params
            if q.name in ID_FILTERS
        ]
        for who, call in callers.items():
            for query in queries:
                look(who, method, url, call(method, url, params=query), owned)
                walked += 1
    assert walked > 300, walked

    # 2. A's ids nested in B's bodies (every body id field of the API is in this table)
    cid, a_site, a_asset = alice.customer.id, site["id"], asset["id"]
    plan = ok(client.get("/v1/plans", headers=bob.headers))["items"][0]["id"]
    leg = {
        "leg_id": "L1",
        "from": "ZQSECRET-S",
        "to": "YARD",
        "scheduled_departure": "2026-12-10T08:00:00Z",
        "scheduled_arrival": "2026-12-10T10:00:00Z",
    }
    nested: list[tuple[str, str, str, dict[str, Any]]] = [
        ("POST", "/v1/api-keys", "customer_id", {"customer_id": cid}),
        ("POST", "/v1/assets", "customer_id", {"customer_id": cid, "kind": "tire", "ref": "X1"}),
        ("POST", "/v1/assets", "site_id", {"site_id": a_site, "kind": "tire", "ref": "X2"}),
        ("PATCH", "/v1/assets/{asset_id}", "site_id", {"site_id": a_site}),
        (
            "POST",
            "/v1/carriers",
            "customer_id",
            {"customer_id": cid, "ref": "X3", "carrier_type": "truck"},
        ),
        (
            "POST",
            "/v1/carriers",
            "home_site_id",
            {"home_site_id": a_site, "ref": "X4", "carrier_type": "truck"},
        ),
        ("POST", "/v1/devices", "customer_id", {"customer_id": cid, "ref": "gw-x5"}),
        ("POST", "/v1/failures", "asset_id", {"asset_id": a_asset, "component": "tread"}),
        (
            "POST",
            "/v1/orders",
            "asset_id",
            {"asset_id": a_asset, "component": "tread", "due_at": "2026-12-20T00:00:00Z"},
        ),
        ("POST", "/v1/sites", "customer_id", {"customer_id": cid, "ref": "X6", "name": "x"}),
        (
            "POST",
            "/v1/subscriptions",
            "customer_id",
            {"customer_id": cid, "plan_id": plan, "asset_ids": [b["asset"]]},
        ),
        (
            "POST",
            "/v1/subscriptions",
            "site_id",
            {"plan_id": plan, "scope": "site", "site_id": a_site},
        ),
        ("POST", "/v1/subscriptions", "asset_ids", {"plan_id": plan, "asset_ids": [a_asset]}),
        (
            "POST",
            "/v1/subscriptions/{subscription_id}/assets",
            "asset_ids",
            {"asset_ids": [a_asset]},
        ),
        (
            "POST",
            "/v1/users",
            "customer_id",
            {"customer_id": cid, "email": "x7@b.example", "name": "x"},
        ),
        (
            "POST",
            "/v1/webhooks/endpoints",
            "customer_id",
            {"customer_id": cid, "url": "http://127.0.0.1:9/x"},
        ),
        (
            "POST",
            "/v1/webhooks/events/{public_id}/replay",
            "endpoint_id",
            {"endpoint_id": a["endpoint_id"]},
        ),
        ("PUT", "/v1/carriers/{carrier_id}/itinerary", "legs[].from", {"legs": [leg]}),
        (
            "PUT",
            "/v1/carriers/{carrier_id}/itinerary",
            "legs[].to",
            {"legs": [dict(leg, **{"from": "YARD", "to": "ZQSECRET-S"})]},
        ),
        (
            "PUT",
            "/v1/carriers/{carrier_id}/itinerary",
            "legs[].carrier",
            {"legs": [dict(leg, carrier="ZQSECRET-C")]},
        ),
        ("PUT", "/v1/carriers/{carrier_id}/position", "station", {"station": "ZQSECRET-S"}),
        ("POST", "/v1/shipments/{shipment_id}/ship", "carrier", {"carrier": "ZQSECRET-C"}),
        ("POST", "/v1/billing/close", "customer_id", {"customer_id": cid, "period": "2026-11"}),
        ("POST", "/v1/partners/{partner_id}/sites", "site_ids", {"site_ids": [a_site]}),
        ("POST", "/v1/lanes", "site_id", {"depot_id": 1, "site_id": a_site, "lead_days": 1}),
    ]
    mine = {
        "asset_id": b["asset"],
        "subscription_id": b["subscription"],
        "public_id": b_event,
        "carrier_id": b_carrier["id"],
        "shipment_id": ok(client.get("/v1/shipments", headers=bob.headers))["items"][0]["id"],
        "partner_id": partner["id"],
    }
    covered = {(m, p, f) for m, p, f, _ in nested}
    unprobed = {
        (m, p, f) for m, p, f in _body_id_fields(client) if f not in NOT_CUSTOMER_OBJECTS
    } - covered
    assert not unprobed, f"nest A's id in B's body for these fields too: {sorted(unprobed)}"
    for method, path, field, body in nested:
        url = re.sub(r"\{([^}]+)\}", lambda m: str(mine[m.group(1)]), path)
        answer = client.request(method, url, json=body, headers=bob.headers)
        # refused for A's id: not found, not permitted, or a domain 422 (not a body error
        # that would hide the check)
        code = answer.json().get("code") if answer.status_code == 422 else None
        if answer.status_code not in (403, 404, 422) or code == "invalid_request":
            leaks.append(f"B's key: {method} {url} with A's {field} → {answer.text[:200]}")
        look("B's key", method, url, answer, False, body)
    # the same through B's bulk upload, and the dashboard's buttons on A's objects
    answer = client.post(
        "/v1/itineraries", json={"legs": [dict(leg, carrier="ZQSECRET-C")]}, headers=bob.headers
    )
    look("B's key", "POST", "/v1/itineraries", answer, False, "ZQSECRET-C ZQSECRET-S")
    assert answer.status_code == 422, answer.text
    buttons = [
        f"/dashboard/orders/{a['order_id']}/start",
        f"/dashboard/orders/{a['order_id']}/cancel",
        f"/dashboard/shipments/{a['shipment_id']}/receive",
        f"/dashboard/keys/{a['key_id']}/revoke",
        f"/dashboard/people/{a['user_id']}",
        f"/dashboard/webhooks/deliveries/{a['delivery_id']}/replay",
    ]
    for url in buttons:
        answer = admin.request("POST", url, data={"csrf_token": admin.csrf, "role": "viewer"})
        look("B's admin", "POST", url, answer, True)

    assert not leaks, "\n".join(leaks)
    after = _snapshot(db_url, alice.customer.id)
    assert {t: v for t, v in after.items() if before[t] != v} == {}, "A's rows changed"
    assert _cross_customer_references(db_url) == []
