"""Limits and headers: failed-authentication limit, security headers, billing close of an open
month."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from api.app import create_app
from api.auth_limit import AuthFailureLimiter
from fleetcare.clock import ManualClock
from fleetcare.errors import Invalid, TooManyRequests
from fleetcare.settings import Settings
from maintenance.billing.service import close_period
from tests.conftest import Tenant


def test_repeated_bad_keys_from_one_source_are_answered_429(
    settings: Settings, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    alice = make_tenant()
    limited = settings.model_copy(update={"auth_failure_limit": 5, "auth_failure_window_s": 600})
    with TestClient(create_app(limited, db_url)) as c:
        bad = {"Authorization": "Bearer fc_guess"}
        assert [c.get("/v1/assets", headers=bad).status_code for _ in range(5)] == [401] * 5
        r = c.get("/v1/assets", headers=bad)
        assert r.status_code == 429 and r.json()["code"] == "too_many_requests"
        assert int(r.headers["retry-after"]) >= 1
        # the source is held back even with a valid key (else a guess would show as a 200)
        assert c.get("/v1/assets", headers=alice.headers).status_code == 429
        # the dashboard's sign-in counts against the same limit
        page = c.post("/dashboard/login", data={"api_key": "fc_guess2"}, follow_redirects=False)
        assert page.status_code == 429


def test_the_limit_forgets_failures_after_the_window() -> None:
    now = [0.0]
    limiter = AuthFailureLimiter(limit=2, window_s=10, monotonic=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    with pytest.raises(TooManyRequests):
        limiter.check("a")
    limiter.check("b")  # another source is not held back
    now[0] = 10.5
    limiter.check("a")


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
