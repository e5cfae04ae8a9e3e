"""The simulated operations desks of carriers (an airline's, a haulier's), by the kind of
asset their carriers hold: what `fleetcare up` runs for a demo fleet with mobile assets."""

from __future__ import annotations

from collections.abc import Iterable

from simulators.carrier_ops import CarrierOps
from simulators.flight_ops import FlightOps
from simulators.truck_ops import TruckOps

DESKS: tuple[type[CarrierOps], ...] = (FlightOps, TruckOps)


def desks_for(kinds: Iterable[str]) -> list[type[CarrierOps]]:
    """The desks whose carriers hold assets of one of ``kinds``."""
    wanted = set(kinds)
    return [desk for desk in DESKS if desk.kind in wanted]
