"""People: users of an organisation, sign-in with a session cookie (rotated, HttpOnly, CSRF),
lockout, invitations and password resets delivered as events, user management, the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection
from typer.testing import CliRunner

from api.app import create_app
from cli.main import app as cli_app
from fleet.schemas import Principal
from fleetcare.db import connect
from fleetcare.settings import Settings
from people import service as people
from tests.conftest import Tenant
from tests.fixtures.people import (
    PASSWORD,
    TEST_PASSWORD_COST,
    TEST_PASSWORD_ENV,
    add_user,
    person,
    sign_in,
)

runner = CliRunner()


def _events(db_url: str, type_: str) -> list[dict[str, Any]]:
    with connect(db_url) as conn:
        rows = conn.execute(
            "SELECT payload FROM events WHERE type = %s ORDER BY id", (type_,)
        ).fetchall()
    return [r[0] for r in rows]


def _stored_hash(db_url: str, user_id: int) -> str | None:
    with connect(db_url) as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,)).fetchone()
    return row[0] if row else None


# --- users -------------------------------------------------------------------------------------


def test_passwords_are_argon2id_and_addresses_unique_without_case(
    db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    user_id, _ = add_user(
        db_url, "customer:viewer", customer_id=acme.customer.id, email="Ann@Example.com"
    )
    stored = _stored_hash(db_url, user_id)
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(Exception, match="exists"):
        add_user(db_url, "customer:admin", customer_id=acme.customer.id, email="ann@example.COM")
    with pytest.raises(Exception, match="role is one of"):
        add_user(db_url, "customer:dispatcher", customer_id=acme.customer.id)
    with connect(db_url) as conn:
        assert people.find_user(conn, "ANN@example.com") is not None


# --- signing in ----------------------------------------------------------------------------------


def test_the_product_hashes_at_the_librarys_cost_and_the_settings_can_lower_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in TEST_PASSWORD_ENV:  # the suite's own low cost (tests/conftest.py) is not set
        monkeypatch.delenv(name, raising=False)
    product = people.PasswordCost.from_settings(Settings())
    assert product == people.LIBRARY_COST == people.SignInPolicy().password_cost
    # argon2-cffi's RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes
    assert people.hash_password(PASSWORD).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert people.hash_password(PASSWORD, product).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    for name, value in TEST_PASSWORD_ENV.items():
        monkeypatch.setenv(name, value)
    lowered = people.PasswordCost.from_settings(Settings())
    assert lowered == TEST_PASSWORD_COST
    assert people.hash_password(PASSWORD, lowered).startswith("$argon2id$v=19$m=8,t=1,p=1$")


def test_a_hash_of_other_parameters_is_remade_at_the_settings_cost_when_its_user_signs_in(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    with connect(db_url) as conn:  # made at the library's cost, as before the setting
        user = people.add_user(
            conn, organisation="customer", email="old@example.com", name="Old", role="viewer",
            customer_id=acme.customer.id, password=PASSWORD,
        )  # fmt: skip
    assert (_stored_hash(db_url, user.id) or "").startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    sign_in(client, "old@example.com")  # the app's settings: the suite's cost
    assert (_stored_hash(db_url, user.id) or "").startswith("$argon2id$v=19$m=8,t=1,p=1$")
    sign_in(client, "old@example.com")  # the new hash holds the same password


def test_sign_in_sets_a_rotated_httponly_lax_cookie_and_sign_out_ends_it(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    _, email = add_user(db_url, "customer:fleet_manager", customer_id=acme.customer.id)
    browser = TestClient(client.app)
    page = browser.get("/dashboard/login")
    before = browser.cookies.get("fleetcare_session")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token and before
    r = browser.post(
        "/dashboard/login",
        data={"email": email.upper(), "password": PASSWORD, "csrf_token": token[1]},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    after = browser.cookies.get("fleetcare_session")
    assert after and after != before  # a new session id on sign-in
    home = browser.get("/dashboard")
    assert home.status_code == 200
    assert "Fleet Manager" in home.text and acme.customer.name in home.text  # person, org
    me = browser.get("/v1/me").json()
    assert (
        me["access"] == "customer:fleet_manager" and me["organisation_name"] == acme.customer.name
    )
    # the cookie of the ended session signs nobody in any more
    stolen = TestClient(client.app, cookies={"fleetcare_session": after})
    assert stolen.get("/v1/me").status_code == 200
    out = browser.post(
        "/dashboard/logout", data={"csrf_token": me["csrf_token"]}, follow_redirects=False
    )
    assert out.status_code == 303
    assert stolen.get("/v1/me").status_code == 401
    assert browser.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_sign_in_form_from_another_site_or_without_its_token_is_refused(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    _, email = add_user(db_url, "customer:viewer", customer_id=acme.customer.id)
    browser = TestClient(client.app)
    form = {"email": email, "password": PASSWORD}
    evil = browser.post("/dashboard/login", data=form, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and evil.json()["code"] == "csrf_failed"
    tokenless = browser.post("/dashboard/login", data=form, headers={"Origin": "http://testserver"})
    assert tokenless.status_code == 403 and tokenless.json()["code"] == "csrf_failed"


def test_wrong_passwords_lock_the_account_and_the_count_survives_the_refusal(
    settings: Settings, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    _, email = add_user(db_url, "customer:viewer", customer_id=acme.customer.id)
    strict = settings.model_copy(update={"user_lockout_failures": 3, "user_lockout_s": 600})
    with TestClient(create_app(strict, db_url)) as c:
        wrong = {"email": email, "password": "not the password"}
        unknown = c.post("/dashboard/login", data={"email": "nobody@x.org", "password": "x"})
        assert unknown.status_code == 401
        first = c.post("/dashboard/login", data=wrong)
        assert first.status_code == 401 and "unknown address or wrong password" in first.text
        assert "unknown address or wrong password" in unknown.text  # the same words
        for _ in range(2):
            assert c.post("/dashboard/login", data=wrong).status_code == 401
        right = c.post("/dashboard/login", data={"email": email, "password": PASSWORD})
        assert right.status_code == 429 and int(right.headers["retry-after"]) > 500
        assert "too many failed sign-ins" in right.text
    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT failed_sign_ins, locked_until IS NOT NULL FROM users WHERE email = %s",
            (email,),
        ).fetchone()
    assert row == (3, True)


def test_repeated_failures_from_one_address_are_held_back(settings: Settings, db_url: str) -> None:
    limited = settings.model_copy(
        update={
            "auth_failure_limit": 2,
            "auth_failure_address_limit": 3,
            "auth_failure_window_s": 600,
        }
    )
    with TestClient(create_app(limited, db_url)) as c:
        for _ in range(2):  # one account: held back at the per-credential limit
            r = c.post("/dashboard/login", data={"email": "u0@x.org", "password": "guess"})
            assert r.status_code == 401
        r = c.post("/dashboard/login", data={"email": "U0@x.org", "password": "guess"})
        assert r.status_code == 429
        r = c.post("/dashboard/login", data={"email": "u1@x.org", "password": "guess"})
        assert r.status_code == 401  # another account from the same address is still tried
        # spraying many accounts: held back at the address-wide ceiling
        r = c.post("/dashboard/login", data={"email": "u9@x.org", "password": "guess"})
        assert r.status_code == 429


# --- invitations and resets ----------------------------------------------------------------------


def test_an_admin_invites_and_the_link_works_once(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    r = client.post(
        "/v1/users",
        json={"email": "new@acme.example", "name": "New Person", "role": "fleet_manager"},
        headers=acme.headers,
    )
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert user["status"] == "invited" and user["customer_id"] == acme.customer.id
    [event] = _events(db_url, "user.invited")
    assert event["email"] == "new@acme.example" and "/dashboard/invitation?token=" in event["link"]
    token = event["token"]
    browser = TestClient(client.app)
    page = browser.get(f"/dashboard/invitation?token={token}")
    assert page.status_code == 200 and token in page.text
    short = browser.post("/dashboard/invitation", data={"token": token, "password": "short"})
    assert short.status_code == 422 and "10 to 200 characters" in short.text
    ok = browser.post(
        "/dashboard/invitation",
        data={"token": token, "password": PASSWORD},
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    assert browser.get("/v1/me").json()["user_id"] == user["id"]
    again = TestClient(client.app).post(
        "/dashboard/invitation", data={"token": token, "password": PASSWORD}
    )
    assert again.status_code == 422 and "unknown, used or expired" in again.text
    listed = client.get("/v1/users", headers=acme.headers).json()["items"]
    assert [(u["email"], u["status"]) for u in listed] == [("new@acme.example", "active")]


def test_an_expired_invitation_is_refused(
    conn: Connection[Any], db_url: str, make_tenant: Callable[..., Tenant], client: TestClient
) -> None:
    acme = make_tenant()
    admin = Principal(key_id=1, role="customer", customer_id=acme.customer.id)
    from people.schemas import UserInvite

    policy = people.SignInPolicy(invitation_ttl=timedelta(hours=1))
    long_ago = people._utcnow() - timedelta(hours=2)
    people.invite_user(conn, admin, UserInvite(email="late@a.example", name="L"), long_ago, policy)
    conn.commit()
    [event] = _events(db_url, "user.invited")
    r = TestClient(client.app).post(
        "/dashboard/invitation", data={"token": event["token"], "password": PASSWORD}
    )
    assert r.status_code == 422 and "expired" in r.text


def test_a_password_reset_goes_out_as_an_event_and_replaces_the_password(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    user_id, email = add_user(db_url, "customer:viewer", customer_id=acme.customer.id)
    old_session = sign_in(client, email)
    browser = TestClient(client.app)
    for address in (email, "nobody@nowhere.example"):
        r = browser.post("/dashboard/reset/request", data={"email": address})
        assert r.status_code == 200 and "a reset link is on its way" in r.text
    [event] = _events(db_url, "user.password_reset_requested")  # none for the unknown address
    assert event["user_id"] == user_id and "/dashboard/reset?token=" in event["link"]
    done = browser.post(
        "/dashboard/reset",
        data={"token": event["token"], "password": "a brand new passphrase"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert old_session.get("/v1/me").status_code == 401  # other sessions ended
    assert (
        TestClient(client.app)
        .post("/dashboard/login", data={"email": email, "password": PASSWORD})
        .status_code
        == 401
    )
    sign_in(client, email, "a brand new passphrase")


# --- managing users ----------------------------------------------------------------------------


def test_a_viewer_is_refused_writes_and_a_session_write_needs_its_token(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    viewer = person(client, db_url, "customer:viewer", customer_id=acme.customer.id)
    assert viewer.client.get("/v1/assets").status_code == 200
    r = viewer.request("POST", "/v1/assets", json={"kind": "tire", "ref": "T-1"})
    assert r.status_code == 403 and r.json()["code"] == "role_not_permitted"
    assert "customer:viewer user may not assets:write" in r.json()["detail"]
    admin = person(client, db_url, "customer:admin", customer_id=acme.customer.id)
    tokenless = admin.client.post("/v1/sites", json={"ref": "S1", "name": "S"})
    assert tokenless.status_code == 403 and tokenless.json()["code"] == "csrf_failed"
    made = admin.request("POST", "/v1/sites", json={"ref": "S1", "name": "S"})
    assert made.status_code == 201, made.text


def test_an_admin_changes_roles_and_disables_users_of_its_own_organisation_only(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme, other = make_tenant(), make_tenant()
    admin = person(client, db_url, "customer:admin", customer_id=acme.customer.id)
    viewer = person(client, db_url, "customer:viewer", customer_id=acme.customer.id)
    stranger = person(client, db_url, "customer:viewer", customer_id=other.customer.id)
    r = admin.request("PATCH", f"/v1/users/{viewer.user_id}", json={"role": "fleet_manager"})
    assert r.status_code == 200 and r.json()["role"] == "fleet_manager"
    assert viewer.client.get("/v1/me").json()["access"] == "customer:fleet_manager"
    bad = admin.request("PATCH", f"/v1/users/{viewer.user_id}", json={"role": "dispatcher"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_role"
    assert admin.request("PATCH", f"/v1/users/{stranger.user_id}", json={}).status_code == 404
    own = admin.request("PATCH", f"/v1/users/{admin.user_id}", json={"status": "disabled"})
    assert own.status_code == 409
    off = admin.request("PATCH", f"/v1/users/{viewer.user_id}", json={"status": "disabled"})
    assert off.status_code == 200 and off.json()["status"] == "disabled"
    assert viewer.client.get("/v1/me").status_code == 401  # its session ended at once
    again = TestClient(client.app).post(
        "/dashboard/login", data={"email": viewer.email, "password": PASSWORD}
    )
    assert again.status_code == 401 and "disabled" in again.text


# --- API keys: scopes, expiry, last use ----------------------------------------------------------


def test_keys_have_scopes_an_expiry_and_a_last_use(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    reader = client.post(
        "/v1/api-keys", json={"name": "r", "scopes": ["assets:read"]}, headers=acme.headers
    ).json()
    h = {"Authorization": f"Bearer {reader['key']}"}
    assert client.get("/v1/assets", headers=h).status_code == 200
    refused = client.post("/v1/assets", json={"kind": "tire", "ref": "X"}, headers=h)
    assert refused.status_code == 403 and refused.json()["code"] == "scope_not_permitted"
    assert client.get("/v1/orders", headers=h).status_code == 403
    bad = client.post("/v1/api-keys", json={"scopes": ["assets:delete"]}, headers=acme.headers)
    assert bad.status_code == 422 and "unknown scopes" in bad.text
    past = client.post(
        "/v1/api-keys", json={"expires_at": "2020-01-01T00:00:00Z"}, headers=acme.headers
    )
    assert past.status_code == 422 and past.json()["code"] == "expired_on_creation"
    listed = client.get(f"/v1/api-keys/{reader['id']}", headers=acme.headers).json()
    assert listed["scopes"] == ["assets:read"] and listed["last_used_at"] is not None
    with connect(db_url) as conn:
        conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE id = %s",
            (reader["id"],),
        )
    gone = client.get("/v1/assets", headers=h)
    assert gone.status_code == 401 and "expired" in gone.json()["detail"]


def test_last_use_is_written_at_most_once_a_minute(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT id FROM api_keys WHERE customer_id = %s", (acme.customer.id,)
        ).fetchone()
    assert row is not None
    key_id = row[0]
    client.get("/v1/assets", headers=acme.headers)
    with connect(db_url) as conn:
        first = conn.execute(
            "SELECT last_used_at FROM api_keys WHERE id = %s", (key_id,)
        ).fetchone()
    for _ in range(3):
        client.get("/v1/assets", headers=acme.headers)
    with connect(db_url) as conn:
        later = conn.execute(
            "SELECT last_used_at FROM api_keys WHERE id = %s", (key_id,)
        ).fetchone()
    assert first is not None and first[0] is not None and later == first


def test_a_scoped_key_cannot_make_a_wider_key(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    keys = client.post(
        "/v1/api-keys", json={"scopes": ["keys:write", "assets:read"]}, headers=acme.headers
    ).json()
    h = {"Authorization": f"Bearer {keys['key']}"}
    wide = client.post("/v1/api-keys", json={}, headers=h)
    assert wide.status_code == 403 and wide.json()["code"] == "scope_not_permitted"
    wider = client.post("/v1/api-keys", json={"scopes": ["orders:write"]}, headers=h)
    assert wider.status_code == 403
    ok = client.post("/v1/api-keys", json={"scopes": ["assets:read"]}, headers=h)
    assert ok.status_code == 201, ok.text


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    return db_url


def test_users_add_list_disable(
    env: str, make_tenant: Callable[..., Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = make_tenant("acme-cli")
    monkeypatch.setenv("NEW_PW", PASSWORD)
    monkeypatch.setenv("FLEETCARE_API_PORT", "8061")  # links follow the API's port
    added = runner.invoke(
        cli_app,
        [
            "users",
            "add",
            "--email",
            "ops@example.com",
            "--name",
            "Ops",
            "--role",
            "dispatcher",
            "--password-env",
            "NEW_PW",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "operator:dispatcher active" in added.output
    invited = runner.invoke(
        cli_app,
        [
            "users",
            "add",
            "--email",
            "fm@acme.example",
            "--name",
            "FM",
            "--role",
            "fleet_manager",
            "--customer",
            "acme-cli",
        ],
    )
    assert invited.exit_code == 0, invited.output
    assert "invited" in invited.output
    assert "http://127.0.0.1:8061/dashboard/invitation?token=" in invited.output
    listed = runner.invoke(cli_app, ["users", "list"])
    assert "ops@example.com\toperator\tdispatcher\tactive" in listed.output
    assert f"fm@acme.example\tcustomer #{acme.customer.id}\tfleet_manager\tinvited" in listed.output
    off = runner.invoke(cli_app, ["users", "disable", "OPS@example.com"])
    assert off.exit_code == 0 and "disabled" in off.output
    with connect(env) as conn:
        assert conn.execute(
            "SELECT status FROM users WHERE email = 'ops@example.com'"
        ).fetchone() == ("disabled",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "bad", "--name", "X", "--role", "admin"], "--email"),
        (["--email", "a@b.c", "--name", "X", "--role", "pilot"], "role is one of"),
        (["--email", "a@b.c", "--name", "X", "--role", "viewer"], "role is one of"),
        (["--email", "a@b.c", "--name", "X", "--role", "viewer", "--customer", "nope"], "no live"),
        (
            ["--email", "a@b.c", "--name", "X", "--role", "admin", "--password-env", "UNSET_X"],
            "not set",
        ),
        (
            [
                "--email",
                "a@b.c",
                "--name",
                "X",
                "--role",
                "admin",
                "--customer",
                "a",
                "--partner",
                "b",
            ],
            "at most one",
        ),
    ],
)
def test_users_add_explains_bad_arguments(env: str, args: list[str], message: str) -> None:
    result = runner.invoke(cli_app, ["users", "add", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_users_disable_names_an_unknown_user(env: str) -> None:
    result = runner.invoke(cli_app, ["users", "disable", "ghost@example.com"])
    assert result.exit_code == 2 and "no user with the address" in result.output
    result = runner.invoke(cli_app, ["users", "disable", "424242"])
    assert result.exit_code == 2 and "user 424242 not found" in result.output


def test_links_go_to_the_public_url_else_to_the_api_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("FLEETCARE_PUBLIC_URL", "FLEETCARE_API_HOST", "FLEETCARE_API_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().public_base_url == "http://127.0.0.1:8000"
    assert Settings(api_port=8010).public_base_url == "http://127.0.0.1:8010"
    public = Settings(api_port=8010, public_url="https://fleet.example")
    assert public.public_base_url == "https://fleet.example"
