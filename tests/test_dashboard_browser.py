"""The dashboard in a real browser: Debian's chromium driven by Playwright (no downloads).

Screenshots go to tests/artifacts/ (ignored by git); with FLEETCARE_UPDATE_SCREENSHOTS=1 they
are also copied to docs/screenshots/, the ones the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleetcare.settings import Settings
from tests.conftest import Tenant
from tests.fixtures.dashboard import (
    MadeAsset,
    insert_prediction,
    insert_wave_readings,
    make_asset,
    make_site,
    metric_id,
    refresh_rollup,
    serve_app,
)
from tests.fixtures.people import PASSWORD, add_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)",
)

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module."""
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def shoot(page: Any, name: str) -> None:
    """Save a screenshot to tests/artifacts (and docs/screenshots when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("FLEETCARE_UPDATE_SCREENSHOTS") == "1":
        DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOC_SCREENSHOTS / path.name)


@dataclass
class Fleet:
    """Two customers' fleets and the URL of the running app."""

    url: str
    alpha: Tenant
    beta: Tenant
    operator_key: str
    alpha_assets: list[MadeAsset]
    beta_asset: MadeAsset
    quiet: MadeAsset  # an alpha asset with no prediction yet
    charted: MadeAsset  # an alpha asset with readings and predictions


@pytest.fixture
def fleet(
    settings: Settings,
    db_url: str,
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    conn: Connection[Any],
) -> Iterator[Fleet]:
    """Alpha: two sites, assets in every health class, one charted; beta: one asset."""
    alpha, beta = make_tenant("alpha-haulage"), make_tenant("beta-lifts")
    north = make_site(client, alpha.headers, "NORTH")
    south = make_site(client, alpha.headers, "SOUTH")
    assets = [
        make_asset(client, alpha.headers, site_id=site, ref=f"TRK-{n:02d}-FL")
        for n, site in enumerate([north, north, north, south, south, south])
    ]
    lift = make_asset(client, alpha.headers, site_id=south, kind="elevator", ref="LIFT-A1")
    assets.append(lift)
    beta_asset = make_asset(
        client, beta.headers, site_id=make_site(client, beta.headers), ref="BETA-SECRET-7"
    )
    now = datetime.now(UTC)
    for asset, days in zip(assets[:5], (-2, 4, 18, 60, 120), strict=True):
        insert_prediction(
            conn,
            asset.id,
            time=now,
            due_in=timedelta(days=days),
            rul=max(days, 1) * 900,
            spread=600,
        )
    charted = assets[3]
    for back in range(1, 15):
        insert_prediction(
            conn,
            charted.id,
            time=now - timedelta(days=back),
            due_in=timedelta(days=60 + back),
            rul=18_000 + back * 300,
        )
    insert_prediction(conn, lift.id, time=now, due_in=timedelta(days=25), component="brake")
    insert_prediction(conn, beta_asset.id, time=now, due_in=timedelta(days=1))
    stop = now.replace(minute=0, second=0, microsecond=0)
    start = stop - timedelta(days=10)
    for name, level, amplitude in (
        ("pressure_kpa", 820.0, 25.0),
        ("temperature_c", 45.0, 8.0),
        ("tread_depth_mm", 9.0, 0.4),
    ):
        insert_wave_readings(
            conn,
            charted.id,
            metric_id(conn, "tire", name),
            start=start,
            stop=now,
            every=timedelta(minutes=5),
            level=level,
            amplitude=amplitude,
        )
    refresh_rollup(conn, start, stop)
    for reason, detail, payload in (
        (
            "out_of_bounds",
            "pressure_kpa 99999 is above 1500",
            b'{"asset": "TRK-01-FL", "ts": '
            b'"2026-11-26T10:00:00Z", "metrics": {"pressure_kpa": 99999}}',
        ),
        (
            "out_of_bounds",
            "temperature_c -300 is below -60",
            b'{"asset": "TRK-02-FL", "ts": '
            b'"2026-11-26T10:00:01Z", "metrics": {"temperature_c": -300}}',
        ),
        ("malformed_json", "Expecting value: line 1 column 1", b"\x00\x01garbage"),
        ("unknown_asset", "no asset TRK-99-XX for this customer", b'{"asset": "TRK-99-XX"}'),
    ):
        conn.execute(
            "INSERT INTO quarantine (topic, device_ref, customer_id, reason, detail, payload)"
            " VALUES ('fleetcare/v1/gw-north-1/telemetry', 'gw-north-1', %s, %s, %s, %s)",
            (alpha.customer.id, reason, detail, payload),
        )
    conn.commit()
    operator_key = operator_headers["Authorization"].removeprefix("Bearer ")
    with serve_app(settings, db_url) as server:
        yield Fleet(
            url=server.url,
            alpha=alpha,
            beta=beta,
            operator_key=operator_key,
            alpha_assets=assets,
            beta_asset=beta_asset,
            quiet=assets[5],
            charted=charted,
        )


