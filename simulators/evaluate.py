"""`fleetcare evaluate`: run-to-failure, fixed-interval preventive and fleetcare's predictive
policy on the same seeded simulated fleet, offline and in-process (no MQTT, no database).

Per kind:

1. **Training fleet** (its own seed): new assets run to failure and are repaired after the
   failure downtime, until every component has failed at least once and enough lives are
   recorded. Its lives train the wear model as the product's training does: one
   ``WindowFeatures`` fitted on all training rows, one ``RULRegressor`` per component on
   the usage left until failure (the rows of a life form one group).
2. **Tuning fleet** (its own seed, ``TUNING_FLEET_FACTOR`` times larger, mixed ages) run to
   failure for ``days``: the preventive interval of a component is the
   ``PREVENTIVE_QUANTILE`` (5%) quantile of the usage at failure of the lives that ended,
   so that about 95% of the failures such a fleet sees are prevented.
3. **Validation fleet** (its own seed, mixed ages): the predictive strategy runs at each
   interval coverage of the sweep; :func:`choose_coverage` picks the one used on the
   evaluation fleet (the largest that meets the whole target there).
   This is the safety margin, chosen without looking at the evaluation fleet; the sweep is
   the reported trade-off.
4. **Evaluation fleet** (another seed): new assets are warmed up with random renewals so
   that ages are mixed (as the simulators' fleet does), then copied three times and run for
   ``days`` under each strategy.

The predictive strategy scores every live component once a day as the scoring worker does
(the product's model bundle, :class:`models.registry.WearModel`, on the features of the last
row from the first ``baseline_window`` and the last rows of the life: RUL with its interval
at ``coverage``, failure probability, anomaly score; due dates from the usage rate of the
last 7 days, none before a day of history) and hands each prediction to the product's
policy decision (:func:`maintenance.policy.service.next_due_state`, the same function
``handle_prediction`` calls) under the kind's full-service plan (due-window and
failure-risk triggers; no anomaly threshold, as every seeded plan). Entering the due state
raises one order with :func:`~maintenance.policy.service.order_due_at`; the part arrives
after the shipping days and the technician replaces the component when the order is due
and the part is on site.

Waste is the remaining life thrown away at a planned replacement: the physics' expected
remaining life at that moment (ground truth), in life units and as a share of the life.
A failure wastes nothing but costs downtime. Costs use ``fleetcare.kinds`` part prices and
labour hours with the assumptions in :data:`ECONOMICS`. Everything is seeded and
single-process, so the same seed gives the same figures.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from fleetcare.kinds import KINDS
from maintenance.plans.schemas import Entitlements
from maintenance.policy import service as policy
from maintenance.policy.schemas import Prediction
from models import registry
from models.estimators import AnomalyScorer, FailureRiskClassifier, RULRegressor
from models.features import WindowFeatures
from models.scoring import USAGE_RATE_LOOKBACK, USAGE_RATE_MIN_HISTORY
from models.training import DEFAULTS as TRAINING_DEFAULTS
from models.training import HEALTHY_SHARE
from simulators.fleet import WARMUP_DAYS
from simulators.physics import Population, make_population

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Progress = Callable[[str], None]

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday 00:00: hour 0 of the physics' week
STRATEGIES = ("run_to_failure", "preventive", "predictive")
PREVENTIVE_QUANTILE = 0.05  # replace at the usage by which 5% of training lives had failed
DEFAULT_COVERAGE = 0.9  # the lower end is the 5% quantile: ~95% of lives outlast the order
SWEEP_COVERAGES = (0.8, 0.85, 0.9, 0.95)
SCORE_EVERY_H = 24.0
USAGE_RATE_LOOKBACK_H = USAGE_RATE_LOOKBACK / timedelta(hours=1)  # as the scoring worker
USAGE_RATE_MIN_HISTORY_H = USAGE_RATE_MIN_HISTORY / timedelta(hours=1)
TARGET_PREVENTED = 0.95
TARGET_WASTE_RATIO = 1 / 3
MAX_DUE_DAYS = 36_500.0
MAX_TRAINING_ROWS = 20_000  # per component; rows of long lives are thinned evenly
MIN_TRAINING_LIVES = {"tire": 40, "elevator": 40, "engine": 40}
# A failure is "sudden" when the step before it took more than this share of a whole life:
# a fault's jump (elevators) or a blowout from heat (tires), not gradual wear.
SUDDEN_WEAR_JUMP = 0.05
CALIBRATION_BINS = 10
TUNING_FLEET_FACTOR = 4  # the preventive interval is tuned on a fleet this many times larger
VALIDATION_FLEET_FACTOR = 2  # the coverage is chosen on a fleet this many times larger


@dataclass(frozen=True)
class KindEconomics:
    """Assumptions per kind: planning, costs of labour and of an unplanned failure."""

    per_group: int  # assets per truck / building / aircraft
    step_h: float  # one reading per asset per step (engines: per flight cycle)
    order_lead_days: int  # the plan's lead time
    shipping_days: int  # from the nearest depot
    labour_eur_per_hour: float
    failure_downtime_h: float  # an unplanned failure takes the asset out this long
    downtime_eur_per_hour: float
    max_rul: float  # RUL cap of the wear model (as the product's training defaults)
    risk_threshold: float  # the kind's full-service plan (migrations/0005_maintenance.sql)
    history_max_days: float  # the training fleet stops here even if some never failed
    note: str


ECONOMICS: dict[str, KindEconomics] = {
    "tire": KindEconomics(
        per_group=6, step_h=6.0, order_lead_days=2, shipping_days=1,
        labour_eur_per_hour=80.0, failure_downtime_h=8.0, downtime_eur_per_hour=150.0,
        max_rul=80_000.0, risk_threshold=0.4, history_max_days=1_100.0,
        note="a failed tire stops its truck 8 h (road-side call-out, missed deliveries)",
    ),
    "elevator": KindEconomics(
        per_group=3, step_h=12.0, order_lead_days=5, shipping_days=2,
        labour_eur_per_hour=110.0, failure_downtime_h=36.0, downtime_eur_per_hour=60.0,
        max_rul=150_000.0, risk_threshold=0.4, history_max_days=1_500.0,
        note="a failed door operator or brake stops the elevator 36 h (call-out, rush part)",
    ),
    "engine": KindEconomics(
        per_group=2, step_h=6.0, order_lead_days=5, shipping_days=2,
        labour_eur_per_hour=150.0, failure_downtime_h=48.0, downtime_eur_per_hour=5_000.0,
        max_rul=125.0, risk_threshold=0.3, history_max_days=400.0,
        note="an engine failure grounds the aircraft 48 h (AOG: lost flights, spare lease)",
    ),
}  # fmt: skip


# --- readings -------------------------------------------------------------------------------


def readings_columns(kind: str) -> list[str]:
    """Metric names of the readings-matrix columns after the id: usage, settings, sensors."""
    spec = KINDS[kind]
    return [spec.usage_metric, *spec.regime_metrics, *spec.sensor_names]


class ReadingsLog:
    """Every reading of every asset, as-of filled within the current life, with each
    component's life start (row index and usage offset)."""

    def __init__(self, size: int, columns: Sequence[str], components: Sequence[str]) -> None:
        self.columns = list(columns)
        n_cols = len(self.columns)
        self.rows = [np.empty((256, n_cols)) for _ in range(size)]
        self.times = [np.empty(256) for _ in range(size)]
        self.count: IntArray = np.zeros(size, np.int64)
        self.carry = np.full((size, n_cols), np.nan)  # latest value in the life
        self.first = np.full((size, n_cols), np.nan)  # first value in the life (back fill)
        self.start = {c: np.zeros(size, np.int64) for c in components}
        self.offset = {c: np.zeros(size) for c in components}

    def append(self, assets: IntArray, at_h: FloatArray, values: FloatArray) -> None:
        """Add rows (in time order per asset); a missing value takes the life's latest."""
        if assets.shape[0] == 0:
            return
        # k-th appearance of each asset in this batch: rows with the same k are distinct assets
        order = np.argsort(assets, kind="stable")
        sorted_assets = assets[order]
        run_start = np.flatnonzero(np.r_[True, sorted_assets[1:] != sorted_assets[:-1]])
        occurrence = np.empty(assets.shape[0], np.int64)
        occurrence[order] = np.arange(assets.shape[0]) - np.repeat(
            run_start, np.diff(np.r_[run_start, assets.shape[0]])
        )
        for k in range(int(occurrence.max()) + 1):
            sel = occurrence == k
            a, v = assets[sel], values[sel]
            v = np.where(np.isnan(v), self.carry[a], v)
            self.carry[a] = v
            self.first[a] = np.where(np.isnan(self.first[a]), v, self.first[a])
            for i, asset in enumerate(a.tolist()):
                n = int(self.count[asset])
                if n == self.rows[asset].shape[0]:
                    self.rows[asset] = np.concatenate(
                        [self.rows[asset], np.empty_like(self.rows[asset])]
                    )
                    self.times[asset] = np.concatenate(
                        [self.times[asset], np.empty_like(self.times[asset])]
                    )
                self.rows[asset][n] = v[i]
                self.times[asset][n] = at_h[sel][i]
                self.count[asset] = n + 1

    def renew(self, asset: int, component: str, usage_offset: float) -> None:
        """A new life of ``component`` starts after the rows logged so far."""
        self.start[component][asset] = self.count[asset]
        self.offset[component][asset] = usage_offset
        self.carry[asset] = np.nan
        self.first[asset] = np.nan

    def life_rows(
        self, asset: int, component: str, head: int | None = None, tail: int | None = None
    ) -> tuple[FloatArray, FloatArray] | None:
        """(rows, times) of the current life of ``component``: all, or the first ``head`` and
        the last ``tail``; usage since renewal in column 0. None when a column never had a
        value in this life (not scorable)."""
        s, e = int(self.start[component][asset]), int(self.count[asset])
        if e <= s:
            return None
        if head is None or tail is None or e - s <= head + tail:
            idx = np.arange(s, e)
        else:
            idx = np.r_[np.arange(s, s + head), np.arange(e - tail, e)]
        rows = self.rows[asset][idx].copy()
        rows = np.where(np.isnan(rows), self.first[asset], rows)
        if np.isnan(rows).any():
            return None
        rows[:, 0] -= self.offset[component][asset]
        return rows, self.times[asset][idx]

    def usage_rate_per_day(self, asset: int, component: str, now_h: float) -> float:
        """Usage per day over the last 7 days of the life (from its first row when shorter;
        none before a day of history), as :func:`models.repository.usage_rates_per_day`."""
        s, e = int(self.start[component][asset]), int(self.count[asset])
        if e <= s:
            return math.nan
        times = self.times[asset][s:e]
        at = int(np.searchsorted(times, now_h - USAGE_RATE_LOOKBACK_H, side="right")) - 1
        at = max(at, 0)
        days = (times[-1] - times[at]) / 24.0
        moved = self.rows[asset][e - 1, 0] - self.rows[asset][s + at, 0]
        enough = days >= USAGE_RATE_MIN_HISTORY_H / 24.0
        return float(moved / days) if enough and moved > 0 else math.nan


