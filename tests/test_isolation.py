"""Customer isolation on every route that names an object.

Every `/v1` path parameter is either *owned* (the object belongs to one customer: another
customer's key must get 404) or *global* (an operator-managed catalogue: customers may read
it, only the operator may change it). A new parameter name fails
``test_every_path_parameter_is_classified`` until it is added here, with a way to make one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleet.schemas import Principal
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from maintenance.billing.service import close_period
from maintenance.documents.schemas import CorrectionRequest, CreditLineRequest
from maintenance.documents.service import correct_invoice
from tests.conftest import Tenant
from tests.fixtures.api import ok, predict, setup_customer, stock
from tests.fixtures.people import person

GLOBAL = {
    "depot_id",
    "part_id",
    "plan_id",
    "partner_id",
    "replenishment_id",
    "version_id",
    "kind",
    "profile_name",
}
READ = {"GET", "HEAD"}


def _paths(client: TestClient) -> dict[str, set[str]]:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return {p: {m.upper() for m in ops} for p, ops in paths.items() if p.startswith("/v1")}


def _params(path: str) -> list[str]:
    return re.findall(r"\{([^}]+)\}", path)


def _owned_objects(
    client: TestClient, owner: Tenant, operator: dict[str, str], db_url: str
) -> dict[str, Any]:
    """One object of every owned kind, belonging to ``owner``."""
    h = owner.headers
    ids = setup_customer(client, owner)
    endpoint = ok(
        client.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hook"}, headers=h),
        201,
    )
    stock(client, operator)
    predict(db_url, ids["asset"])
    deliveries = ok(client.get(f"/v1/webhooks/endpoints/{endpoint['id']}/deliveries", headers=h))[
        "items"
    ]
    order = ok(client.get("/v1/orders", params={"asset_id": ids["asset"]}, headers=h))["items"][0]
    shipments = ok(client.get("/v1/shipments", headers=h))["items"]
    with connect(db_url) as conn, conn.transaction():
        closed = close_period(
            conn,
            "2026-11",
            ManualClock(datetime(2026, 12, 5, tzinfo=UTC)),
            customer_id=owner.customer.id,
            issue=True,
        )
        note = correct_invoice(
            conn,
            Principal(key_id=0, role="operator"),
            closed.invoices[0].id,
            CorrectionRequest(reason="probe", lines=[CreditLineRequest(line_no=1)]),
            ManualClock(datetime(2026, 12, 5, tzinfo=UTC)),
        )
    device = ok(
        client.post("/v1/devices", json={"ref": f"gw-{owner.customer.slug}"}, headers=h), 201
    )
    key = ok(client.post("/v1/api-keys", json={"role": "technician"}, headers=h), 201)
    carrier = ok(
        client.post("/v1/carriers", json={"ref": "TAIL-1", "carrier_type": "aircraft"}, headers=h),
        201,
    )
    user = ok(
        client.post(
            "/v1/users",
            json={"email": f"probe@{owner.customer.slug}.example", "name": "Probe"},
            headers=h,
        ),
        201,
    )["user"]
    return {
        "carrier_id": carrier["id"],
        "customer_id": owner.customer.id,
        "site_id": ids["site"],
        "asset_id": ids["asset"],
        "subscription_id": ids["subscription"],
        "order_id": order["id"],
        "shipment_id": shipments[0]["id"],
        "device_id": device["id"],
        "key_id": key["id"],
        "user_id": user["id"],
        "invoice_id": closed.invoices[0].id,
        "note_id": note.id,
        "endpoint_id": endpoint["id"],
        "delivery_id": deliveries[0]["id"],
        "public_id": deliveries[0]["event_public_id"],
    }


# Valid bodies for routes whose body is checked before the object is looked up: the isolation
# check must reach the lookup, not stop at a 422.
BODIES: dict[str, dict[str, Any]] = {
    "/v1/orders/{order_id}/schedule": {"scheduled_for": "2026-11-27T08:00:00Z"},
    "/v1/orders/{order_id}/complete": {},
    "/v1/subscriptions/{subscription_id}/assets": {"asset_ids": [1]},
    "/v1/subscriptions/{subscription_id}/plan-changes": {"plan_id": 1},
    "/v1/partners/{partner_id}/sites": {"site_ids": [1]},
    "/v1/webhooks/endpoints/{endpoint_id}/replay": {"since": "2026-01-01T00:00:00Z"},
    "/v1/invoices/{invoice_id}/void": {"reason": "probe"},
    "/v1/carriers/{carrier_id}/position": {"latitude": 1.0, "longitude": 2.0},
    "/v1/carriers/{carrier_id}/itinerary": {"legs": []},
    "/v1/invoices/{invoice_id}/credit-notes": {"reason": "probe", "lines": [{"line_no": 1}]},
    "/v1/customers/{customer_id}/billing-profile": {
        "legal_name": "Probe",
        "country": "DE",
        "customer_type": "consumer",
    },
    "/v1/users/{user_id}": {"role": "viewer"},
    "/v1/invoices/{invoice_id}/payments": {"amount_minor": 1, "reference": "probe"},
}
QUERIES: dict[str, dict[str, str]] = {
    "/v1/assets/{asset_id}/usage": {"period": "2026-11"},
    "/v1/customers/{customer_id}/value-report": {"period": "2026-11"},
    "/v1/customers/{customer_id}/value-report/pdf": {"period": "2026-11"},
}

OWNED = {
    "carrier_id",
    "customer_id",
    "site_id",
    "asset_id",
    "subscription_id",
    "order_id",
    "shipment_id",
    "device_id",
    "key_id",
    "user_id",
    "invoice_id",
    "note_id",
    "endpoint_id",
    "delivery_id",
    "public_id",
}


def test_every_path_parameter_is_classified(client: TestClient) -> None:
    names = {n for p in _paths(client) for n in _params(p)}
    unknown = names - OWNED - GLOBAL
    assert not unknown, f"classify these path parameters in tests/test_isolation.py: {unknown}"


def _fill(path: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: str(values.get(m.group(1), 1)), path)


def test_another_customers_objects_answer_404_on_every_route(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice, bob = make_tenant("alice"), make_tenant("bob")
    objects = _owned_objects(client, alice, operator_headers, db_url)
    checked = 0
    body_errors: list[str] = []
    for path, methods in sorted(_paths(client).items()):
        params = _params(path)
        if not params or not set(params) & OWNED or set(params) & GLOBAL:
            continue
        url = _fill(path, objects)
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            r = client.request(
                method,
                url,
                headers=bob.headers,
                json=BODIES.get(path, {}),
                params=QUERIES.get(path),
            )
            if r.status_code == 422:
                body_errors.append(f"{method} {path}: {r.json()['detail']}")
                continue
            # 404 for anything of another customer; 403 where the action is operator-only
            # anyway (customers); never 2xx, and never a body error that hides the check.
            assert r.status_code in (403, 404), (method, url, r.status_code, r.text)
            if method in READ:
                assert r.status_code == 404, (method, url, r.text)
            checked += 1
    assert not body_errors, "add valid bodies to BODIES:\n" + "\n".join(body_errors)
    assert checked >= 20
    # alice still reads every object of hers
    for path in ("/v1/assets/{asset_id}", "/v1/orders/{order_id}", "/v1/shipments/{shipment_id}"):
        assert client.get(_fill(path, objects), headers=alice.headers).status_code == 200


@pytest.mark.parametrize("role", ["customer", "technician"])
def test_customer_keys_cannot_change_global_catalogues(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    role: str,
) -> None:
    tenant = make_tenant("carol", role=role)
    stock(client, operator_headers)
    body_errors: list[str] = []
    for path, methods in sorted(_paths(client).items()):
        params = set(_params(path))
        if not params & GLOBAL:
            continue
        url = _fill(path, {"kind": "tire"})
        for method in sorted(methods - READ - {"OPTIONS"}):
            r = client.request(method, url, headers=tenant.headers, json=BODIES.get(path, {}))
            if r.status_code == 422:
                body_errors.append(f"{method} {path}: {r.json()['detail']}")
                continue
            assert r.status_code in (403, 404), (method, url, r.status_code, r.text)
    assert not body_errors, "add valid bodies to BODIES:\n" + "\n".join(body_errors)


@pytest.mark.parametrize(
    "access",
    [
        "customer:admin",
        "customer:fleet_manager",
        "customer:viewer",
        "customer:technician",
        "partner:technician",
    ],
)
def test_another_customers_objects_stay_hidden_from_every_role_of_signed_in_users(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
    access: str,
) -> None:
    """The same walk as above, as a signed-in user (session cookie, anti-forgery header) of
    each role of another organisation: never a 2xx; a read is 404, or 403 when the role may
    not read that kind of object at all."""
    alice, bob = make_tenant("alice"), make_tenant("bob")
    objects = _owned_objects(client, alice, operator_headers, db_url)
    partner_id = None
    if access.startswith("partner:"):
        partner_id = client.post(
            "/v1/partners", json={"code": "iso-p", "name": "P"}, headers=operator_headers
        ).json()["id"]
    cid = bob.customer.id if partner_id is None else None
    user = person(client, db_url, access, customer_id=cid, partner_id=partner_id)
    checked = 0
    for path, methods in sorted(_paths(client).items()):
        params = _params(path)
        if not params or not set(params) & OWNED or set(params) & GLOBAL:
            continue
        url = _fill(path, objects)
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            r = user.request(method, url, json=BODIES.get(path, {}), params=QUERIES.get(path))
            assert r.status_code in (403, 404), (access, method, url, r.status_code, r.text)
            if method in READ and r.status_code != 404:
                assert r.json()["code"] == "role_not_permitted", (access, method, url, r.text)
            checked += 1
    assert checked >= 20