def signed_in_page(browser: Any, fleet: Fleet, key: str) -> Any:
    """A fresh browser context signed in through the form."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(fleet.url + "/dashboard")
    assert "/dashboard/login" in page.url
    page.fill("#api_key", key)
    page.click("#key-sign-in button[type=submit]")
    page.wait_for_url(fleet.url + "/dashboard")
    return page


def test_sign_in_see_the_fleet_open_an_asset_and_watch_it_live(
    browser: Any, fleet: Fleet, conn: Connection[Any]
) -> None:
    expect = playwright_api.expect
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(fleet.url + "/dashboard")
    expect(page.locator("#api_key")).to_be_visible()
    shoot(page, "01-sign-in")
    page.fill("#api_key", "fc_wrong")
    page.click("#key-sign-in button[type=submit]")
    expect(page.locator(".error")).to_contain_text("unknown or revoked API key")
    page.fill("#api_key", fleet.alpha.key)
    page.click("#key-sign-in button[type=submit]")
    page.wait_for_url(fleet.url + "/dashboard")

    # the fleet: alpha's assets by health, nothing of beta's
    rows = page.locator("#asset-list tbody tr")
    expect(rows).to_have_count(len(fleet.alpha_assets))
    expect(page.locator(f'tr[data-asset="{fleet.alpha_assets[0].id}"]')).to_have_attribute(
        "data-health", "overdue"
    )
    assert "BETA-SECRET-7" not in page.content()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "open")
    shoot(page, "02-fleet-overview")

    # live: a new prediction for the quiet asset moves it to "due" without a reload
    quiet_row = page.locator(f'tr[data-asset="{fleet.quiet.id}"]')
    expect(quiet_row).to_have_attribute("data-health", "unknown")
    page.evaluate("window.__sameDocument = true")
    insert_prediction(conn, fleet.quiet.id, time=datetime.now(UTC), due_in=timedelta(days=2))
    expect(quiet_row).to_have_attribute("data-health", "due")
    expect(page.locator("#live-feed")).to_contain_text(fleet.quiet.ref)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    # a prediction of another customer's asset never reaches this browser
    insert_prediction(conn, fleet.beta_asset.id, time=datetime.now(UTC), due_in=timedelta(days=9))
    insert_prediction(conn, fleet.quiet.id, time=datetime.now(UTC), due_in=timedelta(days=-1))
    expect(quiet_row).to_have_attribute("data-health", "overdue")
    assert "BETA-SECRET-7" not in page.locator("#live-feed").inner_text()
    shoot(page, "03-fleet-live-update")

    # the list is sorted by due date, soonest first; one click turns it round, in place
    expect(rows.first).to_have_attribute("data-health", "overdue")
    page.click("#asset-list th a:has-text('Due (conservative)')")
    page.wait_for_url("**sort=due&desc=true")
    expect(rows.first).to_have_attribute("data-health", "ok")
    # filtering by health swaps the block in place too
    page.click("#health-counts th a:has-text('watch')")
    page.wait_for_url("**health=watch**")
    expect(rows).to_have_count(2)
    expect(page.locator("#asset-list tbody tr[data-health='watch']")).to_have_count(2)
    assert page.evaluate("window.__sameDocument") is True
    page.click(".filters a:has-text('show all')")
    expect(rows).to_have_count(len(fleet.alpha_assets))

    # open an asset: predictions, RUL band, telemetry charts
    page.click(f"a:has-text('{fleet.charted.ref}')")
    page.wait_for_url(f"**/dashboard/assets/{fleet.charted.id}")
    charts = page.locator("#telemetry-charts")
    expect(charts).to_have_attribute("data-state", "ready")
    expect(page.locator("#telemetry-charts canvas")).to_have_count(3)
    expect(page.locator("#rul-charts canvas")).to_have_count(1)
    assert int(charts.get_attribute("data-points") or 0) > 3 * 100
    expect(page.locator("#telemetry-source")).to_contain_text("hourly rollup")
    shoot(page, "04-asset-detail")
    page.click(".ranges[data-chart=telemetry] button[data-range='24h']")
    expect(page.locator("#telemetry-source")).to_contain_text("raw readings")
    expect(charts).to_have_attribute("data-state", "ready")
    # drag across the first chart to zoom in: the browser asks the server for that window
    over = page.locator("#telemetry-charts .u-over").first.bounding_box()
    assert over is not None
    with page.expect_response(lambda r: "telemetry.json?start=" in r.url) as zoomed:
        page.mouse.move(over["x"] + over["width"] * 0.4, over["y"] + over["height"] / 2)
        page.mouse.down()
        page.mouse.move(over["x"] + over["width"] * 0.6, over["y"] + over["height"] / 2, steps=5)
        page.mouse.up()
    assert zoomed.value.status == 200
    expect(charts).to_have_attribute("data-state", "ready")
    shoot(page, "05-asset-zoomed-raw")

    # live on the asset page: a new prediction updates the predictions panel
    insert_prediction(
        conn, fleet.charted.id, time=datetime.now(UTC), due_in=timedelta(days=3), rul=4321
    )
    expect(page.locator("#predictions td.rul").first).to_have_text("4,321")
    expect(page.locator("#asset-health")).to_have_text("due")
    context.close()


def test_a_customer_cannot_reach_another_customers_asset(browser: Any, fleet: Fleet) -> None:
    expect = playwright_api.expect
    page = signed_in_page(browser, fleet, fleet.alpha.key)
    response = page.goto(f"{fleet.url}/dashboard/assets/{fleet.beta_asset.id}")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    assert "BETA-SECRET-7" not in page.content()
    data = page.request.get(f"{fleet.url}/dashboard/assets/{fleet.beta_asset.id}/telemetry.json")
    assert data.status == 404
    shoot(page, "06-other-customers-asset-404")
    page.context.close()

    # the operator sees both customers, and ingest health
    page = signed_in_page(browser, fleet, fleet.operator_key)
    expect(page.locator("#health-counts")).to_contain_text("Alpha-Haulage")
    expect(page.locator("#health-counts")).to_contain_text("Beta-Lifts")
    page.goto(f"{fleet.url}/dashboard/assets/{fleet.beta_asset.id}")
    expect(page.locator("h1")).to_contain_text("BETA-SECRET-7")
    page.click("nav a:has-text('Ingest')")
    expect(page.locator("h1")).to_have_text("Ingest health")
    expect(page.locator("#quarantine")).to_contain_text("pressure_kpa 99999 is above 1500")
    # the rollup holds the finished hours: 23 or 24 of them fall in the last 24 h
    expect(page.locator("#hourly")).to_have_attribute("data-hours", re.compile(r"^2[34]$"))
    shoot(page, "07-ingest-health")
    page.context.close()


def test_complete_an_order_on_the_board_and_see_new_orders_live(
    browser: Any, fleet: Fleet, client: TestClient
) -> None:
    expect = playwright_api.expect
    due = (datetime.now(UTC) + timedelta(days=3)).isoformat()

    def raise_order(asset: MadeAsset) -> int:
        response = client.post(
            "/v1/orders",
            json={"asset_id": asset.id, "component": "tire", "due_at": due, "ship_parts": False},
            headers=fleet.alpha.headers,
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    order_id = raise_order(fleet.alpha_assets[1])
    page = signed_in_page(browser, fleet, fleet.operator_key)
    page.click("nav a:has-text('Orders')")
    page.wait_for_url("**/dashboard/orders")
    row = page.locator(f"#order-{order_id}")
    expect(row).to_have_attribute("data-status", "raised")
    page.evaluate("window.__sameDocument = true")
    shoot(page, "08-orders-board")

    # complete: the board is swapped in place and the order moves to "completed"
    row.locator("button.act-complete").click()
    expect(page.locator(f"#orders-completed #order-{order_id}")).to_have_attribute(
        "data-status", "completed"
    )
    expect(page.locator("#orders-message")).to_contain_text(f"order {order_id} is completed")
    assert page.evaluate("window.__sameDocument") is True
    shoot(page, "09-order-completed")

    # live: an order raised elsewhere appears on the open board without a reload
    live_id = raise_order(fleet.alpha_assets[2])
    expect(page.locator(f"#orders-raised #order-{live_id}")).to_have_attribute(
        "data-status", "raised"
    )
    assert page.evaluate("window.__sameDocument") is True

    # the asset page lists the completed order in its history
    page.goto(f"{fleet.url}/dashboard/assets/{fleet.alpha_assets[1].id}")
    expect(page.locator(f"#order-history tr[data-order='{order_id}']")).to_have_attribute(
        "data-status", "completed"
    )
    page.context.close()


# --- people ------------------------------------------------------------------------------------


def password_page(browser: Any, fleet: Fleet, email: str, password: str = PASSWORD) -> Any:
    """A fresh browser context signed in with an email and password through the form."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(fleet.url + "/dashboard")
    assert "/dashboard/login" in page.url
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#password-sign-in button[type=submit]")
    return page


