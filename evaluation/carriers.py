"""The carriers of the mobile evaluation: an airline for assets that fly (its schedule from
``simulators.airline``) and a haulier for assets that roll (``simulators.truck_routes``), each
with its stations, parts stores and lanes, and how a leg wears what it carries.

Which carrier moves a kind is decided by the kind's physics (a population that flies cycles,
one that drives kilometres), never by a kind's name; whether a kind is mobile at all is its
definition's ``mobile`` flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol

import numpy as np

from maintenance.mobility import planning
from simulators import airline, truck_routes
from simulators.itinerary import great_circle_km
from simulators.physics import EnginePopulation, Frame, Population, TirePopulation


@dataclass(frozen=True)
class Station:
    """A shop on the network: its crew, turnaround and hours (None: round the clock)."""

    kind: str
    technicians: int
    turnaround_hours: float
    utc_offset_minutes: int = 0
    opens_at: time | None = None
    closes_at: time | None = None

    def services(self, kind: str, component: str) -> bool:
        return kind == self.kind


@dataclass(frozen=True)
class Network:
    """Places (by site id), shops, parts stores and the lanes between them.

    A lane from a store to a shop takes ``lane_base_hours`` plus the great-circle distance at
    ``lane_kmh`` and costs ``lane_base_eur`` plus ``lane_eur_per_km`` per km."""

    name: str
    carrier_word: str  # what the carriers are called: "aircraft", "trucks"
    places: tuple[tuple[str, float, float], ...]  # (code, latitude, longitude)
    shops: tuple[str, ...]
    stores: tuple[str, ...]
    technicians: int
    turnaround_hours: float
    opens_at: time | None
    closes_at: time | None
    utc_offset_minutes: int
    lane_base_hours: float
    lane_kmh: float
    lane_base_eur: float
    lane_eur_per_km: float
    default_carriers: int

    def index(self, code: str) -> int:
        return next(i for i, p in enumerate(self.places) if p[0] == code)

    def km(self, a: int, b: int) -> float:
        (_, la1, lo1), (_, la2, lo2) = self.places[a], self.places[b]
        return great_circle_km(la1, lo1, la2, lo2)

    def stations(self, kind: str) -> dict[int, Station]:
        shop = Station(
            kind, self.technicians, self.turnaround_hours, self.utc_offset_minutes,
            self.opens_at, self.closes_at,
        )  # fmt: skip
        return {self.index(code): shop for code in self.shops}

    def lanes(self) -> list[planning.LaneChoice]:
        """Every store to every shop (stock is not the question here: plenty)."""
        out: list[planning.LaneChoice] = []
        for d, store in enumerate(self.stores):
            for shop in self.shops:
                km = self.km(self.index(store), self.index(shop))
                lane = planning.LaneChoice(
                    lane_id=len(out) + 1, depot_id=d + 1, site_id=self.index(shop),
                    lead_hours=self.lane_base_hours + km / self.lane_kmh,
                    cost_minor=round((self.lane_base_eur + self.lane_eur_per_km * km) * 100),
                    available=1_000_000,
                )  # fmt: skip
                out.append(lane)
        return out

    def fastest_hours(self, site_id: int) -> float:
        """A part's quickest way from a store to any place (a failure grounds it there)."""
        return min(
            self.lane_base_hours + self.km(self.index(s), site_id) / self.lane_kmh
            for s in self.stores
        )

    def assumptions(self) -> dict[str, Any]:
        hours = "round the clock"
        if self.opens_at is not None and self.closes_at is not None:
            offset = self.utc_offset_minutes / 60
            hours = f"{self.opens_at:%H:%M}-{self.closes_at:%H:%M} local (UTC{offset:+g})"
        return {
            "shops": list(self.shops), "parts_stores": list(self.stores),
            "technicians": self.technicians, "turnaround_hours": self.turnaround_hours,
            "opening_hours": hours,
            "lane": f"{self.lane_base_hours:g} h + distance at {self.lane_kmh:g} km/h, "
            f"EUR {self.lane_base_eur:g} + {self.lane_eur_per_km:g}/km",
        }  # fmt: skip


class CarrierSim(Protocol):
    """How one kind of carrier moves and wears what it carries."""

    network: Network

    def carries(self, population: Population) -> bool: ...
    def schedule(self, seed: int, carriers: int, days: int, start: datetime) -> list[Any]: ...
    def usage(self, leg: Any) -> float: ...
    def ride(
        self, population: Population, start_h: float, hours: float, legs: Sequence[Any]
    ) -> Frame: ...


