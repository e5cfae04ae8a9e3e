"""The input layer and the error contract: problem documents, NUL, body limit, a 500."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from fleetcare.clock import ManualClock
from fleetcare.settings import Settings
from tests.conftest import Tenant
from tests.fixtures.maintenance import T0

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def test_a_missing_object_is_a_problem_document_with_a_domain_code(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant("alice")
    r = client.get("/v1/assets/999999", headers=alice.headers)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["code"] == "asset_not_found" and body["status"] == 404
    assert body["type"].endswith(":asset_not_found")
    for url, code in [
        ("/v1/sites/999999", "site_not_found"),
        ("/v1/orders/999999", "order_not_found"),
        ("/v1/subscriptions/999999", "subscription_not_found"),
        ("/v1/invoices/999999", "invoice_not_found"),
    ]:
        assert client.get(url, headers=alice.headers).json()["code"] == code, url


def test_no_key_and_a_bad_key_are_problem_documents(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer fc_nope"}):
        r = client.get("/v1/assets", headers=headers)
        assert r.status_code == 401
        assert r.json().keys() >= PROBLEM_KEYS


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/v1/sites", {"ref": "Y", "name": "Yard\u0000"}),
        ("post", "/v1/sites", {"ref": "Y", "name": "Yard", "region": "w\u0000est"}),
        ("post", "/v1/assets", {"kind": "tire", "ref": "T1", "attributes": {"a": "\u0000"}}),
        ("post", "/v1/assets", {"kind": "tire", "ref": "T1", "attributes": {"\u0000": 1}}),
        ("get", "/v1/assets?ref=T%001", None),
        ("get", "/v1/sites/1%00", None),
    ],
)
def test_a_nul_character_anywhere_is_a_422(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    method: str,
    url: str,
    body: dict[str, object] | None,
) -> None:
    alice = make_tenant()
    r = client.request(method, url, json=body, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert "NUL" in r.json()["detail"]


def test_an_escaped_backslash_before_u0000_is_text_not_nul(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    r = client.post("/v1/sites", json={"ref": "Y", "name": "C:\\u0000"}, headers=alice.headers)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "C:\\u0000"


def test_a_body_over_the_limit_is_a_413_before_it_is_read(
    settings: Settings, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    small = settings.model_copy(update={"api_max_body_bytes": 4096})
    with TestClient(create_app(small, db_url)) as c:
        big = {"ref": "Y", "name": "Yard", "region": "x" * 5000}
        r = c.post("/v1/sites", json=big, headers=alice.headers)
        assert r.status_code == 413
        assert r.json()["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused once past the limit
            yield b'{"ref": "Y", "name": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        r = c.post(
            "/v1/sites",
            content=chunks(),
            headers={**alice.headers, "content-type": "application/json"},
        )
        assert r.status_code == 413
        ok = c.post("/v1/sites", json={"ref": "Y", "name": "Yard"}, headers=alice.headers)
        assert ok.status_code == 201, ok.text


def test_an_unexpected_error_is_a_problem_500_and_not_re_raised(
    settings: Settings, db_url: str
) -> None:
    app = create_app(settings, db_url)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    # raise_server_exceptions: a re-raised exception (what makes the server drop a keep-alive
    # connection) would fail this test instead of answering.
    with TestClient(app, raise_server_exceptions=True) as c:
        r = c.get("/boom")
        assert r.status_code == 500
        assert r.json()["code"] == "internal" and r.json()["status"] == 500
        assert c.get("/healthz").status_code == 200


def test_every_operation_documents_its_problems(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "Problem" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            if op.get("security"):
                assert {"401", "403"} <= responses.keys(), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in op:
                assert {"413", "422"} <= responses.keys(), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/problem+json"]["schema"]["$ref"]
                    assert ref.endswith("/Problem"), (method, path, status)


def test_one_security_scheme_per_caller_and_no_key_parameter(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["deviceBasic"]["scheme"] == "basic"  # devices posting telemetry
    for path, item in schema["paths"].items():
        for op in item.values():
            names = {p["name"].lower() for p in op.get("parameters", [])}
            assert not names & {"x-api-key", "authorization"}, path
            if path.startswith("/v1/") and not path.startswith("/v1/telemetry"):
                assert op.get("security") == [{"apiKey": []}], path


def test_null_for_a_field_that_cannot_be_empty_is_a_422(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    site = client.post("/v1/sites", json={"ref": "Y", "name": "Yard"}, headers=alice.headers)
    url = f"/v1/sites/{site.json()['id']}"
    for body in ({"region": None}, {"name": None}):
        r = client.patch(url, json=body, headers=alice.headers)
        assert r.status_code == 422, (body, r.text)
        assert "cannot be null" in r.json()["detail"]
    cleared = client.patch(url, json={"latitude": None}, headers=alice.headers)
    assert cleared.status_code == 200 and cleared.json()["latitude"] is None
    r = client.patch(
        f"/v1/customers/{alice.customer.id}", json={"name": None}, headers=operator_headers
    )
    assert r.status_code == 422, r.text
    for url, body in [
        ("/v1/devices/1", {"name": None}),
        ("/v1/subscriptions/1", {"auto_renew": None}),
        ("/v1/webhooks/endpoints/1", {"url": None}),
    ]:
        assert client.patch(url, json=body, headers=alice.headers).status_code == 422, url


@pytest.mark.parametrize(
    "body",
    [
        {"ref": "Y", "name": "Yard", "latitude": False},
        {"ref": "Y", "name": "Yard", "latitude": "45"},
        {"ref": "Y", "name": True},
        {"ref": "Y", "name": "Yard", "customer_id": 2**63},
        {"ref": "Y", "name": "x" * 10_001},
    ],
)
def test_strict_and_bounded_body_fields(
    client: TestClient, make_tenant: Callable[..., Tenant], body: dict[str, object]
) -> None:
    alice = make_tenant()
    r = client.post("/v1/sites", json=body, headers=alice.headers)
    assert r.status_code == 422, r.text


def test_a_number_that_is_not_finite_is_a_422(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    headers = {**alice.headers, "content-type": "application/json"}
    for raw in (
        '{"ref": "Y", "name": "Y", "latitude": NaN}',
        '{"ref": "Y", "name": "Y", "latitude": Infinity}',
    ):
        r = client.post("/v1/sites", content=raw, headers=headers)
        assert r.status_code == 422, r.text


def test_integers_beyond_their_column_are_a_422_in_path_query_and_body(
    client: TestClient, operator_headers: dict[str, str]
) -> None:
    big = "9223372036854775808"
    for url in [
        f"/v1/orders/{big}",
        f"/v1/shipments?order_id={big}",
        f"/v1/assets?after={big}",
        f"/v1/sites?customer_id={big}",
        f"/v1/devices/1/quarantine?before={big}",
    ]:
        r = client.get(url, headers=operator_headers)
        assert r.status_code == 422, (url, r.text)
    depot = client.post(
        "/v1/depots",
        json={"code": "D1", "name": "Depot", "latitude": 50.2, "longitude": 4.2},
        headers=operator_headers,
    ).json()
    part = client.get("/v1/parts", headers=operator_headers).json()["items"][0]
    url = f"/v1/depots/{depot['id']}/inventory/{part['id']}"
    for body in ({"on_hand": 2**31}, {"on_hand": False}, {"reorder_quantity": 2**31}):
        r = client.put(url, json=body, headers=operator_headers)
        assert r.status_code == 422, (body, r.text)
    plan = {"code": "p-big", "name": "Big", "kinds": ["tire"], "usage_price_minor": 1}
    r = client.post(
        "/v1/plans",
        json={**plan, "usage_price_quantity": 1816359065315821824},
        headers=operator_headers,
    )
    assert r.status_code == 422, r.text


def test_an_install_date_in_the_future_is_refused(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    r = client.post(
        "/v1/assets",
        json={"kind": "tire", "ref": "T1", "installed_at": "2099-01-01T00:00:00Z"},
        headers=alice.headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "installed_in_future"
    r = client.post(
        "/v1/assets",
        json={"kind": "tire", "ref": "T1", "installed_at": "0001-01-01T00:00:00Z"},
        headers=alice.headers,
    )
    assert r.status_code == 422, r.text


def test_completing_an_order_of_an_asset_installed_after_the_clock_is_not_a_500(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Callable[..., Tenant]
) -> None:
    # the clock the orders see stands before the asset's installation (a clock moved back, or an
    # install date recorded late): the life it closes is empty, not an error
    alice = make_tenant()
    tech = make_tenant(alice.customer.slug, role="technician")
    asset = client.post(
        "/v1/assets",
        json={"kind": "tire", "ref": "T1", "installed_at": "2026-11-30T00:00:00Z"},
        headers=alice.headers,
    ).json()
    client.app.state.clock = ManualClock(T0)  # type: ignore[attr-defined]
    order = client.post(
        "/v1/orders",
        json={"asset_id": asset["id"], "component": "tire", "due_at": "2026-12-10T00:00:00Z"},
        headers=alice.headers,
    )
    assert order.status_code == 201, order.text
    oid = order.json()["id"]
    assert client.post(f"/v1/orders/{oid}/start", headers=tech.headers).status_code == 200
    done = client.post(f"/v1/orders/{oid}/complete", json={}, headers=tech.headers)
    assert done.status_code == 200, done.text


def test_a_duplicate_says_what_conflicts_not_a_constraint_name(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    site = {"ref": "YARD", "name": "Yard"}
    assert client.post("/v1/sites", json=site, headers=alice.headers).status_code == 201
    r = client.post("/v1/sites", json=site, headers=alice.headers)
    assert r.status_code == 409 and r.json()["code"] == "already_exists"
    assert "YARD" in r.json()["detail"] and "_key" not in r.json()["detail"]


def test_a_405_allows_every_method_the_path_serves(client: TestClient) -> None:
    for url, methods in [
        ("/v1/sites/5", {"GET", "PATCH", "DELETE"}),
        ("/v1/sites", {"GET", "POST"}),
        ("/v1/orders/3/start", {"POST"}),
    ]:
        r = client.put(url)
        assert r.status_code == 405
        assert {m.strip() for m in r.headers["allow"].split(",")} == methods, url
        assert r.json()["code"] == "method_not_allowed"


def _unbounded(schema: dict[str, Any], components: dict[str, Any], where: str) -> list[str]:
    """Integers without both bounds and strings without a length bound, anywhere in ``schema``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _unbounded(components[name], components, f"{where}->{name}")
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key, [])
        decimal = any(o.get("type") == "number" for o in options)
        for option in options:
            if decimal and option == {"type": "string"}:
                continue  # a Decimal given as text: parsed and bounded as a number
            found += _unbounded(option, components, where)
    kind = schema.get("type")
    if kind == "integer" and not ("minimum" in schema or "exclusiveMinimum" in schema):
        found.append(f"{where}: integer without a minimum")
    if kind == "integer" and not ("maximum" in schema or "exclusiveMaximum" in schema):
        found.append(f"{where}: integer without a maximum")
    pattern = schema.get("pattern", "")
    bounded_pattern = pattern.startswith("^") and pattern.endswith("$") and "*" not in pattern
    bounded_pattern = bounded_pattern and "+" not in pattern and ",}" not in pattern
    if kind == "string" and not (
        "maxLength" in schema
        or "enum" in schema
        or "const" in schema
        or "format" in schema
        or bounded_pattern
    ):
        found.append(f"{where}: string without a maximum length")
    for name, prop in schema.get("properties", {}).items():
        found += _unbounded(prop, components, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _unbounded(schema["items"], components, f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _unbounded(schema["additionalProperties"], components, f"{where}{{}}")
    return found


def test_every_integer_and_string_the_api_takes_is_bounded(client: TestClient) -> None:
    # the class, not the examples: a new route or field with an unbounded number or string fails
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    found: list[str] = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            for param in op.get("parameters", []):
                found += _unbounded(param["schema"], components, f"{label} {param['name']}")
            for media in op.get("requestBody", {}).get("content", {}).values():
                found += _unbounded(media["schema"], components, f"{label} body")
    assert not found, "\n".join(sorted(set(found)))
