"""Seeded truck routes: trucks of a haulier driving loads among depots and customer stations,
with drive times, breaks and rests as EU drivers' hours require, traffic delays and re-routes.

Road distance is 1.25 times the great-circle distance, driven at 72 km/h on average; after
4.5 h at the wheel the driver takes a 45-minute break (inside the leg: it arrives later), a day
is at most 9 h of driving, unloading at a customer takes 45-90 min, and the daily rest at the
day's last stop is at least 11 h (the day starts about 05:00 UTC). Trucks drive Monday to Friday
(a third of them Saturdays too); the last working day of the week ends at the truck's home
depot, where it stands until Monday, and so does every third day. A day's plan can change:
traffic delays a quarter of the legs (exponential, mean 35 min, carried over to the rest of the
day less the unloading slack) and 2% of the loads are re-routed to another customer first (then
on to the planned stop); a change is known when the leg leaves. ``planned`` is the dispatcher's
plan published in advance, ``actual`` what was driven; ``km`` of a leg is what its tires roll.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from simulators.itinerary import Carrier, PlannedDay, great_circle_km


@dataclass(frozen=True)
class Place:
    code: str
    latitude: float
    longitude: float
    depot: bool = False  # the haulier's depots: trucks are based there


PLACES: tuple[Place, ...] = (
    Place("DUISBURG", 51.434, 6.762, depot=True),
    Place("KASSEL", 51.312, 9.480, depot=True),
    Place("NUREMBERG", 49.452, 11.077, depot=True),
    Place("HAMBURG", 53.551, 9.994),
    Place("BREMEN", 53.079, 8.802),
    Place("BERLIN", 52.520, 13.405),
    Place("LEIPZIG", 51.340, 12.375),
    Place("FRANKFURT", 50.110, 8.682),
    Place("STUTTGART", 48.776, 9.183),
    Place("MUNICH", 48.137, 11.576),
    Place("COLOGNE", 50.938, 6.960),
    Place("HANOVER", 52.375, 9.732),
)
BY_CODE = {p.code: p for p in PLACES}

ROAD_FACTOR = 1.25
SPEED_KMH = 72.0
BREAK_AFTER_H = 4.5
BREAK_H = 0.75
MAX_DRIVING_H = 9.0
DAILY_REST_H = 11.0
DELAY_SHARE = 0.25
DELAY_MEAN_MIN = 35.0
REROUTE_SHARE = 0.02


def road_km(a: str, b: str) -> float:
    """Road distance between two places."""
    x, y = BY_CODE[a], BY_CODE[b]
    return ROAD_FACTOR * great_circle_km(x.latitude, x.longitude, y.latitude, y.longitude)


def drive_hours(km: float) -> float:
    """Time at the wheel for ``km``."""
    return km / SPEED_KMH


def leg_hours(km: float, driven_before: float = 0.0) -> float:
    """Door to door: driving plus the 45-minute breaks due after each 4.5 h at the wheel
    (``driven_before``: hours already driven since the last break)."""
    driving = drive_hours(km)
    breaks = math.floor((driven_before + driving) / BREAK_AFTER_H - 1e-9)
    return driving + BREAK_H * max(breaks, 0)


@dataclass(frozen=True)
class RoadLeg:
    """One leg: ``id`` is unique in the routes, ``ref`` the dispatcher's leg id."""

    id: int
    ref: str
    truck: str
    from_site_id: int  # index into PLACES
    to_site_id: int
    departs: datetime
    arrives: datetime
    km: float
    arrival_stand: str = ""  # the unloading bay

    @property
    def origin(self) -> str:
        return PLACES[self.from_site_id].code

    @property
    def destination(self) -> str:
        return PLACES[self.to_site_id].code


# one truck's day: the legs planned, the legs driven, and when the difference was known
RouteDay = PlannedDay[RoadLeg]


@dataclass
class Truck(Carrier[RoadLeg]):
    """A truck and its days (``known_legs``: the route as the dispatcher's systems show it)."""

    def driven(self) -> list[RoadLeg]:
        """What the truck actually drove."""
        return self.travelled()


def _index(code: str) -> int:
    return next(i for i, p in enumerate(PLACES) if p.code == code)


def _leg(
    rng: random.Random, next_id: int, ref: str, truck: str, here: str, there: str,
    departs: datetime, driven_since_break: float,
) -> RoadLeg:  # fmt: skip
    km = road_km(here, there) * rng.uniform(0.97, 1.05)  # the day's detours
    arrives = departs + timedelta(hours=leg_hours(km, driven_since_break))
    bay = f"Bay {rng.randint(1, 24)}"
    return RoadLeg(next_id, ref, truck, _index(here), _index(there), departs, arrives, km, bay)


