"""Single sign-on through an organisation's OpenID Connect provider, against a real provider
process (``oidc-provider-mock``, see tests/fixtures/oidc.py): the admin's settings (the secret
write-only, redacted in the audit trail, domains claimed once), the code flow with PKCE,
just-in-time users, linking by a verified address, and a clear page for every failure."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from psycopg import Connection

from fleetcare.db import connect
from fleetcare.services import free_port
from people import service as people
from people import sso
from people.schemas import SsoProviderRecord
from tests.conftest import Tenant
from tests.fixtures.oidc import OidcProvider, provider_url, query_of, run_oidc_provider
from tests.fixtures.people import PASSWORD, add_user

SECRET = "s3cret-of-the-client-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One provider process for the module."""
    with run_oidc_provider(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


def configure(
    client: TestClient,
    headers: dict[str, str],
    issuer: str,
    domains: list[str],
    **extra: Any,
) -> dict[str, Any]:
    body = {"issuer": issuer, "client_id": "fleetcare-" + uuid.uuid4().hex[:6]}
    body |= {"client_secret": SECRET, "domains": domains} | extra
    r = client.put("/v1/sso", json=body, headers=headers)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def start(browser: TestClient, email: str) -> Any:
    """Post the sign-in page's single sign-on form."""
    return browser.post("/dashboard/sso/start", data={"email": email}, follow_redirects=False)


def come_back(browser: TestClient, callback_url: str) -> Any:
    parts = urlsplit(callback_url)
    assert parts.path == "/dashboard/sso/callback", callback_url
    return browser.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def sso_sign_in(
    client: TestClient,
    oidc: OidcProvider,
    email: str,
    subject: str,
    claims: dict[str, object] | None = None,
) -> tuple[TestClient, Any]:
    """A new browser through the whole flow as ``subject``: (the browser, the callback's
    answer)."""
    browser = TestClient(client.app)
    r = start(browser, email)
    assert r.status_code == 200, r.text
    oidc.set_user(subject, claims if claims is not None else {"email": email})
    return browser, come_back(browser, oidc.authorize(provider_url(r.text), subject))


def user_row(conn: Connection[Any], email: str) -> dict[str, Any] | None:
    conn.rollback()
    cur = conn.execute(
        "SELECT id, role, status, sign_in_method, external_issuer, external_subject, customer_id"
        " FROM users WHERE lower(email) = lower(%s)",
        (email,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def test_the_admin_sets_single_sign_on_and_the_secret_is_never_shown(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    oidc: OidcProvider,
    db_url: str,
) -> None:
    acme = make_tenant()
    assert client.get("/v1/sso", headers=acme.headers).json()["code"] == "sso_not_configured"
    no_secret = {"issuer": oidc.issuer, "client_id": "x", "domains": ["acme.example"]}
    r = client.put("/v1/sso", json=no_secret, headers=acme.headers)
    assert r.status_code == 422 and r.json()["code"] == "sso_secret_missing"
    for issuer in ("ftp://idp.example", "http://idp.example.com", "https://idp.example/?a=1"):
        r = client.put("/v1/sso", json=no_secret | {"issuer": issuer}, headers=acme.headers)
        assert r.status_code == 422, (issuer, r.text)
    r = client.put(
        "/v1/sso",
        json=no_secret | {"client_secret": SECRET, "domains": ["not a domain"]},
        headers=acme.headers,
    )
    assert r.status_code == 422 and "not an email domain" in r.text

    saved = configure(client, acme.headers, oidc.issuer, ["ACME.example", "@acme.example"])
    assert saved["domains"] == ["acme.example"] and saved["default_role"] == "viewer"
    assert saved["client_secret_set"] is True and "client_secret" not in saved
    assert saved["redirect_uri"].endswith("/dashboard/sso/callback")
    shown = client.get("/v1/sso", headers=acme.headers)
    assert shown.status_code == 200 and SECRET not in shown.text
    # changed without a secret: the stored one stays
    again = {"issuer": oidc.issuer, "client_id": "renamed", "domains": ["acme.example"]}
    r = client.put("/v1/sso", json=again | {"default_role": "fleet_manager"}, headers=acme.headers)
    assert r.status_code == 200 and r.json()["default_role"] == "fleet_manager"
    assert conn.execute("SELECT client_secret FROM sso_providers").fetchone() == (SECRET,)
    r = client.put("/v1/sso", json=again | {"default_role": "dispatcher"}, headers=acme.headers)
    assert r.status_code == 422 and r.json()["code"] == "invalid_role"
    # the audit trail says the secret was set, never what it is
    trail = client.get("/v1/audit?resource=sso_providers", headers=acme.headers)
    assert trail.status_code == 200, trail.text
    assert SECRET not in trail.text and "[redacted]" in trail.text
    conn.rollback()
    dump = conn.execute("SELECT string_agg(after::text || before::text, '') FROM audit_log")
    assert SECRET not in (dump.fetchone() or ("",))[0]
    # who may: a fleet manager reads, only the admin writes; a viewer neither
    _, manager = add_user(db_url, "customer:fleet_manager", customer_id=acme.customer.id)
    _, viewer = add_user(db_url, "customer:viewer", customer_id=acme.customer.id)
    for email, read, write in ((manager, 200, 403), (viewer, 403, 403)):
        browser = TestClient(client.app)
        signed = browser.post(
            "/dashboard/login", data={"email": email, "password": PASSWORD}, follow_redirects=False
        )
        assert signed.status_code == 303
        assert browser.get("/v1/sso").status_code == read
        csrf = browser.get("/v1/me").json()["csrf_token"]
        r = browser.put("/v1/sso", json=again, headers={"X-CSRF-Token": csrf})
        assert r.status_code == write, r.text
    r = client.delete("/v1/sso", headers=acme.headers)
    assert r.status_code == 204
    assert client.get("/v1/sso", headers=acme.headers).status_code == 404


def test_a_domain_is_claimed_by_one_organisation_only(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    oidc: OidcProvider,
) -> None:
    acme, beta = make_tenant(), make_tenant()
    configure(client, acme.headers, oidc.issuer, ["acme.example"])
    body = {"issuer": oidc.issuer, "client_id": "b", "client_secret": SECRET}
    r = client.put(
        "/v1/sso", json=body | {"domains": ["beta.example", "acme.example"]}, headers=beta.headers
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "sso_domain_taken" and "acme.example" in r.json()["detail"]
    assert client.get("/v1/sso", headers=beta.headers).status_code == 404  # nothing was kept
    r = client.put("/v1/sso", json=body | {"domains": ["beta.example"]}, headers=beta.headers)
    assert r.status_code == 200
    # a customer cannot reach another's settings; the operator sets a partner's and its own
    r = client.get(f"/v1/sso?customer_id={beta.customer.id}", headers=acme.headers)
    assert r.status_code == 404
    partner = client.post(
        "/v1/partners", json={"code": "fix", "name": "Fix"}, headers=operator_headers
    ).json()
    r = client.put(
        f"/v1/sso?partner_id={partner['id']}",
        json=body | {"domains": ["fix.example"]},
        headers=operator_headers,
    )
    assert r.status_code == 200 and r.json()["default_role"] == "technician", r.text
    r = client.put("/v1/sso", json=body | {"domains": ["ops.example"]}, headers=operator_headers)
    assert r.status_code == 422 and "default_role" in r.text  # the operator names its role
    r = client.put(
        "/v1/sso",
        json=body | {"domains": ["ops.example"], "default_role": "dispatcher"},
        headers=operator_headers,
    )
    assert r.status_code == 200 and r.json()["organisation"] == "operator"
    assert client.get("/v1/sso", headers=operator_headers).json()["domains"] == ["ops.example"]


def test_first_sign_in_creates_the_user_then_the_subject_finds_it(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    oidc: OidcProvider,
) -> None:
    acme = make_tenant()
    configure(client, acme.headers, oidc.issuer, ["acme.example"], default_role="fleet_manager")
    browser = TestClient(client.app)
    r = start(browser, "Alice@Acme.example")
    assert r.status_code == 200 and 'http-equiv="refresh"' in r.text
    asked = query_of(provider_url(r.text))
    assert provider_url(r.text).startswith(oidc.issuer + "/oauth2/authorize")
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) >= 43
    assert asked["state"] and asked["nonce"] and asked["response_type"] == "code"
    assert set(asked["scope"].split()) >= {"openid", "email"}
    assert asked["login_hint"] == "Alice@Acme.example"
    subject = "alice-" + uuid.uuid4().hex[:6]
    oidc.set_user(subject, {"email": "alice@acme.example", "email_verified": True, "name": "Alice"})
    back = come_back(browser, oidc.authorize(provider_url(r.text), subject))
    assert back.status_code == 303 and back.headers["location"] == "/dashboard", back.text
    me = browser.get("/v1/me").json()
    assert me["access"] == "customer:fleet_manager" and me["customer_id"] == acme.customer.id
    assert me["name"] == "Alice"
    row = user_row(conn, "alice@acme.example")
    assert row is not None
    assert (row["status"], row["sign_in_method"]) == ("active", "oidc")
    assert (row["external_issuer"], row["external_subject"]) == (oidc.issuer, subject)
    # the next time the subject finds the user, whatever address the provider now gives
    second, back = sso_sign_in(
        client,
        oidc,
        "alice@acme.example",
        subject,
        {"email": "alice.renamed@acme.example", "email_verified": True},
    )
    assert back.status_code == 303
    assert second.get("/v1/me").json()["user_id"] == row["id"]
    # the creation is in the audit trail, as the sign-on's doing
    conn.rollback()
    audited = conn.execute(
        "SELECT actor, channel FROM audit_log WHERE resource = 'users' AND action = 'insert'"
        " AND resource_id = %s",
        (str(row["id"]),),
    ).fetchone()
    assert audited == ("sso:sign-in", "dashboard")


def test_an_existing_user_is_linked_only_by_a_verified_address(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    oidc: OidcProvider,
    db_url: str,
) -> None:
    acme = make_tenant()
    configure(client, acme.headers, oidc.issuer, ["acme.example"])
    email = f"bob-{uuid.uuid4().hex[:4]}@acme.example"
    user_id, _ = add_user(db_url, "customer:admin", customer_id=acme.customer.id, email=email)
    subject = "bob-" + uuid.uuid4().hex[:6]
    _, back = sso_sign_in(client, oidc, email, subject, {"email": email})
    assert back.status_code == 401 and "has not verified" in back.text
    _, back = sso_sign_in(client, oidc, email, subject, {"email": email, "email_verified": False})
    assert back.status_code == 401
    row = user_row(conn, email)
    assert row is not None and row["external_subject"] is None
    browser, back = sso_sign_in(
        client, oidc, email, subject, {"email": email, "email_verified": True}
    )
    assert back.status_code == 303, back.text
    assert browser.get("/v1/me").json()["user_id"] == user_id
    assert (user_row(conn, email) or {})["external_subject"] == subject
    # another identity at the provider with the same address does not take the account
    _, back = sso_sign_in(
        client, oidc, email, subject + "-other", {"email": email, "email_verified": True}
    )
    assert back.status_code == 401 and "linked to another identity" in back.text
    # disabled: refused, by subject as by address
    with connect(db_url) as c:
        people.disable_user(c, user_id)
    _, back = sso_sign_in(client, oidc, email, subject, {"email": email, "email_verified": True})
    assert back.status_code == 401 and "disabled" in back.text
    assert "fleetcare_session" not in back.cookies or back.headers.get("location") is None


def test_every_failure_is_a_clear_page_never_a_500(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    oidc: OidcProvider,
    db_url: str,
) -> None:
    acme, beta = make_tenant(), make_tenant()
    configure(client, acme.headers, oidc.issuer, ["acme.example"])
    browser = TestClient(client.app)
    # a domain nobody claims; not an address
    r = start(browser, "someone@nowhere.example")
    assert (
        r.status_code == 404 and "no organisation signs in addresses of nowhere.example" in r.text
    )
    assert start(browser, "no-at-sign").status_code == 422
    # a state that this browser was not given; a callback used twice
    r = browser.get("/dashboard/sso/callback?code=abc&state=forged", follow_redirects=False)
    assert r.status_code == 401 and "not started in this browser" in r.text
    subject = "carol-" + uuid.uuid4().hex[:6]
    email = f"{subject}@acme.example"
    r = start(browser, email)
    oidc.set_user(subject, {"email": email, "email_verified": True})
    callback = oidc.authorize(provider_url(r.text), subject)
    forged = callback.replace("state=", "state=x")
    assert come_back(browser, forged).status_code == 401
    r = start(browser, email)  # the forged try spent the pending sign-in: start again
    callback = oidc.authorize(provider_url(r.text), subject)
    assert come_back(browser, callback).status_code == 303
    replay = come_back(TestClient(client.app), callback)
    assert replay.status_code == 401 and "not started in this browser" in replay.text
    # consent denied at the provider
    r = start(browser, email)
    denied = come_back(browser, oidc.authorize(provider_url(r.text), None))
    assert denied.status_code == 401 and "declined" in denied.text
    # a code the provider does not know
    r = start(browser, email)
    callback = oidc.authorize(provider_url(r.text), subject)
    bad_code = come_back(browser, callback.replace("code=", "code=zz"))
    assert bad_code.status_code == 401 and "refused the code exchange" in bad_code.text
    # unverified address of a domain the organisation does not claim: no account
    stranger = "dave-" + uuid.uuid4().hex[:6]
    _, r = sso_sign_in(
        client, oidc, "x@acme.example", stranger, {"email": f"{stranger}@elsewhere.example"}
    )
    assert r.status_code == 401 and "no account is made" in r.text
    # no address at all
    _, r = sso_sign_in(client, oidc, "x@acme.example", "nomail-" + stranger, {"name": "N"})
    assert r.status_code == 401 and "shared no email address" in r.text
    # an address of another organisation's user
    _, taken = add_user(db_url, "customer:viewer", customer_id=beta.customer.id)
    _, r = sso_sign_in(
        client, oidc, "x@acme.example", "t-" + stranger, {"email": taken, "email_verified": True}
    )
    assert r.status_code == 401 and "another organisation" in r.text
    # the provider is down; its discovery names another issuer
    down = f"http://127.0.0.1:{free_port()}"
    configure(client, beta.headers, down, ["beta.example"])
    r = start(browser, "erin@beta.example")
    assert r.status_code == 502 and "cannot be reached" in r.text
    configure(client, beta.headers, oidc.issuer + "/", ["beta.example"])
    r = start(browser, "erin@beta.example")
    assert r.status_code == 502 and "names another issuer" in r.text
    # switched off: the domain no longer routes
    configure(client, beta.headers, oidc.issuer, ["beta.example"], enabled=False)
    assert start(browser, "erin@beta.example").status_code == 404


def _provider(issuer: str, client_id: str) -> SsoProviderRecord:
    now = datetime.now(UTC)
    return SsoProviderRecord(
        id=1,
        organisation="customer",
        customer_id=1,
        partner_id=None,
        issuer=issuer,
        client_id=client_id,
        client_secret="s",
        default_role="viewer",
        enabled=True,
        created_at=now,
        updated_at=now,
    )


def test_the_id_token_is_checked_signature_issuer_audience_expiry_nonce(tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    issuer, client_id = "https://idp.example", "fleetcare"
    provider = _provider(issuer, client_id)
    client = sso._client(provider, sso.SsoPolicy())
    metadata = {
        "issuer": issuer,
        "jwks": {"keys": [key.as_dict(private=False)]},
        "id_token_signing_alg_values_supported": ["RS256"],
        "_loaded_at": time.time(),
    }
    client.server_metadata.update(metadata)
    now = int(time.time())
    good = {"iss": issuer, "aud": client_id, "sub": "s", "iat": now, "exp": now + 300, "nonce": "n"}

    def check(claims: dict[str, Any], signer: RSAKey = key, nonce: str = "n") -> dict[str, Any]:
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, signer)
        return sso.verify_id_token(client, provider, {"id_token": token}, nonce, metadata)

    assert check(good)["sub"] == "s"
    refusals = {
        "wrong audience": (good | {"aud": "someone-else"}, key, "n"),
        "audience list without us": (good | {"aud": ["a", "b"], "azp": client_id}, key, "n"),
        "wrong issuer": (good | {"iss": "https://evil.example"}, key, "n"),
        "expired": (good | {"exp": now - 3600, "iat": now - 7200}, key, "n"),
        "another key": (good, other, "n"),
        "wrong nonce": (good, key, "other-nonce"),
        "no subject": ({k: v for k, v in good.items() if k != "sub"}, key, "n"),
    }
    for what, (claims, signer, nonce) in refusals.items():
        with pytest.raises(sso.SsoFailed) as refused:
            check(claims, signer, nonce)
        assert refused.value.code == "sso_bad_token", what
    with pytest.raises(sso.SsoFailed):
        sso.verify_id_token(client, provider, {"access_token": "x"}, "n", metadata)


def password_sign_in(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    return TestClient(client.app).post(
        "/dashboard/login", data={"email": email, "password": password}, follow_redirects=False
    )


def test_an_organisation_that_requires_sso_has_no_password_sign_in_or_reset(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    oidc: OidcProvider,
    db_url: str,
) -> None:
    acme, beta = make_tenant(), make_tenant()
    # required needs the provider on and a claimed domain
    body: dict[str, Any] = {"issuer": oidc.issuer, "client_id": "a", "client_secret": SECRET}
    body["required"] = True
    incompletes: list[dict[str, Any]] = [{"domains": ["acme.example"], "enabled": False}]
    for incomplete in [*incompletes, {"domains": []}]:
        r = client.put("/v1/sso", json=body | incomplete, headers=acme.headers)
        assert r.status_code == 422 and r.json()["code"] == "sso_required_incomplete", r.text
    assert client.get("/v1/sso", headers=acme.headers).status_code == 404  # nothing kept
    # an account of another domain, and one of the claimed domain
    _, outside = add_user(db_url, "customer:admin", customer_id=acme.customer.id)
    _, inside = add_user(
        db_url, "customer:viewer", customer_id=acme.customer.id, email="ida@acme.example"
    )
    _, other = add_user(db_url, "customer:viewer", customer_id=beta.customer.id)
    configure(client, acme.headers, oidc.issuer, ["acme.example"])
    assert password_sign_in(client, outside).status_code == 303  # not required yet
    asked = TestClient(client.app).post("/dashboard/reset/request", data={"email": outside})
    assert asked.status_code == 200
    conn.rollback()
    link = conn.execute(
        "SELECT payload->>'token' FROM events WHERE type = 'user.password_reset_requested'"
    ).fetchone()
    assert link is not None and link[0]
    shown = configure(client, acme.headers, oidc.issuer, ["acme.example"], required=True)
    assert shown["required"] is True and shown["trust_unverified_email"] is False
    # every try is a clear refusal that sends to single sign-on, and none counts
    for email in [outside] * 7 + [inside, "nobody@acme.example"]:
        r = password_sign_in(client, email, "wrong-" + PASSWORD)
        assert r.status_code == 403, r.text
        assert "single sign-on only" in r.text and oidc.issuer in r.text
        assert 'id="sso_email" name="email" type="email"' in r.text and email in r.text
    assert password_sign_in(client, outside).status_code == 403  # the right password too
    conn.rollback()
    counted = conn.execute(
        "SELECT failed_sign_ins, locked_until FROM users WHERE email = %s", (outside,)
    ).fetchone()
    assert counted == (0, None)
    # no reset link either (and none is sent)
    for email in (outside, inside):
        r = TestClient(client.app).post("/dashboard/reset/request", data={"email": email})
        assert r.status_code == 403 and "no password to reset" in r.text, r.text
    conn.rollback()
    sent = conn.execute(
        "SELECT count(*) FROM events WHERE type = 'user.password_reset_requested'"
    ).fetchone()
    assert sent == (1,)  # the one asked before
    # and a link sent before sets no password
    spent = TestClient(client.app).post(
        "/dashboard/reset", data={"token": link[0], "password": "a brand new passphrase"}
    )
    assert spent.status_code == 403 and "no password to reset" in spent.text, spent.text
    # keys are unaffected, other organisations too, and the provider still signs in
    assert client.get("/v1/sso", headers=acme.headers).status_code == 200
    keyed = TestClient(client.app).post(
        "/dashboard/login", data={"api_key": acme.key}, follow_redirects=False
    )
    assert keyed.status_code == 303
    assert password_sign_in(client, other).status_code == 303
    _, back = sso_sign_in(
        client,
        oidc,
        inside,
        "ida-" + uuid.uuid4().hex[:6],
        {"email": inside, "email_verified": True},
    )
    assert back.status_code == 303, back.text
    # not required any more: passwords again
    configure(client, acme.headers, oidc.issuer, ["acme.example"], required=False)
    assert password_sign_in(client, outside).status_code == 303


def test_the_operator_cannot_require_a_provider_that_does_not_work(
    client: TestClient, operator_headers: dict[str, str], oidc: OidcProvider, db_url: str
) -> None:
    body: dict[str, Any] = {"client_id": "ops", "client_secret": SECRET}
    body |= {"default_role": "dispatcher", "domains": ["ops.example"], "required": True}
    down = f"http://127.0.0.1:{free_port()}"
    for issuer in (down, oidc.issuer + "/"):  # unreachable; discovery names another issuer
        r = client.put("/v1/sso", json=body | {"issuer": issuer}, headers=operator_headers)
        assert r.status_code == 422 and r.json()["code"] == "sso_required_incomplete", r.text
        assert "does not work" in r.json()["detail"]
    assert client.get("/v1/sso", headers=operator_headers).status_code == 404
    _, admin = add_user(db_url, "operator:admin", email="root@ops.example")
    assert password_sign_in(client, admin).status_code == 303
    r = client.put("/v1/sso", json=body | {"issuer": oidc.issuer}, headers=operator_headers)
    assert r.status_code == 200 and r.json()["required"] is True, r.text
    assert password_sign_in(client, admin).status_code == 403


def test_just_in_time_creation_needs_a_verified_address_unless_trusted(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    oidc: OidcProvider,
) -> None:
    acme = make_tenant()
    configure(client, acme.headers, oidc.issuer, ["acme.example"])
    subject = "uma-" + uuid.uuid4().hex[:6]
    email = f"{subject}@acme.example"
    unverified: list[dict[str, object]] = [
        {"email": email},
        {"email": email, "email_verified": False},
    ]
    for claims in unverified:
        _, back = sso_sign_in(client, oidc, email, subject, claims)
        assert back.status_code == 401 and "has not verified" in back.text, back.text
        assert "no account is made" in back.text
    assert user_row(conn, email) is None
    shown = configure(
        client, acme.headers, oidc.issuer, ["acme.example"], trust_unverified_email=True
    )
    assert shown["trust_unverified_email"] is True
    # trusted: only for the claimed domains
    stranger = f"{subject}@elsewhere.example"
    _, back = sso_sign_in(client, oidc, email, subject + "-x", {"email": stranger})
    assert back.status_code == 401 and "not one this organisation claims" in back.text
    _, back = sso_sign_in(client, oidc, email, subject, {"email": email})
    assert back.status_code == 303, back.text
    assert (user_row(conn, email) or {})["external_subject"] == subject
