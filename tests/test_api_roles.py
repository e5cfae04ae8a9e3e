"""Roles hold inside an organisation: every route (API and dashboard, reads and writes), for
every role — API keys of the first version's four roles, and signed-in users of the others —
from the one table (``api/permissions.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.permissions import ACTIONS, DEVICE_ROUTES, PUBLIC, allowed_roles, app_routes, roles
from fleet.access import KEY_ROLES
from tests.conftest import Tenant
from tests.fixtures.people import person

REFUSED = {"role_not_permitted"}


class KeyCaller:
    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, headers=self.headers, **kwargs)


@pytest.fixture
def callers(
    client: TestClient,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
    db_url: str,
) -> dict[str, Any]:
    """A caller of each role: keys for the key roles, signed-in users for the rest; the
    customer's all belong to the same customer."""
    customer = make_tenant("roles-acme")
    technician = make_tenant("roles-acme", role="technician")
    partner = client.post(
        "/v1/partners", json={"code": "roles-p", "name": "P"}, headers=operator_headers
    ).json()
    key = client.post(
        f"/v1/partners/{partner['id']}/api-keys", json={}, headers=operator_headers
    ).json()["key"]
    by_key = {
        "operator": operator_headers,
        "customer": customer.headers,
        "technician": technician.headers,
        "partner": {"Authorization": f"Bearer {key}"},
    }
    out: dict[str, Any] = {KEY_ROLES[k]: KeyCaller(client, h) for k, h in by_key.items()}  # type: ignore[index]
    for access in roles():
        if access not in out:
            cid = customer.customer.id if access.startswith("customer:") else None
            out[access] = person(client, db_url, access, customer_id=cid)
    return out


def test_every_route_has_an_entry_and_every_entry_a_route(client: TestClient) -> None:
    routes = {(m, p) for m, p, _ in app_routes(client.app.routes)}  # type: ignore[attr-defined]
    assert routes - PUBLIC - DEVICE_ROUTES == set(ACTIONS), (
        f"no entry: {sorted(routes - PUBLIC - DEVICE_ROUTES - set(ACTIONS))};"
        f" no route: {sorted(set(ACTIONS) - routes)}"
    )


def test_the_live_feed_needs_the_overviews_permission() -> None:
    assert ACTIONS[("GET", "/dashboard/live")] == ACTIONS[("GET", "/dashboard")]


def _url(route: str) -> str:
    url = re.sub(r"\{action\}", "start", route)
    return re.sub(r"\{[^}]+\}", "999999", url).replace("999999/rollback", "tire/rollback")


def test_each_role_on_each_route(client: TestClient, callers: dict[str, Any]) -> None:
    # One test walks every cell (route x role) so that the callers are made once; a failure
    # names the cell.
    wrong: list[str] = []
    for method, route in sorted(ACTIONS):
        if (method, route) == ("GET", "/dashboard/live"):
            continue  # a stream that does not end: its permission is the overview's
        allowed = allowed_roles(method, route)
        for access in roles():
            r = callers[access].request(
                method, _url(route), json={}, follow_redirects=False, data=None
            )
            body = r.json() if "json" in r.headers.get("content-type", "") else None
            code = body.get("code") if isinstance(body, dict) else None
            page = re.search(r'id="forbidden" data-code="(\w+)"', r.text)
            code = code or (page[1] if page else None)  # a dashboard page's "Not allowed"
            refused = r.status_code == 403 and code in REFUSED
            if refused == (access in allowed):
                wrong.append(f"{access} {method} {route}: {r.status_code} {r.text[:120]}")
    assert not wrong, "\n".join(wrong)


def test_a_technician_cannot_manage_its_customers_fleet(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant("roles-fleet")
    tech = make_tenant("roles-fleet", role="technician")
    site = client.post("/v1/sites", json={"ref": "S1", "name": "S"}, headers=acme.headers).json()
    for method, url, body in [
        ("POST", "/v1/sites", {"ref": "S2", "name": "S"}),
        ("PATCH", f"/v1/sites/{site['id']}", {"name": "T"}),
        ("DELETE", f"/v1/sites/{site['id']}", None),
        ("POST", "/v1/assets", {"kind": "tire", "ref": "A1"}),
        ("POST", "/v1/devices", {"ref": "gw-1"}),
    ]:
        r = client.request(method, url, json=body, headers=tech.headers)
        assert r.status_code == 403, (method, url, r.text)
    assert client.get(f"/v1/sites/{site['id']}", headers=tech.headers).json()["retired_at"] is None
