"""`fleetcare evaluate` for mobile kinds: is the part at the station before the carrier?

For every kind whose definition says ``mobile: true`` and whose physics a carrier of
:mod:`evaluation.carriers` moves (engines on an airline's tails, tires on a haulier's trucks),
a fleet of carriers travels its seeded itinerary (delays, diversions, re-routes, revealed when
the dispatcher would know) and each leg wears what it carries through the kind's physics, which
also produces the readings. Three strategies on copies of the same warmed-up fleet:

- **predictive** — once a day every live component is scored by the kind's *trained* wear
  model (the same bundle the fixed-site predictive strategy uses:
  :func:`evaluation.strategies.predict_live`). The product's policy decides:
  ``next_due_state`` with the carried asset's window (``planning.order_deadline`` and
  ``planning.carried_window_days`` on the itinerary known then, as
  ``maintenance.mobility.visits.window_days``), ``order_due_at`` and ``rescheduled_due_at``;
  an order's visit and lane are ``planning.plan_visit`` (with the shipment already on its way,
  as ``visits.plan_order``), planned again at every revealed change of the carrier's day, when
  a newer prediction brings the due date forward and when the visit went by undone. The work
  is done when the carrier actually arrives there. A part after the carrier but in time for
  the work during the stop (``planning.part_in_time``) does not hold it; one later keeps it on
  the ground (AOG) until the part is there.
- **preventive** — a fixed interval per component (the tuning fleet's, as the fixed-site
  evaluation), done on a night at the carrier's home base when the interval would run out
  before the next one; the part is shipped to the home base well ahead (always in time).
- **run-to-failure** — nothing until it fails.

A failure stops the carrier where it is while the part comes on the fastest lane (AOG hours
waiting for parts); the schedule goes on after the repair (the disruption is costed, not
simulated). Costs: the kind file's part price, labour hours and rate, failure downtime and
downtime rate (``economics:``) and the network's lanes.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from evaluation import strategies
from evaluation.carriers import HORIZON, CarrierSim, Flown, known_legs, simulation_for
from evaluation.costs import ECONOMICS
from evaluation.fleets import World, frame_values, new_world, warm_up
from evaluation.wear_model import WearModel
from kinds.loader import builtin_kinds
from maintenance.mobility import planning
from maintenance.policy import service as policy

STRATEGIES = ("run-to-failure", "preventive", "predictive")
MOBILE_PURPOSE = 5  # the mobile fleet's own random stream (fleets.new_world's purpose)
SCORE_EVERY = timedelta(hours=24)


@dataclass
class Shipment:
    depot_id: int
    site_id: int
    eta: datetime


@dataclass
class Job:
    """An open predictive order: its due date, planned visit and shipment."""

    asset: int
    component: str
    carrier: int
    due_at: datetime
    raised_at: datetime
    visit: planning.Visit | None = None
    shipment: Shipment | None = None
    aog_risk: bool = False
    flags: set[str] = field(default_factory=set)


@dataclass
class Tally:
    """One strategy's outcome."""

    jobs: int = 0
    failures: int = 0
    orders: int = 0
    orders_late: int = 0  # the component failed while its order was open
    before_arrival: int = 0
    in_time_for_work: int = 0
    redirects: int = 0
    aog_hours: float = 0.0
    aog_risk_alerts: int = 0
    lane_eur: float = 0.0
    life_used: list[float] = field(default_factory=list)
    late: Counter[str] = field(default_factory=Counter)

    def figures(self, kind: str) -> dict[str, Any]:
        spec, econ = builtin_kinds()[kind], ECONOMICS[kind]
        part = spec.components[0].parts[0]
        replaced = self.jobs + self.failures
        cost = (
            replaced * (part.price_minor / 100 + part.labour_hours * econ.labour_eur_per_hour)
            + (self.aog_hours + self.failures * econ.failure_downtime_h)
            * econ.downtime_eur_per_hour
            + self.lane_eur
        )
        share = lambda n: round(n / self.jobs, 4) if self.jobs else None  # noqa: E731
        return {
            "planned_jobs": self.jobs,
            "failures": self.failures,
            "orders_raised": self.orders,
            "orders_late": self.orders_late,
            "parts_at_station_before_arrival": self.before_arrival,
            "parts_in_time_share": share(self.before_arrival),
            "parts_in_time_for_work_share": share(self.in_time_for_work),
            "late_parts_by_cause": dict(sorted(self.late.items())),
            "shipments_redirected": self.redirects,
            "aog_risk_alerts": self.aog_risk_alerts,
            "aog_hours_waiting_for_parts": round(self.aog_hours, 1),
            "life_used_at_replacement": round(float(np.mean(self.life_used)), 3)
            if self.life_used
            else None,
            "cost_eur": round(cost),
        }