def _plan_day(
    rng: random.Random, truck: str, here: str, day0: datetime, not_before: datetime,
    end_at: str | None, next_id: int,
) -> list[RoadLeg]:  # fmt: skip
    """The planned legs of one working day: loads to customers within 9 h of driving, the last
    leg to ``end_at`` when given."""
    customers = [p.code for p in PLACES if not p.depot]
    t = max(day0 + timedelta(hours=4, minutes=rng.randint(30, 120)), not_before)
    legs: list[RoadLeg] = []
    driven = since_break = 0.0
    for k in range(rng.randint(2, 4)):
        reachable = [
            c for c in customers
            if c != here
            and driven + drive_hours(road_km(here, c) + road_km(c, end_at or c)) <= MAX_DRIVING_H
        ]  # fmt: skip
        if not reachable:
            break
        there = rng.choice(reachable)
        leg = _leg(rng, next_id + k, f"{truck}-{day0:%m%d}-{k + 1}", truck, here, there, t,
                   since_break)  # fmt: skip
        legs.append(leg)
        driven += drive_hours(leg.km)
        since_break = (since_break + drive_hours(leg.km)) % BREAK_AFTER_H
        t = leg.arrives + timedelta(minutes=rng.randint(45, 90))  # unloading and loading
        here = there
    if end_at is not None and here != end_at:
        k = len(legs)
        legs.append(_leg(rng, next_id + k, f"{truck}-{day0:%m%d}-{k + 1}", truck, here, end_at,
                         t, since_break))  # fmt: skip
    return legs


def _disrupt(
    rng: random.Random, planned: list[RoadLeg], next_id: int
) -> tuple[list[RoadLeg], datetime | None]:
    """The day as driven: traffic delays carried over (less the unloading slack beyond 45
    min), re-routed loads with the leg on to the planned stop."""
    actual: list[RoadLeg] = []
    revealed: datetime | None = None
    carried = timedelta()
    customers = [p.code for p in PLACES if not p.depot]
    for i, leg in enumerate(planned):
        slack = (leg.departs - planned[i - 1].arrives - timedelta(minutes=45)) if i else timedelta()
        carried = max(timedelta(), carried - max(slack, timedelta()))
        departs = leg.departs + carried
        known = departs
        if rng.random() < DELAY_SHARE:
            carried += timedelta(minutes=rng.expovariate(1 / DELAY_MEAN_MIN))
            revealed = known if revealed is None else min(revealed, known)
        moved = replace(leg, departs=departs, arrives=leg.arrives + carried)
        if rng.random() < REROUTE_SHARE:
            others = [c for c in customers if c not in (leg.origin, leg.destination)]
            first = min(others, key=lambda c: road_km(leg.origin, c) + road_km(c, leg.destination))
            a = _leg(rng, next_id + 2 * i, f"{leg.ref}-R", leg.truck, leg.origin, first,
                     departs, 0.0)  # fmt: skip
            b = _leg(rng, next_id + 2 * i + 1, f"{leg.ref}-R2", leg.truck, first,
                     leg.destination, a.arrives + timedelta(minutes=45), 0.0)  # fmt: skip
            actual += [a, b]
            revealed = known if revealed is None else min(revealed, known)
            carried = max(carried, b.arrives - leg.arrives)
            continue
        actual.append(moved)
    return actual, revealed


def routes(seed: int, *, trucks: int = 20, days: int = 365, start: datetime) -> list[Truck]:
    """Seeded routes: ``trucks`` trucks driving ``days`` days from ``start`` (a Monday, 00:00
    UTC)."""
    rng = random.Random(seed)
    depots = [p.code for p in PLACES if p.depot]
    fleet = []
    next_id = 1
    for n in range(trucks):
        truck = Truck(ref=f"TRK-{n + 1:03d}", home=depots[n % len(depots)])
        workdays = 6 if rng.random() < 1 / 3 else 5
        here = truck.home
        rest_until = start
        for d in range(days):
            day0 = start + timedelta(days=d)
            weekday = d % 7
            if weekday >= workdays:
                truck.days.append(RouteDay([], [], None))
                continue
            end_at = truck.home if weekday == workdays - 1 or d % 3 == 2 else None
            planned = _plan_day(rng, truck.ref, here, day0, rest_until, end_at, next_id)
            next_id += len(planned)
            if not planned:
                truck.days.append(RouteDay([], [], None))
                continue
            actual, revealed = _disrupt(rng, planned, next_id)
            next_id += 2 * len(planned)
            truck.days.append(RouteDay(planned, actual, revealed))
            here = planned[-1].destination
            rest_until = actual[-1].arrives + timedelta(hours=DAILY_REST_H)
        fleet.append(truck)
    return fleet
