"""A carrier's days as a dispatcher sees them (a truck's routes, an aircraft's itinerary): the
legs planned, the legs travelled, and when the difference became known. Shared by
``simulators.truck_routes`` and ``simulators.airline``; pure, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

Leg = TypeVar("Leg")
EARTH_RADIUS_KM = 6371.0


@dataclass
class PlannedDay(Generic[Leg]):
    """One carrier's day: the legs planned, the legs travelled, and when the difference was
    known."""

    planned: list[Leg]
    actual: list[Leg]
    revealed_at: datetime | None  # None: travelled as planned


@dataclass
class Carrier(Generic[Leg]):
    """A truck or an aircraft tail with its days."""

    ref: str
    home: str
    days: list[PlannedDay[Leg]] = field(default_factory=list)

    def known_legs(self, at: datetime) -> list[Leg]:
        """The legs as the dispatcher's systems show them at ``at``: a day's actual legs once
        their difference from the plan is known, its planned legs until then."""
        out: list[Leg] = []
        for day in self.days:
            known = day.revealed_at is not None and day.revealed_at <= at
            out.extend(day.actual if known else day.planned)
        return out

    def travelled(self) -> list[Leg]:
        """The legs the carrier actually travelled."""
        return [leg for day in self.days for leg in day.actual]


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance between two points given in degrees."""
    la1, lo1, la2, lo2 = map(math.radians, (lat1, lon1, lat2, lon2))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))
