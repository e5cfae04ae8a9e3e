"""What every kind's physics shares: the frame of readings a step produces, the population
protocol, the wear limit, and the weekly shift calendar of trucks and aircraft."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from fleet.causes import CONFIRMED_WEAR, OTHER_FAULT
from kinds.schemas import KindDefinition as AssetKind

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

WEAR_LIMIT = 1.0
HOURS_PER_WEEK = 168.0


WEAR_OUT = "wear_out"
RANDOM_FAULT = "random_fault"


def reported_cause(cause: str) -> str:
    """The cause code a technician reports for a failure of this physics ``cause`` (the
    product's codes, ``POST /v1/failures``' ``cause``): a random fault is ``other_fault``
    (a sudden fault, not the part's wear), a wear-out ``confirmed_wear``."""
    return OTHER_FAULT if cause == RANDOM_FAULT else CONFIRMED_WEAR


@dataclass(frozen=True)
class Failure:
    """A component that crossed its wear limit during a step.

    ``cause`` is the physics' ground truth: ``WEAR_OUT`` when the part's own wear (however
    fast) took it over the limit, ``RANDOM_FAULT`` when a fault drawn at random in the step
    did and the wear alone would not have: such a fault arrives with no precursor in any
    signal, so no model can time it (its odds of ending the part still grow with the wear).
    """

    asset: int
    component: str
    mode: str
    at_h: float
    usage: float
    cause: str = WEAR_OUT


@dataclass
class Frame:
    """Readings produced by one step: one row per reading, NaN where a metric was not measured."""

    asset: IntArray
    at_h: FloatArray
    metrics: dict[str, FloatArray]
    failures: list[Failure] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.asset.shape[0])


class Population(Protocol):
    """A group-structured population of assets of one kind."""

    kind: AssetKind
    size: int
    group: IntArray
    usage: FloatArray

    def advance(self, start_h: float, hours: float) -> Frame:
        """Advance every asset by ``hours`` of simulated time starting at ``start_h``."""
        ...

    def wear(self, component: str) -> FloatArray:
        """Hidden wear fraction of ``component`` per asset (fails at 1)."""
        ...

    def failed(self, component: str) -> BoolArray:
        """Which assets have ``component`` failed and not yet renewed."""
        ...

    def expected_rul(self, component: str) -> FloatArray:
        """Expected remaining life of ``component`` in the kind's life unit."""
        ...

    def life_usage(self, component: str) -> FloatArray:
        """Usage accumulated by ``component`` since it was last renewed."""
        ...

    def renew(self, asset: int, component: str) -> None:
        """Fit a new ``component`` to ``asset`` (drawn fresh)."""
        ...

    def shift_clock(self, hours: float) -> None:
        """Move every absolute simulated time the population keeps by ``hours`` (the fleet
        restarts its clock after the warm-up)."""
        ...


def empty_frame(names: tuple[str, ...]) -> Frame:
    return Frame(np.zeros(0, np.int64), np.zeros(0), {n: np.zeros(0) for n in names}, failures=[])


def shift_overlap_hours(
    start_h: float, hours: float, shift_start: FloatArray, shift_len: FloatArray, workdays: IntArray
) -> FloatArray:
    """Hours of [start_h, start_h + hours) spent inside each daily shift (workdays only)."""
    end_h = start_h + hours
    total = np.zeros_like(shift_start)
    for day in range(int(start_h // 24) - 1, int(end_h // 24) + 1):
        window_start = day * 24.0 + shift_start
        window_end = window_start + shift_len
        working = (day % 7) < workdays
        overlap = np.minimum(end_h, window_end) - np.maximum(start_h, window_start)
        total += np.where(working, np.clip(overlap, 0.0, None), 0.0)
    return total


def in_shift(
    at_h: float, shift_start: FloatArray, shift_len: FloatArray, workdays: IntArray
) -> BoolArray:
    """Whether each group is inside its shift at ``at_h``."""
    inside = np.zeros(shift_start.shape, bool)
    for day in (int(at_h // 24) - 1, int(at_h // 24)):
        since = at_h - (day * 24.0 + shift_start)
        inside |= ((day % 7) < workdays) & (since >= 0) & (since < shift_len)
    return inside
