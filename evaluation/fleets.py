"""The simulated fleets of `fleetcare evaluate`: every reading of every asset, the lives that
ended, and the training, tuning and evaluation fleets built on the simulators' physics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from numpy.typing import NDArray

from evaluation.costs import ECONOMICS, PREVENTIVE_QUANTILE
from kinds.loader import builtin_kinds
from models.scoring import USAGE_RATE_LOOKBACK, USAGE_RATE_MIN_HISTORY
from simulators.fleet import WARMUP_DAYS
from simulators.physics import RANDOM_FAULT, Population, make_population
from simulators.schemas import PHYSICS_KINDS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


USAGE_RATE_LOOKBACK_H = USAGE_RATE_LOOKBACK / timedelta(hours=1)  # as the scoring worker
USAGE_RATE_MIN_HISTORY_H = USAGE_RATE_MIN_HISTORY / timedelta(hours=1)
MIN_TRAINING_LIVES = 40  # per kind, unless the configuration says otherwise
# each simulated kind's own random stream (the order the evaluation has always seeded in)
SEED_STREAM = {kind: i for i, kind in enumerate(PHYSICS_KINDS)}
TUNING_FLEET_FACTOR = 4  # the preventive interval is tuned on a fleet this many times larger


# --- readings -------------------------------------------------------------------------------


def readings_columns(kind: str) -> list[str]:
    """Metric names of the readings-matrix columns after the id: usage, settings, sensors."""
    spec = builtin_kinds()[kind]
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
        # the current life began before fleetcare's first reading of it (see ``connect``)
        self.joined = {c: np.zeros(size, bool) for c in components}

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
        self.joined[component][asset] = False
        self.carry[asset] = np.nan
        self.first[asset] = np.nan

    def connect(self) -> None:
        """Fleetcare sees the fleet from now on, as a fleet that joins mid-life: every
        current life's readings start after the rows logged so far (none of the earlier ones
        is kept, nor a value carried from them), while its usage counter still counts since
        the part was fitted (the device's counter; ``offset`` unchanged)."""
        for component in self.start:
            self.start[component][:] = self.count
            self.joined[component][:] = True
        self.carry[:] = np.nan
        self.first[:] = np.nan

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


def frame_values(kind: str, metrics: dict[str, FloatArray]) -> FloatArray:
    return np.column_stack([metrics[name] for name in readings_columns(kind)])


# --- one simulated fleet ---------------------------------------------------------------------


@dataclass
class Life:
    """One ended life of a component."""

    asset: int
    component: str
    reason: str  # failure mode, or "planned"
    # a failure the physics says a random fault caused (no precursor; the wear alone would
    # not have ended the part then), not the part's wear: reported apart from the target
    random_fault: bool
    usage: float  # life units used
    wasted: float  # expected life units left (0 for a failure)
    start_row: int = 0
    end_row: int = 0
    offset: float = 0.0
    joined: bool = False  # began before fleetcare's first reading of it (ReadingsLog.connect)


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
        return tuple(c.name for c in builtin_kinds()[self.kind].components)

    def step(self) -> list[tuple[int, str, str]]:
        """Advance one step: readings, failures (repair scheduled), repairs that are due."""
        econ = ECONOMICS[self.kind]
        frame = self.population.advance(self.now_h, econ.step_h)
        self.now_h += econ.step_h
        self.log.append(frame.asset, frame.at_h, frame_values(self.kind, frame.metrics))
        failed: list[tuple[int, str, str]] = []
        for f in frame.failures:
            usage = float(self.population.life_usage(f.component)[f.asset])
            life = self._life(f.asset, f.component, f.mode, usage, 0.0, f.cause == RANDOM_FAULT)
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
        random_fault: bool = False,
    ) -> Life:  # fmt: skip
        return Life(
            asset, component, reason, random_fault, usage, wasted,
            start_row=int(self.log.start[component][asset]), end_row=int(self.log.count[asset]),
            offset=float(self.log.offset[component][asset]),
            joined=bool(self.log.joined[component][asset]),
        )  # fmt: skip

    def renew(self, asset: int, component: str) -> None:
        """Fit a new component (the population draws it) and start its life in the log."""
        self.population.renew(asset, component)
        offset = self.population.usage[asset] - self.population.life_usage(component)[asset]
        self.log.renew(asset, component, float(offset))

    def record_failure(self, asset: int, component: str, reason: str) -> Life:
        """A failure handled by the caller (the mobile evaluation renews at once)."""
        usage = float(self.population.life_usage(component)[asset])
        life = self._life(asset, component, reason, usage, 0.0)
        self.lives.append(life)
        return life

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
    rng = np.random.default_rng([seed, SEED_STREAM[kind], purpose])
    population = make_population(kind, rng, groups, econ.per_group)
    components = [c.name for c in builtin_kinds()[kind].components]
    world = World(
        kind, population, ReadingsLog(population.size, readings_columns(kind), components)
    )
    return world


def warm_up(world: World, seed: int) -> None:
    """Renew at failures and at random for the simulators' warm-up, so that ages are mixed;
    then forget those lives (the evaluation starts now)."""
    rng = np.random.default_rng([seed, SEED_STREAM[world.kind], 99])
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
    wanted = MIN_TRAINING_LIVES if lives is None else lives
    failed_once = {c: np.zeros(world.population.size, bool) for c in world.components}
    while world.now_h < econ.history_max_days * 24.0:
        for asset, component, _ in world.step():
            failed_once[component][asset] = True
        if all(v.all() for v in failed_once.values()) and len(world.lives) >= wanted:
            break
    return world


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
