"""The visit planner's pure rules and the airline schedule (no database); the mobile figures
of `fleetcare evaluate` are in test_mobile_evaluation.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise

import pytest

from maintenance.mobility import planning
from simulators.airline import schedule

T = datetime(2027, 3, 1, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Shop:
    utc_offset_minutes: int = 0
    opens_at: time | None = None
    closes_at: time | None = None
    technicians: int = 1
    turnaround_hours: float = 0.0
    kinds: tuple[str, ...] = ("engine",)

    def services(self, kind: str, component: str) -> bool:
        return kind in self.kinds


@dataclass(frozen=True)
class L:
    id: int
    from_site_id: int
    to_site_id: int
    departs: datetime
    arrives: datetime
    arrival_stand: str = ""


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def test_opening_hours_in_the_station_offset_and_overnight() -> None:
    day_shop = Shop(utc_offset_minutes=60, opens_at=time(8), closes_at=time(18))
    # 06:00-20:00 UTC is 07:00-21:00 local: open 08:00-18:00 local = 10 h
    assert planning.open_hours(day_shop, h(6), h(20)) == pytest.approx(10)
    night_shop = Shop(opens_at=time(22), closes_at=time(6))
    assert planning.open_hours(night_shop, h(20), h(32)) == pytest.approx(8)
    assert planning.open_hours(Shop(), h(1), h(3.5)) == pytest.approx(2.5)
    assert planning.open_hours(Shop(), h(3), h(1)) == 0


def test_visits_fit_by_ground_time_crew_and_turnaround() -> None:
    legs = [L(1, 0, 1, h(1), h(2)), L(2, 1, 2, h(3), h(4)), L(3, 2, 0, h(14), h(15))]
    stops = planning.visits_of(legs, h(0), at_site_id=0)
    assert [(v.site_id, v.leg_id, v.ground_hours) for v in stops] == [
        (0, None, 1.0),
        (1, 1, 1.0),
        (2, 2, 10.0),
        (0, 3, None),
    ]
    shops = {1: Shop(technicians=4), 2: Shop(technicians=4, turnaround_hours=1)}
    fits = planning.fitting_visits(
        stops, shops, kind="engine", component="hpc", labour_hours=20, due_at=h(100)
    )
    # MUC-like stop: 1 h x 4 = 4 h of work; the night stop: (10 - 1) x 4 = 36 h
    assert [(v.site_id, hours) for v, hours in fits] == [(2, 36.0)]
    assert not planning.fitting_visits(
        stops, shops, kind="engine", component="hpc", labour_hours=20, due_at=h(15.5)
    ), "the stop arrives after the due date less the margin"
    assert not planning.fitting_visits(
        stops, shops, kind="tire", component="tread", labour_hours=1, due_at=h(100)
    )


def test_the_plans_visit_margin_decides_how_close_to_the_due_date_a_stop_may_be() -> None:
    legs = [L(1, 0, 1, h(1), h(2)), L(2, 1, 2, h(200), h(201)), L(3, 2, 0, h(230), h(231))]
    stops = planning.visits_of(legs, h(0), at_site_id=0)
    shops = {2: Shop(technicians=4)}  # only the stop arriving at 201 h (29 h on the ground)

    def fits(margin_h: float) -> list[int | None]:
        found = planning.fitting_visits(
            stops, shops, kind="engine", component="hpc", labour_hours=20, due_at=h(220),
            now=h(0), margin=timedelta(hours=margin_h),
        )  # fmt: skip
        return [v.leg_id for v, _ in found]

    assert fits(12) == [2]  # arrives by 220 - 12 h
    assert fits(24) == [], "a day's margin (22 h: a tenth of the 220 h left) needs it by 198 h"
    assert planning.visit_margin(h(220), h(0)) == planning.VISIT_MARGIN
    # a tenth of the time left when that is less than the plan's margin
    assert planning.visit_margin(h(100), h(0), timedelta(hours=24)) == timedelta(hours=10)
    plan = planning.plan_visit(
        stops, shops, [], kind="engine", component="hpc", labour_hours=20, due_at=h(220),
        now=h(0), margin=timedelta(hours=24),
    )  # fmt: skip
    assert plan.visit is None and plan.aog_risk and "before 2027-03-09 06:00" in plan.reason


def test_lanes_cheapest_in_time_else_fastest() -> None:
    def lane(i: int, lead: float, cost: int, available: int = 1) -> planning.LaneChoice:
        return planning.LaneChoice(i, i, 7, lead, cost, available)

    lanes = [lane(1, 10, 100), lane(2, 3, 900), lane(3, 5, 300), lane(4, 1, 1, available=0)]
    assert planning.choose_lane(lanes, 7, h(0), h(6)) == (lanes[2], True)
    assert planning.choose_lane(lanes, 7, h(0), h(4)) == (lanes[1], True)
    assert planning.choose_lane(lanes, 7, h(0), h(2)) == (lanes[1], False)
    assert planning.choose_lane(lanes, 8, h(0), h(2)) == (None, False)


def test_a_redirected_shipment_uses_its_own_depots_lane_or_goes_onward() -> None:
    eta = h(5)
    assert planning.redirected_eta(h(2), eta, depot_lead_hours=2, onward_lead_hours=9) == h(4)
    assert planning.redirected_eta(h(2), eta, depot_lead_hours=None, onward_lead_hours=3) == h(8)
    assert planning.redirected_eta(h(9), eta, depot_lead_hours=None, onward_lead_hours=None) == (
        h(9) + timedelta(days=1)
    )


def test_a_replan_judges_the_part_already_on_its_way_not_a_fresh_one() -> None:
    # stops at station 1 (arrives at 6 h) and station 2 (arrives at 30 h), 10 h on the ground
    legs = [L(1, 0, 1, h(5), h(6)), L(2, 1, 0, h(16), h(17)), L(3, 0, 2, h(29), h(30)),
            L(4, 2, 0, h(40), h(41))]  # fmt: skip
    stops = planning.visits_of(legs, h(0), at_site_id=0)
    shops = {1: Shop(technicians=4), 2: Shop(technicians=4)}

    def lane(i: int, depot: int, site: int, lead: float, cost: int) -> planning.LaneChoice:
        return planning.LaneChoice(i, depot, site, lead, cost, 1)

    # depot 2 gets a part to station 1 in 4 h; the shipment on its way is depot 1's, 8 h
    lanes = [lane(1, 1, 1, 8, 100), lane(2, 2, 1, 4, 500), lane(3, 1, 2, 8, 100)]

    def plan(shipment: planning.InFlight | None) -> planning.Plan:
        return planning.plan_visit(
            stops, shops, lanes, kind="engine", component="hpc", labour_hours=4,
            due_at=h(100), now=h(0), shipment=shipment,
        )  # fmt: skip

    fresh = plan(None)  # nothing shipped yet: depot 2 to station 1 in time
    assert fresh.visit is not None and fresh.visit.site_id == 1 and not fresh.aog_risk
    assert fresh.supply == planning.Supply("ship", lanes[1], h(4))
    # on its way from depot 1 to station 2: redirecting it to station 1 takes 8 h, after the
    # carrier; the planner keeps station 2 (before, it chose station 1 for depot 2's lane and
    # the redirected part arrived 2 h after the carrier)
    on_way = plan(planning.InFlight(depot_id=1, site_id=2, eta=h(9)))
    assert on_way.visit is not None and on_way.visit.site_id == 2 and not on_way.aog_risk
    assert on_way.supply == planning.Supply("keep", lanes[2], h(9))
    # still at its depot: given back, and depot 2's part goes to station 1
    pending = plan(planning.InFlight(depot_id=1, site_id=2, eta=h(9), pending=True))
    assert pending.visit is not None and pending.visit.site_id == 1
    assert pending.supply == planning.Supply("replace", lanes[1], h(4))
    # delivered at a station the carrier no longer visits: a new one is sent
    gone = planning.supply(lanes, 1, h(0), h(6), planning.InFlight(1, 3, h(-1), delivered=True))
    assert gone == planning.Supply("ship", lanes[1], h(4))
    # redirected on its own depot's lane when that is in time
    assert planning.supply(lanes, 1, h(0), h(9), planning.InFlight(1, 2, h(9))) == (
        planning.Supply("redirect", lanes[0], h(8))
    )


def test_a_part_that_comes_during_a_long_stop_is_in_time_for_the_work() -> None:
    # at station 0 until 10 h; 1 h at station 1; back at station 0 from 13 h (open ended)
    legs = [L(1, 0, 1, h(10), h(11)), L(2, 1, 0, h(12), h(13))]
    stops = planning.visits_of(legs, h(0), at_site_id=0)
    shops = {0: Shop(technicians=2), 1: Shop(technicians=2)}
    lanes = [planning.LaneChoice(1, 1, 0, 14, 100, 1)]  # the part is at station 0 at 14 h
    plan = planning.plan_visit(
        stops, shops, lanes, kind="engine", component="hpc", labour_hours=8, due_at=h(100),
        now=h(0),
    )  # fmt: skip
    # no stop has it before the carrier; at 14 h the stop from 13 h still holds the work
    assert plan.visit is not None and plan.visit.leg_id == 2 and not plan.aog_risk
    assert plan.supply == planning.Supply("ship", lanes[0], h(14))
    assert planning.part_in_time(plan.visit, shops[0], h(14), 8)
    assert not planning.part_in_time(stops[0], shops[0], h(14), 8), "it left at 10 h"
    assert not planning.part_in_time(stops[0], shops[0], h(7), 8), "3 h x 2 < 8 h of work"


def test_the_schedule_is_seeded_realistic_and_disrupted() -> None:
    a = schedule(3, tails=4, days=10, start=T)
    b = schedule(3, tails=4, days=10, start=T)
    assert [x.flown() for x in a] == [x.flown() for x in b]
    for tail in a:
        flown = tail.flown()
        for prev, nxt in pairwise(flown):
            assert prev.to_site_id == nxt.from_site_id, "a tail leaves from where it landed"
            assert nxt.departs >= prev.arrives + timedelta(minutes=35)
        assert all(0.8 < leg.block_h < 4 for leg in flown)
    assert any(d.revealed_at is not None for t in a for d in t.days)
