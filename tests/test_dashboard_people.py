"""The dashboard for people: who is signed in, training fleets out of the operator's view, an
asset with a known RUL but no measured usage rate is dated at a busy day of its kind (labelled)
or says what is missing, site subscriptions count their assets, users and keys managed from the
dashboard, and the demo's people."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from psycopg import Connection

from api.dashboard.schemas import UNDATED_REASON
from cli.demo import seed_demo, seed_demo_users
from fleet import service as fleet
from fleetcare.db import connect
from kinds import service as kinds
from kinds.schemas import KindDefinition
from tests.conftest import Tenant
from tests.fixtures.api import ok
from tests.fixtures.dashboard import insert_prediction, make_asset, make_site
from tests.fixtures.people import person, sign_in

PUMP = Path(__file__).parent / "fixtures" / "kinds" / "pump.yaml"


def _rows(html: str) -> dict[int, str]:
    return {int(a): h for a, h in re.findall(r'<tr data-asset="(\d+)" data-health="(\w+)">', html)}


def test_a_known_rul_without_a_due_date_is_dated_at_a_busy_day_of_its_kind_or_undated(
    client: TestClient, conn: Connection[Any], make_tenant: Callable[..., Tenant]
) -> None:
    kinds.apply_definition(conn, KindDefinition.model_validate(yaml.safe_load(PUMP.read_text())))
    conn.commit()
    acme = make_tenant()
    estimated = make_asset(client, acme.headers, ref="NO-RATE")  # a tire: 400 km a day
    undated = make_asset(client, acme.headers, kind="pump", ref="PUMP-1")  # no typical usage
    quiet = make_asset(client, acme.headers, ref="QUIET")
    now = datetime.now(UTC)
    # 1,200 km at the low end of the interval: 3 days of a tire's typical usage, 36 h of a busy
    # day's (twice it: the policy dates its orders the same way)
    insert_prediction(conn, estimated.id, time=now, due_in=None, rul=2_200, spread=1_000)
    insert_prediction(conn, undated.id, time=now, due_in=None, rul=5_000, component="bearing")
    page = client.get("/dashboard", headers=acme.headers)
    rows = _rows(page.text)
    assert rows == {estimated.id: "due", undated.id: "undated", quiet.id: "unknown"}
    assert next(iter(rows)) == estimated.id  # sorted by the date shown, the estimate included
    row = page.text[page.text.index(f'data-asset="{estimated.id}"') :]
    row = row[: row.index("</tr>")]
    assert "≈ in 36 h" in row and "est." in row and "busy day" in row
    assert UNDATED_REASON.split(" (")[0] in page.text and "no usage rate" in UNDATED_REASON
    counts = re.search(r'data-health="undated">(\d+)<', page.text)
    assert counts and counts[1] == "1"
    only = client.get("/dashboard?health=undated", headers=acme.headers)
    assert list(_rows(only.text)) == [undated.id]
    # the asset page dates the component the same way, labelled
    asset = client.get(f"/dashboard/assets/{estimated.id}", headers=acme.headers)
    assert asset.status_code == 200 and "≈ in 36 h" in asset.text and "est." in asset.text


def test_the_operators_overview_hides_training_fleets(
    client: TestClient,
    conn: Connection[Any],
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
) -> None:
    lab, acme = make_tenant("history-lab"), make_tenant("acme-ops")
    trained = make_asset(client, lab.headers, ref="LAB-1")
    real = make_asset(client, acme.headers, ref="REAL-1")
    assert fleet.mark_internal(conn, "history-lab") and not fleet.mark_internal(conn, "nope")
    conn.commit()
    overview = client.get("/dashboard", headers=operator_headers)
    rows = _rows(overview.text)
    assert real.id in rows and trained.id not in rows
    assert "History-Lab" not in overview.text
    # asked for by name, it is shown; its own people see it as usual
    named = client.get(f"/dashboard?customer_id={lab.customer.id}", headers=operator_headers)
    assert trained.id in _rows(named.text)
    assert trained.id in _rows(client.get("/dashboard", headers=lab.headers).text)


def test_site_subscriptions_count_the_assets_they_cover(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    site = make_site(client, acme.headers, "YARD")
    for n in range(3):
        make_asset(client, acme.headers, site_id=site, ref=f"S-{n}")
    make_asset(client, acme.headers, ref="ELSEWHERE")
    plans = ok(client.get("/v1/plans", headers=acme.headers))["items"]
    sub = ok(
        client.post(
            "/v1/subscriptions",
            json={"plan_id": plans[0]["id"], "scope": "site", "site_id": site},
            headers=acme.headers,
        ),
        201,
    )
    assert sub["covered_asset_count"] == 3 and sub["asset_ids"] == []
    page = client.get("/dashboard/billing", headers=acme.headers).text
    row = page[page.index(f'data-subscription="{sub["id"]}"') :]
    cell = re.search(r'<td class="num covered"[^>]*>(\d+)', row)
    assert cell and cell[1] == "3"


def test_admins_manage_people_and_keys_from_the_dashboard(
    client: TestClient, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    acme = make_tenant()
    admin = person(client, db_url, "customer:admin", customer_id=acme.customer.id)
    page = admin.client.get("/dashboard/people")
    assert page.status_code == 200 and admin.email in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token and token[1] == admin.csrf
    invited = admin.client.post(
        "/dashboard/people/invite",
        data={
            "csrf_token": admin.csrf,
            "name": "Vera",
            "email": "vera@acme.example",
            "role": "viewer",
        },
    )
    assert invited.status_code == 200 and "invited vera@acme.example" in invited.text
    bad = admin.client.post(
        "/dashboard/people/invite",
        data={"csrf_token": admin.csrf, "name": "X", "email": "not-an-address", "role": "viewer"},
    )
    assert bad.status_code == 422 and "email" in bad.text
    forged = admin.client.post(
        "/dashboard/people/invite", data={"name": "F", "email": "f@a.example", "role": "viewer"}
    )
    assert forged.status_code == 403
    vera = re.search(
        r'<tr data-user="(\d+)" data-status="invited"><td>\d+</td><td>Vera', invited.text
    )
    assert vera
    off = admin.client.post(
        f"/dashboard/people/{vera[1]}", data={"csrf_token": admin.csrf, "status": "disabled"}
    )
    assert off.status_code == 200 and f'data-user="{vera[1]}" data-status="disabled"' in off.text
    made = admin.client.post(
        "/dashboard/keys",
        data={
            "csrf_token": admin.csrf,
            "name": "reader",
            "role": "customer",
            "scopes": "assets:read",
        },
    )
    assert made.status_code == 200
    key = re.search(r'id="new-key">(fc_[^<]+)<', made.text)
    assert key and "assets:read" in made.text
    h = {"Authorization": f"Bearer {key[1]}"}
    assert client.get("/v1/assets", headers=h).status_code == 200
    assert client.get("/v1/orders", headers=h).status_code == 403
    key_id = re.findall(r'<tr data-key="(\d+)">', made.text)[-1]
    revoked = admin.client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf_token": admin.csrf})
    assert revoked.status_code == 200
    assert client.get("/v1/assets", headers=h).status_code == 401
    viewer = person(client, db_url, "customer:viewer", customer_id=acme.customer.id)
    refused = viewer.client.get("/dashboard/people")
    assert refused.status_code == 403 and "may not users:read" in refused.text


def test_the_demo_creates_people_who_sign_in_with_the_printed_password(
    client: TestClient, db_url: str, tmp_path: Path
) -> None:
    seed_demo(db_url, tmp_path)
    first = seed_demo_users(db_url, tmp_path)
    assert {role for _, _, role in first} == {"operator:admin", "customer:fleet_manager"}
    assert (tmp_path / "demo-users.json").stat().st_mode & 0o077 == 0
    again = seed_demo_users(db_url, tmp_path)
    assert again == first  # the same people, the same passwords
    for email, password, role in first:
        browser = sign_in(client, email, password)
        assert browser.get("/v1/me").json()["access"] == role
    (tmp_path / "demo-users.json").unlink()  # the file lost: new passwords, same users
    renewed = seed_demo_users(db_url, tmp_path)
    assert [e for e, _, _ in renewed] == [e for e, _, _ in first]
    assert all(p1 != p2 for (_, p1, _), (_, p2, _) in zip(first, renewed, strict=True))
    sign_in(client, renewed[0][0], renewed[0][1])
    with connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)
