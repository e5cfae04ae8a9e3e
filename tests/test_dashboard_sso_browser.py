"""Single sign-on and invitations in a real browser (Debian's chromium driven by Playwright):
an admin sets the organisation's OpenID Connect provider on its page, a person of a claimed
domain signs in through the real provider process (``oidc-provider-mock``) and is created with
the default role, a refusal at the provider comes back as a clear page; an invited person
follows the link, chooses a password and is signed in, and the link works once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg import Connection

from fleetcare.services import free_port
from fleetcare.settings import Settings
from tests.conftest import Tenant
from tests.fixtures.dashboard import RunningServer, serve_app
from tests.fixtures.oidc import OidcProvider, run_oidc_provider
from tests.fixtures.people import PASSWORD, add_user
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, shoot

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)",
)

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless chromium for the module."""
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One OpenID Connect provider process for the module."""
    with run_oidc_provider(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


@pytest.fixture
def site(settings: Settings, db_url: str) -> Iterator[RunningServer]:
    """The app under uvicorn, its public URL its own (links and the callback lead back)."""
    port = free_port()
    public = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    with serve_app(public, db_url, port=port) as server:
        yield server


def new_page(chromium: Any) -> Any:
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def sign_in_with_password(chromium: Any, url: str, email: str) -> Any:
    page = new_page(chromium)
    page.goto(url + "/dashboard/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#password-sign-in button[type=submit]")
    page.wait_for_url(url + "/dashboard")
    return page


def test_an_admin_sets_single_sign_on_and_a_person_signs_in_through_the_provider(
    chromium: Any,
    site: RunningServer,
    oidc: OidcProvider,
    make_tenant: Callable[..., Tenant],
    db_url: str,
    conn: Connection[Any],
) -> None:
    expect = playwright_api.expect
    acme = make_tenant("acme-sso")
    _, admin_email = add_user(db_url, "customer:admin", customer_id=acme.customer.id)

    # the admin sets the provider on the single sign-on page (linked from People)
    admin = sign_in_with_password(chromium, site.url, admin_email)
    admin.click("nav a:has-text('People')")
    admin.click("#sso-link")
    expect(admin.locator("#sso-none")).to_be_visible()
    expect(admin.locator("#sso-redirect-uri")).to_have_text(site.url + "/dashboard/sso/callback")
    admin.fill("#sso-form input[name=issuer]", oidc.issuer)
    admin.fill("#sso-form input[name=client_id]", "fleetcare-acme")
    admin.fill("#sso-form input[name=client_secret]", "browser-secret-123")
    admin.select_option("#sso-form select[name=default_role]", "fleet_manager")
    admin.fill("#sso-form input[name=domains]", "acme-sso.example")
    admin.click("#sso-form button[type=submit]")
    expect(admin.locator("#sso-message")).to_contain_text(f"through {oidc.issuer} is on")
    expect(admin.locator("#sso-config")).to_contain_text("stored (never shown)")
    assert "browser-secret-123" not in admin.content()
    shoot(admin, "13-sso-settings")
    admin.context.close()

    # a person of the claimed domain signs in through the provider, created as fleet manager
    subject = "grace-" + uuid.uuid4().hex[:6]
    email = f"{subject}@acme-sso.example"
    oidc.set_user(subject, {"email": email, "email_verified": True, "name": "Grace Hopper"})
    page = new_page(chromium)
    page.goto(site.url + "/dashboard")
    assert "/dashboard/login" in page.url
    page.fill("#sso_email", email)
    page.click("#sso-sign-in button[type=submit]")
    page.wait_for_url(oidc.issuer + "/oauth2/authorize**")
    page.fill("input[name=sub]", subject)
    page.click("button:has-text('Authorize')")
    page.wait_for_url(site.url + "/dashboard")
    who = page.locator("#who")
    expect(who.locator(".person")).to_have_text("Grace Hopper")
    expect(who.locator(".organisation")).to_have_text(acme.customer.name)
    expect(who.locator(".role")).to_have_text("fleet manager")
    shoot(page, "14-sso-signed-in")
    page.click("form.logout button")
    page.wait_for_url("**/dashboard/login")
    row = conn.execute(
        "SELECT role, sign_in_method, external_subject FROM users WHERE email = %s", (email,)
    ).fetchone()
    assert row == ("fleet_manager", "oidc", subject)

    # the person refuses at the provider: a clear sign-in page, not signed in
    page.fill("#sso_email", email)
    page.click("#sso-sign-in button[type=submit]")
    page.wait_for_url(oidc.issuer + "/oauth2/authorize**")
    page.click("button:has-text('Deny')")
    page.wait_for_url(site.url + "/dashboard/sso/callback**")
    expect(page.locator(".error")).to_contain_text("you declined to share your identity")
    page.goto(site.url + "/dashboard")
    assert "/dashboard/login" in page.url
    page.context.close()


def test_an_invited_person_follows_the_link_and_is_signed_in_once(
    chromium: Any,
    site: RunningServer,
    make_tenant: Callable[..., Tenant],
    db_url: str,
    conn: Connection[Any],
) -> None:
    expect = playwright_api.expect
    acme = make_tenant("acme-invites")
    _, admin_email = add_user(db_url, "customer:admin", customer_id=acme.customer.id)
    admin = sign_in_with_password(chromium, site.url, admin_email)
    admin.click("nav a:has-text('People')")
    invited = f"ines-{uuid.uuid4().hex[:6]}@example.com"
    admin.fill("#invite input[name=name]", "Ines Invited")
    admin.fill("#invite input[name=email]", invited)
    admin.select_option("#invite select[name=role]", "fleet_manager")
    admin.click("#invite button[type=submit]")
    expect(admin.locator("#people-message")).to_contain_text(f"invited {invited}")
    expect(admin.locator("#users")).to_contain_text(invited)
    admin.context.close()

    # the link as the user.invited event carries it (a webhook or mail relay sends it)
    row = conn.execute(
        "SELECT payload->>'link' FROM events WHERE type = 'user.invited'"
        " AND payload->>'email' = %s",
        (invited,),
    ).fetchone()
    assert row is not None and row[0].startswith(site.url + "/dashboard/invitation?token=")
    link = row[0]

    page = new_page(chromium)
    page.goto(link)
    page.fill("#password", "short")
    page.click(".login form button[type=submit]")
    # the browser refuses a password under the minimum length before sending it
    assert page.evaluate("document.querySelector('#password').validity.valid") is False
    page.fill("#password", "a long enough passphrase")
    page.click(".login form button[type=submit]")
    page.wait_for_url(site.url + "/dashboard")
    who = page.locator("#who")
    expect(who.locator(".person")).to_have_text("Ines Invited")
    expect(who.locator(".role")).to_have_text("fleet manager")
    shoot(page, "15-invitation-accepted")
    page.context.close()

    # the link works once
    again = new_page(chromium)
    again.goto(link)
    again.fill("#password", "another long passphrase")
    again.click(".login form button[type=submit]")
    expect(again.locator(".error")).to_contain_text("unknown, used or expired")
    again.context.close()