class MobileRun:
    """One strategy on a copy of the fleet: physics leg by leg, the strategy's decisions."""

    def __init__(
        self, world: World, sim: CarrierSim, fleet: list[Any], start: datetime, days: int,
        strategy: str, model: WearModel, intervals: dict[str, float],
    ) -> None:  # fmt: skip
        self.w = copy.deepcopy(world)
        self.sim, self.net, self.fleet, self.start = sim, sim.network, fleet, start
        self.end = start + timedelta(days=days)
        self.strategy, self.model, self.intervals = strategy, model, intervals
        self.kind = world.kind
        spec = builtin_kinds()[self.kind]
        self.labour = {c.name: c.parts[0].labour_hours for c in spec.components}
        self.stations = self.net.stations(self.kind)
        self.lanes = self.net.lanes()
        self.ent = strategies.entitlements(self.kind)
        fastest = min(x.lead_hours for x in self.lanes)
        self.base_window = self.ent.order_lead_days + fastest / 24
        self.tally = Tally()
        self.jobs: dict[tuple[int, str], Job] = {}
        self.states: dict[tuple[int, str], str] = {}
        group = self.w.population.group
        self.assets_of = {c: np.flatnonzero(group == c).tolist() for c in range(len(fleet))}
        self.position = {c: self.net.index(t.home) for c, t in enumerate(fleet)}
        self.homes = {c: self.net.index(t.home) for c, t in enumerate(fleet)}
        flown = [Flown(c, leg) for c, t in enumerate(fleet) for leg in t.travelled()]
        self.flown = sorted(flown, key=lambda f: (f.arrives, f.carrier, f.leg.id))
        self.next_departure: dict[int, datetime | None] = {}
        self.last_of_day: dict[int, int] = {}  # a day's last leg id -> its day index
        for t in fleet:
            legs = t.travelled()
            for a, b in zip(legs, [*legs[1:], None], strict=True):
                self.next_departure[a.id] = b.departs if b is not None else None
            for d, day in enumerate(t.days):
                if day.actual:
                    self.last_of_day[day.actual[-1].id] = d
        self.reveals = sorted(
            (day.revealed_at, c) for c, t in enumerate(fleet) for day in t.days
            if day.revealed_at is not None
        )  # fmt: skip

    def hours(self, when: datetime) -> float:
        return (when - strategies.START) / timedelta(hours=1)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> Tally:
        step = timedelta(hours=ECONOMICS[self.kind].step_h)
        t, i, r = self.start, 0, 0
        next_score = self.start + SCORE_EVERY
        while t < self.end:
            e = t + step
            j = i
            while j < len(self.flown) and self.flown[j].arrives < e:
                j += 1
            legs = self.flown[i:j]
            frame = self.sim.ride(self.w.population, self.hours(t), step / timedelta(hours=1), legs)
            self.w.log.append(frame.asset, frame.at_h, frame_values(self.kind, frame.metrics))
            self.w.now_h = self.hours(e)
            where = {f.carrier: f.leg.to_site_id for f in legs}
            for failure in frame.failures:
                self.fail(failure.asset, failure.component, failure.mode, where)
            events: list[tuple[datetime, int, Any]] = [(f.arrives, 1, f) for f in legs]
            while r < len(self.reveals) and self.reveals[r][0] < e:
                events.append((self.reveals[r][0], 0, self.reveals[r][1]))
                r += 1
            for when, what, item in sorted(events, key=lambda x: (x[0], x[1])):
                if what == 0 and self.strategy == "predictive":
                    for job in self.jobs_of(item):
                        self.plan(job, when)
                elif what == 1:
                    self.position[item.carrier] = item.leg.to_site_id
                    self.arrive(item)
            i = j
            t = e
            if t >= next_score:
                next_score += SCORE_EVERY
                if self.strategy == "predictive":
                    self.decide(t)
        return self.tally

    def jobs_of(self, carrier: int) -> list[Job]:
        return [job for job in self.jobs.values() if job.carrier == carrier]

    def fail(self, asset: int, component: str, mode: str, where: dict[int, int]) -> None:
        """A failure: the carrier waits where it is for a part on the fastest lane."""
        w, key = self.w, (asset, component)
        carrier = int(w.population.group[asset])
        w.record_failure(asset, component, mode)
        self.tally.failures += 1
        site = where.get(carrier, self.position[carrier])
        self.tally.aog_hours += self.net.fastest_hours(site)
        if self.jobs.pop(key, None) is not None:
            self.tally.orders_late += 1  # its part is used for the repair
        self.states.pop(key, None)
        w.renew(asset, component)

    def replace(self, asset: int, component: str) -> None:
        life = self.w.replace_planned(asset, component)
        self.tally.life_used.append(life.usage / max(life.usage + life.wasted, 1e-9))
        self.states.pop((asset, component), None)
        self.jobs.pop((asset, component), None)

    # --- preventive ------------------------------------------------------------------------

    def arrive(self, flown: Flown) -> None:
        c, leg = flown.carrier, flown.leg
        if self.strategy == "preventive":
            day = self.last_of_day.get(leg.id)
            if day is not None and leg.to_site_id == self.homes[c]:
                self.preventive_night(c, day)
            return
        if self.strategy != "predictive":
            return
        for job in self.jobs_of(c):
            v = job.visit
            if v is not None and v.leg_id == leg.id and leg.to_site_id == v.site_id:
                self.complete(job, leg.arrives, self.next_departure.get(leg.id))

    def preventive_night(self, carrier: int, day: int) -> None:
        """A night at home: overhaul what would pass its interval before the next one."""
        days = self.fleet[carrier].days
        ahead = 0.0
        for later in days[day + 1 :]:
            ahead += sum(self.sim.usage(leg) for leg in later.planned)
            if later.planned and later.planned[-1].to_site_id == self.homes[carrier]:
                break
        home = self.homes[carrier]
        cheapest = min(
            (x for x in self.lanes if x.site_id == home), key=lambda x: x.cost_minor, default=None
        )
        for asset in self.assets_of[carrier]:
            for component in self.w.components:
                usage = float(self.w.population.life_usage(component)[asset])
                if usage + ahead < self.intervals[component]:
                    continue
                self.tally.jobs += 1
                self.tally.before_arrival += 1  # shipped to the home base well ahead
                self.tally.in_time_for_work += 1
                if cheapest is not None:
                    self.tally.lane_eur += cheapest.cost_minor / 100
                self.replace(asset, component)

    # --- predictive ------------------------------------------------------------------------

    def decide(self, now: datetime) -> None:
        """Score every live component and apply the product's policy."""
        ent = self.ent
        for component in self.w.components:
            for p in strategies.predict_live(self.w, self.model, component):
                asset = p.asset_id
                key, carrier = (asset, component), int(self.w.population.group[asset])
                window = self.window(carrier, component, p.due_at_conservative, now)
                step = policy.next_due_state(self.states.get(key, "clear"), p, ent, window, now)
                self.states[key] = step.state
                job = self.jobs.get(key)
                if step.state != "due":
                    continue
                if job is None:
                    due = policy.order_due_at(p, window, now, ent.risk_threshold)
                    job = Job(asset, component, carrier, due, now)
                    self.jobs[key] = job
                    self.tally.orders += 1
                    self.plan(job, now, raised=True)
                    continue
                earlier = policy.rescheduled_due_at(job.due_at, p, window, ent.risk_threshold)
                if earlier is not None:
                    job.due_at = earlier
                    job.flags.add("due date brought forward")
                    self.plan(job, now)
                elif job.visit is None or job.visit.arrives < now:
                    self.plan(job, now)  # no visit yet, or it went by undone

    def window(self, carrier: int, component: str, due: datetime | None, now: datetime) -> float:
        """The carried asset's due window, as ``visits.window_days`` computes it."""
        if due is None or due - now > HORIZON:
            return self.base_window  # beyond the published itinerary: not known
        stops = planning.visits_of(
            known_legs(self.fleet[carrier], now, self.start, now + HORIZON), now,
            self.position[carrier],
        )  # fmt: skip
        deadline = planning.order_deadline(
            stops, self.stations, self.lanes, kind=self.kind, component=component,
            labour_hours=self.labour[component], due_at=due, now=now,
        )  # fmt: skip
        return planning.carried_window_days(
            deadline, base_days=self.base_window, lead_days=self.ent.order_lead_days,
            due_at=due, now=now,
        )  # fmt: skip

    def plan(self, job: Job, now: datetime, *, raised: bool = False) -> None:
        """Plan (again) the job's visit and its part, as ``visits.plan_order``."""
        stops = planning.visits_of(
            known_legs(self.fleet[job.carrier], now, self.start, now + HORIZON), now,
            self.position[job.carrier],
        )  # fmt: skip
        s = job.shipment
        in_flight = (
            planning.InFlight(s.depot_id, s.site_id, s.eta, delivered=s.eta <= now)
            if s is not None
            else None
        )
        plan = planning.plan_visit(
            stops, self.stations, self.lanes, kind=self.kind, component=job.component,
            labour_hours=self.labour[job.component], due_at=job.due_at, now=now,
            shipment=in_flight,
        )  # fmt: skip
        if plan.aog_risk and not job.aog_risk:
            self.tally.aog_risk_alerts += 1
            job.flags.add("AOG risk when raised" if raised else "AOG risk on a re-plan")
        job.aog_risk = plan.aog_risk
        before = (job.visit.site_id, job.visit.leg_id) if job.visit is not None else None
        after = (plan.visit.site_id, plan.visit.leg_id) if plan.visit is not None else None
        if not raised and None not in (before, after) and before != after:
            job.flags.add("visit moved")
        job.visit = plan.visit
        how = plan.supply
        if plan.visit is None or how is None:
            return
        if how.action == "redirect" and s is not None and how.eta is not None:
            s.site_id, s.eta = plan.visit.site_id, how.eta
            self.tally.redirects += 1
        elif how.action in ("ship", "replace") and how.lane is not None and how.eta is not None:
            job.shipment = Shipment(how.lane.depot_id, how.lane.site_id, how.eta)
            self.tally.lane_eur += how.lane.cost_minor / 100
        if plan.visit.leg_id is None:  # it is at the station now: the work is this stop
            self.complete(job, plan.visit.arrives, plan.visit.departs)

    def complete(self, job: Job, arrived: datetime, departs: datetime | None) -> None:
        """The carrier is at the job's station: the work, and whether its part was there."""
        assert job.visit is not None
        site = job.visit.site_id
        s = job.shipment
        if s is not None and s.site_id == site:
            eta = s.eta
        else:  # no part on its way here: the fastest lane now
            eta = arrived + timedelta(hours=self.net.fastest_hours(site))
            job.flags.add("no part on its way to the station")
        visit = planning.Visit(site, job.visit.leg_id, arrived, departs)
        before = eta <= arrived
        in_time = before or planning.part_in_time(
            visit, self.stations[site], eta, self.labour[job.component]
        )
        self.tally.jobs += 1
        self.tally.before_arrival += before
        self.tally.in_time_for_work += in_time
        if not in_time:
            self.tally.aog_hours += (eta - arrived) / timedelta(hours=1)
        if not before:
            cause = sorted(job.flags)
            self.tally.late.update(cause or ["raised with a visit in time, no change since"])
        self.replace(job.asset, job.component)


