"""The demo airline's operations desk: flies the demo's aircraft on ``simulators.airline``'s
schedule and tells fleetcare through the API, as an airline's systems would.

Set-up (idempotent): the airports as the customer's sites, the engine shops as stations, lanes
from the operator's depot to them, one carrier per demo aircraft with its engines mounted.
Then every step: the itinerary of each tail from a day back to two days ahead (with the delays
and diversions revealed so far; ``PUT /v1/carriers/{id}/itinerary`` is idempotent, so an
unchanged plan changes nothing) and its position (between airports while in flight, else the
station it is at). The schedule runs ``time_scale`` times faster than the clock, so a one-hour
flight takes 30 s at the default 120.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from fleetcare.clock import Clock
from fleetcare.errors import Conflict, FleetcareError, ServiceUnavailable
from simulators.airline import AIRPORTS, SimLeg, Tail, schedule
from simulators.api_client import ProductAPI

log = logging.getLogger(__name__)

SHOPS = ("FRA", "MUC", "HAM", "CDG")
# the compressed clock leaves minutes on the ground: the demo shops have the crew for it
DEMO_SHOP = {"kinds": ["engine"], "technicians": 1000, "turnaround_hours": 0}
LANE_HOURS = 0.1


class FlightOps:
    """Flies the demo tails and reports their plans and positions through the API."""

    def __init__(
        self,
        customer: ProductAPI,
        operator: ProductAPI,
        clock: Clock,
        *,
        time_scale: float = 120.0,
        seed: int = 1,
    ) -> None:
        self.customer = customer
        self.operator = operator
        self.clock = clock
        self.time_scale = time_scale
        self.seed = seed
        self.carriers: dict[str, int] = {}  # tail (carrier ref) -> carrier id
        self.tails: list[Tail] = []
        self.origin_real = clock.now()
        self.origin_sched = self.origin_real
        self.sent: dict[int, Any] = {}
        self.positions: dict[int, Any] = {}
        self.steps = 0

    # --- set-up ------------------------------------------------------------------------

    def _sites(self) -> dict[str, int]:
        found = {s["ref"]: s["id"] for s in self.customer.items("/v1/sites")}
        for airport in AIRPORTS:
            if airport.code in found:
                continue
            body = {"ref": airport.code, "name": airport.code, "latitude": airport.latitude,
                    "longitude": airport.longitude}  # fmt: skip
            found[airport.code] = self.customer.post("/v1/sites", body)["id"]
        return found

    def setup(self) -> int:
        """Stations, lanes and carriers with their engines; how many carriers fly."""
        sites = self._sites()
        depots = list(self.operator.items("/v1/depots"))
        lanes = {(x["depot_id"], x["site_id"]) for x in self.operator.items("/v1/lanes")}
        for code in SHOPS:
            self.customer.put(f"/v1/sites/{sites[code]}/station", DEMO_SHOP)
            for depot in depots[:1]:
                if (depot["id"], sites[code]) not in lanes:
                    body = {"depot_id": depot["id"], "site_id": sites[code],
                            "lead_hours": LANE_HOURS, "cost_minor": 5_000}  # fmt: skip
                    self.operator.post("/v1/lanes", body)
        engines: dict[str, list[dict[str, Any]]] = {}
        for asset in self.customer.items("/v1/assets"):
            aircraft = asset.get("attributes", {}).get("aircraft")
            if asset["kind"] == "engine" and aircraft:
                engines.setdefault(str(aircraft), []).append(asset)
        known = {c["ref"]: c["id"] for c in self.customer.items("/v1/carriers")}
        for aircraft, mounted in sorted(engines.items()):
            ref = f"D-{aircraft}"
            if ref not in known:
                body = {"ref": ref, "carrier_type": "aircraft", "home_site_id": sites["FRA"]}
                known[ref] = self.customer.post("/v1/carriers", body)["id"]
            for asset in mounted:
                position = f"ENG{asset['attributes'].get('position', '')}"
                self.customer.put(f"/v1/carriers/{known[ref]}/assets/{asset['id']}",
                                  {"position": position})  # fmt: skip
            self.carriers[ref] = known[ref]
        start = self.origin_real.replace(hour=0, minute=0, second=0, microsecond=0)
        self.tails = schedule(self.seed, tails=len(self.carriers), days=60, start=start)
        self.origin_sched = self.origin_real
        return len(self.carriers)

    # --- flying ------------------------------------------------------------------------

    def real(self, moment: datetime) -> datetime:
        """The clock's time of a schedule time."""
        return self.origin_real + (moment - self.origin_sched) / self.time_scale

    def schedule_now(self) -> datetime:
        """The schedule's time now."""
        return self.origin_sched + (self.clock.now() - self.origin_real) * self.time_scale

    def _leg(self, leg: SimLeg) -> dict[str, Any]:
        return {
            "leg_id": f"L{leg.id}",
            "from": leg.origin,
            "to": leg.destination,
            "scheduled_departure": self.real(leg.departs).isoformat(),
            "scheduled_arrival": self.real(leg.arrives).isoformat(),
            "stand": leg.arrival_stand,
        }

    def step(self) -> int:
        """Send each tail's changed itinerary and position; how many calls were made."""
        now = self.schedule_now()
        calls = 0
        for (_ref, carrier_id), tail in zip(
            sorted(self.carriers.items()), self.tails, strict=False
        ):
            known = tail.known_legs(now)
            window = [
                leg for leg in known
                if leg.arrives > now - timedelta(days=1) and leg.departs < now + timedelta(days=2)
            ]  # fmt: skip
            legs = [self._leg(leg) for leg in window]
            if legs and legs != self.sent.get(carrier_id):
                self.customer.put(f"/v1/carriers/{carrier_id}/itinerary", {"legs": legs})
                self.sent[carrier_id] = legs
                calls += 1
            position = _position(tail.flown(), now)
            if position is not None and position != self.positions.get(carrier_id):
                self.customer.put(f"/v1/carriers/{carrier_id}/position", position)
                self.positions[carrier_id] = position
                calls += 1
        self.steps += 1
        return calls

    def run(self, stop: threading.Event, interval_s: float = 2.0) -> None:
        """Set up, then step until ``stop`` is set (retrying while the API starts)."""
        while not stop.is_set() and not self.carriers:
            try:
                if self.setup() == 0:
                    log.info("flight ops: no engines with an aircraft yet; retrying")
            except (ServiceUnavailable, Conflict) as exc:
                log.warning("flight ops: %s; retrying", exc.detail)
            except Exception:
                log.exception("flight ops set-up failed; retrying")
            stop.wait(interval_s)
        while not stop.is_set():
            try:
                self.step()
            except ServiceUnavailable as exc:
                log.warning("flight ops: %s; retrying", exc.detail)
            except FleetcareError as exc:
                log.info("flight ops: %s", exc.detail)
            except Exception:
                log.exception("flight ops step failed; retrying")
            stop.wait(interval_s)


def _position(flown: list[SimLeg], now: datetime) -> dict[str, Any] | None:
    """Where a tail is at schedule time ``now``: in flight between airports, or at one."""
    last = None
    for leg in flown:
        if leg.departs <= now < leg.arrives:
            share = (now - leg.departs) / (leg.arrives - leg.departs)
            a, b = AIRPORTS[leg.from_site_id], AIRPORTS[leg.to_site_id]
            return {
                "latitude": round(a.latitude + (b.latitude - a.latitude) * share, 3),
                "longitude": round(a.longitude + (b.longitude - a.longitude) * share, 3),
            }
        if leg.arrives <= now:
            last = leg
        else:
            break
    if last is None:
        return None
    return {"station": last.destination}
