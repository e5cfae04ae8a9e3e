"""Browser sessions: the signed cookie carries only a random session id; the session itself
(who, its anti-forgery token, its expiry) lives in the database (``people.service``), so that
signing out, disabling a user or revoking a key ends it at once on every API worker.

Signing in always starts a new session (a new id: no fixation), signing out ends it. A write
authenticated by the cookie — a dashboard form or a script calling the API with the browser's
cookie — must carry the session's anti-forgery token (form field ``csrf_token`` or header
``X-CSRF-Token``); a request with an API key in a header needs none (no browser sends one on
its own).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from fleet.schemas import Principal
from fleetcare.clock import SystemClock
from fleetcare.errors import Forbidden
from fleetcare.settings import Settings
from fleetcare.tenancy import operator_lookup
from people import service as people
from people.sso import SsoPolicy

SESSION_KEY = "sid"
LOGIN_CSRF_KEY = "login_csrf"


def _now(request: Request) -> Any:
    clock = getattr(request.app.state, "clock", None) or SystemClock()
    return clock.now()


def session_principal(request: Request, conn: Any) -> tuple[Principal, str] | None:
    """The principal and anti-forgery token of the request's session, if it has a live one."""
    cached = getattr(request.state, "session_principal", None)
    if cached is not None:
        return cached
    if "session" not in request.scope:
        return None
    sid = request.session.get(SESSION_KEY)
    if not isinstance(sid, str):
        return None
    with operator_lookup(conn):  # the session's user or key, before its organisation is known
        found = people.session_principal(conn, sid, _now(request))
    if found is None:
        request.session.clear()  # ended, expired, or its user or key no longer signs in
        return None
    request.state.session_principal = found
    return found


def begin(request: Request, conn: Any, principal: Principal) -> str:
    """Start a new session for ``principal`` (the old one, if any, ends); its CSRF token."""
    end(request, conn)
    settings: Settings = request.app.state.settings
    started = people.start_session(
        conn, principal, _now(request), timedelta(seconds=settings.session_max_age_s)
    )
    request.session.clear()
    request.session[SESSION_KEY] = started.session_id
    request.state.session_principal = (principal, started.csrf_token)
    return started.csrf_token


def end(request: Request, conn: Any) -> None:
    """End the request's session (sign out)."""
    if "session" not in request.scope:
        return
    sid = request.session.get(SESSION_KEY)
    if isinstance(sid, str):
        people.end_session(conn, sid)
    request.session.clear()
    request.state.session_principal = None


def login_csrf(request: Request) -> str:
    """The anti-forgery token of the sign-in forms (before any session exists)."""
    token = request.session.get(LOGIN_CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[LOGIN_CSRF_KEY] = token
    return token


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site."""
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            return urlsplit(value).netloc == host
    return True  # neither sent (not a browser): the token still applies


def check_token(expected: str | None, given: str | None) -> None:
    """Forbidden (``csrf_failed``) unless ``given`` is the expected anti-forgery token."""
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise Forbidden(
            "the form is stale or forged: reload the page and try again", code="csrf_failed"
        )


def check_login_form(request: Request, form: dict[str, str]) -> None:
    """Refuse a sign-in form another site could have posted (login forgery): a browser names
    the page it posts from (Origin or Referer), which must be ours, and the form carries the
    token of the page it came from. A client that is not a browser (a script, a test) sends
    neither header and no cookie of ours, and cannot be made to post by another site."""
    if not same_origin(request):
        raise Forbidden("cross-origin form posts are refused", code="csrf_failed")
    from_browser = request.headers.get("origin") or request.headers.get("referer")
    if from_browser or form.get("csrf_token"):
        expected = request.session.get(LOGIN_CSRF_KEY)
        check_token(expected if isinstance(expected, str) else None, form.get("csrf_token"))


def policy(request: Request) -> people.SignInPolicy:
    """The sign-in policy of the app's settings."""
    settings: Settings = request.app.state.settings
    return people.SignInPolicy(
        lockout_failures=settings.user_lockout_failures,
        lockout=timedelta(seconds=settings.user_lockout_s),
        invitation_ttl=timedelta(hours=settings.invitation_ttl_h),
        reset_ttl=timedelta(minutes=settings.password_reset_ttl_min),
        public_url=settings.public_base_url,
        password_cost=people.PasswordCost.from_settings(settings),
    )


def sso_policy(request: Request) -> SsoPolicy:
    """How single sign-on reaches providers, from the app's settings."""
    settings: Settings = request.app.state.settings
    return SsoPolicy(
        public_url=settings.public_base_url,
        timeout_s=settings.sso_timeout_s,
        pending_ttl_s=settings.sso_pending_ttl_s,
    )
