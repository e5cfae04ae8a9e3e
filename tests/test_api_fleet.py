"""The API: authentication, customer isolation on every route, and bad input."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Tenant

GARBAGE_BODIES: list[Any] = [
    None,
    "not json at all",
    [],
    [1, 2, 3],
    {"unexpected": "field"},
    {"name": 12345, "ref": ["x"], "kind": None, "slug": {"a": 1}},
    {"name": "x" * 10_000, "ref": "bad ref with spaces", "slug": "UPPER"},
    {"latitude": 1e308, "customer_id": -1, "site_id": "abc"},
    {"customer_id": 2**70},
]


@dataclass(frozen=True)
class Route:
    """A route as the OpenAPI document lists it (FastAPI nests included routers)."""

    path: str
    methods: frozenset[str]


def _routes(client: TestClient) -> list[Route]:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = [Route(path, frozenset(m.upper() for m in ops)) for path, ops in paths.items()]
    assert routes, "the OpenAPI document lists no routes"
    return routes


def _fill(path: str, value: int = 1) -> str:
    return re.sub(r"\{[^}]+\}", str(value), path)


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["migrations"] == "current"


def test_every_v1_route_requires_a_key(client: TestClient) -> None:
    for route in _routes(client):
        if not route.path.startswith("/v1"):
            continue
        for method in route.methods - {"HEAD", "OPTIONS"}:
            for headers in (
                {},
                {"Authorization": "Bearer fc_not-a-real-key"},
                {"X-API-Key": "wrong"},
            ):
                r = client.request(method, _fill(route.path), headers=headers, json={})
                assert r.status_code == 401, (method, route.path, r.text)
                assert r.json()["error"] == "unauthorized"


def test_lists_are_scoped(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice, bob = make_tenant("alice"), make_tenant("bob")
    for tenant, refs in ((alice, ["A-1", "A-2"]), (bob, ["B-1"])):
        for ref in refs:
            r = client.post(
                "/v1/assets", json={"kind": "elevator", "ref": ref}, headers=tenant.headers
            )
            assert r.status_code == 201
    seen_alice = {a["ref"] for a in client.get("/v1/assets", headers=alice.headers).json()["items"]}
    seen_bob = {a["ref"] for a in client.get("/v1/assets", headers=bob.headers).json()["items"]}
    seen_op = {a["ref"] for a in client.get("/v1/assets", headers=operator_headers).json()["items"]}
    assert seen_alice == {"A-1", "A-2"} and seen_bob == {"B-1"}
    assert seen_op >= {"A-1", "A-2", "B-1"}
    # a customer key filtering on another customer sees nothing
    r = client.get("/v1/assets", headers=bob.headers, params={"customer_id": alice.customer.id})
    assert r.json()["items"] == []
    keys = client.get("/v1/api-keys", headers=bob.headers).json()["items"]
    assert {k["customer_id"] for k in keys} == {bob.customer.id}
    customers = client.get("/v1/customers", headers=bob.headers).json()["items"]
    assert [c["id"] for c in customers] == [bob.customer.id]


def test_customer_cannot_create_in_another_customer(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice, bob = make_tenant("alice"), make_tenant("bob")
    for path, body in (
        ("/v1/sites", {"ref": "X", "name": "X", "customer_id": alice.customer.id}),
        ("/v1/assets", {"kind": "tire", "ref": "X", "customer_id": alice.customer.id}),
        ("/v1/devices", {"ref": "gw-x", "customer_id": alice.customer.id}),
        ("/v1/api-keys", {"role": "customer", "customer_id": alice.customer.id}),
    ):
        r = client.post(path, json=body, headers=bob.headers)
        assert r.status_code == 404, (path, r.text)
    site = client.post("/v1/sites", json={"ref": "S", "name": "S"}, headers=alice.headers).json()
    r = client.post(
        "/v1/assets", json={"kind": "tire", "ref": "Y", "site_id": site["id"]}, headers=bob.headers
    )
    assert r.status_code == 404
    r = client.post("/v1/api-keys", json={"role": "operator"}, headers=bob.headers)
    assert r.status_code == 403


def test_operator_only_actions(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    r = client.post("/v1/customers", json={"slug": "evil", "name": "Evil"}, headers=alice.headers)
    assert r.status_code == 403
    r = client.patch(
        f"/v1/customers/{alice.customer.id}", json={"name": "Renamed"}, headers=alice.headers
    )
    assert r.status_code == 403
    r = client.post(
        "/v1/customers", json={"slug": "globex", "name": "Globex"}, headers=operator_headers
    )
    assert r.status_code == 201
    again = client.post(
        "/v1/customers", json={"slug": "globex", "name": "Globex"}, headers=operator_headers
    )
    assert again.status_code == 409 and again.json()["error"] == "already_exists"


def test_crud_round_trip_and_pagination(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    site = client.post("/v1/sites", json={"ref": "DEPOT-1", "name": "Depot"}, headers=h).json()
    ids = []
    for i in range(7):
        r = client.post(
            "/v1/assets",
            headers=h,
            json={
                "kind": "engine",
                "ref": f"ENG-{i}",
                "site_id": site["id"],
                "attributes": {"serial": i},
                "installed_at": "2026-01-01T00:00:00Z",
            },
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if after is not None:
            params["after"] = after
        page = client.get("/v1/assets", headers=h, params=params).json()
        seen += [a["id"] for a in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == ids
    r = client.patch(f"/v1/assets/{ids[0]}", headers=h, json={"attributes": {"serial": "X"}})
    assert r.json()["attributes"] == {"serial": "X"}
    r = client.delete(f"/v1/assets/{ids[0]}", headers=h)
    assert r.json()["retired_at"] is not None
    listed = [a["id"] for a in client.get("/v1/assets", headers=h).json()["items"]]
    assert ids[0] not in listed
    dup = client.post("/v1/assets", headers=h, json={"kind": "engine", "ref": "ENG-1"})
    assert dup.status_code == 409
    naive = client.post(
        "/v1/assets",
        headers=h,
        json={"kind": "engine", "ref": "ENG-N", "installed_at": "2026-01-01T00:00:00"},
    )
    assert naive.status_code == 422


def test_retired_customer_keys_stop_working(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    assert client.get("/v1/assets", headers=alice.headers).status_code == 200
    r = client.delete(f"/v1/customers/{alice.customer.id}", headers=operator_headers)
    assert r.status_code == 200
    assert client.get("/v1/assets", headers=alice.headers).status_code == 401


def test_revoked_key_stops_working(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    alice = make_tenant("alice")
    new = client.post("/v1/api-keys", json={"name": "ci"}, headers=alice.headers).json()
    assert new["key"].startswith("fc_")
    other = {"Authorization": f"Bearer {new['key']}"}
    assert client.get("/v1/assets", headers=other).status_code == 200
    assert client.delete(f"/v1/api-keys/{new['id']}", headers=alice.headers).status_code == 200
    assert client.get("/v1/assets", headers=other).status_code == 401
    listed = client.get("/v1/api-keys", headers=alice.headers).json()["items"]
    assert all("key" not in k and "key_hash" not in k for k in listed)


def test_bad_bodies_are_422_never_500(
    client: TestClient, make_tenant: Callable[..., Tenant], operator_headers: dict[str, str]
) -> None:
    alice = make_tenant("alice")
    asset = client.post(
        "/v1/assets", json={"kind": "tire", "ref": "T-1"}, headers=alice.headers
    ).json()
    for route in _routes(client):
        methods = route.methods & {"POST", "PATCH", "PUT"}
        if not route.path.startswith("/v1") or not methods:
            continue
        for method in methods:
            for headers in (alice.headers, operator_headers):
                url = _fill(route.path, asset["id"])
                for body in GARBAGE_BODIES:
                    if isinstance(body, str):
                        r = client.request(
                            method,
                            url,
                            content=body,
                            headers={**headers, "content-type": "application/json"},
                        )
                    else:
                        r = client.request(method, url, json=body, headers=headers)
                    assert r.status_code < 500, (method, url, body, r.text)
                    if r.status_code == 422:
                        payload = r.json()
                        assert payload["error"] and payload["detail"], payload


def test_validation_error_says_what_is_wrong(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant("alice")
    r = client.post(
        "/v1/assets", json={"kind": "Boat!", "ref": "x y", "colour": "red"}, headers=alice.headers
    )
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_request"
    fields = {p["field"] for p in body["problems"]}
    assert {"kind", "ref", "colour"} <= fields


def test_metrics_catalogue_comes_from_the_kinds(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    from kinds.loader import builtin_kinds

    alice = make_tenant("alice")
    rows = client.get("/v1/metrics-catalogue", headers=alice.headers).json()
    assert {(r["kind"], r["name"]) for r in rows} == {
        (k.name, m.name) for k in builtin_kinds().values() for m in k.metrics
    }
