"""`fleetcare evaluate` for mobile kinds: is the part at the station before the aircraft lands?

An airline (``simulators.airline``: tails flying a hub-and-spoke schedule with delays and
diversions) carries two engines per tail. Each engine's life in flight cycles is drawn from a
Weibull distribution; it fails when the cycles run out. Three strategies:

- **predictive** — each night a forecast of the remaining cycles (the true value with a
  lognormal error, the interval's low end at the 5% quantile) goes through the product's
  policy (``maintenance.policy.service.next_due_state`` / ``order_due_at``) and, once due, the
  product's visit planner (``maintenance.mobility.planning``: the first overnight-capable stop
  at an engine station before the due date whose lane gets the part there before the tail,
  cheapest lane in time). When the airline's systems reveal a delay or diversion before the
  visit, the plan is made again on the itinerary known then and the shipment redirected
  (``planning.redirected_eta``). The work is done when the tail actually arrives there;
  a part arriving after it keeps the aircraft on the ground (AOG) for the difference.
- **preventive** — every engine is overhauled at a fixed interval of cycles (the life
  quantile that 95% of engines outlive), on the home-base night before the interval runs out;
  the part is shipped to the home base ahead of time.
- **run-to-failure** — nothing until it fails.

A failure grounds the aircraft where it lands while the part comes on the fastest lane from a
depot to that airport (AOG waiting for parts). Costs: ``MobileEconomics``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from statistics import NormalDist
from typing import Any

from maintenance.mobility import planning
from maintenance.plans.schemas import Entitlements
from maintenance.policy import service as policy
from models.schemas import Prediction
from simulators.airline import AIRPORTS, SimLeg, Tail, distance_km, schedule

START = datetime(2027, 1, 4, tzinfo=UTC)
COMPONENT = "hpc_module"


@dataclass(frozen=True)
class MobileEconomics:
    """The assumptions of the mobile evaluation (stated in docs/mobile-assets.md)."""

    life_scale_cycles: float = 250.0  # Weibull scale of an engine module's life
    life_shape: float = 3.0
    forecast_sigma: float = 0.12  # lognormal error of the remaining-cycles forecast
    horizon_cycles: float = 30.0  # the model's failure-risk horizon (engine kind: model.horizon)
    order_lead_days: int = 2
    risk_threshold: float = 0.3  # the engine full-service plan
    labour_hours: float = 40.0  # ENG-HPC-OVH
    part_eur: float = 25_000.0
    aog_eur_per_hour: float = 10_000.0  # lost flights, passenger care, a spare aircraft
    failure_eur: float = 150_000.0  # an unscheduled engine removal on top of the part
    lane_base_hours: float = 3.0  # courier and customs, then
    lane_km_per_hour: float = 300.0  # door to door
    lane_base_eur: float = 150.0
    lane_eur_per_km: float = 1.2
    station_codes: tuple[str, ...] = ("FRA", "MUC", "HAM", "CDG")  # engine shops
    depot_codes: tuple[str, ...] = ("HAM", "VIE")  # parts stores
    technicians: int = 6
    turnaround_hours: float = 1.0


@dataclass(frozen=True)
class Station:
    """An engine shop, open round the clock."""

    utc_offset_minutes: int = 0
    opens_at: time | None = None
    closes_at: time | None = None
    technicians: int = 6
    turnaround_hours: float = 1.0

    def services(self, kind: str, component: str) -> bool:
        return kind == "engine"


@dataclass
class Tally:
    """One strategy's outcome."""

    jobs: int = 0
    failures: int = 0
    parts_in_time: int = 0
    redirects: int = 0
    aog_hours: float = 0.0
    aog_risk_orders: int = 0
    life_used: list[float] = field(default_factory=list)
    lane_eur: float = 0.0

    def figures(self, econ: MobileEconomics) -> dict[str, Any]:
        cost = (
            (self.jobs + self.failures) * econ.part_eur
            + self.failures * econ.failure_eur
            + self.aog_hours * econ.aog_eur_per_hour
            + self.lane_eur
        )
        return {
            "planned_jobs": self.jobs,
            "failures": self.failures,
            "parts_at_station_before_arrival": self.parts_in_time,
            "parts_in_time_share": round(self.parts_in_time / self.jobs, 4) if self.jobs else None,
            "shipments_redirected": self.redirects,
            "aog_risk_alerts": self.aog_risk_orders,
            "aog_hours_waiting_for_parts": round(self.aog_hours, 1),
            "life_used_at_replacement": round(sum(self.life_used) / len(self.life_used), 3)
            if self.life_used
            else None,
            "cost_eur": round(cost),
        }


