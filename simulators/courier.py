"""A simulated carrier for the demo loop: ships pending shipments and delivers them when
their (time-compressed) transit is over.

Real carriers report through the API (`/v1/shipments/{id}/ship`, `/deliver`); in `fleetcare
up` nobody would, so parts would never reach the site. This courier does the same, through
the same routes, with the operator's key. Transit is compressed by the same speed-up as the
simulated wear, so a 2-day shipment arrives after 2 days / speed-up.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from fleetcare.clock import Clock
from fleetcare.errors import FleetcareError, ServiceUnavailable
from simulators.api_client import ProductAPI

log = logging.getLogger(__name__)


def transit_over(
    created_at: datetime, eta: datetime, shipped_at: datetime, now: datetime, speedup: float
) -> bool:
    """True when a shipment's compressed transit time has passed."""
    transit = max(eta - created_at, timedelta(0)) / max(speedup, 1.0)
    return now >= shipped_at + transit


class Courier:
    """Moves the demo's shipments along: pending → shipped → delivered."""

    def __init__(self, api: ProductAPI, clock: Clock, speedup: float) -> None:
        self.api = api
        self.clock = clock
        self.speedup = speedup
        self.shipped = 0
        self.delivered = 0

    def step(self) -> int:
        """Advance every shipment that can move now; return how many moved."""
        moved = 0
        for status in ("pending", "shipped"):
            for shipment in list(self.api.items("/v1/shipments", status=status)):
                moved += self._advance(shipment, status)
        return moved

    def _advance(self, shipment: dict[str, Any], status: str) -> int:
        now = self.clock.now()
        path = f"/v1/shipments/{shipment['id']}"
        try:
            if status == "pending":
                self.api.post(f"{path}/ship", {"carrier": "demo courier"})
                self.shipped += 1
                return 1
            created_at = datetime.fromisoformat(shipment["created_at"])
            eta = datetime.fromisoformat(shipment["eta"])
            shipped = shipment["shipped_at"]
            shipped_at = datetime.fromisoformat(shipped) if shipped else now
            if transit_over(created_at, eta, shipped_at, now, self.speedup):
                self.api.post(f"{path}/deliver")
                self.delivered += 1
                return 1
        except ServiceUnavailable:
            raise
        except FleetcareError as exc:  # cancelled or moved meanwhile: skip it, keep going
            log.info("courier: shipment %s not moved: %s", shipment["id"], exc.detail)
        return 0

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Step until ``stop`` is set."""
        reached = False  # until the API first answers, it is starting (up starts it after us)
        while not stop.is_set():
            try:
                self.step()
                reached = True
            except ServiceUnavailable as exc:  # the API is starting or restarting
                if reached:
                    log.warning("courier: %s; retrying", exc.detail)
                else:
                    log.info("courier: waiting for the API (%s)", exc.detail)
            except Exception:
                log.exception("courier step failed; retrying")
            stop.wait(interval_s)
