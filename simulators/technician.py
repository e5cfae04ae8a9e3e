"""A technician that works maintenance orders in the simulated world.

It watches open orders through an ``OrderSource``; when an order is due (or its component
has already failed) and the parts are on site, it does the work: reports completion to the
source first (the product ends the life and renews the asset), then renews the component in
the simulation. The seam to the product's orders is the small ``OrderSource`` protocol:
``ProductOrderSource`` reads and completes the maintenance domain's orders through its
services; ``InMemoryOrderSource`` is an in-memory stand-in for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.db import connect
from fleetcare.errors import Conflict, FleetcareError
from maintenance.logistics import service as logistics
from maintenance.orders import service as orders_service
from maintenance.orders.schemas import CompleteRequest, PartUse
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

    @property
    def parts_ready(self) -> bool:
        return all(sku in self.parts_on_site for sku in self.parts_needed)


class OrderSource(Protocol):
    """Where orders come from and where their completion is reported."""

    def due_orders(self) -> list[WorkOrder]:
        """Open orders that the technician may work (not completed or cancelled)."""
        ...

    def complete(self, order_id: int, parts_used: Sequence[str]) -> None:
        """Report that the work of ``order_id`` is done with ``parts_used`` (SKUs)."""
        ...


@dataclass
class InMemoryOrderSource:
    """A stand-in OrderSource kept in memory (tests; runs without the orders domain)."""

    orders: dict[int, WorkOrder] = field(default_factory=dict)
    completed: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def add(self, order: WorkOrder) -> None:
        self.orders[order.order_id] = order

    def deliver(self, order_id: int, sku: str) -> None:
        """A shipment arrives at the site."""
        order = self.orders[order_id]
        self.orders[order_id] = WorkOrder(
            order.order_id, order.asset_ref, order.component, order.due_at,
            (*order.parts_on_site, sku), order.parts_needed,
        )  # fmt: skip

    def due_orders(self) -> list[WorkOrder]:
        return [o for i, o in sorted(self.orders.items()) if i not in self.completed]

    def complete(self, order_id: int, parts_used: Sequence[str]) -> None:
        if order_id in self.completed:
            raise Conflict(f"order {order_id} is completed; it cannot become completed")
        self.completed[order_id] = tuple(parts_used)


class ProductOrderSource:
    """The product's maintenance orders, worked as the customer's technician would.

    An order's parts are those of its shipments that were not cancelled; they are on site
    once delivered. Completion goes through ``maintenance.orders.service.complete_order``
    (which records the end of the life and renews the asset). One transaction per call."""

    def __init__(
        self, database_url: str, customer_id: int, asset_refs: dict[int, str], clock: Clock
    ) -> None:
        self.conn = connect(database_url)
        self.principal = Principal(key_id=0, role="technician", customer_id=customer_id)
        self.asset_refs = asset_refs
        self.clock = clock

    def due_orders(self) -> list[WorkOrder]:
        out: list[WorkOrder] = []
        with self.conn.transaction():
            after: int | None = None
            while True:
                page, after = orders_service.list_orders(
                    self.conn, self.principal, open_only=True, after=after, limit=500
                )
                for order in page:
                    ref = self.asset_refs.get(order.asset_id)
                    if ref is None:
                        continue
                    needed: list[str] = []
                    on_site: list[str] = []
                    for shipment in logistics.shipments_of_order(self.conn, order.id):
                        if shipment.status == "cancelled":
                            continue
                        sku = logistics.get_part(self.conn, shipment.part_id).sku
                        needed.append(sku)
                        if shipment.status == "delivered":
                            on_site.append(sku)
                    out.append(
                        WorkOrder(
                            order.id, ref, order.component, order.due_at, tuple(on_site),
                            tuple(needed),
                        )
                    )  # fmt: skip
                if after is None:
                    return out

    def complete(self, order_id: int, parts_used: Sequence[str]) -> None:
        body = CompleteRequest(parts_used=[PartUse(sku=sku) for sku in parts_used])
        with self.conn.transaction():
            orders_service.complete_order(self.conn, self.principal, order_id, body, self.clock)

    def close(self) -> None:
        self.conn.close()


class SimTechnician:
    """Works due orders whose parts are on site, and renews the simulated component."""

    def __init__(
        self, fleet: Fleet, orders: OrderSource, *, early: timedelta = timedelta(0)
    ) -> None:
        self.fleet = fleet
        self.orders = orders
        self.early = early  # how long before the due time the technician may come

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
            if now < order.due_at - self.early and not failed:
                continue
            try:
                self.orders.complete(order.order_id, order.parts_needed)
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