def lane_hours(econ: MobileEconomics, depot: str, airport: str) -> float:
    """Door-to-door time of a part from a depot to an airport."""
    return econ.lane_base_hours + distance_km(depot, airport) / econ.lane_km_per_hour


def lane_eur(econ: MobileEconomics, depot: str, airport: str) -> float:
    """What one shipment on that lane costs."""
    return econ.lane_base_eur + econ.lane_eur_per_km * distance_km(depot, airport)


def _lanes(econ: MobileEconomics) -> list[planning.LaneChoice]:
    index = {a.code: i for i, a in enumerate(AIRPORTS)}
    lanes: list[planning.LaneChoice] = []
    for d, depot in enumerate(econ.depot_codes):
        for station in econ.station_codes:
            lanes.append(
                planning.LaneChoice(
                    lane_id=len(lanes) + 1,
                    depot_id=d + 1,
                    site_id=index[station],
                    lead_hours=lane_hours(econ, depot, station),
                    cost_minor=round(lane_eur(econ, depot, station) * 100),
                    available=1_000_000,
                )
            )
    return lanes


def _aog_wait(econ: MobileEconomics, airport: str) -> float:
    """Hours a grounded aircraft waits for the part at ``airport`` (fastest depot)."""
    return min(lane_hours(econ, d, airport) for d in econ.depot_codes)


def _life(rng: random.Random, econ: MobileEconomics) -> float:
    return econ.life_scale_cycles * (-math.log(1 - rng.random())) ** (1 / econ.life_shape)


def _interval(econ: MobileEconomics) -> float:
    """The preventive interval: the life that 95% of engines outlive."""
    return econ.life_scale_cycles * (-math.log(0.95)) ** (1 / econ.life_shape)


@dataclass
class Engine:
    lives: random.Random  # this engine position's lives, the same under every strategy
    life: float
    cycles: float
    order: dict[str, Any] | None = None  # the predictive order's final plan
    state: str = "clear"


def _forecast(
    rng: random.Random, econ: MobileEconomics, engine: Engine, now: datetime, rate: float
) -> Prediction:
    """The wear model's stand-in: remaining cycles with a lognormal error and its interval."""
    remaining = max(engine.life - engine.cycles, 0.1)
    sigma = econ.forecast_sigma
    rul = remaining * math.exp(rng.gauss(0, sigma))
    low = rul * math.exp(-1.645 * sigma)
    risk = NormalDist().cdf((math.log(econ.horizon_cycles) - math.log(rul)) / sigma)
    return Prediction(
        time=now,
        asset_id=0,
        component=COMPONENT,
        model_version_id=None,
        rul=rul,
        rul_low=low,
        rul_high=rul * math.exp(1.645 * sigma),
        coverage=0.9,
        failure_probability=risk,
        horizon=econ.horizon_cycles,
        anomaly_score=0.0,
        usage_rate_per_day=rate,
        due_at=now + timedelta(days=rul / rate),
        due_at_conservative=now + timedelta(days=low / rate),
    )


