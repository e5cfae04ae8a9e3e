"""The customer's side of a breakdown: a failed component is reported to the product as a
person would, ``POST /v1/failures`` with a key of that customer.

The product ends the life, counts a missed prediction when no order was open, and may raise
an urgent order. A report that cannot be sent now (the API is starting, restarting or
unreachable) waits and is sent again at the next :meth:`FailureReporter.flush`, in order; a
report the product refuses (4xx) is logged and dropped, as a person would give up on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fleet.causes import UNKNOWN
from fleetcare.errors import FleetcareError, ServiceUnavailable
from simulators.api_client import ProductAPI
from simulators.schemas import LifeEnd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingReport:
    asset_id: int
    life: LifeEnd

    def body(self) -> dict[str, object]:
        return {
            "asset_id": self.asset_id,
            "component": self.life.component,
            "failed_at": self.life.ended_at.isoformat(),
            "description": f"simulated {self.life.failure_mode}",
            "cause": self.life.cause or UNKNOWN,
        }


class FailureReporter:
    """Reports simulated failures through the API; keeps what could not be sent yet."""

    def __init__(self, api: ProductAPI) -> None:
        self.api = api
        self.pending: list[PendingReport] = []
        self.sent = 0
        self.refused = 0

    def report(self, asset_id: int, life: LifeEnd) -> None:
        """Queue the failure of ``life`` on ``asset_id``; :meth:`flush` sends it."""
        self.pending.append(PendingReport(asset_id, life))

    def flush(self) -> int:
        """Send the waiting reports in order; stop at the first the API cannot take now.
        Returns how many were sent."""
        sent = 0
        while self.pending:
            report = self.pending[0]
            try:
                self.api.post("/v1/failures", report.body())
                sent += 1
            except ServiceUnavailable as exc:
                log.warning("failure reports: %d waiting: %s", len(self.pending), exc.detail)
                break
            except FleetcareError as exc:
                self.refused += 1
                log.warning(
                    "failure of %s/%s not reported: %s",
                    report.life.asset_ref, report.life.component, exc.detail,
                )  # fmt: skip
            self.pending.pop(0)
        self.sent += sent
        return sent
