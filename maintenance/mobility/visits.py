"""The visit of an order on a carried asset: planned when the order is raised, planned again
when the carrier's itinerary changes or the due date moves. No SQL text, no HTTP.

One visit row per order (``order_visits``, keyed by the order), and the order row is locked
before it is (re)planned, so concurrent re-plans of one order run one after the other and
planning the same itinerary again changes nothing. A shipment is only created when the order
has no live one; a live shipment to another station is redirected (or, still at its depot when
another depot's lane is needed, released and replaced): never two in flight for one order.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from fleet import service as fleet
from fleet.schemas import AssetContext, Principal
from fleetcare.clock import Clock
from fleetcare.errors import NotFound
from maintenance.common import Conn
from maintenance.logistics import service as logistics
from maintenance.logistics.schemas import Part, Shipment, ShipmentStatus, SupplyOption
from maintenance.mobility import planning
from maintenance.mobility import repository as repo
from maintenance.mobility import service as mobility
from maintenance.mobility.schemas import CrewView, OrderVisit, PartStatus
from maintenance.orders import service as orders
from maintenance.orders.schemas import FailureCreate, FailureReport, Order, OrderCreate
from maintenance.plans import repository as plans
from maintenance.plans.schemas import Entitlements
from models.schemas import Prediction

# legs that arrived this long ago still tell where the carrier stands now
LOOKBACK = timedelta(days=3)
# an order raised by a failure is planned at the first fitting stop within this long
FAILURE_HORIZON = timedelta(days=14)


def window_days(
    conn: Conn,
    asset: AssetContext,
    component: str,
    ent: Entitlements,
    prediction: Prediction | None = None,
    now: datetime | None = None,
) -> float | None:
    """For a carried asset, the due window in days; None when it rides on no carrier.

    At least the lead days plus the fastest lane (from a depot with the part) into one of the
    customer's stations; with a prediction, wider when the carrier's itinerary says the last
    stop a part could reach in time comes earlier (``planning.carried_window_days``).
    """
    mount = mobility.mount_of(conn, asset.id)
    if mount is None:
        return None
    part = logistics.part_for(conn, asset.kind, component)
    if part is None:
        return float(ent.order_lead_days)
    stations = [s.site_id for s in repo.list_stations(conn, scope=asset.customer_id)]
    lanes = [lane for lane in _lanes(conn, part, stations) if lane.available > 0]
    fastest = min((lane.lead_hours for lane in lanes), default=0.0)
    base = float(ent.order_lead_days) + fastest / 24
    due = prediction.due_at_conservative if prediction is not None else None
    carrier = mobility.carrier_of(conn, mount.carrier_id)
    if due is None or now is None or carrier is None:
        return base
    legs = mobility.planned_legs(conn, carrier.id, arriving_after=now - LOOKBACK)
    stops = planning.visits_of(legs, now, carrier.at_site_id)
    deadline = planning.order_deadline(
        stops, mobility.stations_of(conn, sorted({v.site_id for v in stops})), lanes,
        kind=asset.kind, component=component, labour_hours=part.labour_hours, due_at=due,
        now=now, margin=timedelta(hours=ent.visit_margin_hours),
    )  # fmt: skip
    return planning.carried_window_days(
        deadline, base_days=base, lead_days=float(ent.order_lead_days), due_at=due, now=now
    )


def _lanes(conn: Conn, part: Part, site_ids: list[int]) -> list[planning.LaneChoice]:
    return [
        planning.LaneChoice(
            lane_id=o.lane_id,
            depot_id=o.depot_id,
            site_id=o.site_id,
            lead_hours=o.lead_hours,
            cost_minor=o.cost_minor,
            available=o.available,
        )
        for o in repo.lane_options(conn, part.id, site_ids)
    ]


def _site_ref(conn: Conn, site_id: int | None) -> str | None:
    if site_id is None:
        return None
    site = fleet.site_of(conn, site_id)
    return site.ref if site is not None else None


def _describe(conn: Conn, visit: OrderVisit | None) -> str:
    if visit is None or visit.site_id is None:
        return "no visit"
    when = f"{visit.arrives_at:%Y-%m-%d %H:%M} UTC" if visit.arrives_at else "now"
    return f"{_site_ref(conn, visit.site_id)} arriving {when}"


def _ship(
    conn: Conn,
    order: Order,
    part: Part,
    lane: planning.LaneChoice,
    now: datetime,
) -> Shipment | None:
    """Reserve the part at the lane's depot and ship it to the lane's station."""
    option = SupplyOption(
        depot_id=lane.depot_id,
        depot_code=_depot_code(conn, lane.depot_id),
        part_id=part.id,
        shipping_days=math.ceil(lane.lead_hours / 24),
        available=lane.available,
        distance_km=None,
    )
    supplied = logistics.reserve_and_ship(
        conn,
        order_id=order.id,
        customer_id=order.customer_id,
        site_id=lane.site_id,
        part=part,
        options=[option],
        now=now,
        eta=now + timedelta(hours=lane.lead_hours),
    )
    return supplied.shipment if supplied else None


def _depot_code(conn: Conn, depot_id: int) -> str:
    return logistics.get_depot(conn, depot_id).code


def _in_flight(live: Shipment | None) -> planning.InFlight | None:
    """The order's live shipment as the planner judges it."""
    if live is None:
        return None
    return planning.InFlight(
        depot_id=live.depot_id,
        site_id=live.site_id,
        eta=live.delivered_at or live.eta,
        pending=live.status == ShipmentStatus.PENDING,
        delivered=live.status == ShipmentStatus.DELIVERED,
    )


