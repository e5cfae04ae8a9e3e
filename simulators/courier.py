"""A simulated carrier for the demo loop: ships pending shipments and delivers them when
their (time-compressed) transit is over.

Real carriers report through the API (`/v1/shipments/{id}/ship`, `/deliver`); in `fleetcare
up` nobody would, so parts would never reach the site. Transit is compressed by the same
speed-up as the simulated wear, so a 2-day shipment arrives after 2 days / speed-up.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.db import connect
from fleetcare.errors import FleetcareError
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import Shipment, ShipRequest

log = logging.getLogger(__name__)
OPERATOR = Principal(key_id=0, role="operator")


def transit_over(
    created_at: datetime, eta: datetime, shipped_at: datetime, now: datetime, speedup: float
) -> bool:
    """True when a shipment's compressed transit time has passed."""
    transit = max(eta - created_at, timedelta(0)) / max(speedup, 1.0)
    return now >= shipped_at + transit


class Courier:
    """Moves the demo's shipments along: pending → shipped → delivered."""

    def __init__(self, database_url: str, clock: Clock, speedup: float) -> None:
        self.database_url = database_url
        self.clock = clock
        self.speedup = speedup
        self.shipped = 0
        self.delivered = 0

    def step(self) -> int:
        """Advance every shipment that can move now; return how many moved."""
        moved = 0
        with connect(self.database_url) as conn:
            for status in ("pending", "shipped"):
                after: int | None = None
                while True:
                    with conn.transaction():
                        page, after = logistics.list_shipments(
                            conn, OPERATOR, status=status, order_id=None, after=after, limit=200
                        )
                    for shipment in page:
                        moved += self._advance(conn, shipment, status)
                    if after is None:
                        break
        return moved

    def _advance(self, conn: Connection[Any], shipment: Shipment, status: str) -> int:
        now = self.clock.now()
        try:
            with conn.transaction():
                if status == "pending":
                    logistics.ship(
                        conn, OPERATOR, shipment.id, ShipRequest(carrier="demo courier"), self.clock
                    )
                    self.shipped += 1
                    return 1
                shipped_at = shipment.shipped_at or now
                if transit_over(shipment.created_at, shipment.eta, shipped_at, now, self.speedup):
                    logistics.deliver(conn, OPERATOR, shipment.id, self.clock)
                    self.delivered += 1
                    return 1
        except FleetcareError as exc:  # cancelled or moved meanwhile: skip it, keep going
            log.info("courier: shipment %s not moved: %s", shipment.id, exc.detail)
        return 0

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Step until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("courier step failed; retrying")
            stop.wait(interval_s)