def test_a_person_signs_in_and_a_viewer_is_refused_an_action(
    browser: Any, fleet: Fleet, client: TestClient, db_url: str
) -> None:
    expect = playwright_api.expect
    due = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    order = client.post(
        "/v1/orders",
        json={"asset_id": fleet.alpha_assets[1].id, "component": "tire", "due_at": due},
        headers=fleet.alpha.headers,
    )
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    _, email = add_user(db_url, "customer:viewer", customer_id=fleet.alpha.customer.id)

    wrong = password_page(browser, fleet, email, "not the password")
    expect(wrong.locator(".error")).to_contain_text("unknown address or wrong password")
    wrong.context.close()

    page = password_page(browser, fleet, email)
    page.wait_for_url(fleet.url + "/dashboard")
    who = page.locator("#who")
    expect(who.locator(".person")).to_contain_text("Viewer")
    expect(who.locator(".organisation")).to_have_text(fleet.alpha.customer.name)
    cookie = next(c for c in page.context.cookies() if c["name"] == "fleetcare_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    expect(page.locator("nav a:has-text('People')")).to_have_count(0)  # not its pages
    shoot(page, "10-viewer-signed-in")

    # the board shows the order but no button the viewer may not use
    page.click("nav a:has-text('Orders')")
    row = page.locator(f"#order-{order_id}")
    expect(row).to_have_attribute("data-status", "raised")
    expect(row.locator("button")).to_have_count(0)
    # a form it builds itself (with its own session's token) is refused all the same
    page.evaluate(
        """([orderId]) => {
            const token = document.querySelector('form.logout input[name=csrf_token]').value;
            const form = document.createElement('form');
            form.method = 'post';
            form.action = `/dashboard/orders/${orderId}/cancel`;
            form.innerHTML = `<input type="hidden" name="csrf_token" value="${token}">`;
            document.body.appendChild(form);
            form.submit();
        }""",
        [order_id],
    )
    expect(page.locator("#orders-message")).to_contain_text("may not orders:write")
    expect(page.locator(f"#orders-raised #order-{order_id}")).to_have_count(1)
    # a management page by its address: not allowed
    page.goto(fleet.url + "/dashboard/keys")
    expect(page.locator("#forbidden")).to_contain_text("may not keys:read")
    shoot(page, "11-viewer-refused")
    page.click("form.logout button")
    page.wait_for_url("**/dashboard/login")
    page.goto(fleet.url + "/dashboard")
    assert "/dashboard/login" in page.url
    page.context.close()


def test_a_partner_technician_sees_only_the_orders_assigned_to_the_partner(
    browser: Any, fleet: Fleet, client: TestClient, db_url: str, conn: Connection[Any]
) -> None:
    expect = playwright_api.expect
    due = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    ids = []
    for asset in fleet.alpha_assets[1:3]:
        r = client.post(
            "/v1/orders",
            json={"asset_id": asset.id, "component": "tire", "due_at": due},
            headers=fleet.alpha.headers,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    operator = {"Authorization": f"Bearer {fleet.operator_key}"}
    partner = client.post(
        "/v1/partners", json={"code": "fix-it", "name": "Fix-It Services"}, headers=operator
    ).json()
    # the policy assigns an order to the partner serving its site; here it is done by hand
    conn.execute(
        "UPDATE maintenance_orders SET partner_id = %s WHERE id = %s", (partner["id"], ids[0])
    )
    conn.commit()
    _, email = add_user(db_url, "partner:technician", partner_id=partner["id"])
    page = password_page(browser, fleet, email)
    page.wait_for_url(fleet.url + "/dashboard")
    expect(page.locator("#who .organisation")).to_have_text("Fix-It Services")
    page.goto(fleet.url + "/dashboard/orders")
    expect(page.locator(f"#order-{ids[0]}")).to_have_attribute("data-status", "raised")
    expect(page.locator(f"#order-{ids[1]}")).to_have_count(0)
    assert "BETA-SECRET-7" not in page.content()
    # it works its own order: start is offered, cancel is not
    row = page.locator(f"#order-{ids[0]}")
    expect(row.locator("button.act-cancel")).to_have_count(0)
    row.locator("button.act-start").click()
    expect(page.locator(f"#orders-in_progress #order-{ids[0]}")).to_have_attribute(
        "data-status", "in_progress"
    )
    shoot(page, "12-partner-technician-orders")
    page.context.close()
