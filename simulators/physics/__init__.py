"""Physics of wear for each asset kind: hidden true health, operating conditions, noisy sensors.

Pure and seeded: a population of assets of one kind is advanced in simulated hours with a
``numpy.random.Generator``; nothing here reads a clock, a file or a socket. The same
generator state and the same calls give the same numbers.

Every component's hidden health is expressed as a *wear fraction*: 0 when new, growing
monotonically with usage, and the component fails exactly when its wear reaches 1
(``WEAR_LIMIT``). Metric names and bounds come from the shipped kind files (``kinds/builtin/``).

Assets are simulated in groups that share operating conditions: the tires of one truck, the
elevators of one building, the engines of one aircraft. A group is what one gateway reports.
"""

from __future__ import annotations

import numpy as np

from simulators.physics.base import (
    HOURS_PER_WEEK,
    RANDOM_FAULT,
    WEAR_LIMIT,
    WEAR_OUT,
    BoolArray,
    Failure,
    FloatArray,
    Frame,
    IntArray,
    Population,
    empty_frame,
    in_shift,
    reported_cause,
    shift_overlap_hours,
)
from simulators.physics.elevator import BRAKE_LIMIT_PCT, BUILDING_TYPES, ElevatorPopulation
from simulators.physics.engine import ENGINE_REGIMES, EnginePopulation
from simulators.physics.tire import ROAD_TYPES, TREAD_LIMIT_MM, TirePopulation

__all__ = [
    "BRAKE_LIMIT_PCT",
    "BUILDING_TYPES",
    "ENGINE_REGIMES",
    "HOURS_PER_WEEK",
    "RANDOM_FAULT",
    "ROAD_TYPES",
    "TREAD_LIMIT_MM",
    "WEAR_LIMIT",
    "WEAR_OUT",
    "BoolArray",
    "ElevatorPopulation",
    "EnginePopulation",
    "Failure",
    "FloatArray",
    "Frame",
    "IntArray",
    "Population",
    "TirePopulation",
    "empty_frame",
    "in_shift",
    "make_population",
    "reported_cause",
    "shift_overlap_hours",
]


def make_population(kind: str, rng: np.random.Generator, groups: int, per_group: int) -> Population:
    """A population of ``groups`` gateways' worth of assets of ``kind``."""
    if kind == "tire":
        return TirePopulation(rng, groups, per_group)
    if kind == "elevator":
        return ElevatorPopulation(rng, groups, per_group)
    if kind == "engine":
        return EnginePopulation(rng, groups, per_group)
    raise KeyError(f"unknown asset kind {kind!r}")
