"""Feedback (issue 20): what a technician finds when closing an order labels the life and
shows on the model page (per kind and model version), confined to the caller's customer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from kinds.loader import builtin_kinds
from maintenance.outcomes import service as outcomes
from models import lifetimes
from models.repository import Life
from tests.conftest import Tenant
from tests.fixtures.api import ok, order_of, predict, setup_customer, stock
from tests.fixtures.maintenance import T0


def _outcomes(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    return ok(client.get("/v1/models/outcomes", params=params, headers=headers))


@pytest.fixture
def two_customers(
    client: TestClient,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
    db_url: str,
) -> tuple[Tenant, Tenant, dict[str, int], dict[str, int]]:
    client.app.state.clock = ManualClock(T0)  # type: ignore[attr-defined]
    a, b = make_tenant("out-a"), make_tenant("out-b")
    stock(client, operator_headers)
    wa, wb = setup_customer(client, a), setup_customer(client, b)
    predict(db_url, wa["asset"])
    predict(db_url, wb["asset"])
    return a, b, wa, wb


def test_a_false_alarm_is_recorded_and_shows_on_the_model_page(
    client: TestClient,
    two_customers: tuple[Tenant, Tenant, dict[str, int], dict[str, int]],
    operator_headers: dict[str, str],
) -> None:
    a, b, wa, _ = two_customers
    order = order_of(client, a.headers, wa["asset"])
    assert order["reason"] == "predicted"
    finding = {"component": "tire", "code": "false_alarm", "notes": "tread fine, 9 mm"}
    cancelled = ok(
        client.post(
            f"/v1/orders/{order['id']}/cancel",
            json={"reason": "nothing wrong", "findings": [finding]},
            headers=a.headers,
        )
    )
    assert cancelled["status"] == "cancelled"
    detail = ok(client.get(f"/v1/orders/{order['id']}", headers=a.headers))
    [outcome] = detail["outcomes"]
    assert outcome["code"] == "false_alarm" and outcome["order_status"] == "cancelled"
    assert outcome["notes"] == "tread fine, 9 mm" and outcome["life_id"] is None

    page = _outcomes(client, a.headers)
    [summary] = page["summaries"]
    assert summary["kind"] == "tire"
    assert summary["alerts_with_outcome"] == 1 and summary["false_alarms"] == 1
    assert summary["confirmed"] == 0 and summary["alert_precision"] == 0.0
    [row] = page["rows"]
    assert row["outcome"] == "false_alarm" and row["source_id"] == outcome["id"]
    # the prediction that raised the order is beside it (RUL and interval)
    assert (row["rul"], row["rul_low"], row["rul_high"]) == (1000, 800, 1200)
    assert row["in_interval"] is None  # a false alarm's end is not known

    # the other customer sees none of it; the operator sees it
    assert _outcomes(client, b.headers) == {"summaries": [], "rows": []}
    assert _outcomes(client, operator_headers)["summaries"][0]["false_alarms"] == 1
    # and the dashboard shows it to its customer only
    html = client.get("/dashboard/models/outcomes", headers=a.headers)
    assert html.status_code == 200
    assert 'data-outcome="false_alarm"' in html.text and "TRK-1" in html.text
    other = client.get("/dashboard/models/outcomes", headers=b.headers)
    assert other.status_code == 200 and 'data-outcome="false_alarm"' not in other.text


def test_confirmed_wear_with_a_measurement_labels_the_life_and_the_training_data(
    client: TestClient,
    two_customers: tuple[Tenant, Tenant, dict[str, int], dict[str, int]],
    db_url: str,
    make_tenant: Callable[..., Tenant],
) -> None:
    a, _, wa, _ = two_customers
    asset = wa["asset"]
    with connect(db_url) as conn:
        metric = conn.execute(
            "SELECT id FROM metrics WHERE kind = 'tire' AND name = 'tread_depth_mm'"
        ).fetchone()
        assert metric is not None
        # new at 15.6 mm (after the installation), 3.6 mm now after 70,000 km
        conn.execute(
            "INSERT INTO telemetry (time, asset_id, metric_id, value) VALUES (%s, %s, %s, 15.6),"
            " (%s, %s, %s, 3.6)",
            (T0 - timedelta(days=300), asset, metric[0], T0 - timedelta(days=1), asset, metric[0]),
        )
        conn.execute(
            "INSERT INTO asset_seen (asset_id, usage_counter) VALUES (%s, 70000)"
            " ON CONFLICT (asset_id) DO UPDATE SET usage_counter = EXCLUDED.usage_counter",
            (asset,),
        )
        conn.commit()
    order = order_of(client, a.headers, asset)
    tech = make_tenant("out-a", role="technician")
    done = ok(
        client.post(
            f"/v1/orders/{order['id']}/complete",
            json={"findings": [{"component": "tire", "code": "confirmed_wear",
                                "measured_value": 3.6}]},
            headers=tech.headers,
        )
    )  # fmt: skip
    [outcome] = done["outcomes"]
    assert outcome["measured_metric"] == "tread_depth_mm"
    # 2 mm above the 1.6 mm limit at 12 mm per 70,000 km: 11,667 km left
    assert outcome["remaining_life"] == pytest.approx(70_000 * 2.0 / 12.0)
    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT outcome, remaining_at_end, usage_at_end FROM asset_lives WHERE id = %s",
            (outcome["life_id"],),
        ).fetchone()
    assert row is not None and row[0] == "confirmed_wear"
    assert row[1] == pytest.approx(outcome["remaining_life"]) and row[2] == 70000
    page = _outcomes(client, a.headers, kind="tire")
    assert page["summaries"][0]["confirmed"] == 1
    assert page["summaries"][0]["alert_precision"] == 1.0
    # the measured life left is known: the row has an actual end to check the interval on
    [row_] = page["rows"]
    assert row_["actual_end"] is not None and row_["in_interval"] is not None


def test_a_false_alarm_without_a_measurement_is_not_trained_on() -> None:
    def life(outcome: str | None, remaining: float | None) -> Life:
        return Life(1, 1, "tire", T0, T0, "replacement", 10.0, outcome, remaining)

    assert lifetimes.usable_label(life(None, None))
    assert lifetimes.usable_label(life("confirmed_wear", None))
    assert lifetimes.usable_label(life("failure", None))
    assert not lifetimes.usable_label(life("false_alarm", None))
    assert lifetimes.usable_label(life("false_alarm", 5_000.0))


def test_remaining_life_from_a_measurement_follows_the_kinds_threshold() -> None:
    tire = builtin_kinds()["tire"]
    assert outcomes.remaining_life(tire, "tire", 3.6, 15.6, 70_000) == pytest.approx(70_000 / 6)
    assert outcomes.remaining_life(tire, "tire", 1.0, 15.6, 70_000) == 0.0  # past the limit
    assert outcomes.remaining_life(tire, "tire", 3.6, None, 70_000) is None  # no first reading
    elevator = builtin_kinds()["elevator"]  # brake wear rises to 90 %
    assert outcomes.remaining_life(elevator, "brake", 60.0, 0.0, 30_000) == pytest.approx(15_000)


def test_a_reported_failure_is_a_labelled_life_and_a_missed_failure_on_the_page(
    client: TestClient,
    two_customers: tuple[Tenant, Tenant, dict[str, int], dict[str, int]],
    db_url: str,
) -> None:
    a, _, wa, _ = two_customers
    order = order_of(client, a.headers, wa["asset"])
    ok(client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=a.headers))
    # the prediction said 800-1200 km at 100 km/day: 8 to 12 days; it failed on day 10
    client.app.state.clock = ManualClock(T0 + timedelta(days=10))  # type: ignore[attr-defined]
    ok(client.post("/v1/failures", json={"asset_id": wa["asset"], "component": "tire"},
                   headers=a.headers), 201)  # fmt: skip
    page = _outcomes(client, a.headers)
    [summary] = page["summaries"]
    assert summary["failures"] == 1 and summary["missed_failures"] == 1
    assert summary["interval_checked"] == 1 and summary["interval_coverage"] == 1.0
    with connect(db_url) as conn:
        labels = conn.execute(
            "SELECT outcome FROM asset_lives WHERE asset_id = %s", (wa["asset"],)
        ).fetchall()
    assert labels == [("failure",)]


@pytest.mark.parametrize(
    ("finding", "status", "code"),
    [
        ({"component": "wheel", "code": "false_alarm"}, 422, "unknown_component"),
        ({"component": "tire", "code": "fine"}, 422, None),
        ({"component": "tire", "code": "confirmed_wear", "measured_value": 99}, 422,
         "measurement_out_of_bounds"),
        ({"component": "tire", "code": "confirmed_wear", "extra": 1}, 422, None),
    ],
)  # fmt: skip
def test_bad_findings_are_problem_documents(
    client: TestClient,
    two_customers: tuple[Tenant, Tenant, dict[str, int], dict[str, int]],
    finding: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    a, _, wa, _ = two_customers
    order = order_of(client, a.headers, wa["asset"])
    r = client.post(
        f"/v1/orders/{order['id']}/cancel", json={"findings": [finding]}, headers=a.headers
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if code is not None:
        assert r.json()["code"] == code
    # nothing changed
    assert ok(client.get(f"/v1/orders/{order['id']}", headers=a.headers))["status"] == "raised"
    twice = [{"component": "tire", "code": "false_alarm"}] * 2
    r = client.post(f"/v1/orders/{order['id']}/cancel", json={"findings": twice}, headers=a.headers)
    assert r.status_code == 422 and r.json()["code"] == "duplicate_finding"


def test_a_measurement_on_a_component_without_one_is_refused(
    client: TestClient,
    two_customers: tuple[Tenant, Tenant, dict[str, int], dict[str, int]],
) -> None:
    a, _, wa, _ = two_customers
    lift = ok(
        client.post(
            "/v1/assets",
            json={"kind": "elevator", "ref": "LIFT-1", "site_id": wa["site"],
                  "installed_at": "2025-01-01T00:00:00Z"},
            headers=a.headers,
        ),
        201,
    )  # fmt: skip
    order = ok(
        client.post(
            "/v1/orders",
            json={"asset_id": lift["id"], "component": "door_operator",
                  "due_at": "2026-12-10T00:00:00Z", "ship_parts": False},
            headers=a.headers,
        ),
        201,
    )  # fmt: skip
    # a door operator has no end-of-life threshold, so nothing to measure; the brake has one
    door = {"component": "door_operator", "code": "confirmed_wear", "measured_value": 3}
    r = client.post(
        f"/v1/orders/{order['id']}/cancel", json={"findings": [door]}, headers=a.headers
    )
    assert r.status_code == 422 and r.json()["code"] == "no_remaining_life_measurement"
    brake = {"component": "brake", "code": "other_fault", "measured_value": 40}
    door.pop("measured_value")
    done = ok(
        client.post(
            f"/v1/orders/{order['id']}/cancel", json={"findings": [door, brake]}, headers=a.headers
        )
    )
    assert done["status"] == "cancelled"
    found = ok(client.get(f"/v1/orders/{order['id']}", headers=a.headers))["outcomes"]
    assert [(o["component"], o["code"], o["measured_metric"]) for o in found] == [
        ("brake", "other_fault", "brake_wear_pct"),
        ("door_operator", "confirmed_wear", None),
    ]


def test_model_page_arguments_and_roles(
    client: TestClient,
    two_customers: tuple[Tenant, Tenant, dict[str, int], dict[str, int]],
    make_tenant: Callable[..., Tenant],
) -> None:
    a, *_ = two_customers
    r = client.get("/v1/models/outcomes", params={"kind": "boat"}, headers=a.headers)
    assert r.status_code == 404 and r.json()["code"] == "asset_kind_not_found"
    r = client.get("/v1/models/outcomes", params={"limit": 0}, headers=a.headers)
    assert r.status_code == 422
    assert client.get("/v1/models/outcomes").status_code == 401
