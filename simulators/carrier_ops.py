"""A demo customer's operations desk for its carriers: moves them on a seeded schedule and tells
fleetcare through the API, as the customer's systems would (``flight_ops``: aircraft and their
engines; ``truck_ops``: trucks and their tires).

Set-up (idempotent): the schedule's places as the customer's sites, the shops as stations, lanes
from the operator's depot to them, one carrier per group of mounted assets (the assets of the
kind whose ``attribute`` names the same aircraft or truck). Then every step: the itinerary of
each carrier from a day back to two days ahead (with the changes revealed so far;
``PUT /v1/carriers/{id}/itinerary`` is idempotent, so an unchanged plan changes nothing) and its
position (between places while moving, else the station it is at): published by the carrier's
tracker over MQTT when the desk has a ``PositionFeed`` (``fleetcare up``), else through the
API. The schedule runs ``time_scale`` times faster than the clock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from fleetcare.clock import Clock
from fleetcare.errors import Conflict, FleetcareError, ServiceUnavailable
from simulators.api_client import ProductAPI
from simulators.position_feed import PositionFeed

log = logging.getLogger(__name__)
LANE_HOURS = 0.1


class OpsLeg(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def from_site_id(self) -> int: ...
    @property
    def to_site_id(self) -> int: ...
    @property
    def origin(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def departs(self) -> datetime: ...
    @property
    def arrives(self) -> datetime: ...
    @property
    def arrival_stand(self) -> str: ...


class OpsCarrier(Protocol):
    def known_legs(self, at: datetime) -> Sequence[OpsLeg]: ...


class CarrierOps:
    """Moves the demo's carriers and reports their plans and positions through the API."""

    kind = ""
    attribute = ""  # the asset attribute naming the carrier
    carrier_type = ""
    shops: tuple[str, ...] = ()
    shop_body: ClassVar[dict[str, Any]] = {}
    home = ""
    days = 60

    def __init__(
        self,
        customer: ProductAPI,
        operator: ProductAPI,
        clock: Clock,
        *,
        time_scale: float = 120.0,
        seed: int = 1,
        feed: PositionFeed | None = None,
    ) -> None:
        self.customer = customer
        # the carriers' trackers: positions as telemetry (else through the API)
        self.feed = feed
        self.operator = operator
        self.clock = clock
        self.time_scale = time_scale
        self.seed = seed
        self.carriers: dict[str, int] = {}  # carrier ref -> carrier id
        self.schedule: list[Any] = []
        self.origin_real = clock.now()
        self.origin_sched = self.origin_real
        self.sent: dict[int, Any] = {}
        self.positions: dict[int, Any] = {}
        self.steps = 0
        self._trackers_tried = -math.inf

    # --- what a kind of carrier says ----------------------------------------------------------

    def places(self) -> Sequence[tuple[str, float, float]]:
        """(code, latitude, longitude) of every place of the schedule, by site index."""
        raise NotImplementedError

    def carrier_ref(self, value: str) -> str:
        raise NotImplementedError

    def mount_position(self, asset: dict[str, Any]) -> str:
        raise NotImplementedError

    def make_schedule(self, count: int, start: datetime) -> list[Any]:
        raise NotImplementedError

    def flown(self, carrier: Any) -> Sequence[OpsLeg]:
        raise NotImplementedError

    # --- set-up ------------------------------------------------------------------------

    def _sites(self) -> dict[str, int]:
        found = {s["ref"]: s["id"] for s in self.customer.items("/v1/sites")}
        for code, lat, lon in self.places():
            if code in found:
                continue
            body = {"ref": code, "name": code.title(), "latitude": lat, "longitude": lon}
            found[code] = self.customer.post("/v1/sites", body)["id"]
        return found

    def setup(self) -> int:
        """Stations, lanes and carriers with their assets; how many carriers move."""
        sites = self._sites()
        depots = list(self.operator.items("/v1/depots"))
        lanes = {(x["depot_id"], x["site_id"]) for x in self.operator.items("/v1/lanes")}
        for code in self.shops:
            self.customer.put(f"/v1/sites/{sites[code]}/station", self.shop_body)
            for depot in depots[:1]:
                if (depot["id"], sites[code]) not in lanes:
                    body = {"depot_id": depot["id"], "site_id": sites[code],
                            "lead_hours": LANE_HOURS, "cost_minor": 5_000}  # fmt: skip
                    self.operator.post("/v1/lanes", body)
        groups: dict[str, list[dict[str, Any]]] = {}
        for asset in self.customer.items("/v1/assets"):
            value = asset.get("attributes", {}).get(self.attribute)
            if asset["kind"] == self.kind and value:
                groups.setdefault(str(value), []).append(asset)
        known = {c["ref"]: c["id"] for c in self.customer.items("/v1/carriers")}
        for value, mounted in sorted(groups.items()):
            ref = self.carrier_ref(value)
            if ref not in known:
                body = {"ref": ref, "carrier_type": self.carrier_type,
                        "home_site_id": sites[self.home]}  # fmt: skip
                known[ref] = self.customer.post("/v1/carriers", body)["id"]
            for asset in mounted:
                self.customer.put(f"/v1/carriers/{known[ref]}/assets/{asset['id']}",
                                  {"position": self.mount_position(asset)})  # fmt: skip
            self.carriers[ref] = known[ref]
        start = self.origin_real.replace(hour=0, minute=0, second=0, microsecond=0)
        self.schedule = self.make_schedule(len(self.carriers), start)
        self.origin_sched = self.origin_real
        return len(self.carriers)

    # --- moving ------------------------------------------------------------------------

    def real(self, moment: datetime) -> datetime:
        """The clock's time of a schedule time."""
        return self.origin_real + (moment - self.origin_sched) / self.time_scale

    def schedule_now(self) -> datetime:
        """The schedule's time now."""
        return self.origin_sched + (self.clock.now() - self.origin_real) * self.time_scale

    def _leg(self, leg: OpsLeg) -> dict[str, Any]:
        # a customer's leg ids are unique across its carriers and each desk numbers its legs
        # from 1: the desk's carrier type keeps two desks of one customer (up's flight and
        # truck desks, both ACME's) from naming legs alike
        return {
            "leg_id": f"{self.carrier_type}-L{leg.id}",
            "from": leg.origin,
            "to": leg.destination,
            "scheduled_departure": self.real(leg.departs).isoformat(),
            "scheduled_arrival": self.real(leg.arrives).isoformat(),
            "stand": leg.arrival_stand,
        }

    def step(self) -> int:
        """Send each carrier's changed itinerary and position; how many calls were made."""
        now = self.schedule_now()
        calls = 0
        self._connect_trackers()
        for (ref, carrier_id), carrier in zip(
            sorted(self.carriers.items()), self.schedule, strict=False
        ):
            known = carrier.known_legs(now)
            window = [
                leg for leg in known
                if leg.arrives > now - timedelta(days=1) and leg.departs < now + timedelta(days=2)
            ]  # fmt: skip
            legs = [self._leg(leg) for leg in window]
            if legs and legs != self.sent.get(carrier_id):
                self.customer.put(f"/v1/carriers/{carrier_id}/itinerary", {"legs": legs})
                self.sent[carrier_id] = legs
                calls += 1
            position = position_of(self.flown(carrier), now, self.places())
            if position is not None and position != self.positions.get(carrier_id):
                if self.feed is None or not self.feed.publish(ref, self.clock.now(), position):
                    self.customer.put(f"/v1/carriers/{carrier_id}/position", position)
                self.positions[carrier_id] = position
                calls += 1
        self.steps += 1
        return calls

    def _connect_trackers(self) -> None:
        """Connect the carriers' trackers (again every 30 s while some are not)."""
        feed = self.feed
        if feed is None or len(feed.links) >= len(self.carriers):
            return
        if time.monotonic() - self._trackers_tried < 30.0:
            return
        self._trackers_tried = time.monotonic()
        try:
            feed.connect(sorted(self.carriers))
        except (ConnectionError, OSError, FleetcareError) as exc:
            log.warning("%s ops: trackers not connected (%s); positions go through the API",
                        self.carrier_type, exc)  # fmt: skip

    def run(self, stop: threading.Event, interval_s: float = 2.0) -> None:
        """Set up, then step until ``stop`` is set (retrying while the API starts)."""
        while not stop.is_set() and not self.carriers:
            try:
                if self.setup() == 0:
                    log.info("%s ops: no %s assets on a carrier yet; retrying", self.carrier_type,
                             self.kind)  # fmt: skip
            except ServiceUnavailable as exc:  # up starts the API after its workers
                log.info("%s ops: waiting for the API (%s)", self.carrier_type, exc.detail)
            except Conflict as exc:
                log.warning("%s ops: %s; retrying", self.carrier_type, exc.detail)
            except Exception:
                log.exception("%s ops set-up failed; retrying", self.carrier_type)
            stop.wait(interval_s)
        while not stop.is_set():
            try:
                self.step()
            except ServiceUnavailable as exc:
                log.warning("%s ops: %s; retrying", self.carrier_type, exc.detail)
            except FleetcareError as exc:
                log.info("%s ops: %s", self.carrier_type, exc.detail)
            except Exception:
                log.exception("%s ops step failed; retrying", self.carrier_type)
            stop.wait(interval_s)
        if self.feed is not None:
            self.feed.close()


def position_of(
    flown: Sequence[OpsLeg], now: datetime, places: Sequence[tuple[str, float, float]]
) -> dict[str, Any] | None:
    """Where a carrier is at schedule time ``now``: moving between places, or at one."""
    last = None
    for leg in flown:
        if leg.departs <= now < leg.arrives:
            share = (now - leg.departs) / (leg.arrives - leg.departs)
            _, la1, lo1 = places[leg.from_site_id]
            _, la2, lo2 = places[leg.to_site_id]
            return {
                "latitude": round(la1 + (la2 - la1) * share, 3),
                "longitude": round(lo1 + (lo2 - lo1) * share, 3),
            }
        if leg.arrives <= now:
            last = leg
        else:
            break
    if last is None:
        return None
    return {"station": last.destination}
