"""The due window of a carried asset counts its itinerary: the order is raised while a stop
whose part can arrive before the carrier is left (``planning.order_deadline``), not after the
last such stop has gone by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi.testclient import TestClient

from maintenance.mobility import planning
from tests.conftest import Tenant
from tests.fixtures.api import ok
from tests.fixtures.maintenance import T0
from tests.fixtures.mobile import leg, make_airline, predict_engine

T = datetime(2027, 3, 1, tzinfo=UTC)
DAY = 24.0


@dataclass(frozen=True)
class Shop:
    utc_offset_minutes: int = 0
    opens_at: time | None = None
    closes_at: time | None = None
    technicians: int = 8
    turnaround_hours: float = 1.0

    def services(self, kind: str, component: str) -> bool:
        return kind == "engine"


def _h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def _lane(site: int, lead: float) -> planning.LaneChoice:
    return planning.LaneChoice(site, 1, site, lead, 100, 1)


# site 1: a station; site 2: an outstation (no shop)
STATIONS = {1: Shop()}
LANES = [_lane(1, 4.0)]


def _deadline(stops: list[planning.Visit], now: datetime, due: datetime) -> planning.OrderDeadline:
    return planning.order_deadline(
        stops, STATIONS, LANES, kind="engine", component="hpc_module", labour_hours=40,
        due_at=due, now=now,
    )  # fmt: skip


def test_the_deadline_is_the_last_stop_a_part_still_reaches_before_the_carrier() -> None:
    night = planning.Visit(1, 10, _h(5), _h(30))  # a night at the station
    away = planning.Visit(2, 11, _h(31), _h(20 * DAY))  # weeks at an outstation
    back = planning.Visit(1, 12, _h(20 * DAY + 2), None)  # after the due date
    due = _h(10 * DAY)
    found = _deadline([night, away, back], T, due)
    assert found == planning.OrderDeadline(latest=_h(1), known=True)
    # the plan's lead (2 days) before that deadline: 2 + (10 days - 1 h) wide, open today
    window = planning.carried_window_days(found, base_days=2.2, lead_days=2, due_at=due, now=T)
    assert abs(window - (2 + 10 - 1 / 24)) < 1e-9
    # once the part can no longer beat the carrier to the night stop, none is left: open now
    late = _deadline([night, away, back], _h(2), due)
    assert late == planning.OrderDeadline(latest=None, known=True)
    now = _h(2)
    wide = planning.carried_window_days(late, base_days=2.2, lead_days=2, due_at=due, now=now)
    assert wide >= (due - now) / timedelta(days=1)
    # an itinerary that ends before the due date says nothing of later stops: the base window
    short = _deadline([night, planning.Visit(2, 11, _h(31), None)], T, due)
    assert short.known is False
    assert planning.carried_window_days(short, base_days=2.2, lead_days=2, due_at=due, now=T) == 2.2
    # stations visited until the due date: the window stays near the base one
    often = [planning.Visit(1, 20 + d, _h(d * DAY + 20), _h(d * DAY + 30)) for d in range(15)]
    near = _deadline(often, T, due)
    assert near.latest == _h(8 * DAY + 16)  # the night of day 8 (arrives 20:00), less 4 h
    assert planning.carried_window_days(near, base_days=2.2, lead_days=2, due_at=due, now=T) < 3.4


def _only_orders(client: TestClient, h: dict[str, str], asset_id: int) -> list[dict[str, Any]]:
    return list(ok(client.get("/v1/orders", params={"asset_id": asset_id}, headers=h))["items"])


def test_the_order_is_raised_before_the_last_stop_with_a_part_in_time_is_lost(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    alice = make_tenant("alice")
    h = alice.headers
    # the engine plan's lead is 21 days; the lanes: TXL 4 h, FRA 2 h, MUC 1 h
    air = make_airline(
        client, alice, operator_headers, lanes={"TXL": (4, 100), "FRA": (2, 300), "MUC": (1, 50)}
    )
    cid = air.carrier["id"]
    d = 24
    start = [
        leg("LH1", "FRA", "MUC", 2, 3),  # 1 h at MUC: too short for 40 labour hours
        leg("LH2", "MUC", "TXL", 4, 5),  # a night at TXL
        leg("LH3", "TXL", "BCN", 30, 31),  # BCN services no engines
    ]
    # a night at FRA on day 22 is still ahead: due in 25 days is outside the window (21 days
    # of lead before the FRA deadline: 24 days), no order yet
    regular = [
        *start,
        leg("LH4", "BCN", "FRA", 22 * d, 22 * d + 2),
        leg("LH5", "FRA", "MUC", 26 * d, 26 * d + 1),
    ]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": regular}, headers=h))
    predict_engine(db_url, air.asset_id, due_in_days=25)
    assert _only_orders(client, h, air.asset_id) == []
    # the airline drops the FRA night: the tail stays at BCN until after the due date. The
    # fixed-site window (21 days + the fastest lane) would wait a few more days, when the TXL
    # night (the last stop a part reaches in time) is long gone; the order is raised now
    sparse = [*start, leg("LH6", "BCN", "FRA", 26 * d, 26 * d + 2)]
    ok(client.put(f"/v1/carriers/{cid}/itinerary", json={"legs": sparse}, headers=h))
    now = T0 + timedelta(minutes=10)
    predict_engine(db_url, air.asset_id, due_in_days=25 - 10 / 1440, now=now)
    [order] = _only_orders(client, h, air.asset_id)
    assert order["at_risk"] is False
    crew = ok(client.get(f"/v1/orders/{order['id']}/visit", headers=h))
    assert crew["station"] == "TXL" and crew["aog_risk"] is False
    [part] = crew["parts"]
    assert part["eta"] <= crew["arrives_at"], "the part is there before the tail"