def evaluate_mobile(
    kind: str,
    model: WearModel,
    intervals: dict[str, float],
    *,
    seed: int,
    carriers: int | None = None,
    days: int = 365,
) -> dict[str, Any]:
    """The three strategies on one seeded fleet of carriers of a mobile kind."""
    spec = builtin_kinds()[kind]
    if not spec.mobile:
        raise ValueError(f"kind {kind!r} is not mobile (its definition's mobile: false)")
    econ = ECONOMICS[kind]
    probe = new_world(kind, seed, econ.per_group, purpose=MOBILE_PURPOSE)
    sim = simulation_for(probe.population)
    if sim is None:
        raise ValueError(f"no carrier simulation moves a {kind}")
    count = carriers or sim.network.default_carriers
    world = new_world(kind, seed, count * econ.per_group, purpose=MOBILE_PURPOSE)
    warm_up(world, seed)
    start = strategies.at(world.now_h)
    fleet = sim.schedule(seed, count, days, start)
    out: dict[str, Any] = {
        "kind": kind,
        "seed": seed,
        "carriers": count,
        "carrier": sim.network.carrier_word,
        "network": sim.network.name,
        "assets": world.population.size,
        "days": days,
        "legs": sum(len(d.actual) for t in fleet for d in t.days),
        "days_disrupted": sum(1 for t in fleet for d in t.days if d.revealed_at is not None),
        "preventive_interval": {c: round(v, 1) for c, v in intervals.items()},
        "assumptions": {
            **sim.network.assumptions(),
            "itinerary_published_days_ahead": HORIZON.days,
            "order_lead_days": econ.order_lead_days,
            "risk_threshold": econ.risk_threshold,
            "part_eur": spec.components[0].parts[0].price_minor / 100,
            "labour_hours": spec.components[0].parts[0].labour_hours,
            "labour_eur_per_hour": econ.labour_eur_per_hour,
            "downtime_eur_per_hour": econ.downtime_eur_per_hour,
            "failure_downtime_h": econ.failure_downtime_h,
        },
        "strategies": {},
    }
    with threadpool_limits(limits=1):  # OpenMP start-up per small predict costs more than it gives
        for strategy in STRATEGIES:
            run = MobileRun(world, sim, fleet, start, days, strategy, model, intervals)
            out["strategies"][strategy] = run.run().figures(kind)
    return out


def format_mobile(figures: dict[str, Any]) -> str:
    """The table `fleetcare evaluate` prints for one mobile kind."""
    lines = [
        f"{figures['kind']}: {figures['assets']} on {figures['carriers']} {figures['carrier']}"
        f" ({figures['network']}), {figures['days']} days, seed {figures['seed']}:"
        f" {figures['legs']} legs, {figures['days_disrupted']} carrier-days disrupted",
        "| strategy | planned jobs | failures | parts at station before arrival | in time for"
        " the work | AOG h waiting for parts | redirects | cost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in figures["strategies"].items():

        def pct(v: float | None) -> str:
            return f"{v:.1%}" if v is not None else "-"

        lines.append(
            f"| {name} | {s['planned_jobs']} | {s['failures']} | {pct(s['parts_in_time_share'])}"
            f" | {pct(s['parts_in_time_for_work_share'])} | {s['aog_hours_waiting_for_parts']:.1f}"
            f" | {s['shipments_redirected']} | €{s['cost_eur']:,} |"
        )
    return "\n".join(lines)