def _frame_values(kind: str, metrics: dict[str, FloatArray]) -> FloatArray:
    return np.column_stack([metrics[name] for name in readings_columns(kind)])


# --- one simulated fleet ---------------------------------------------------------------------


@dataclass
class Life:
    """One ended life of a component."""

    asset: int
    component: str
    reason: str  # failure mode, or "planned"
    sudden: bool  # a failure in a step where the hidden wear jumped (a fault, a blowout)
    usage: float  # life units used
    wasted: float  # expected life units left (0 for a failure)
    start_row: int = 0
    end_row: int = 0
    offset: float = 0.0


@dataclass
class World:
    """A population, its readings and what happened to it."""

    kind: str
    population: Population
    log: ReadingsLog
    now_h: float = 0.0
    repair_at: dict[tuple[int, str], float] = field(default_factory=dict)
    lives: list[Life] = field(default_factory=list)

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(c.name for c in KINDS[self.kind].components)

    def step(self) -> list[tuple[int, str, str]]:
        """Advance one step: readings, failures (repair scheduled), repairs that are due."""
        econ = ECONOMICS[self.kind]
        before = {c: self.population.wear(c) for c in self.components}
        frame = self.population.advance(self.now_h, econ.step_h)
        self.now_h += econ.step_h
        self.log.append(frame.asset, frame.at_h, _frame_values(self.kind, frame.metrics))
        failed: list[tuple[int, str, str]] = []
        for f in frame.failures:
            usage = float(self.population.life_usage(f.component)[f.asset])
            jump = 1.0 - float(before[f.component][f.asset])  # the wear the last step took
            life = self._life(f.asset, f.component, f.mode, usage, 0.0, jump > SUDDEN_WEAR_JUMP)
            self.lives.append(life)
            self.repair_at[(f.asset, f.component)] = f.at_h + econ.failure_downtime_h
            failed.append((f.asset, f.component, f.mode))
        for key, at_h in sorted(self.repair_at.items()):
            if at_h <= self.now_h:
                del self.repair_at[key]
                self.renew(*key)
        return failed

    def _life(
        self, asset: int, component: str, reason: str, usage: float, wasted: float,
        sudden: bool = False,
    ) -> Life:  # fmt: skip
        return Life(
            asset, component, reason, sudden, usage, wasted,
            start_row=int(self.log.start[component][asset]), end_row=int(self.log.count[asset]),
            offset=float(self.log.offset[component][asset]),
        )  # fmt: skip

    def renew(self, asset: int, component: str) -> None:
        """Fit a new component (the population draws it) and start its life in the log."""
        self.population.renew(asset, component)
        offset = self.population.usage[asset] - self.population.life_usage(component)[asset]
        self.log.renew(asset, component, float(offset))

    def replace_planned(self, asset: int, component: str) -> Life:
        """A planned replacement of a working component: record the life it throws away."""
        usage = float(self.population.life_usage(component)[asset])
        wasted = float(self.population.expected_rul(component)[asset])
        life = self._life(asset, component, "planned", usage, wasted)
        self.lives.append(life)
        self.renew(asset, component)
        return life


