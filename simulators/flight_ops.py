"""The demo airline's operations desk: flies the demo's aircraft on ``simulators.airline``'s
schedule and tells fleetcare through the API, as an airline's systems would
(``simulators.carrier_ops``).

The airports are the customer's sites, the engine shops its stations, one carrier per demo
aircraft (``D-`` and the engines' ``aircraft`` attribute) with its engines mounted. The schedule
runs ``time_scale`` times faster than the clock, so a one-hour flight takes 30 s at the default
120.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from simulators.airline import AIRPORTS, SimLeg, Tail, schedule
from simulators.carrier_ops import LANE_HOURS, CarrierOps

__all__ = ["DEMO_SHOP", "LANE_HOURS", "SHOPS", "FlightOps"]

SHOPS = ("FRA", "MUC", "HAM", "CDG")
# the compressed clock leaves minutes on the ground: the demo shops have the crew for it
DEMO_SHOP = {"kinds": ["engine"], "technicians": 1000, "turnaround_hours": 0}


class FlightOps(CarrierOps):
    """Flies the demo tails and reports their plans and positions through the API."""

    kind = "engine"
    attribute = "aircraft"
    carrier_type = "aircraft"
    shops = SHOPS
    shop_body = DEMO_SHOP
    home = "FRA"

    @property
    def tails(self) -> list[Tail]:
        return self.schedule

    def places(self) -> Sequence[tuple[str, float, float]]:
        return [(a.code, a.latitude, a.longitude) for a in AIRPORTS]

    def carrier_ref(self, value: str) -> str:
        return f"D-{value}"

    def mount_position(self, asset: dict[str, Any]) -> str:
        return f"ENG{asset['attributes'].get('position', '')}"

    def make_schedule(self, count: int, start: datetime) -> list[Any]:
        return list(schedule(self.seed, tails=count, days=self.days, start=start))

    def flown(self, carrier: Any) -> list[SimLeg]:
        return list(carrier.flown())
