"""A technician that works maintenance orders in the simulated world.

It watches open orders through an ``OrderSource``; when an order is due (or its component
has already failed) and the parts are on site, it does the work: reports completion and what it
found on the component (:func:`finding`, the outcome the model page judges alerts by) to the
source first (the product ends the life and renews the asset), then renews the component in
the simulation. The seam to the product's orders is the small ``OrderSource`` protocol:
``ProductOrderSource`` reads and completes the product's orders through the HTTP API, as a
person with a technician's key would; ``InMemoryOrderSource`` is an in-memory stand-in for
tests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from fleetcare.errors import Conflict, FleetcareError, ServiceUnavailable
from simulators.api_client import ProductAPI
from simulators.fleet import Fleet
from simulators.schemas import LifeEnd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkOrder:
    """An open maintenance order as the technician sees it."""

    order_id: int
    asset_ref: str
    component: str
    due_at: datetime
    parts_on_site: tuple[str, ...]  # SKUs delivered to the asset's site for this order
    parts_needed: tuple[str, ...]
    reason: str = "manual"  # why it was raised: predicted, anomaly, failure, manual, ...
    raised_at: datetime | None = None  # None: counts from the due date (no compression)

    @property
    def parts_ready(self) -> bool:
        return all(sku in self.parts_on_site for sku in self.parts_needed)


class OrderSource(Protocol):
    """Where orders come from and where their completion is reported."""

    def due_orders(self) -> list[WorkOrder]:
        """Open orders that the technician may work (not completed or cancelled)."""
        ...

    def complete(
        self, order_id: int, parts_used: Sequence[str], findings: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Report that the work of ``order_id`` is done with ``parts_used`` (SKUs) and what
        was found (``POST /v1/orders/{id}/complete``'s ``findings``)."""
        ...


def finding(fleet: Fleet, asset_ref: str, component: str) -> dict[str, Any]:
    """What a technician finds on ``component`` when working an order on it, from the
    simulation's hidden state: ``confirmed_wear`` when it has failed or its expected remaining
    life is within the kind's risk horizon (the wear an alert announces was there),
    ``false_alarm`` otherwise. The notes give the expected remaining life."""
    kf, index = fleet.locate(asset_ref)
    population = kf.population
    kind = population.kind
    if bool(population.failed(component)[index]):
        return {"component": component, "code": "confirmed_wear", "notes": "found failed"}
    rul = float(population.expected_rul(component)[index])
    code = "confirmed_wear" if rul <= kind.model.horizon else "false_alarm"
    return {
        "component": component,
        "code": code,
        "notes": f"simulated: about {rul:,.0f} {kind.life.unit} of life left",
    }


@dataclass
class InMemoryOrderSource:
    """A stand-in OrderSource kept in memory (tests; runs without the orders domain)."""

    orders: dict[int, WorkOrder] = field(default_factory=dict)
    completed: dict[int, tuple[str, ...]] = field(default_factory=dict)
    findings: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, order: WorkOrder) -> None:
        self.orders[order.order_id] = order

    def deliver(self, order_id: int, sku: str) -> None:
        """A shipment arrives at the site."""
        order = self.orders[order_id]
        self.orders[order_id] = WorkOrder(
            order.order_id, order.asset_ref, order.component, order.due_at,
            (*order.parts_on_site, sku), order.parts_needed, order.reason, order.raised_at,
        )  # fmt: skip

    def due_orders(self) -> list[WorkOrder]:
        return [o for i, o in sorted(self.orders.items()) if i not in self.completed]

    def complete(
        self, order_id: int, parts_used: Sequence[str], findings: Sequence[dict[str, Any]] = ()
    ) -> None:
        if order_id in self.completed:
            raise Conflict(f"order {order_id} is completed; it cannot become completed")
        self.completed[order_id] = tuple(parts_used)
        self.findings[order_id] = list(findings)


