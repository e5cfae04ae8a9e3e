"""A seeded airline schedule: tails flying legs among a handful of airports, with delays and
diversions, and engines accruing cycles and hours per leg.

Block times come from the great-circle distance (0.6 h taxi and climb + 780 km/h), turnarounds
are 40-55 min, each tail flies 4-6 legs a day between a hub and the spokes from about 05:00 UTC
and spends the night where its last leg ends (every third night at its home base). A day's
plan can be disrupted: a delay (20% of legs, exponential, mean 50 min) carries over to the
rest of the day's legs less the slack of each turnaround; a diversion (1% of legs) lands at the
nearest other airport, then a ferry leg takes the tail on. A disruption becomes known at its
``revealed_at``: a delay two hours before the scheduled departure, a diversion half-way
through the flight. ``planned`` is the schedule published in advance, ``actual`` what flew.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from simulators.itinerary import Carrier, PlannedDay, great_circle_km


@dataclass(frozen=True)
class Airport:
    code: str
    latitude: float
    longitude: float
    hub: bool = False


AIRPORTS: tuple[Airport, ...] = (
    Airport("FRA", 50.033, 8.570, hub=True),
    Airport("MUC", 48.354, 11.786, hub=True),
    Airport("HAM", 53.630, 9.988),
    Airport("BER", 52.366, 13.503),
    Airport("CDG", 49.010, 2.548),
    Airport("LHR", 51.470, -0.454),
    Airport("BCN", 41.297, 2.078),
    Airport("VIE", 48.110, 16.570),
)
BY_CODE = {a.code: a for a in AIRPORTS}

DELAY_SHARE = 0.20
DELAY_MEAN_MIN = 50.0
DIVERSION_SHARE = 0.01


def distance_km(a: str, b: str) -> float:
    """Great-circle distance between two airports."""
    x, y = BY_CODE[a], BY_CODE[b]
    return great_circle_km(x.latitude, x.longitude, y.latitude, y.longitude)


def block_hours(a: str, b: str) -> float:
    """Gate-to-gate time of a leg."""
    return 0.6 + distance_km(a, b) / 780


@dataclass(frozen=True)
class SimLeg:
    """One leg: ``id`` is unique in the schedule, ``ref`` the airline's leg id."""

    id: int
    ref: str
    tail: str
    from_site_id: int  # index into AIRPORTS
    to_site_id: int
    departs: datetime
    arrives: datetime
    arrival_stand: str = ""

    @property
    def origin(self) -> str:
        return AIRPORTS[self.from_site_id].code

    @property
    def destination(self) -> str:
        return AIRPORTS[self.to_site_id].code

    @property
    def block_h(self) -> float:
        return (self.arrives - self.departs).total_seconds() / 3600


# one tail's day: the legs planned, the legs flown, and when the difference was known
Day = PlannedDay[SimLeg]


@dataclass
class Tail(Carrier[SimLeg]):
    """An aircraft tail and its days (``known_legs``: the itinerary as the airline's systems
    show it)."""

    def flown(self) -> list[SimLeg]:
        """What the tail actually flew."""
        return self.travelled()


def _index(code: str) -> int:
    return next(i for i, a in enumerate(AIRPORTS) if a.code == code)


def _nearest_other(code: str, *exclude: str) -> str:
    others = [a.code for a in AIRPORTS if a.code not in (code, *exclude)]
    return min(others, key=lambda c: distance_km(code, c))


def _plan_day(
    rng: random.Random, tail: str, start_at: str, day0: datetime, end_home: str | None, next_id: int
) -> list[SimLeg]:
    """The planned legs of one day, hub and spoke, ending at ``end_home`` when given."""
    hubs = [a.code for a in AIRPORTS if a.hub]
    spokes = [a.code for a in AIRPORTS if not a.hub]
    count = rng.randint(4, 6)
    t = day0 + timedelta(hours=5, minutes=rng.randint(0, 90))
    here = start_at
    legs = []
    for k in range(count):
        last = k == count - 1
        if last and end_home is not None and here != end_home:
            there = end_home
        elif here in hubs:
            there = rng.choice(spokes)
        else:
            there = rng.choice(hubs)
        if there == here:
            there = rng.choice([h for h in hubs if h != here] or spokes)
        block = timedelta(hours=block_hours(here, there))
        stand = f"{rng.choice('ABCDE')}{rng.randint(1, 40)}"
        legs.append(
            SimLeg(next_id + k, f"{tail}-{day0:%m%d}-{k + 1}", tail, _index(here), _index(there),
                   t, t + block, stand)
        )  # fmt: skip
        t = t + block + timedelta(minutes=rng.randint(40, 55))
        here = there
    return legs


def _disrupt(
    rng: random.Random, planned: list[SimLeg], next_id: int
) -> tuple[list[SimLeg], datetime | None]:
    """The day as flown: delays carried over (less turnaround slack), diversions with a ferry."""
    actual: list[SimLeg] = []
    revealed: datetime | None = None
    carried = timedelta()
    for i, leg in enumerate(planned):
        slack = (leg.departs - planned[i - 1].arrives - timedelta(minutes=35)) if i else timedelta()
        carried = max(timedelta(), carried - max(slack, timedelta()))
        if rng.random() < DELAY_SHARE:
            own = timedelta(minutes=rng.expovariate(1 / DELAY_MEAN_MIN))
            carried += own
            first_known = leg.departs - timedelta(hours=2)
            revealed = first_known if revealed is None else min(revealed, first_known)
        departs = leg.departs + carried
        moved = replace(leg, departs=departs, arrives=leg.arrives + carried)
        if rng.random() < DIVERSION_SHARE:
            alternate = _nearest_other(leg.destination, leg.origin)
            block = timedelta(hours=block_hours(leg.origin, alternate))
            landed = replace(moved, to_site_id=_index(alternate), arrives=departs + block,
                             arrival_stand="")  # fmt: skip
            ferry_dep = landed.arrives + timedelta(hours=1)
            ferry_block = timedelta(hours=block_hours(alternate, leg.destination))
            ferry = SimLeg(next_id + i, f"{leg.ref}-F", leg.tail, _index(alternate),
                           leg.to_site_id, ferry_dep, ferry_dep + ferry_block)  # fmt: skip
            actual += [landed, ferry]
            first_known = departs + block / 2
            revealed = first_known if revealed is None else min(revealed, first_known)
            carried = max(carried, ferry.arrives - leg.arrives)
            continue
        actual.append(moved)
    return actual, revealed


def schedule(seed: int, *, tails: int = 30, days: int = 120, start: datetime) -> list[Tail]:
    """A seeded schedule: ``tails`` aircraft flying ``days`` days from ``start`` (midnight UTC)."""
    rng = random.Random(seed)
    hubs = [a.code for a in AIRPORTS if a.hub]
    fleet = []
    next_id = 1
    for n in range(tails):
        tail = Tail(ref=f"D-A{n:03d}", home=hubs[n % len(hubs)])
        here = tail.home
        for d in range(days):
            day0 = start + timedelta(days=d)
            end_home = tail.home if d % 3 == 2 else None
            planned = _plan_day(rng, tail.ref, here, day0, end_home, next_id)
            next_id += len(planned)
            actual, revealed = _disrupt(rng, planned, next_id)
            next_id += len(planned)
            if actual[-1].to_site_id != planned[-1].to_site_id:
                raise AssertionError("a diversion's ferry brings the tail back on plan")
            tail.days.append(Day(planned, actual, revealed))
            here = planned[-1].destination
        fleet.append(tail)
    return fleet
