"""The interval coverage per component, chosen on several validation fleets: the rule.

The coverage of the RUL interval whose low end gives the conservative due date is the
policy's one knob chosen on data (the triggers' thresholds are the seeded plans'). It is
chosen here, by a rule, on the validation sweeps of several validation fleets (seeds
:data:`VALIDATION_SEEDS`, never the fleets a figure is reported on), and the choice is what
``fleetcare evaluate`` scores at and what the kind files set (a test holds them equal).

**The rule** (:func:`choose_robust`): every combination of one coverage per component is
judged on every validation fleet by its *slack*, the unused share of the tighter of the
target's two budgets on that fleet:

- the failure budget: 5% of the foreseeable failures run to failure had may be left;
  slack ``1 - missed / 5%`` (1 when nothing was missed, 0 at exactly 95% prevented);
- the waste budget: 1/3 of the preventive schedule's wasted share of life; slack
  ``1 - ratio / (1/3)``.

The combination with the largest **worst slack over the fleets** wins (ties: the larger
mean slack, then the larger coverages). Both budgets count alike because both are the
target's; the worst fleet counts because the choice must hold on fleets it has not seen.
Failures per component are read on a curve that does not rise with the coverage (isotonic
regression of one fleet's counts: a higher coverage replaces earlier and cannot fail more
in expectation; a fleet sees a handful of failures). Random faults are not counted (the
verdict is judged on foreseeable failures; they have no precursor, see docs/evaluate.md).

Stored results (``evaluation/validation_results/<kind>/<seed>.json``) are one validation
sweep each, made by ``python -m evaluation.choosing --kind K --seed S`` (the same steps as
``fleetcare evaluate --seed S --sweep ...``: training fleet, tuning fleet, then the 2x
validation fleet at every coverage of :data:`CHOICE_COVERAGES`, without the evaluation
fleet). They depend on the simulators and the model: re-make them when either changes.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TARGET_PREVENTED = 0.95
TARGET_WASTE_RATIO = 1 / 3
VALIDATION_SEEDS = (101, 102, 103, 104)
CHOICE_COVERAGES = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975)
VALIDATION_DIR = Path(__file__).with_name("validation_results")


def slack(prevented_foreseeable: float | None, waste_ratio: float | None) -> float:
    """The unused share of the tighter budget on one fleet: 1 - missed / (1 - 95%) and
    1 - ratio / (1/3), the smaller (negative when a target is missed). No foreseeable failure
    run to failure (None) leaves the failure budget whole; no preventive waste (None) leaves
    no waste budget."""
    miss_budget = 1 - TARGET_PREVENTED
    prevent = (
        1.0 if prevented_foreseeable is None else 1 - (1 - prevented_foreseeable) / miss_budget
    )
    waste = -math.inf if waste_ratio is None else 1 - waste_ratio / TARGET_WASTE_RATIO
    return min(prevent, waste)


def _non_rising(values: Sequence[float]) -> list[float]:
    """The non-increasing curve closest (least squares) to ``values`` (pool adjacent
    violators): failures cannot rise, in expectation, with the coverage."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    return [b[0] / b[1] for b in blocks for _ in range(int(b[1]))]


def fleet_figures(
    sweep: list[dict[str, Any]], combo: dict[str, float]
) -> tuple[float | None, float | None]:
    """One validation fleet at a coverage per component: the share of its foreseeable
    failures prevented (on each component's non-rising curve) and the waste ratio against
    preventive's, summed from each component's figures at its coverage."""
    ordered = sorted(sweep, key=lambda p: p["coverage"])
    coverages = [float(p["coverage"]) for p in ordered]
    failures = 0.0
    wasted = lived = 0.0
    for component, value in combo.items():
        curve = _non_rising(
            [
                p["by_component"][component]["failures"]
                - p["by_component"][component]["failures_random_fault"]
                for p in ordered
            ]
        )
        i = coverages.index(value)
        failures += curve[i]
        part = ordered[i]["by_component"][component]
        wasted += part["wasted_life"]
        lived += part["life"]
    rtf = ordered[0]["failures_run_to_failure_foreseeable"]
    preventive = ordered[0]["preventive_wasted_share_of_life"]
    prevented = 1 - failures / rtf if rtf else None
    ratio = wasted / lived / preventive if lived and preventive else None
    return prevented, ratio


def choose_robust(fleets: Sequence[list[dict[str, Any]]]) -> dict[str, Any]:
    """The coverage per component with the largest worst slack (:func:`slack`) over the
    validation fleets' sweeps (every fleet run at the same coverages); ties: the larger
    mean slack, then the larger coverages. Returns ``coverage`` and what the rule saw of it
    (``worst_slack``, per fleet ``prevented_foreseeable`` and ``waste_vs_preventive``)."""
    if not fleets or not all(fleets):
        raise ValueError("choosing needs at least one validation fleet with a sweep")
    grids = {tuple(sorted(float(p["coverage"]) for p in sweep)) for sweep in fleets}
    comps = {tuple(sorted(sweep[0]["by_component"])) for sweep in fleets}
    if len(grids) != 1 or len(comps) != 1:
        raise ValueError("the validation fleets were not run at the same coverages/components")
    (grid,), (components,) = grids, comps
    best: tuple[tuple[float, float, float], dict[str, float], list[Any]] | None = None
    for values in itertools.product(grid, repeat=len(components)):
        combo = dict(zip(components, values, strict=True))
        seen = [fleet_figures(sweep, combo) for sweep in fleets]
        slacks = [slack(*s) for s in seen]
        key = (min(slacks), sum(slacks) / len(slacks), sum(values))
        if best is None or key > best[0]:
            best = (key, combo, seen)
    assert best is not None
    (worst, _, _), combo, seen = best
    return {
        "coverage": combo,
        "worst_slack": round(worst, 4),
        "fleets": [
            {
                "prevented_foreseeable": None if p is None else round(p, 4),
                "waste_vs_preventive": None if r is None else round(r, 4),
            }
            for p, r in seen
        ],
    }


def stored_path(kind: str, seed: int, root: Path = VALIDATION_DIR) -> Path:
    return root / kind / f"{seed}.json"


def stored_sweeps(
    kind: str, seeds: Sequence[int] = VALIDATION_SEEDS, root: Path = VALIDATION_DIR
) -> list[list[dict[str, Any]]] | None:
    """The stored validation sweeps of ``kind`` on ``seeds``; None when one is missing."""
    out = []
    for seed in seeds:
        path = stored_path(kind, seed, root)
        if not path.is_file():
            return None
        out.append(json.loads(path.read_text())["validation_sweep"])
    return out


def stored_choice(kind: str, root: Path = VALIDATION_DIR) -> dict[str, Any] | None:
    """:func:`choose_robust` on the stored sweeps of :data:`VALIDATION_SEEDS` (None when
    they are not all there), with the seeds it was chosen on."""
    fleets = stored_sweeps(kind, VALIDATION_SEEDS, root)
    if fleets is None:
        return None
    return {**choose_robust(fleets), "seeds": list(VALIDATION_SEEDS)}