def _plan_job(
    tail: Tail,
    econ: MobileEconomics,
    stations: dict[int, Station],
    lanes: list[planning.LaneChoice],
    now: datetime,
    at_site: int,
    due_at: datetime,
) -> dict[str, Any]:
    """The product's plan at ``now``, planned again at every reveal before the visit."""

    def plan_at(moment: datetime, here: int | None) -> planning.Plan:
        """The plan on the itinerary known at ``moment``."""
        legs = [leg for leg in tail.known_legs(moment) if leg.arrives > moment - timedelta(days=1)]
        return planning.plan_visit(
            planning.visits_of(legs, moment, here), stations, lanes, kind="engine",
            component=COMPONENT, labour_hours=econ.labour_hours, due_at=due_at, now=moment,
        )  # fmt: skip

    plan = plan_at(now, at_site)
    if plan.visit is None or plan.lane is None:
        return {"aog_risk": True}
    visit, lane = plan.visit, plan.lane
    eta = now + timedelta(hours=lane.lead_hours)
    redirects = 0
    for day in tail.days:
        r = day.revealed_at
        if r is None or r <= now or r > visit.arrives:
            continue
        again = plan_at(r, None)
        if again.visit is None or again.lane is None:
            continue  # keep the plan; the crew is told (AOG risk) and the part stays on course
        if (again.visit.site_id, again.visit.leg_id) != (visit.site_id, visit.leg_id):
            own = [
                x for x in lanes if x.depot_id == lane.depot_id and x.site_id == again.visit.site_id
            ]
            eta = planning.redirected_eta(
                r, eta, depot_lead_hours=own[0].lead_hours if own else None,
                onward_lead_hours=again.lane.lead_hours,
            )  # fmt: skip
            redirects += 1
        visit = again.visit
    return {"aog_risk": plan.aog_risk, "visit": visit, "eta": eta, "lane": lane,
            "redirects": redirects}  # fmt: skip


def _run_tail(
    tail: Tail,
    seed: int,
    strategy: str,
    econ: MobileEconomics,
    rng: random.Random,
    tally: Tally,
    stations: dict[int, Station],
    lanes: list[planning.LaneChoice],
) -> None:
    ent = Entitlements(
        includes_alerts=True, includes_orders=True, includes_parts=True, includes_labour=True,
        order_lead_days=econ.order_lead_days, response_sla_hours=4,
        risk_threshold=econ.risk_threshold, anomaly_threshold=None,
    )  # fmt: skip
    fastest = min(x.lead_hours for x in lanes) / 24
    window = econ.order_lead_days + fastest
    interval = _interval(econ)
    engines = []
    for position in (1, 2):
        lives = random.Random(f"{tail.ref}-{position}-{seed}")
        life = _life(lives, econ)
        engines.append(Engine(lives, life, cycles=lives.uniform(0, 0.8) * life))
    home = next(i for i, a in enumerate(AIRPORTS) if a.code == tail.home)
    recent: list[int] = []
    for day in tail.days:
        flown = day.actual
        for leg in flown:
            for engine in engines:
                engine.cycles += 1
                job = engine.order
                done_here = (
                    job is not None and "visit" in job and job["visit"].leg_id == leg.id
                    and leg.to_site_id == job["visit"].site_id
                )  # fmt: skip
                if engine.cycles >= engine.life and not done_here:
                    tally.failures += 1
                    tally.aog_hours += _aog_wait(econ, leg.destination)
                    _renew(engine, econ)
                elif done_here and job is not None:
                    _do_job(tally, engine, job, leg, econ)
        recent = [*recent, len(flown)][-7:]
        night = flown[-1]
        now = night.arrives
        if strategy == "preventive":
            for engine in engines:
                if night.to_site_id == home and engine.cycles + 3 * 5 >= interval:
                    tally.jobs += 1
                    tally.parts_in_time += 1  # shipped to the home base well ahead
                    tally.life_used.append(min(engine.cycles / engine.life, 1.0))
                    tally.lane_eur += lane_eur(econ, econ.depot_codes[0], tail.home)
                    _renew(engine, econ)
        if strategy != "predictive":
            continue
        rate = sum(recent) / len(recent)
        for engine in engines:
            if engine.order is not None:
                continue
            prediction = _forecast(rng, econ, engine, now, rate)
            step = policy.next_due_state(engine.state, prediction, ent, window, now)
            engine.state = step.state
            if step.state != "due":
                continue
            due_at = policy.order_due_at(prediction, window, now, ent.risk_threshold)
            job = _plan_job(tail, econ, stations, lanes, now, night.to_site_id, due_at)
            if job["aog_risk"]:
                tally.aog_risk_orders += 1
            if "visit" in job:
                engine.order = job


