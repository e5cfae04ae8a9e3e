"""The coverage rule: chosen on several validation fleets by the worst slack to the target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluation import choice
from kinds.loader import builtin_kinds
from models.bundle import DEFAULT_COVERAGE

Point = tuple[float, int, float]  # coverage, foreseeable failures, waste ratio vs preventive


def _fleet(
    rtf: int, preventive: float = 0.40, faults: int = 0, **components: tuple[Point, ...]
) -> list[dict[str, Any]]:
    """One validation fleet's sweep: per component, (coverage, foreseeable failures, waste
    ratio against preventive's) at each coverage; every component lives 100 life units;
    ``faults`` random-fault failures at every coverage on each component (never counted);
    ``rtf`` foreseeable failures run to failure."""
    coverages = sorted({c for points in components.values() for c, _, _ in points})
    out = []
    for cov in coverages:
        by = {}
        for name, points in components.items():
            _, failures, ratio = next(p for p in points if p[0] == cov)
            by[name] = {"failures": failures + faults, "failures_random_fault": faults,
                        "wasted_life": 100 * ratio * preventive, "life": 100.0}  # fmt: skip
        out.append({"coverage": cov, "by_component": by, "preventive_wasted_share_of_life":
                    preventive, "failures_run_to_failure_foreseeable": rtf})  # fmt: skip
    return out


def test_slack_is_the_unused_share_of_the_tighter_budget() -> None:
    # 98% prevented leaves 0.6 of the 5% budget; waste 0.2 of preventive's leaves 0.4 of 1/3
    assert choice.slack(0.98, 0.2) == pytest.approx(0.4)
    assert choice.slack(0.99, 0.0) == pytest.approx(0.8)
    assert choice.slack(0.95, 0.1) == pytest.approx(0.0)
    assert choice.slack(0.90, 0.1) == pytest.approx(-1.0)  # missed: negative
    assert choice.slack(None, 0.1) == pytest.approx(0.7)  # nothing to prevent
    assert choice.slack(1.0, None) == float("-inf")


def test_failures_are_read_on_a_curve_that_does_not_rise() -> None:
    assert choice._non_rising([2, 5, 4, 1]) == pytest.approx([11 / 3, 11 / 3, 11 / 3, 1])
    assert choice._non_rising([3, 2, 2, 0]) == [3, 2, 2, 0]


# fleet A: 0.8 leaves 2 of 50 (slack 0.2), 0.85 1 (0.6; waste 0.24: 0.28), 0.9 none but
# wastes 0.27 (0.19)
A = _fleet(50, tire=((0.8, 2, 0.15), (0.85, 1, 0.24), (0.9, 0, 0.27)))
# fleet B: 0.8 is excellent (nothing missed, waste 0.06), 0.9 wastes 0.30
B = _fleet(50, tire=((0.8, 0, 0.06), (0.85, 0, 0.12), (0.9, 0, 0.30)))


def test_the_choice_maximises_the_worst_slack_over_the_fleets() -> None:
    # worst slack: 0.8 -> 0.2 (A's failures), 0.85 -> 0.28 (A's waste), 0.9 -> 0.1 (B's waste)
    chosen = choice.choose_robust([A, B])
    assert chosen["coverage"] == {"tire": 0.85}
    assert chosen["worst_slack"] == pytest.approx(0.28)
    assert chosen["fleets"] == [
        {"prevented_foreseeable": 0.98, "waste_vs_preventive": 0.24},
        {"prevented_foreseeable": 1.0, "waste_vs_preventive": 0.12},
    ]
    # a rule on the mean slack would take 0.8 (0.51 against 0.46), one on fleet B alone 0.8:
    # the worst fleet decides
    assert choice.choose_robust([B])["coverage"] == {"tire": 0.8}
    assert choice.choose_robust([B, A])["coverage"] == {"tire": 0.85}  # order does not matter


def test_random_faults_do_not_count_and_a_noisy_count_does_not_pull_the_choice() -> None:
    with_faults = _fleet(50, faults=3, tire=((0.8, 2, 0.15), (0.85, 1, 0.24), (0.9, 0, 0.27)))
    assert choice.choose_robust([with_faults, B])["coverage"] == {"tire": 0.85}
    # 0.85 failed more than 0.8 on this fleet by chance: read point by point, 0.8 would win
    # (1 of 50 missed, slack 0.6, against 0.2); on the non-rising curve both have 1.5 failures
    # (slack 0.4, the waste's 0.7 and 0.55 above it) and the tie goes to the larger coverage
    noisy = _fleet(50, tire=((0.8, 1, 0.10), (0.85, 2, 0.15), (0.9, 0, 0.30)))
    chosen = choice.choose_robust([noisy])
    assert chosen["coverage"] == {"tire": 0.85}
    assert chosen["fleets"][0]["prevented_foreseeable"] == pytest.approx(0.97)


def test_two_components_are_chosen_together_on_the_fleets_sums() -> None:
    # the elevators' shape: a brake that stops failing early and wastes little, a door
    # operator whose waste grows fast with its coverage
    door = ((0.8, 0, 0.20), (0.9, 0, 0.40))
    brake = ((0.8, 2, 0.10), (0.9, 0, 0.16))
    fleet = _fleet(40, door_operator=door, brake=brake)
    # sums over both (each lives 100): door 0.8 + brake 0.9 -> 0 of 40 missed, waste 0.18
    # (slack 0.46); door 0.8 + brake 0.8 -> 2 missed (slack 0.0); door 0.9 -> waste >= 0.25
    chosen = choice.choose_robust([fleet, fleet])
    assert chosen["coverage"] == {"brake": 0.9, "door_operator": 0.8}
    assert chosen["fleets"][0]["waste_vs_preventive"] == pytest.approx(0.18)


def test_fleets_must_share_the_coverages_and_components() -> None:
    with pytest.raises(ValueError, match="at least one"):
        choice.choose_robust([])
    with pytest.raises(ValueError, match="same coverages"):
        choice.choose_robust([A, _fleet(50, tire=((0.8, 0, 0.1), (0.9, 0, 0.2)))])
    with pytest.raises(ValueError, match="same coverages"):
        choice.choose_robust([A, _fleet(50, door=((0.8, 0, 0.1), (0.85, 0, 0.1), (0.9, 0, 0.2)))])


def test_stored_sweeps_are_read_per_seed(tmp_path: Path) -> None:
    for seed, fleet in zip(choice.VALIDATION_SEEDS, [A, B, A, B], strict=True):
        path = choice.stored_path("tire", seed, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"validation_sweep": fleet}))
    stored = choice.stored_choice("tire", tmp_path)
    assert stored is not None
    assert stored["coverage"] == {"tire": 0.85} and stored["seeds"] == [101, 102, 103, 104]
    choice.stored_path("tire", choice.VALIDATION_SEEDS[-1], tmp_path).unlink()
    assert choice.stored_choice("tire", tmp_path) is None  # one fleet missing: no choice


@pytest.mark.parametrize("kind", ["elevator", "engine", "tire"])  # kinds with stored fleets
def test_the_kind_setting_is_the_rules_choice_on_the_stored_validation_fleets(kind: str) -> None:
    # what the product trains its versions at is what the rule chose on seeds 101-104, run
    # at every coverage of the grid (re-make the sweeps and the settings together)
    fleets = choice.stored_sweeps(kind)
    assert fleets is not None, f"no stored validation sweeps for {kind}"
    for fleet in fleets:
        assert [p["coverage"] for p in fleet] == list(choice.CHOICE_COVERAGES)
    chosen = choice.choose_robust(fleets)
    assert chosen["worst_slack"] > 0  # the target held on every validation fleet
    spec = builtin_kinds()[kind]
    setting = {c.name: spec.model.coverage.get(c.name, DEFAULT_COVERAGE) for c in spec.components}
    assert setting == chosen["coverage"]


def test_only_the_kinds_listed_above_have_stored_validation_fleets() -> None:
    # a kind whose sweeps are added must be checked against its setting above
    assert sorted(p.name for p in choice.VALIDATION_DIR.iterdir() if p.is_dir()) == [
        "elevator",
        "engine",
        "tire",
    ]
