"""Roles hold inside a customer: every write route, for every role, from the one table."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from api.permissions import PERMISSIONS, WRITES, roles
from tests.conftest import Tenant

CELLS = [(method, route, role) for (method, route) in sorted(PERMISSIONS) for role in roles()]


@pytest.fixture
def keys(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Callable[..., Tenant]
) -> dict[str, dict[str, str]]:
    """A key of each role; the customer and technician belong to the same customer."""
    customer = make_tenant("roles-acme")
    technician = make_tenant("roles-acme", role="technician")
    partner = client.post(
        "/v1/partners", json={"code": "roles-p", "name": "P"}, headers=operator_headers
    ).json()
    key = client.post(
        f"/v1/partners/{partner['id']}/api-keys", json={}, headers=operator_headers
    ).json()["key"]
    return {
        "operator": operator_headers,
        "customer": customer.headers,
        "technician": technician.headers,
        "partner": {"Authorization": f"Bearer {key}"},
    }


def test_every_write_route_has_an_entry_and_every_entry_a_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    writes = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method.upper() in WRITES and {"apiKey": []} in op.get("security", [])
    }
    assert writes == set(PERMISSIONS)


def test_each_role_on_each_write_route(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    # One test walks every cell (route x role) so that the keys are made once; a failure
    # names the cell.
    wrong: list[str] = []
    for method, route, role in CELLS:
        url = re.sub(r"\{[^}]+\}", "999999", route).replace("999999/rollback", "tire/rollback")
        r = client.request(method, url, json={}, headers=keys[role])
        refused = r.status_code == 403 and r.json()["code"] == "role_not_permitted"
        if refused == (role in PERMISSIONS[(method, route)]):
            wrong.append(f"{role} {method} {route}: {r.status_code} {r.text[:120]}")
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
