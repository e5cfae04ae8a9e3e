"""Aircraft engines: HPC damage per flight cycle with C-MAPSS-like sensors."""

from __future__ import annotations

import math

import numpy as np

from kinds.loader import builtin_kinds
from simulators.cmapss_levels import (
    CMAPSS_SENSORS,
    CMAPSS_SETTINGS,
    SENSOR_BASE,
    SENSOR_NOISE,
    SENSOR_SHIFT,
)
from simulators.physics.base import (
    WEAR_LIMIT,
    BoolArray,
    Failure,
    FloatArray,
    Frame,
    IntArray,
    empty_frame,
    shift_overlap_hours,
)

# The six operating conditions of C-MAPSS FD002/FD004: altitude (kft), Mach, TRA (%).
ENGINE_REGIMES: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 100.0),
    (10.0, 0.25, 100.0),
    (20.0, 0.7, 100.0),
    (25.0, 0.62, 60.0),
    (35.0, 0.84, 100.0),
    (42.0, 0.84, 100.0),
)
# How hard each condition is on the HPC, relative to cruise at 20 kft.
_REGIME_SEVERITY = np.array([1.25, 1.15, 1.0, 0.8, 0.95, 0.9])
_REGIME_PREFERENCE = np.array([2.0, 1.5, 1.5, 1.0, 2.0, 2.0])
_ENGINE_ACCELERATION = 3.0  # damage grows as exp(k * damage): health decays exponentially
_ENGINE_RATE = 0.00141  # median damage per cycle at D=0: about 210 cycles to failure