AIRLINE = Network(
    name="airline", carrier_word="aircraft",
    places=tuple((a.code, a.latitude, a.longitude) for a in airline.AIRPORTS),
    shops=("FRA", "MUC", "HAM", "CDG"), stores=("HAM", "VIE"), technicians=6,
    turnaround_hours=1.0, opens_at=None, closes_at=None, utc_offset_minutes=0,
    lane_base_hours=3.0, lane_kmh=300.0, lane_base_eur=150.0, lane_eur_per_km=1.2,
    default_carriers=30,
)  # fmt: skip
HAULIER = Network(
    name="haulier", carrier_word="trucks",
    places=tuple((p.code, p.latitude, p.longitude) for p in truck_routes.PLACES),
    shops=("DUISBURG", "KASSEL", "NUREMBERG", "HAMBURG", "BERLIN", "FRANKFURT", "MUNICH"),
    stores=("KASSEL", "LEIPZIG"), technicians=2, turnaround_hours=0.5, opens_at=time(6),
    closes_at=time(22), utc_offset_minutes=60, lane_base_hours=2.0, lane_kmh=60.0,
    lane_base_eur=25.0, lane_eur_per_km=0.3, default_carriers=20,
)  # fmt: skip


class Airline:
    """Tails on ``simulators.airline``'s schedule; a leg is one flight cycle of each engine."""

    network = AIRLINE

    def carries(self, population: Population) -> bool:
        return isinstance(population, EnginePopulation)

    def schedule(self, seed: int, carriers: int, days: int, start: datetime) -> list[Any]:
        return list(airline.schedule(seed, tails=carriers, days=days, start=start))

    def usage(self, leg: Any) -> float:
        return 1.0

    def ride(
        self, population: Population, start_h: float, hours: float, legs: Sequence[Any]
    ) -> Frame:
        assert isinstance(population, EnginePopulation)
        cycles = np.zeros(population.aircraft, np.int64)
        for leg in legs:
            cycles[leg.carrier] += 1
        return population.fly_cycles(start_h, hours, cycles)


class Haulier:
    """Trucks on ``simulators.truck_routes``; a leg rolls its tires its kilometres."""

    network = HAULIER

    def carries(self, population: Population) -> bool:
        return isinstance(population, TirePopulation)

    def schedule(self, seed: int, carriers: int, days: int, start: datetime) -> list[Any]:
        return list(truck_routes.routes(seed, trucks=carriers, days=days, start=start))

    def usage(self, leg: Any) -> float:
        return float(leg.km)

    def ride(
        self, population: Population, start_h: float, hours: float, legs: Sequence[Any]
    ) -> Frame:
        assert isinstance(population, TirePopulation)
        km = np.zeros(population.trucks)
        driving = np.zeros(population.trucks)
        for leg in legs:
            km[leg.carrier] += leg.leg.km
            driving[leg.carrier] += truck_routes.drive_hours(leg.leg.km)
        cruise = np.where(driving > 0, km / np.maximum(driving, 1e-9), truck_routes.SPEED_KMH)
        return population.drive(start_h, hours, km, cruise, np.zeros(population.trucks, bool))


SIMULATIONS: tuple[CarrierSim, ...] = (Airline(), Haulier())


def simulation_for(population: Population) -> CarrierSim | None:
    """The carrier that moves this physics' assets, or None."""
    return next((sim for sim in SIMULATIONS if sim.carries(population)), None)


@dataclass(frozen=True)
class Flown:
    """A leg as travelled, with the carrier (the physics' group) that travelled it."""

    carrier: int
    leg: Any

    @property
    def arrives(self) -> datetime:
        return self.leg.arrives


def known_legs(carrier: Any, at: datetime, start: datetime, until: datetime) -> list[Any]:
    """The carrier's legs as its dispatcher shows them at ``at``, from the day before ``at``
    to ``until`` (a day's actual legs once its change is known, else its plan)."""
    first = max(0, (at - start).days - 1)
    last = min(len(carrier.days), (until - start).days + 1)
    out: list[Any] = []
    for day in carrier.days[first:last]:
        known = day.revealed_at is not None and day.revealed_at <= at
        out.extend(day.actual if known else day.planned)
    return [leg for leg in out if leg.departs <= until]


def lead_hours_of(lanes: Sequence[planning.LaneChoice], site_id: int) -> float | None:
    """The fastest lane into a site (None: no lane)."""
    return min((x.lead_hours for x in lanes if x.site_id == site_id), default=None)


HORIZON = timedelta(days=14)  # how far ahead the dispatcher's itinerary is published
