"""A failure report says what ended the part (issue 20, point 4): its own wear
(``confirmed_wear``), another fault its wear did not cause (``other_fault``), or ``unknown``
(the default, and every report before). ``other_fault`` labels the life it ends so, as an
order closed with that finding does; the simulators report a random fault so."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from simulators.failures import PendingReport
from simulators.physics import RANDOM_FAULT, WEAR_OUT, reported_cause
from simulators.schemas import LifeEnd
from tests.conftest import Tenant
from tests.fixtures.api import ok, order_of, predict, setup_customer, stock
from tests.fixtures.maintenance import T0


@pytest.fixture
def customer(
    client: TestClient,
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
    db_url: str,
) -> tuple[Tenant, dict[str, int]]:
    client.app.state.clock = ManualClock(T0)  # type: ignore[attr-defined]
    tenant = make_tenant("cause")
    stock(client, operator_headers)
    made = setup_customer(client, tenant)
    predict(db_url, made["asset"])
    return tenant, made


def _life_labels(db_url: str, asset_id: int) -> list[tuple[str, str | None]]:
    with connect(db_url) as conn:
        rows = conn.execute(
            "SELECT end_reason, outcome FROM asset_lives WHERE asset_id = %s ORDER BY id",
            (asset_id,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_a_failure_from_another_fault_is_stored_labels_its_life_and_shows_on_the_model_page(
    client: TestClient, customer: tuple[Tenant, dict[str, int]], db_url: str
) -> None:
    tenant, made = customer
    order = order_of(client, tenant.headers, made["asset"])
    ok(client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=tenant.headers))
    client.app.state.clock = ManualClock(T0 + timedelta(days=10))  # type: ignore[attr-defined]
    body = {"asset_id": made["asset"], "component": "tire", "cause": "other_fault",
            "description": "nail through the sidewall"}  # fmt: skip
    report = ok(client.post("/v1/failures", json=body, headers=tenant.headers), 201)
    assert report["cause"] == "other_fault"
    with connect(db_url) as conn:
        stored = conn.execute(
            "SELECT cause FROM failure_reports WHERE id = %s", (report["id"],)
        ).fetchone()
        [payload] = conn.execute(
            "SELECT payload FROM events WHERE type = 'failure.reported' AND customer_id = %s",
            (report["customer_id"],),
        ).fetchone() or [None]
    assert stored == ("other_fault",)
    assert payload is not None and payload["failure"]["cause"] == "other_fault"
    # its life is labelled as an order's other_fault is: censored by training
    assert _life_labels(db_url, made["asset"]) == [("failure", "other_fault")]
    page = ok(client.get("/v1/models/outcomes", headers=tenant.headers))
    [row] = page["rows"]
    assert row["outcome"] == "missed_failure" and row["cause"] == "other_fault"
    # its end is not the wear end the interval predicted: not counted in the coverage
    assert row["in_interval"] is None and page["summaries"][0]["interval_checked"] == 0
    html = client.get("/dashboard/models/outcomes", headers=tenant.headers)
    assert html.status_code == 200 and 'data-cause="other_fault"' in html.text


def test_a_failure_without_a_cause_is_unknown_and_counts_as_wear(
    client: TestClient, customer: tuple[Tenant, dict[str, int]], db_url: str
) -> None:
    tenant, made = customer
    body = {"asset_id": made["asset"], "component": "tire"}
    report = ok(client.post("/v1/failures", json=body, headers=tenant.headers), 201)
    assert report["cause"] == "unknown"
    assert _life_labels(db_url, made["asset"]) == [("failure", "failure")]


@pytest.mark.parametrize("cause", ["wear", "false_alarm", "", None, 3])
def test_a_bad_cause_is_a_clear_422_and_nothing_is_stored(
    client: TestClient, customer: tuple[Tenant, dict[str, int]], db_url: str, cause: Any
) -> None:
    tenant, made = customer
    body = {"asset_id": made["asset"], "component": "tire", "cause": cause}
    r = client.post("/v1/failures", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "cause" in r.text and "other_fault" in r.text  # names the field and the codes
    assert _life_labels(db_url, made["asset"]) == []


def test_the_simulators_report_a_random_fault_as_another_fault() -> None:
    assert reported_cause(RANDOM_FAULT) == "other_fault"
    assert reported_cause(WEAR_OUT) == "confirmed_wear"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    life = LifeEnd(asset_ref="LIFT-1", kind="elevator", component="door_operator",
                   started_at=at, ended_at=at, end_reason="failure", failure_mode="door",
                   cause="other_fault", usage_at_start=0.0, usage_at_end=1.0)  # fmt: skip
    assert PendingReport(7, life).body()["cause"] == "other_fault"
    assert PendingReport(7, life.model_copy(update={"cause": None})).body()["cause"] == "unknown"
