"""The demo haulier's dispatch desk: drives the demo's trucks on ``simulators.truck_routes``
and tells fleetcare through the API, as a haulier's telematics would
(``simulators.carrier_ops``).

The depots and customer stations are the customer's sites, the tire service bays its stations,
one carrier per demo truck (the tires' ``truck`` attribute) with its six tires mounted. The
routes run ``time_scale`` times faster than the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from simulators.carrier_ops import CarrierOps
from simulators.truck_routes import PLACES, RoadLeg, routes

TIRE_SHOPS = ("DUISBURG", "KASSEL", "NUREMBERG", "HAMBURG", "BERLIN", "FRANKFURT", "MUNICH")
# the compressed clock leaves minutes at a stop: the demo bays have the crew for it
DEMO_TIRE_SHOP = {"kinds": ["tire"], "technicians": 1000, "turnaround_hours": 0}


class TruckOps(CarrierOps):
    """Drives the demo trucks and reports their routes and positions through the API."""

    kind = "tire"
    attribute = "truck"
    carrier_type = "truck"
    shops = TIRE_SHOPS
    shop_body = DEMO_TIRE_SHOP
    home = "DUISBURG"

    def places(self) -> Sequence[tuple[str, float, float]]:
        return [(p.code, p.latitude, p.longitude) for p in PLACES]

    def carrier_ref(self, value: str) -> str:
        return value

    def mount_position(self, asset: dict[str, Any]) -> str:
        return str(asset["attributes"].get("position", ""))

    def make_schedule(self, count: int, start: datetime) -> list[Any]:
        return list(routes(self.seed, trucks=count, days=self.days, start=start))

    def flown(self, carrier: Any) -> list[RoadLeg]:
        return list(carrier.driven())