class EnginePopulation:
    """Turbofan engines degrading per flight cycle, with C-MAPSS-like sensors.

    Each flight cycle runs in one of six operating conditions (as in FD002/FD004); HPC damage
    grows per cycle by a rate times the condition's severity times exp(k * damage), so the
    health index decays exponentially; the engine fails when damage reaches 1 (EGT margin
    exhausted). Each cycle gives one snapshot: the three settings and 21 sensors, each its
    healthy level in that condition plus a shift proportional to damage plus noise.
    """

    kind = builtin_kinds()["engine"]
    components = ("hpc_module",)

    def __init__(
        self, rng: np.random.Generator, aircraft: int, engines_per_aircraft: int = 2
    ) -> None:
        self.rng = rng
        self.aircraft = aircraft
        self.size = aircraft * engines_per_aircraft
        self.group: IntArray = np.repeat(np.arange(aircraft), engines_per_aircraft).astype(np.int64)
        self.cycles_per_day: FloatArray = rng.uniform(3.0, 7.0, aircraft)
        self.regime_weights: FloatArray = rng.dirichlet(_REGIME_PREFERENCE * 3.0, size=aircraft)
        self.first_departure_h: FloatArray = rng.uniform(5.0, 7.0, aircraft)
        self.cycle_progress: FloatArray = rng.uniform(0.0, 1.0, aircraft)
        self.damage = np.zeros(self.size)
        self.rate = np.zeros(self.size)
        self.usage: FloatArray = np.zeros(self.size)
        self._failed = np.zeros(self.size, bool)
        for i in range(self.size):
            self.renew(i, "hpc_module")

    def shift_clock(self, hours: float) -> None:
        """Nothing to move: departures are hours of the day."""

    def renew(self, asset: int, component: str = "hpc_module") -> None:
        """Overhaul the HPC module: a fresh engine with a small, random initial wear."""
        self._check_component(component)
        self.damage[asset] = self.rng.uniform(0.0, 0.08)
        self.rate[asset] = _ENGINE_RATE * self.rng.lognormal(0.0, 0.25)
        self.usage[asset] = 0.0
        self._failed[asset] = False

    def _check_component(self, component: str) -> None:
        if component != "hpc_module":
            raise KeyError(f"an engine has no component {component!r}")

    def wear(self, component: str = "hpc_module") -> FloatArray:
        self._check_component(component)
        return self.damage.copy()

    def failed(self, component: str = "hpc_module") -> BoolArray:
        self._check_component(component)
        return self._failed.copy()

    def life_usage(self, component: str = "hpc_module") -> FloatArray:
        self._check_component(component)
        return self.usage.copy()

    def expected_rul(self, component: str = "hpc_module") -> FloatArray:
        """Cycles until damage reaches 1 at the aircraft's mean severity (closed form)."""
        self._check_component(component)
        k = _ENGINE_ACCELERATION
        severity = (self.regime_weights @ _REGIME_SEVERITY)[self.group]
        cycles = (np.exp(-k * self.damage) - math.exp(-k)) / (k * self.rate * severity)
        return np.where(self._failed, 0.0, np.clip(cycles, 0.0, None))

    def snapshot(self, engines: IntArray, regimes: IntArray) -> dict[str, FloatArray]:
        """Settings and sensors of ``engines`` flying in ``regimes`` at their current damage."""
        n = engines.shape[0]
        conditions = np.asarray(ENGINE_REGIMES)[regimes]
        noise = self.rng.normal(0.0, 1.0, (n, len(CMAPSS_SENSORS)))
        values = (
            SENSOR_BASE[regimes]
            + SENSOR_SHIFT[regimes] * np.minimum(self.damage[engines], 1.2)[:, None]
            + SENSOR_NOISE[regimes] * noise
        )
        out = {
            CMAPSS_SETTINGS[0]: conditions[:, 0] + self.rng.normal(0.0, 0.003, n),
            CMAPSS_SETTINGS[1]: np.clip(
                conditions[:, 1] + self.rng.normal(0.0, 0.0003, n), 0.0, None
            ),
            CMAPSS_SETTINGS[2]: conditions[:, 2],
        }
        out.update({name: values[:, j] for j, name in enumerate(CMAPSS_SENSORS)})
        return out

    def advance(self, start_h: float, hours: float) -> Frame:
        """Fly the aircraft for ``hours``: one reading per engine per completed flight cycle."""
        grounded = np.bincount(self.group, weights=self._failed, minlength=self.aircraft) > 0
        operating = shift_overlap_hours(
            start_h,
            hours,
            self.first_departure_h,
            np.full(self.aircraft, 17.0),
            np.full(self.aircraft, 7, np.int64),
        )
        self.cycle_progress = self.cycle_progress + np.where(
            grounded, 0.0, operating * self.cycles_per_day / 17.0
        )
        cycles = np.floor(self.cycle_progress).astype(np.int64)
        self.cycle_progress -= cycles
        return self.fly_cycles(start_h, hours, cycles)

    def fly_cycles(self, start_h: float, hours: float, cycles: IntArray) -> Frame:
        """Fly ``cycles[a]`` flight cycles of each aircraft ``a`` within ``hours`` from
        ``start_h`` (the legs of a schedule, or the aircraft's own rhythm in ``advance``): one
        reading per working engine per cycle, failures where the damage reaches the limit."""
        rng = self.rng
        rows_asset: list[IntArray] = []
        rows_at: list[FloatArray] = []
        rows_metrics: list[dict[str, FloatArray]] = []
        failures: list[Failure] = []
        k = _ENGINE_ACCELERATION
        for c in range(int(cycles.max(initial=0))):
            flying = np.flatnonzero(cycles > c)
            regime_of = np.array(
                [rng.choice(len(ENGINE_REGIMES), p=self.regime_weights[a]) for a in flying],
                dtype=np.int64,
            )
            engines = np.flatnonzero(np.isin(self.group, flying) & ~self._failed)
            if engines.size == 0:
                continue
            regimes = regime_of[np.searchsorted(flying, self.group[engines])]
            self.damage[engines] += (
                self.rate[engines] * _REGIME_SEVERITY[regimes] * np.exp(k * self.damage[engines])
            )
            self.usage[engines] += 1.0
            at = start_h + hours * (c + 1) / (cycles[self.group[engines]] + 1)
            rows_asset.append(engines)
            rows_at.append(at)
            rows_metrics.append(
                self.snapshot(engines, regimes) | {"flight_cycles": self.usage[engines].copy()}
            )
            crossed = engines[self.damage[engines] >= WEAR_LIMIT]
            for i in crossed:
                failures.append(
                    Failure(
                        int(i),
                        "hpc_module",
                        "egt_margin_exhausted",
                        float(at[engines == i][0]),
                        float(self.usage[i]),
                    )
                )
            self._failed[crossed] = True
        if not rows_asset:
            frame = empty_frame(self.kind.metric_names)
            frame.failures = failures
            return frame
        names = self.kind.metric_names
        return Frame(
            asset=np.concatenate(rows_asset),
            at_h=np.concatenate(rows_at),
            metrics={n: np.concatenate([m[n] for m in rows_metrics]) for n in names},
            failures=failures,
        )
