"""Where and when the work on a moving asset happens, and which lane brings the part: pure.

No SQL, no clock: the product's visit planning (``maintenance.mobility.visits``) and the
offline evaluation (``evaluation.mobile``) decide through these functions, so the figures the
evaluation reports are those of the product's own rule.

Rule: the visits of a carrier are its stops — the station it is at now (until its next
departure) and each leg's arrival station (until the next leg departs; the last one is open
ended). A visit *fits* a job when it arrives by the due date less the margin (12 h, or a tenth of
the time left when that is less), the station
services the kind and component, and the time the station is open during the stop, less its
turnaround, is at least the job's labour hours shared among its technicians. The order takes
the first fitting visit into which the part gets before the carrier arrives; when there is
none, the first fitting visit where the part comes during the stop early enough for the work
(a night stop, the stop the carrier is at now: :func:`part_in_time`); when no part is in time
for any fitting visit, the first fitting visit, flagged as an AOG risk; when no visit fits at
all, no visit: an AOG risk.

How the part gets to a visit (:func:`supply`) is judged as it will be done: with no shipment
yet, some depot's lane (of those in time the cheapest, then the fastest; else the fastest); a
shipment already on its way is kept when it goes to that station, else redirected on its own
depot's lane (or onward from where it was going), or, still at its depot, given back and sent
again on a lane in time. A re-plan therefore never picks a stop that only a fresh shipment from
another depot could reach in time while the part on its way cannot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol

# the work must be possible this long before the due date (less when the due date is close:
# a tenth of the time left)
VISIT_MARGIN = timedelta(hours=12)
VISIT_MARGIN_SHARE = 0.1


def visit_margin(
    due_at: datetime, now: datetime | None, margin: timedelta = VISIT_MARGIN
) -> timedelta:
    """How long before the due date the visit must arrive (``margin``: the plan's)."""
    if now is None:
        return margin
    return min(margin, max(due_at - now, timedelta()) * VISIT_MARGIN_SHARE)


class LegLike(Protocol):
    """What planning reads of a leg (``schemas.Leg`` and the evaluation's legs)."""

    @property
    def id(self) -> int: ...
    @property
    def from_site_id(self) -> int: ...
    @property
    def to_site_id(self) -> int: ...
    @property
    def departs(self) -> datetime: ...
    @property
    def arrives(self) -> datetime: ...
    @property
    def arrival_stand(self) -> str: ...


class StationLike(Protocol):
    """What planning reads of a station."""

    @property
    def utc_offset_minutes(self) -> int: ...
    @property
    def opens_at(self) -> time | None: ...
    @property
    def closes_at(self) -> time | None: ...
    @property
    def technicians(self) -> int: ...
    @property
    def turnaround_hours(self) -> float: ...

    def services(self, kind: str, component: str) -> bool: ...


@dataclass(frozen=True)
class Visit:
    """A stop of the carrier at a station: from ``arrives`` until ``departs`` (None: open)."""

    site_id: int
    leg_id: int | None  # the leg that arrives there; None: it is there now
    arrives: datetime
    departs: datetime | None
    stand: str = ""

    @property
    def ground_hours(self) -> float | None:
        if self.departs is None:
            return None
        return (self.departs - self.arrives).total_seconds() / 3600


@dataclass(frozen=True)
class LaneChoice:
    """A lane into a station, from a depot with the part available."""

    lane_id: int
    depot_id: int
    site_id: int
    lead_hours: float
    cost_minor: int
    available: int


@dataclass(frozen=True)
class InFlight:
    """The order's shipment already raised: its depot, its station, when it is (or was) there,
    and whether it is still at its depot (it can be given back) or delivered."""

    depot_id: int
    site_id: int | None
    eta: datetime
    pending: bool = False
    delivered: bool = False


@dataclass(frozen=True)
class Supply:
    """How the part gets to a station: ``keep`` the shipment, ``ship`` a new one on ``lane``,
    ``redirect`` the one on its way, ``replace`` one still at its depot by one on ``lane``, or
    ``none`` (no lane); ``eta``: when it is there (None: never)."""

    action: str
    lane: LaneChoice | None
    eta: datetime | None


@dataclass(frozen=True)
class Plan:
    """The outcome: the visit (None when none fits), the lane, and whether it is at risk;
    ``supply``: how the part gets there (None without a visit)."""

    visit: Visit | None
    lane: LaneChoice | None
    work_hours: float | None
    aog_risk: bool
    reason: str
    supply: Supply | None = None


def visits_of(legs: Sequence[LegLike], now: datetime, at_site_id: int | None = None) -> list[Visit]:
    """The carrier's stops from now on, in order: the station it is at (when the legs do not
    say so already), then each leg's arrival station until the next leg departs."""
    ordered = sorted(legs, key=lambda leg: (leg.departs, leg.id))
    stops: list[Visit] = []
    for i, leg in enumerate(ordered):
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        departs = nxt.departs if nxt is not None else None
        if departs is not None and departs <= now:
            continue  # a stop that is over
        stops.append(
            Visit(leg.to_site_id, leg.id, max(leg.arrives, now), departs, leg.arrival_stand)
        )
    if at_site_id is not None and (not stops or stops[0].arrives > now):
        upcoming = [leg for leg in ordered if leg.departs > now]
        if not upcoming:
            stops.insert(0, Visit(at_site_id, None, now, None))
        elif upcoming[0].from_site_id == at_site_id:
            stops.insert(0, Visit(at_site_id, None, now, upcoming[0].departs))
    return stops


def _open_spans(day: date, station: StationLike) -> list[tuple[datetime, datetime]]:
    """The station's opening hours on a local ``day``, as naive local datetimes."""
    opens, closes = station.opens_at, station.closes_at
    if opens is None or closes is None:
        return [(datetime.combine(day, time()), datetime.combine(day + timedelta(days=1), time()))]
    start = datetime.combine(day, opens)
    end = datetime.combine(day, closes)
    if closes <= opens:  # open overnight, e.g. 22:00-06:00
        end += timedelta(days=1)
    return [(start, end)]


def open_hours(station: StationLike, start: datetime, end: datetime) -> float:
    """Hours the station is open between two moments."""
    if end <= start:
        return 0.0
    offset = timedelta(minutes=station.utc_offset_minutes)
    local_start = (start + offset).replace(tzinfo=None)
    local_end = (end + offset).replace(tzinfo=None)
    total = 0.0
    day = local_start.date() - timedelta(days=1)
    while day <= local_end.date():
        for a, b in _open_spans(day, station):
            lo, hi = max(a, local_start), min(b, local_end)
            if hi > lo:
                total += (hi - lo).total_seconds() / 3600
        day += timedelta(days=1)
    return total


# an open-ended stop (the end of the known plan) is judged over this long
OPEN_STOP = timedelta(days=2)


def work_hours(visit: Visit, station: StationLike) -> float:
    """Hours of work the station can put into the carrier during the stop (all technicians)."""
    end = visit.departs if visit.departs is not None else visit.arrives + OPEN_STOP
    usable = open_hours(station, visit.arrives, end) - station.turnaround_hours
    return max(0.0, usable) * station.technicians


def fitting_visits(
    visits: Iterable[Visit],
    stations: Mapping[int, StationLike],
    *,
    kind: str,
    component: str,
    labour_hours: float,
    due_at: datetime,
    now: datetime | None = None,
    margin: timedelta = VISIT_MARGIN,
) -> list[tuple[Visit, float]]:
    """The stops where the job fits before the due date less the margin, with their hours."""
    due_by = due_at - visit_margin(due_at, now, margin)
    found = []
    for visit in visits:
        if visit.arrives > due_by:
            break
        station = stations.get(visit.site_id)
        if station is None or not station.services(kind, component):
            continue
        hours = work_hours(visit, station)
        if hours >= labour_hours:
            found.append((visit, hours))
    return found


def choose_lane(
    lanes: Iterable[LaneChoice], site_id: int, now: datetime, arrives: datetime
) -> tuple[LaneChoice | None, bool]:
    """(the lane into ``site_id``, whether the part is there by ``arrives``).

    Of lanes from depots with the part available, the cheapest that arrives in time (then the
    fastest); when none is in time, the fastest.
    """
    usable = [lane for lane in lanes if lane.site_id == site_id and lane.available > 0]
    in_time = [lane for lane in usable if now + timedelta(hours=lane.lead_hours) <= arrives]
    if in_time:
        return min(in_time, key=lambda lane: (lane.cost_minor, lane.lead_hours, lane.lane_id)), True
    if usable:
        return min(usable, key=lambda lane: (lane.lead_hours, lane.cost_minor, lane.lane_id)), False
    return None, False


def part_in_time(visit: Visit, station: StationLike, eta: datetime, labour_hours: float) -> bool:
    """Whether a part there at ``eta`` lets the work be done during the stop: it is there when
    the carrier arrives, or the stop's time after it comes still holds the work (a night or a
    weekend stop, the stop the carrier is at now)."""
    if eta <= visit.arrives:
        return True
    if visit.departs is not None and eta >= visit.departs:
        return False
    return (
        work_hours(Visit(visit.site_id, visit.leg_id, eta, visit.departs), station) >= labour_hours
    )


def supply(
    lanes: Sequence[LaneChoice],
    site_id: int,
    now: datetime,
    arrives: datetime,
    shipment: InFlight | None = None,
) -> Supply:
    """How the part gets to ``site_id`` for a carrier arriving at ``arrives`` (module doc)."""
    lane, _ = choose_lane(lanes, site_id, now, arrives)
    fresh = now + timedelta(hours=lane.lead_hours) if lane is not None else None
    if shipment is not None and shipment.site_id == site_id:
        return Supply("keep", lane, shipment.eta)
    if shipment is None or shipment.delivered:
        return Supply("ship", lane, fresh) if lane is not None else Supply("none", None, None)
    own = [x.lead_hours for x in lanes if x.depot_id == shipment.depot_id and x.site_id == site_id]
    eta = redirected_eta(
        now,
        shipment.eta,
        depot_lead_hours=min(own) if own else None,
        onward_lead_hours=lane.lead_hours if lane is not None else None,
    )
    if shipment.pending and fresh is not None and (not own or (eta > arrives >= fresh)):
        return Supply("replace", lane, fresh)
    return Supply("redirect", lane, eta)


def plan_visit(
    visits: Sequence[Visit],
    stations: Mapping[int, StationLike],
    lanes: Sequence[LaneChoice],
    *,
    kind: str,
    component: str,
    labour_hours: float,
    due_at: datetime,
    now: datetime,
    margin: timedelta = VISIT_MARGIN,
    shipment: InFlight | None = None,
) -> Plan:
    """Where and when the job is done and how its part gets there (module docstring);
    ``margin``: the plan's visit margin; ``shipment``: the order's shipment already raised."""
    fitting = fitting_visits(
        visits,
        stations,
        kind=kind,
        component=component,
        labour_hours=labour_hours,
        due_at=due_at,
        now=now,
        margin=margin,
    )
    if not fitting:
        due_by = due_at - visit_margin(due_at, now, margin)
        return Plan(
            None,
            None,
            None,
            True,
            f"AOG risk: no stop before {due_by:%Y-%m-%d %H:%M} UTC at a station"
            f" that services {kind}/{component} with {labour_hours:g} h of work",
        )
    for visit, hours in fitting:
        how = supply(lanes, visit.site_id, now, visit.arrives, shipment)
        if how.eta is not None and how.eta <= visit.arrives:
            return Plan(visit, how.lane, hours, False, "", how)
    for visit, hours in fitting:  # no part before the carrier: one in time for the work
        how = supply(lanes, visit.site_id, now, visit.arrives, shipment)
        if how.eta is not None and part_in_time(
            visit, stations[visit.site_id], how.eta, labour_hours
        ):
            return Plan(visit, how.lane, hours, False, "", how)
    visit, hours = fitting[0]
    how = supply(lanes, visit.site_id, now, visit.arrives, shipment)
    if how.eta is None:
        why = "no depot with the part in stock has a lane to the station"
    else:
        why = f"the part arrives {how.eta:%Y-%m-%d %H:%M} UTC, after the carrier"
    return Plan(
        visit,
        how.lane,
        hours,
        True,
        f"AOG risk: {why} ({visit.arrives:%Y-%m-%d %H:%M} UTC)",
        how,
    )


@dataclass(frozen=True)
class OrderDeadline:
    """The latest moment an order can be raised so that some fitting stop still gets its part
    before the carrier (``latest``; None: no such stop is left), and whether the itinerary is
    known through the due date less the margin (``known``: a stop arrives after it), so that
    no later stop can be missing from the list."""

    latest: datetime | None
    known: bool


def order_deadline(
    visits: Sequence[Visit],
    stations: Mapping[int, StationLike],
    lanes: Sequence[LaneChoice],
    *,
    kind: str,
    component: str,
    labour_hours: float,
    due_at: datetime,
    now: datetime,
    margin: timedelta = VISIT_MARGIN,
) -> OrderDeadline:
    """When the order for a job due at ``due_at`` must be raised at the latest: of the fitting
    stops (:func:`fitting_visits`, the plan's margin) that the fastest lane with the part into
    their station still reaches before the carrier when ordered now, the last one's arrival
    less that lane's lead time."""
    due_by = due_at - visit_margin(due_at, now, margin)
    known = any(v.arrives > due_by for v in visits)
    fastest: dict[int, float] = {}
    for lane in lanes:
        if lane.available > 0:
            fastest[lane.site_id] = min(fastest.get(lane.site_id, math.inf), lane.lead_hours)
    latest: datetime | None = None
    fitting = fitting_visits(
        visits, stations, kind=kind, component=component, labour_hours=labour_hours,
        due_at=due_at, now=now, margin=margin,
    )  # fmt: skip
    for visit, _ in fitting:
        lead = fastest.get(visit.site_id)
        if lead is None:
            continue
        order_by = visit.arrives - timedelta(hours=lead)
        if order_by >= now and (latest is None or order_by > latest):
            latest = order_by
    return OrderDeadline(latest, known)


def carried_window_days(
    deadline: OrderDeadline,
    *,
    base_days: float,
    lead_days: float,
    due_at: datetime,
    now: datetime,
) -> float:
    """The due window (days before ``due_at``, the conservative due date) of a carried asset.

    Stops are discrete: a window of the lead time plus the fastest lane (``base_days``) can
    open after the last stop that a part could still reach before the carrier, leaving only
    late or AOG-risk stops. When the itinerary is known through the due date, the window opens
    the plan's lead time (``lead_days``) before the order deadline (:func:`order_deadline`),
    so the order is raised while a stop with a part in time is left; when no such stop is left
    it is open now (the order says AOG risk at once). Never narrower than ``base_days``.
    """
    if not deadline.known:
        return base_days
    if deadline.latest is None:
        return max(base_days, (due_at - now) / timedelta(days=1))
    return max(base_days, lead_days + (due_at - deadline.latest) / timedelta(days=1))


# a shipment redirected to a station no lane of the plan reaches is assumed a day further out
UNKNOWN_ONWARD = timedelta(days=1)


def redirected_eta(
    now: datetime,
    shipment_eta: datetime,
    *,
    depot_lead_hours: float | None,
    onward_lead_hours: float | None,
) -> datetime:
    """When a redirected shipment reaches its new station.

    Its own depot's lane there, when there is one, counted from now (the forwarder re-routes it
    on that lane); otherwise onward from where it was going, on the plan's lane there (or a
    day when there is none).
    """
    if depot_lead_hours is not None:
        return now + timedelta(hours=depot_lead_hours)
    onward = timedelta(hours=onward_lead_hours) if onward_lead_hours is not None else UNKNOWN_ONWARD
    return max(shipment_eta, now) + onward
