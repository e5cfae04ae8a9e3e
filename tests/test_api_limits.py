"""Limits and headers: failed-authentication limit, security headers, billing close of an open
month."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection, connect

from api.app import create_app
from api.auth_limit import AuthFailureLimiter
from fleetcare.clock import ManualClock
from fleetcare.errors import Invalid, TooManyRequests
from fleetcare.settings import Settings
from maintenance.billing.service import close_period
from tests.conftest import Tenant


def test_a_key_that_keeps_failing_is_answered_429_but_other_keys_from_its_address_are_served(
    settings: Settings, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    # Behind a NAT, a proxy or `fleetcare up` every client has the same address: one client
    # with a revoked key must not lock the others out (it did when the count was per address).
    alice = make_tenant()
    limited = settings.model_copy(update={"auth_failure_limit": 5, "auth_failure_window_s": 600})
    with TestClient(create_app(limited, db_url)) as c:
        bad = {"Authorization": "Bearer fc_guess0001"}
        assert [c.get("/v1/assets", headers=bad).status_code for _ in range(5)] == [401] * 5
        r = c.get("/v1/assets", headers=bad)
        assert r.status_code == 429 and r.json()["code"] == "too_many_requests"
        assert int(r.headers["retry-after"]) >= 1
        assert "with this credential" in r.json()["detail"]
        # a valid key from the same address is still served
        assert c.get("/v1/assets", headers=alice.headers).status_code == 200
        # a key sharing the failing key's identifying prefix is held back too: a 200 would
        # tell the guesser its next guess hit
        same_prefix = {"Authorization": "Bearer fc_guess00-another-ending"}
        assert c.get("/v1/assets", headers=same_prefix).status_code == 429
        # the dashboard's sign-in with the failing key counts against the same limit
        page = c.post("/dashboard/login", data={"api_key": "fc_guess0001"}, follow_redirects=False)
        assert page.status_code == 429 and int(page.headers["retry-after"]) >= 1


def test_a_revoked_key_does_not_lock_out_its_neighbours(
    settings: Settings, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    alice, bob = make_tenant(), make_tenant()
    limited = settings.model_copy(update={"auth_failure_limit": 3, "auth_failure_window_s": 600})
    with TestClient(create_app(limited, db_url)) as c:
        assert c.get("/v1/assets", headers=bob.headers).status_code == 200
        with connect(db_url) as conn:
            conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s", (bob.key[:10],)
            )
        assert [c.get("/v1/assets", headers=bob.headers).status_code for _ in range(3)] == [401] * 3
        assert c.get("/v1/assets", headers=bob.headers).status_code == 429
        assert c.get("/v1/assets", headers=alice.headers).status_code == 200


def test_guessing_many_keys_from_one_address_meets_the_address_ceiling(
    settings: Settings, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    proven, unproven = make_tenant(), make_tenant()
    limited = settings.model_copy(
        update={
            "auth_failure_limit": 3,
            "auth_failure_address_limit": 8,
            "auth_failure_window_s": 600,
        }
    )
    with TestClient(create_app(limited, db_url)) as c:
        assert c.get("/v1/assets", headers=proven.headers).status_code == 200
        guesses = [{"Authorization": f"Bearer fc_{i:07d}-guess"} for i in range(9)]
        # every guess is a new credential: only the address-wide count sees them
        assert [c.get("/v1/assets", headers=g).status_code for g in guesses] == [401] * 8 + [429]
        r = c.get("/v1/assets", headers=unproven.headers)
        assert r.status_code == 429 and "from this address" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
        # a key that succeeded from the address before it was held back is still served
        assert c.get("/v1/assets", headers=proven.headers).status_code == 200


def test_the_limit_forgets_failures_after_the_window() -> None:
    now = [0.0]
    limiter = AuthFailureLimiter(limit=2, window_s=10, monotonic=lambda: now[0])
    limiter.failed("a", "key:fc_1")
    limiter.failed("a", "key:fc_1")
    with pytest.raises(TooManyRequests):
        limiter.check("a", "key:fc_1")
    limiter.check("a", "key:fc_2")  # another credential from the same source is served
    limiter.check("b", "key:fc_1")  # the same credential from another source is served
    now[0] = 10.5
    limiter.check("a", "key:fc_1")


def test_the_address_ceiling_is_ten_times_the_credential_limit_unless_set() -> None:
    assert AuthFailureLimiter(limit=20, window_s=60).address_limit == 200
    assert Settings().auth_failure_address_limit == 10 * Settings().auth_failure_limit
    now = [0.0]
    limiter = AuthFailureLimiter(limit=5, window_s=10, monotonic=lambda: now[0], address_limit=3)
    limiter.succeeded("a", "fc_proven")
    for i in range(3):
        limiter.failed("a", f"key:fc_{i}")
    with pytest.raises(TooManyRequests):
        limiter.check("a", "key:fc_new", "fc_new")
    limiter.check("a", "key:fc_prove", "fc_proven")
    now[0] = 10.5
    limiter.check("a", "key:fc_new", "fc_new")


def test_dashboard_pages_carry_security_headers(client: TestClient) -> None:
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_the_session_cookie_is_secure_over_https(
    settings: Settings, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    assert settings.session_https_only is False
    app = create_app(settings, db_url)
    with TestClient(app, base_url="https://testserver") as c:
        r = c.post("/dashboard/login", data={"api_key": alice.key}, follow_redirects=False)
        assert r.status_code == 303, r.text
        assert "secure" in r.headers["set-cookie"].lower()
    with TestClient(app) as c:
        r = c.post("/dashboard/login", data={"api_key": alice.key}, follow_redirects=False)
        assert "secure" not in r.headers["set-cookie"].lower()


def test_billing_close_refuses_a_month_that_has_not_ended_unless_told(
    conn: Connection[Any],
) -> None:
    clock = ManualClock(datetime(2026, 12, 6, 12, 0, tzinfo=UTC))
    with pytest.raises(Invalid) as refused:
        close_period(conn, "2026-12", clock, open_month=False)
    assert refused.value.code == "period_not_ended"
    assert close_period(conn, "2026-12", clock, open_month=True).period == "2026-12"
    assert close_period(conn, "2026-11", clock, open_month=False).period == "2026-11"


def test_a_client_that_leaves_before_its_upload_ends_is_not_an_unhandled_error(
    client: TestClient, make_tenant: Callable[..., Tenant], caplog: pytest.LogCaptureFixture
) -> None:
    """A history upload (a route that streams its body itself) whose client closed the
    connection mid-body was logged as an unhandled error with its traceback and answered 500.
    Now it is the client's 400, logged as what it is; nothing of the upload is imported."""
    import asyncio

    tenant = make_tenant()
    raw_path, query = "/v1/history/import", "kind=tire&profile=p&filename=h.csv"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", tenant.headers["Authorization"].encode()),
            (b"content-type", b"text/csv"),
            (b"content-length", b"100000"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"truck,at,p,odo\n", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level("INFO", logger="api.errors"):
        asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    assert sent[0]["status"] == 400, sent
    assert b"client_disconnected" in sent[1]["body"]
