"""A generic degradation process for a kind with no physics of its own, driven by its
definition alone (its metrics, roles, bounds, end-of-life thresholds and typical life).

Each component of each asset draws a life around the kind's typical life; its hidden wear
(0 new, 1 at the end of its life) grows with the asset's usage along a noisy path. A
condition metric named by an end-of-life threshold drifts from a healthy level towards that
threshold as the wear of its component grows (it reaches the threshold when the component
fails); other condition metrics drift a little with the asset's mean wear; regime metrics are
operating settings that stay near a level per group; the usage counter accrues. Pure and
seeded like the kinds' own physics.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from kinds.schemas import KindDefinition, Metric, Threshold
from simulators.physics import WEAR_LIMIT, Failure, Frame

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

TYPICAL_LIFE_DAYS = 180.0  # simulated days a typical life lasts at the typical usage rate
LIFE_SPREAD = 0.25  # lognormal sigma of a component's life around the typical life
RATE_SPREAD = 0.2  # lognormal sigma of an asset's usage rate
HEALTHY_SHARE = 0.15  # a healthy reading sits this share of the way from the good bound
NOISE_SHARE = 0.02  # sensor noise, as a share of the metric's healthy-to-limit distance


def _healthy_level(metric: Metric, threshold: Threshold) -> float:
    """Where a new component reads: on the good side of the threshold, near the far bound."""
    if threshold.op in (">=", ">"):  # grows towards the limit (vibration, leak, wear %)
        return metric.low + HEALTHY_SHARE * (threshold.value - metric.low)
    return metric.high - HEALTHY_SHARE * (metric.high - threshold.value)  # falls (tread)


class GenericPopulation:
    """Assets of any defined kind, in groups of ``per_group`` (one gateway each)."""

    def __init__(
        self, kind: KindDefinition, rng: np.random.Generator, groups: int, per_group: int
    ) -> None:
        self.kind = kind
        self.rng = rng
        self.size = groups * per_group
        self.group: IntArray = np.repeat(np.arange(groups, dtype=np.int64), per_group)
        self.usage: FloatArray = np.zeros(self.size)
        typical_rate = kind.typical_life / (TYPICAL_LIFE_DAYS * 24.0)
        self.rate: FloatArray = typical_rate * rng.lognormal(0.0, RATE_SPREAD, self.size)
        self.components = kind.component_names
        self._life: dict[str, FloatArray] = {}
        self._started: dict[str, FloatArray] = {}
        self._wear: dict[str, FloatArray] = {}
        self._failed: dict[str, BoolArray] = {}
        for c in self.components:
            self._life[c] = self._draw_lives(self.size)
            self._started[c] = np.zeros(self.size)
            self._wear[c] = np.zeros(self.size)
            self._failed[c] = np.zeros(self.size, bool)
        self.regime_level = {
            m.name: m.low + rng.uniform(0.3, 0.7, groups) * (m.high - m.low)
            for m in kind.metrics
            if m.role == "regime"
        }

    def _draw_lives(self, n: int) -> FloatArray:
        lives: FloatArray = self.kind.typical_life * self.rng.lognormal(0.0, LIFE_SPREAD, n)
        return lives

    def _check_component(self, component: str) -> None:
        if component not in self._life:
            raise KeyError(f"a {self.kind.name} has components {', '.join(self.components)}")

    def shift_clock(self, hours: float) -> None:
        """Nothing here keeps absolute times."""

    def renew(self, asset: int, component: str) -> None:
        """Fit a new ``component`` (a fresh life) to ``asset``."""
        self._check_component(component)
        self._life[component][asset] = self._draw_lives(1)[0]
        self._started[component][asset] = self.usage[asset]
        self._wear[component][asset] = 0.0
        self._failed[component][asset] = False
        if len(self.components) == 1:
            self.usage[asset] = 0.0  # the counter restarts with the asset's only component
            self._started[component][asset] = 0.0

    def wear(self, component: str) -> FloatArray:
        self._check_component(component)
        return self._wear[component].copy()

    def failed(self, component: str) -> BoolArray:
        self._check_component(component)
        return self._failed[component].copy()

    def life_usage(self, component: str) -> FloatArray:
        self._check_component(component)
        used: FloatArray = self.usage - self._started[component]
        return used

    def expected_rul(self, component: str) -> FloatArray:
        """Remaining usage until the wear path reaches 1 at the component's drawn life."""
        self._check_component(component)
        left: FloatArray = np.clip(self._life[component] - self.life_usage(component), 0.0, None)
        return left

    def advance(self, start_h: float, hours: float) -> Frame:
        """Accrue usage and wear over ``hours``; one reading of every metric per asset."""
        rng = self.rng
        end_h = start_h + hours
        used = self.rate * hours * rng.lognormal(0.0, 0.1, self.size)
        self.usage = self.usage + used
        failures: list[Failure] = []
        for c in self.components:
            # a noisy path whose mean reaches 1 when the life usage reaches the drawn life
            step = used / self._life[c] * rng.lognormal(0.0, 0.3, self.size)
            self._wear[c] = np.where(self._failed[c], self._wear[c], self._wear[c] + step)
            crossed = ~self._failed[c] & (self._wear[c] >= WEAR_LIMIT)
            for i in np.flatnonzero(crossed):
                failures.append(Failure(int(i), c, "wear_out", end_h, float(self.usage[i])))
            self._failed[c] |= crossed
        return Frame(
            asset=np.arange(self.size, dtype=np.int64),
            at_h=np.full(self.size, end_h),
            metrics=self._readings(),
            failures=failures,
        )

    def _readings(self) -> dict[str, FloatArray]:
        rng = self.rng
        mean_wear = np.mean([np.minimum(self._wear[c], 1.2) for c in self.components], axis=0)
        out: dict[str, FloatArray] = {}
        for m in self.kind.metrics:
            span = m.high - m.low
            if m.role == "usage":
                values = self.usage.copy()
            elif m.role == "regime":
                level = self.regime_level[m.name][self.group]
                values = level + 0.01 * span * rng.normal(0.0, 1.0, self.size)
            else:
                values = self._condition(m, mean_wear, span)
            out[m.name] = np.clip(values, m.low, m.high)
        return out

    def _condition(self, m: Metric, mean_wear: FloatArray, span: float) -> FloatArray:
        rng = self.rng
        limits = [t for t in self.kind.end_of_life.thresholds if t.metric == m.name]
        if not limits:
            base = m.low + 0.25 * span
            return base + 0.1 * span * mean_wear + 0.01 * span * rng.normal(0.0, 1.0, self.size)
        t = limits[0]
        component = t.component or self.components[0]
        healthy = _healthy_level(m, t)
        distance = t.value - healthy
        wear = np.minimum(self._wear[component], 1.2)
        noise = NOISE_SHARE * abs(distance) * rng.normal(0.0, 1.0, self.size)
        reading: FloatArray = healthy + distance * wear + noise
        return reading