def _renew(engine: Engine, econ: MobileEconomics) -> None:
    engine.life = _life(engine.lives, econ)
    engine.cycles = 0.0
    engine.order = None
    engine.state = "clear"


def _do_job(
    tally: Tally,
    engine: Engine,
    job: dict[str, Any],
    leg: SimLeg,
    econ: MobileEconomics,
) -> None:
    tally.jobs += 1
    tally.redirects += job["redirects"]
    lane: planning.LaneChoice = job["lane"]
    tally.lane_eur += lane.cost_minor / 100
    if job["eta"] <= leg.arrives:
        tally.parts_in_time += 1
    else:
        tally.aog_hours += (job["eta"] - leg.arrives).total_seconds() / 3600
    tally.life_used.append(min(engine.cycles / engine.life, 1.0))
    _renew(engine, econ)


STRATEGIES = ("run-to-failure", "preventive", "predictive")


def evaluate_mobile(
    seed: int, *, tails: int = 30, days: int = 120, econ: MobileEconomics | None = None
) -> dict[str, Any]:
    """The three strategies on one seeded airline; same seed, same figures."""
    econ = econ or MobileEconomics()
    fleet = schedule(seed, tails=tails, days=days, start=START)
    index = {a.code: i for i, a in enumerate(AIRPORTS)}
    stations = {
        index[c]: Station(technicians=econ.technicians, turnaround_hours=econ.turnaround_hours)
        for c in econ.station_codes
    }
    lanes = _lanes(econ)
    legs = sum(len(d.actual) for t in fleet for d in t.days)
    disrupted = sum(1 for t in fleet for d in t.days if d.revealed_at is not None)
    out: dict[str, Any] = {
        "seed": seed,
        "tails": tails,
        "engines": 2 * tails,
        "days": days,
        "legs_flown": legs,
        "days_disrupted": disrupted,
        "diversions": sum(
            1 for t in fleet for d in t.days for x in d.actual if x.ref.endswith("-F")
        ),
        "preventive_interval_cycles": round(_interval(econ), 1),
        "strategies": {},
    }
    for strategy in STRATEGIES:
        tally = Tally()
        forecasts = random.Random(f"{seed}-forecasts")
        for tail in fleet:
            _run_tail(tail, seed, strategy, econ, forecasts, tally, stations, lanes)
        out["strategies"][strategy] = tally.figures(econ)
    return out


def format_mobile(figures: dict[str, Any]) -> str:
    """The table `fleetcare evaluate` prints for the mobile kinds."""
    lines = [
        f"engines on {figures['tails']} aircraft, {figures['days']} days, seed {figures['seed']}:"
        f" {figures['legs_flown']} legs, {figures['days_disrupted']} tail-days disrupted,"
        f" {figures['diversions']} diversions",
        "| strategy | planned jobs | failures | parts at station before arrival | AOG h waiting"
        " for parts | redirects | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in figures["strategies"].items():
        share = s["parts_in_time_share"]
        shown = f"{share:.1%}" if share is not None else "-"
        lines.append(
            f"| {name} | {s['planned_jobs']} | {s['failures']} | {shown} |"
            f" {s['aog_hours_waiting_for_parts']:.1f} | {s['shipments_redirected']} |"
            f" €{s['cost_eur']:,} |"
        )
    return "\n".join(lines)