class ProductOrderSource:
    """The product's maintenance orders, worked as the customer's technician would: through
    the HTTP API with the technician's key.

    Open orders come from ``GET /v1/orders?open=true``; an order's parts are those of its
    shipments (``GET /v1/orders/{id}``) that were not cancelled, on site once delivered, named
    by SKU from the parts catalogue (``GET /v1/parts/{id}``). Completion is
    ``POST /v1/orders/{id}/complete`` (the product records the end of the life and renews the
    asset). While the API cannot be reached there is no work to see."""

    def __init__(self, api: ProductAPI, asset_refs: dict[int, str]) -> None:
        self.api = api
        self.asset_refs = asset_refs
        self._skus: dict[int, str] = {}  # part id -> SKU; the catalogue does not change

    def due_orders(self) -> list[WorkOrder]:
        try:
            return self._open_orders()
        except ServiceUnavailable as exc:
            log.warning("technician: no orders seen: %s", exc.detail)
            return []

    def _open_orders(self) -> list[WorkOrder]:
        out: list[WorkOrder] = []
        for order in self.api.items("/v1/orders", open="true"):
            ref = self.asset_refs.get(order["asset_id"])
            if ref is None:
                continue
            detail = self.api.get(f"/v1/orders/{order['id']}")
            needed: list[str] = []
            on_site: list[str] = []
            for shipment in detail["shipments"]:
                if shipment["status"] == "cancelled":
                    continue
                sku = self._sku(shipment["part_id"])
                needed.append(sku)
                if shipment["status"] == "delivered":
                    on_site.append(sku)
            out.append(
                WorkOrder(
                    order["id"], ref, order["component"],
                    datetime.fromisoformat(order["due_at"]), tuple(on_site), tuple(needed),
                    order["reason"], datetime.fromisoformat(order["raised_at"]),
                )
            )  # fmt: skip
        return out

    def _sku(self, part_id: int) -> str:
        if part_id not in self._skus:
            self._skus[part_id] = str(self.api.get(f"/v1/parts/{part_id}")["sku"])
        return self._skus[part_id]

    def complete(
        self, order_id: int, parts_used: Sequence[str], findings: Sequence[dict[str, Any]] = ()
    ) -> None:
        body: dict[str, Any] = {"parts_used": [{"sku": sku} for sku in parts_used]}
        if findings:
            body["findings"] = list(findings)
        self.api.post(f"/v1/orders/{order_id}/complete", body)

    def close(self) -> None:
        self.api.close()


class SimTechnician:
    """Works due orders whose parts are on site, records what was found on the component
    (:func:`finding`), and renews the simulated component."""

    def __init__(
        self,
        fleet: Fleet,
        orders: OrderSource,
        *,
        early: timedelta = timedelta(0),
        speedup: float = 1.0,
    ) -> None:
        self.fleet = fleet
        self.orders = orders
        self.early = early  # how long before the due time the technician may come
        # the simulated world's pace: an order due in 14 days is due after 14 simulated
        # days, as the courier's transit times are (``simulators.courier``)
        self.speedup = max(speedup, 1.0)

    def due_at(self, order: WorkOrder) -> datetime:
        """When the work is due in the simulated world: the order's lead time (raised to
        due) at the fleet's speed-up."""
        if order.raised_at is None or order.due_at <= order.raised_at:
            return order.due_at
        return order.raised_at + (order.due_at - order.raised_at) / self.speedup

    def work(self, now: datetime) -> list[LifeEnd]:
        """Do every order that is due (or whose component failed) with its parts on site."""
        ended: list[LifeEnd] = []
        for order in self.orders.due_orders():
            try:
                failed = self.fleet.is_failed(order.asset_ref, order.component)
            except KeyError:
                continue  # another fleet's asset, or a component this kind does not have
            if not order.parts_ready:
                continue
            if now < self.due_at(order) - self.early and not failed:
                continue
            # an order raised by a failure has its outcome already (the failure report);
            # the others get what was found on their component
            found = (
                [finding(self.fleet, order.asset_ref, order.component)]
                if order.reason != "failure"
                else []
            )
            try:
                self.orders.complete(order.order_id, order.parts_needed, found)
            except FleetcareError as exc:  # cancelled or closed meanwhile: nothing to do
                log.warning("technician: order %s not completed: %s", order.order_id, exc)
                continue
            life = self.fleet.replace(order.asset_ref, order.component, now)
            log.info(
                "technician: order %s done on %s/%s",
                order.order_id,
                order.asset_ref,
                order.component,
            )
            if life is not None:
                ended.append(life.model_copy(update={"by_order": True}))
        return ended