def _supply(
    conn: Conn,
    order: Order,
    part: Part,
    plan: planning.Plan,
    live: Shipment | None,
    now: datetime,
    why: str,
) -> datetime | None:
    """Get the part to the planned station as the plan judged it (``planning.supply``): keep,
    redirect, replace or raise its shipment. Returns when the part will be there (None: no
    shipment)."""
    visit, how = plan.visit, plan.supply
    if visit is None or how is None:
        return live.delivered_at or live.eta if live else None
    if how.action == "keep":
        return how.eta
    if how.action == "redirect" and live is not None and how.eta is not None:
        moved = logistics.redirect_shipment(
            conn, live, site_id=visit.site_id, eta=how.eta, reason=why
        )
        return moved.eta
    if how.action == "replace":
        # still at its depot, and that depot cannot get it there in time: give it back
        logistics.release_for_order(conn, order.id, order.customer_id, now)
    if how.lane is None:
        return None
    shipped = _ship(conn, order, part, how.lane, now)
    return shipped.eta if shipped else None


def _margin(conn: Conn, order: Order) -> timedelta:
    """The visit margin of the plan the order was raised under (12 h without one)."""
    plan = plans.get_plan(conn, order.plan_id) if order.plan_id is not None else None
    if plan is None:
        return planning.VISIT_MARGIN
    return timedelta(hours=plan.visit_margin_hours)


def plan_order(conn: Conn, order_id: int, now: datetime, *, cause: str) -> OrderVisit | None:
    """Plan (or plan again) where and when an open order of a carried asset is done.

    None when the order is not open or its asset rides on no carrier. Events: the first plan
    ``order.visit_planned``; a moved visit ``order.rescheduled`` (with both visits and why) and
    ``shipment.redirected`` for a shipment sent elsewhere; ``order.aog_risk`` when the plan
    becomes an AOG risk.
    """
    order = orders.lock_open_order(conn, order_id)
    if order is None:
        return None
    asset = fleet.asset_context(conn, order.asset_id)
    mount = mobility.mount_of(conn, order.asset_id)
    if asset is None or mount is None:
        return None
    carrier = mobility.carrier_of(conn, mount.carrier_id)
    assert carrier is not None
    previous = repo.visit_of(conn, order.id, for_update=True)
    part = logistics.part_for(conn, asset.kind, order.component)
    legs = mobility.planned_legs(conn, carrier.id, arriving_after=now - LOOKBACK)
    stops = planning.visits_of(legs, now, carrier.at_site_id)
    stations = mobility.stations_of(conn, sorted({v.site_id for v in stops}))
    lanes = _lanes(conn, part, sorted(stations)) if part is not None else []
    live = logistics.live_shipment(conn, order.id)
    plan = planning.plan_visit(
        stops,
        stations,
        lanes,
        kind=asset.kind,
        component=order.component,
        labour_hours=part.labour_hours if part is not None else 0.0,
        # a failure is due now: the work is at the next stop that fits, whenever it is
        due_at=max(order.due_at, now + FAILURE_HORIZON) if order.reason == "failure" else
        order.due_at,
        now=now,
        margin=_margin(conn, order), shipment=_in_flight(live),
    )  # fmt: skip
    visit = plan.visit
    values: dict[str, Any] = {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "carrier_id": carrier.id,
        "site_id": visit.site_id if visit else None,
        "leg_id": visit.leg_id if visit else None,
        "arrives_at": visit.arrives if visit else None,
        "departs_at": visit.departs if visit else None,
        "work_hours": plan.work_hours,
        "aog_risk": plan.aog_risk,
        "reason": plan.reason,
        "planned_at": now,
    }
    same_place = previous is not None and (previous.site_id, previous.leg_id) == (
        values["site_id"],
        values["leg_id"],
    )
    unchanged = (
        same_place
        and previous is not None
        and previous.carrier_id == carrier.id
        and previous.arrives_at == values["arrives_at"]
        and previous.departs_at == values["departs_at"]
    )
    if unchanged:
        return previous
    why = cause
    if previous is not None and not same_place:
        why = f"{cause}: the work moves from {_describe(conn, previous)} to " + (
            f"{_site_ref(conn, visit.site_id)} arriving {visit.arrives:%Y-%m-%d %H:%M} UTC"
            if visit
            else "no visit (AOG risk)"
        )
    elif previous is not None:
        why = f"{cause}: the carrier's stop at {_describe(conn, previous)} changed"
    eta = _supply(conn, order, part, plan, live, now, why) if part is not None else None
    saved = repo.save_visit(conn, values)
    risk = plan.reason or None
    late = visit is not None and eta is not None and eta > visit.arrives
    if late and visit is not None and eta is not None and part is not None:
        late = not planning.part_in_time(visit, stations[visit.site_id], eta, part.labour_hours)
    if risk is None and visit is not None and late:
        risk = f"AOG risk: the part arrives {eta:%Y-%m-%d %H:%M} UTC, after the carrier"
    if risk is None and visit is not None and eta is None and part is not None:
        risk = "AOG risk: no depot with the part in stock has a lane to the station"
    if risk is not None and not saved.aog_risk:
        saved = repo.save_visit(conn, values | {"aog_risk": True, "reason": risk})
    updated = orders.set_supply_risk(conn, order, risk)
    crew = crew_view_of(conn, updated, saved).model_dump(mode="json")
    if previous is None:
        orders.emit_order(conn, "order.visit_planned", updated, crew=crew, reason=why)
    else:
        orders.emit_order(
            conn,
            "order.rescheduled",
            updated,
            previous_due_at=order.due_at.isoformat(),
            previous_visit=previous.model_dump(mode="json"),
            crew=crew,
            reason=why,
        )
    if saved.aog_risk and (previous is None or not previous.aog_risk):
        orders.emit_order(
            conn, "order.aog_risk", updated, crew=crew, carrier_ref=carrier.ref, reason=risk or ""
        )
    return saved