def new_world(kind: str, seed: int, assets: int, purpose: int) -> World:
    """A population of about ``assets`` new assets (whole groups) with an empty log."""
    econ = ECONOMICS[kind]
    groups = max(1, -(-assets // econ.per_group))
    rng = np.random.default_rng([seed, list(KINDS).index(kind), purpose])
    population = make_population(kind, rng, groups, econ.per_group)
    components = [c.name for c in KINDS[kind].components]
    world = World(
        kind, population, ReadingsLog(population.size, readings_columns(kind), components)
    )
    return world


def warm_up(world: World, seed: int) -> None:
    """Renew at failures and at random for the simulators' warm-up, so that ages are mixed;
    then forget those lives (the evaluation starts now)."""
    rng = np.random.default_rng([seed, list(KINDS).index(world.kind), 99])
    total_h = WARMUP_DAYS[world.kind] * 24.0
    step_h = ECONOMICS[world.kind].step_h
    while world.now_h < total_h:
        world.step()
        for c in world.components:
            replace = rng.random(world.population.size) < step_h / total_h
            for i in np.flatnonzero(replace & ~world.population.failed(c)):
                world.renew(int(i), c)
    world.lives.clear()


def run_training_fleet(kind: str, seed: int, assets: int, lives: int | None = None) -> World:
    """New assets run to failure until each component failed once and ``lives`` ended."""
    world = new_world(kind, seed, assets, purpose=1)
    econ = ECONOMICS[kind]
    wanted = MIN_TRAINING_LIVES[kind] if lives is None else lives
    failed_once = {c: np.zeros(world.population.size, bool) for c in world.components}
    while world.now_h < econ.history_max_days * 24.0:
        for asset, component, _ in world.step():
            failed_once[component][asset] = True
        if all(v.all() for v in failed_once.values()) and len(world.lives) >= wanted:
            break
    return world


# --- the wear model --------------------------------------------------------------------------


@dataclass
class WearModel:
    """The product's model bundle (features, RUL and failure risk per component, anomaly
    scorer: :class:`models.registry.WearModel`) and the rows scoring reads per life."""

    bundle: registry.WearModel
    head: int
    tail: int

    def at_coverage(self, coverage: float) -> WearModel:
        """The same fitted model with its intervals at ``coverage`` (as a version's
        ``coverage``)."""
        bundle = copy.copy(self.bundle)
        bundle.coverage = float(coverage)
        return WearModel(bundle, self.head, self.tail)


def training_matrices(world: World) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per component: the readings matrix of every failed life (group = life) and the usage
    left until the failure at each row."""
    parts: dict[str, tuple[list[FloatArray], list[FloatArray]]] = {}
    for n, life in enumerate(world.lives):
        if life.reason == "planned" or life.end_row <= life.start_row:
            continue
        rows = world.log.rows[life.asset][life.start_row : life.end_row].copy()
        first = np.array([_first_value(rows[:, j]) for j in range(rows.shape[1])])
        rows = np.where(np.isnan(rows), first, rows)
        if np.isnan(rows).any():
            continue
        rows[:, 0] -= life.offset
        matrix = np.column_stack([np.full(rows.shape[0], float(n)), rows])
        ms, ys = parts.setdefault(life.component, ([], []))
        ms.append(matrix)
        ys.append(np.maximum(life.usage - rows[:, 0], 0.0))
    return {c: (np.concatenate(m), np.concatenate(y)) for c, (m, y) in parts.items()}


def _first_value(column: FloatArray) -> float:
    ok = np.flatnonzero(~np.isnan(column))
    return float(column[ok[0]]) if ok.size else math.nan


def train_wear_model(kind: str, world: World, n_jobs: int = 1) -> WearModel:
    """Fit the product's model bundle on the training lives as ``models.training.train``
    does: one feature transformer on all rows; per component a RUL regressor (groups =
    lives) and a failure-risk classifier at the kind's default horizon (rows weighted
    1/rows of their life); an anomaly scorer on the healthy first part of every life."""
    data = training_matrices(world)
    if not data:
        raise ValueError(f"the {kind} training fleet recorded no failed lives")
    spec = KINDS[kind]
    features = WindowFeatures(n_settings=len(spec.regime_metrics)).fit(
        np.concatenate([m for m, _ in data.values()])
    )
    horizon = TRAINING_DEFAULTS[kind].horizon
    rul: dict[str, RULRegressor] = {}
    risk: dict[str, FailureRiskClassifier] = {}
    healthy: list[FloatArray] = []
    for component, (matrix, y) in sorted(data.items()):
        X = features.transform(matrix)
        keep = np.arange(0, X.shape[0], max(1, -(-X.shape[0] // MAX_TRAINING_ROWS)))
        X, y, groups, usage = X[keep], y[keep], matrix[keep, 0], matrix[keep, 1]
        regressor = RULRegressor(
            max_rul=ECONOMICS[kind].max_rul, calibration_bins=CALIBRATION_BINS, n_jobs=n_jobs
        )
        rul[component] = regressor.fit(X, y, groups=groups)
        _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        risk[component] = FailureRiskClassifier(horizon=horizon).fit(
            X, y, sample_weight=1.0 / counts[inverse]
        )
        early = usage <= HEALTHY_SHARE * np.maximum(usage + y, 1e-9)  # usage is since renewal
        healthy.append(X[early] if early.sum() >= 2 else X)
    bundle = registry.WearModel(
        kind=kind, usage_metric=spec.usage_metric, setting_names=list(spec.regime_metrics),
        sensor_names=list(spec.sensor_names), features=features, rul=rul, risk=risk,
        anomaly=AnomalyScorer().fit(np.concatenate(healthy)), horizon=horizon,
        coverage=DEFAULT_COVERAGE,
    )  # fmt: skip
    head, tail = bundle.history_rows()
    return WearModel(bundle, head, tail)


def run_tuning_fleet(kind: str, seed: int, assets: int, days: float) -> World:
    """A separate, larger fleet of mixed ages run to failure for ``days``: its lives are the
    failures a fleet sees in such a period (fast-wearing assets fail more often)."""
    world = new_world(kind, seed, assets * TUNING_FLEET_FACTOR, purpose=2)
    warm_up(world, seed)
    end_h = world.now_h + days * 24.0
    while world.now_h < end_h - 1e-9:
        world.step()
    return world


def preventive_intervals(world: World) -> dict[str, float]:
    """Per component: the usage by which ``PREVENTIVE_QUANTILE`` of the lives failed."""
    out: dict[str, float] = {}
    for c in world.components:
        usage = [life.usage for life in world.lives if life.component == c]
        out[c] = float(np.quantile(usage, PREVENTIVE_QUANTILE)) if usage else math.inf
    return out


# --- strategies ------------------------------------------------------------------------------


RESCHEDULED = "rescheduled"  # counted beside the triggers: an open order brought forward


@dataclass
class Order:
    raised_h: float
    due_h: float  # the order's due date (brought forward by newer predictions, as the policy does)
    arrival_h: float  # when its part is on site

    @property
    def work_at_h(self) -> float:
        """When the technician does it: due and the part on site."""
        return max(self.due_h, self.arrival_h)


def entitlements(kind: str) -> Entitlements:
    """The plan the predictive strategy runs under: the kind's full-service plan (orders,
    parts and labour included; its failure-risk threshold; no anomaly threshold, as every
    seeded plan) with the lead time of :data:`ECONOMICS`."""
    return Entitlements(
        includes_alerts=True, includes_orders=True, includes_parts=True, includes_labour=True,
        order_lead_days=ECONOMICS[kind].order_lead_days, response_sla_hours=24,
        risk_threshold=ECONOMICS[kind].risk_threshold, anomaly_threshold=None,
    )  # fmt: skip


def at(hours: float) -> datetime:
    """Simulated hours as a date."""
    return START + timedelta(hours=hours)


def score_and_decide(
    world: World,
    model: WearModel,
    states: dict[tuple[int, str], str],
    orders: dict[tuple[int, str], Order],
    triggers: Counter[str],
) -> int:
    """Score every live component as the scoring worker does (the bundle's ``predict`` on
    the features of the life's last row), apply the product's policy; how many orders it
    raised (``triggers`` counts what fired for each)."""
    kind, econ, now_h = world.kind, ECONOMICS[world.kind], world.now_h
    ent = entitlements(kind)
    window = float(ent.order_lead_days + econ.shipping_days)  # policy.window_days, no depot DB
    now = at(now_h)
    raised = 0
    for component in world.components:
        live = np.flatnonzero(~world.population.failed(component))
        mats, assets = [], []
        for asset in live.tolist():
            got = world.log.life_rows(asset, component, model.head, model.tail)
            if got is None:
                continue
            rows, _ = got
            mats.append(np.column_stack([np.full(rows.shape[0], float(asset)), rows]))
            assets.append(asset)
        if not mats:
            continue
        bundle = model.bundle
        ids, X = bundle.features.transform_last(np.concatenate(mats))
        v = bundle.predict(X)[component]
        for i, asset in enumerate(ids.astype(np.int64).tolist()):
            rul, rul_low = float(v["rul"][i]), float(v["rul_low"][i])
            rate = world.log.usage_rate_per_day(asset, component, now_h)
            prediction = Prediction(
                time=now, asset_id=asset, component=component, model_version_id=None,
                rul=rul, rul_low=rul_low, rul_high=float(v["rul_high"][i]),
                coverage=bundle.coverage, failure_probability=float(v["failure_probability"][i]),
                horizon=bundle.horizon, anomaly_score=float(v["anomaly_score"][i]),
                usage_rate_per_day=None if math.isnan(rate) else rate,
                due_at=_due(now, rul, rate), due_at_conservative=_due(now, rul_low, rate),
            )  # fmt: skip
            key = (asset, component)
            step = policy.next_due_state(states.get(key, "clear"), prediction, ent, window, now)
            states[key] = step.state
            if step.state != "due":
                continue
            order = orders.get(key)
            if order is None:
                due = policy.order_due_at(prediction, window, now, ent.risk_threshold)
                due_h = (due - START) / timedelta(hours=1)
                orders[key] = Order(now_h, due_h, now_h + 24.0 * econ.shipping_days)
                triggers.update(step.fired or ["still due"])
                raised += 1
                continue
            earlier = policy.rescheduled_due_at(
                at(order.due_h), prediction, window, ent.risk_threshold
            )
            if earlier is not None:
                order.due_h = (earlier - START) / timedelta(hours=1)
                triggers[RESCHEDULED] += 1
    return raised


def _due(now: datetime, rul: float, rate: float) -> datetime | None:
    if math.isnan(rate) or rate <= 0:
        return None
    return now + timedelta(days=min(rul / rate, MAX_DUE_DAYS))


@dataclass
class StrategyResult:
    """What one strategy did to one kind's fleet in the evaluated period."""

    lives: list[Life]
    orders_raised: int = 0
    orders_late: int = 0  # the component failed while its order was open
    triggers: Counter[str] = field(default_factory=Counter)  # what fired for each order


def run_strategy(
    world: World,
    strategy: str,
    days: float,
    *,
    intervals: dict[str, float] | None = None,
    model: WearModel | None = None,
    coverage: float = DEFAULT_COVERAGE,
) -> StrategyResult:
    """Run ``world`` (a copy is made) for ``days`` under ``strategy``."""
    w = copy.deepcopy(world)
    result = StrategyResult(lives=w.lives)
    end_h = w.now_h + days * 24.0
    next_score_h = w.now_h
    states: dict[tuple[int, str], str] = {}
    orders: dict[tuple[int, str], Order] = {}
    while w.now_h < end_h - 1e-9:
        for asset, component, _ in w.step():
            key = (asset, component)
            if orders.pop(key, None) is not None:
                result.orders_late += 1  # its part is used for the repair
            states.pop(key, None)
        if strategy == "preventive":
            assert intervals is not None
            for c in w.components:
                usage = w.population.life_usage(c)
                due = (usage >= intervals[c]) & ~w.population.failed(c)
                for asset in np.flatnonzero(due).tolist():
                    w.replace_planned(asset, c)
        elif strategy == "predictive":
            assert model is not None
            for key, order in sorted(orders.items()):
                if order.work_at_h <= w.now_h and not w.population.failed(key[1])[key[0]]:
                    del orders[key]
                    states.pop(key, None)
                    w.replace_planned(*key)
            if w.now_h >= next_score_h:
                result.orders_raised += score_and_decide(
                    w, model.at_coverage(coverage), states, orders, result.triggers
                )
                next_score_h += SCORE_EVERY_H
        elif strategy != "run_to_failure":
            raise ValueError(f"unknown strategy {strategy!r}")
    return result


# --- figures ---------------------------------------------------------------------------------


def summarise(kind: str, result: StrategyResult, days: float) -> dict[str, Any]:
    """Failures, replacements, waste and costs of one strategy on one kind."""
    spec, econ = KINDS[kind], ECONOMICS[kind]
    failures = [life for life in result.lives if life.reason != "planned"]
    planned = [life for life in result.lives if life.reason == "planned"]
    parts_eur = labour_eur = 0.0
    for life in result.lives:
        part = next(c for c in spec.components if c.name == life.component).parts[0]
        parts_eur += part.price_minor / 100.0
        labour_eur += part.labour_hours * econ.labour_eur_per_hour
    downtime_eur = len(failures) * econ.failure_downtime_h * econ.downtime_eur_per_hour
    wasted = sum(life.wasted for life in planned)
    life_total = sum(life.usage + life.wasted for life in result.lives)
    return {
        "failures": len(failures),
        "failures_by_mode": dict(sorted(Counter(life.reason for life in failures).items())),
        "failures_sudden": sum(1 for life in failures if life.sudden),
        "failures_gradual": sum(1 for life in failures if not life.sudden),
        "planned_replacements": len(planned),
        "orders_raised": result.orders_raised,
        "orders_late": result.orders_late,
        "orders_by_trigger": {k: v for k, v in sorted(result.triggers.items()) if k != RESCHEDULED},
        "orders_rescheduled": result.triggers[RESCHEDULED],
        "mean_wasted_life": round(wasted / len(planned), 3) if planned else 0.0,
        "mean_wasted_share": round(
            float(np.mean([life.wasted / max(life.usage + life.wasted, 1e-9) for life in planned])),
            4,
        )
        if planned
        else 0.0,
        "wasted_share_of_life": round(wasted / life_total, 4) if life_total else 0.0,
        "life_unit": spec.life_unit,
        "parts_eur": round(parts_eur, 2),
        "labour_eur": round(labour_eur, 2),
        "downtime_eur": round(downtime_eur, 2),
        "total_eur": round(parts_eur + labour_eur + downtime_eur, 2),
    }


def compare(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The target: predictive prevents >= 95% of failures, wastes <= 1/3 of preventive's."""
    rtf, prev, pred = (figures[s] for s in STRATEGIES)

    def prevented(key: str, s: dict[str, Any]) -> float | None:
        return round(1 - s[key] / rtf[key], 4) if rtf[key] else None

    ratio = (
        round(pred["wasted_share_of_life"] / prev["wasted_share_of_life"], 4)
        if prev["wasted_share_of_life"]
        else None
    )
    share = prevented("failures", pred)
    return {
        "preventive_prevented_share": prevented("failures", prev),
        "predictive_prevented_share": share,
        "predictive_prevented_share_gradual": prevented("failures_gradual", pred),
        "predictive_waste_vs_preventive": ratio,
        "target_met": bool(
            share is not None
            and share >= TARGET_PREVENTED
            and ratio is not None
            and ratio <= TARGET_WASTE_RATIO
        ),
    }


@dataclass
class EvaluationConfig:
    seed: int = 1
    assets: int = 48
    days: float = 365.0
    kinds: tuple[str, ...] = ("tire", "elevator", "engine")
    coverage: float | None = None  # None: chosen per kind on the validation fleet
    sweep: tuple[float, ...] = SWEEP_COVERAGES
    threads: int = 1  # BLAS/OpenMP threads in this process
    jobs: int = 2  # processes for the independent fits of a RUL regressor
    training_assets: int | None = None  # size of the training fleet (default: ``assets``)
    training_lives: int | None = None  # at least this many lives (default: per kind)


def validation_sweep(
    kind: str,
    config: EvaluationConfig,
    intervals: dict[str, float],
    model: WearModel,
    say: Progress,
) -> list[dict[str, Any]]:
    """The coverage trade-off on a validation fleet (its own seed, ``VALIDATION_FLEET_FACTOR``
    times the evaluation fleet): failures prevented and life wasted at each coverage."""
    say(f"{kind}: validation fleet for the coverage")
    size = config.assets * VALIDATION_FLEET_FACTOR
    world = new_world(kind, config.seed + 3_000, size, purpose=3)
    warm_up(world, config.seed + 3_000)
    base = {
        s: summarise(kind, run_strategy(world, s, config.days, intervals=intervals), config.days)
        for s in ("run_to_failure", "preventive")
    }
    sweep = []
    for cov in config.sweep:
        say(f"{kind}: validation, predictive at coverage {cov}")
        res = run_strategy(world, "predictive", config.days, model=model, coverage=cov)
        pred = summarise(kind, res, config.days)
        c = compare({**base, "predictive": pred})
        sweep.append(
            {
                "coverage": cov,
                "failures": pred["failures"],
                "failures_run_to_failure": base["run_to_failure"]["failures"],
                "wasted_share_of_life": pred["wasted_share_of_life"],
                "prevented_share": c["predictive_prevented_share"],
                "waste_vs_preventive": c["predictive_waste_vs_preventive"],
                "total_eur": pred["total_eur"],
                "preventive_prevented_share": c["preventive_prevented_share"],
                "preventive_wasted_share_of_life": base["preventive"]["wasted_share_of_life"],
            }
        )
    return sweep


def choose_coverage(
    sweep: list[dict[str, Any]],
    target: float = TARGET_PREVENTED,
    waste_ratio: float = TARGET_WASTE_RATIO,
) -> float:
    """The coverage for the evaluation fleet, from the validation fleet's sweep.

    When some coverages meet the whole target there (prevent ``target`` of the failures
    and waste at most ``waste_ratio`` of the preventive schedule's waste), the largest of
    them: the most margin against failures that the waste budget allows. Otherwise the
    smallest coverage from which on every coverage of the sweep prevents ``target`` (one
    lucky low coverage is not enough: failure counts are small and noisy), and the largest
    one when none does."""
    ordered = sorted(sweep, key=lambda p: p["coverage"])
    meets = [
        p
        for p in ordered
        if (p["prevented_share"] or 0.0) >= target
        and p.get("waste_vs_preventive") is not None
        and p["waste_vs_preventive"] <= waste_ratio
    ]
    if meets:
        return float(meets[-1]["coverage"])
    chosen = ordered[-1]["coverage"]
    for p in reversed(ordered):
        if (p["prevented_share"] or 0.0) < target:
            break
        chosen = p["coverage"]
    return float(chosen)


def evaluate(config: EvaluationConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the three strategies per kind; every figure, as plain JSON-able data."""
    say = progress or (lambda _msg: None)
    out: dict[str, Any] = {
        "seed": config.seed,
        "assets_per_kind": config.assets,
        "days": config.days,
        "preventive_quantile": PREVENTIVE_QUANTILE,
        "assumptions": {k: asdict(ECONOMICS[k]) for k in config.kinds},
        "kinds": {},
    }
    with threadpool_limits(limits=config.threads):
        for kind in config.kinds:
            say(f"{kind}: training fleet")
            training = run_training_fleet(
                kind, config.seed + 1_000, config.training_assets or config.assets,
                config.training_lives,
            )  # fmt: skip
            say(f"{kind}: tuning fleet for the preventive interval")
            tuning = run_tuning_fleet(kind, config.seed + 2_000, config.assets, config.days)
            intervals = preventive_intervals(tuning)
            say(f"{kind}: training the wear model on {len(training.lives)} lives")
            model = train_wear_model(kind, training, n_jobs=config.jobs)
            sweep: list[dict[str, Any]] = []
            coverage = config.coverage
            if config.sweep:
                sweep = validation_sweep(kind, config, intervals, model, say)
                if coverage is None:
                    coverage = choose_coverage(sweep)
            if coverage is None:
                coverage = DEFAULT_COVERAGE
            say(f"{kind}: warming up the evaluation fleet")
            world = new_world(kind, config.seed, config.assets, purpose=0)
            warm_up(world, config.seed)
            figures: dict[str, Any] = {}
            for strategy in STRATEGIES:
                say(
                    f"{kind}: {strategy}"
                    + (f" (coverage {coverage})" if strategy == "predictive" else "")
                )
                result = run_strategy(
                    world, strategy, config.days, intervals=intervals, model=model,
                    coverage=coverage,
                )  # fmt: skip
                figures[strategy] = summarise(kind, result, config.days)
            out["kinds"][kind] = {
                "assets": world.population.size,
                "training_lives": len(training.lives),
                "tuning_lives": len(tuning.lives),
                "preventive_interval": {
                    c: round(v, 3) if math.isfinite(v) else None for c, v in intervals.items()
                },
                "coverage": coverage,
                "coverage_chosen_on": "validation fleet" if config.coverage is None else "fixed",
                "strategies": figures,
                **compare(figures),
                "validation_sweep": sweep,
            }
    return out