def create_manual_order(conn: Conn, principal: Principal, body: OrderCreate, clock: Clock) -> Order:
    """Raise an order by hand; for a carried asset its part goes to the planned visit."""
    carried = body.ship_parts and mobility.mount_of(conn, body.asset_id) is not None
    order = orders.create_manual_order(conn, principal, body, clock, supply_later=carried)
    if not carried:
        return order
    plan_order(conn, order.id, clock.now(), cause="order raised")
    return orders.get_order(conn, principal, order.id)


def report_failure(
    conn: Conn, principal: Principal, body: FailureCreate, clock: Clock
) -> FailureReport:
    """Record a failure; the order it raises for a carried asset is planned at once at the
    carrier's next fitting visit (or flagged an AOG risk), its part shipped there, not to the
    asset's registered site."""
    carried = mobility.mount_of(conn, body.asset_id) is not None
    report = orders.report_failure(conn, principal, body, clock, supply_later=carried)
    if carried and report.missed and report.order_id is not None:
        plan_order(conn, report.order_id, clock.now(), cause="failure reported")
    return report


def replan_carriers(conn: Conn, carrier_ids: list[int], now: datetime, *, cause: str) -> list[int]:
    """Plan again every open order on these carriers; the orders whose plan changed."""
    changed = []
    for order_id in repo.open_orders_on_carriers(conn, carrier_ids):
        before = repo.visit_of(conn, order_id)
        after = plan_order(conn, order_id, now, cause=cause)
        if after is not None and after != before:
            changed.append(order_id)
    return changed


# --- the crew's view -----------------------------------------------------------------------


def crew_view_of(conn: Conn, order: Order, visit: OrderVisit) -> CrewView:
    """The visit as the crew at the station sees it."""
    asset = fleet.asset_context(conn, order.asset_id)
    assert asset is not None
    carrier = mobility.carrier_of(conn, visit.carrier_id)
    assert carrier is not None
    mount = mobility.mount_of(conn, order.asset_id)
    leg = mobility.get_leg(conn, visit.leg_id) if visit.leg_id is not None else None
    parts = []
    for s in logistics.shipments_of_order(conn, order.id):
        if s.status == ShipmentStatus.CANCELLED:
            continue
        parts.append(
            PartStatus(
                shipment_id=s.id,
                sku=logistics.get_part(conn, s.part_id).sku,
                status=s.status,
                eta=s.eta,
                delivered_at=s.delivered_at,
                at_station=s.status == ShipmentStatus.DELIVERED and s.site_id == visit.site_id,
                redirects=s.redirects,
            )
        )
    ground = None
    if visit.arrives_at is not None and visit.departs_at is not None:
        ground = (visit.departs_at - visit.arrives_at).total_seconds() / 3600
    return CrewView(
        order_id=order.id,
        order_status=order.status,
        due_at=order.due_at,
        carrier_id=carrier.id,
        carrier_ref=carrier.ref,
        station_site_id=visit.site_id,
        station=_site_ref(conn, visit.site_id),
        arrives_at=visit.arrives_at,
        departs_at=visit.departs_at,
        ground_hours=ground,
        work_hours=visit.work_hours,
        stand=leg.arrival_stand if leg is not None else "",
        asset_id=asset.id,
        asset_ref=asset.ref,
        asset_position=mount.position if mount is not None else "",
        component=order.component,
        parts=parts,
        aog_risk=visit.aog_risk,
        reason=visit.reason,
    )


def crew_view(conn: Conn, principal: Principal, order_id: int) -> CrewView:
    """The visit of an order the caller may see (404 when it has none)."""
    order = orders.get_order(conn, principal, order_id)
    visit = repo.visit_of(conn, order.id)
    if visit is None:
        raise NotFound(f"order {order_id} has no planned visit", code="visit_not_found")
    return crew_view_of(conn, order, visit)
