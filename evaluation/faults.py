"""Can a model foresee the elevators' random faults? Two measurements on simulated lives.

1. :func:`fault_hazard`: a large elevator population run to failure, counting per wear bin
   the trips run, the faults drawn and the faults that ended the part (random-fault
   failures), per building type the faults per trip, and whether any reading tells a part
   about to fail from a fault apart from parts at the same wear that do not.
2. :func:`known_wear_frontier`: the best any wear-based policy could do on the evaluation's
   own fleets — parts replaced the moment their hidden wear reaches a threshold (no model,
   no lead time) — judged by the target on every failure, and its cost.

``python -m evaluation.faults`` prints both (docs/evaluate.md, "Random faults").
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import numpy as np

from evaluation.fleets import World, new_world, preventive_intervals, run_tuning_fleet, warm_up
from evaluation.run import TARGET_PREVENTED, TARGET_WASTE_RATIO, compare, summarise
from evaluation.strategies import StrategyResult, run_strategy
from simulators.physics import BUILDING_TYPES, RANDOM_FAULT, ElevatorPopulation

WEAR_BINS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
STEP_H = 12.0
KIND = ElevatorPopulation.kind.name  # the physics studied here: its kind and parts
DOOR, BRAKE = ElevatorPopulation.components
PRECURSOR_BIN = 0.02  # parts compared at the same wear within this
PRECURSOR_METRICS = ("door_close_time_s", "vibration_mm_s")  # the door's signals


def fault_hazard(seed: int = 7, buildings: int = 200, years: float = 6.0) -> dict[str, Any]:
    """Faults and random-fault failures per 100,000 trips by wear and by building type, and
    the readings before a random-fault failure against parts at the same wear."""
    pop = ElevatorPopulation(np.random.default_rng(seed), buildings)
    n_bins = len(WEAR_BINS) - 1
    comps = pop.components
    trips_in = {c: np.zeros(n_bins) for c in comps}
    faults_in = {c: np.zeros(n_bins) for c in comps}
    fatal_in = {c: np.zeros(n_bins) for c in comps}
    causes = {c: {"wear_out": 0, RANDOM_FAULT: 0} for c in comps}
    type_trips = {c: np.zeros(len(BUILDING_TYPES)) for c in comps}
    type_faults = {c: np.zeros(len(BUILDING_TYPES)) for c in comps}
    btype = pop.building_type[pop.group]
    # readings of the step before: (wear after that step, readings) per elevator
    last_wear = {c: pop.wear(c) for c in comps}
    last_readings: dict[str, np.ndarray] = {}
    before_fault: dict[str, list[tuple[float, float]]] = {m: [] for m in PRECURSOR_METRICS}
    reference: dict[str, list[tuple[float, float]]] = {m: [] for m in PRECURSOR_METRICS}
    for step in range(int(years * 365 * 24 / STEP_H)):
        wear0 = {c: pop.wear(c) for c in comps}
        failed0 = {c: pop.failed(c) for c in comps}
        usage0 = pop.usage.copy()
        per_trip = {c: pop.own_wear(c, np.ones(pop.size)) for c in comps}  # at wear0
        frame = pop.advance(step * STEP_H, STEP_H)
        trips = pop.usage - usage0
        fault_failed = np.zeros(pop.size, bool)
        for c in comps:
            live = ~failed0[c]
            jump = pop.wear(c) - wear0[c] - per_trip[c] * trips
            fault = live & (jump > 1e-9)
            where = np.clip(np.digitize(wear0[c], WEAR_BINS) - 1, 0, n_bins - 1)
            np.add.at(trips_in[c], where[live], trips[live])
            np.add.at(faults_in[c], where[fault], 1)
            np.add.at(type_trips[c], btype[live], trips[live])
            np.add.at(type_faults[c], btype[fault], 1)
            for f in frame.failures:
                if f.component == c:
                    causes[c][f.cause] += 1
                    if f.cause == RANDOM_FAULT:
                        fatal_in[c][where[f.asset]] += 1
                        if c == DOOR:
                            fault_failed[f.asset] = True
        if last_readings:  # the last reading before the step, doors at wear 0.6-1
            door = last_wear[DOOR]
            worn = (door >= 0.6) & (door < 1.0) & ~failed0[DOOR]
            for m in PRECURSOR_METRICS:
                for i in np.flatnonzero(worn & fault_failed):
                    before_fault[m].append((float(door[i]), float(last_readings[m][i])))
                ok = worn & ~fault_failed & ~np.isnan(last_readings[m])
                reference[m].extend(zip(door[ok].tolist(), last_readings[m][ok].tolist(),
                                        strict=True))  # fmt: skip
        last_wear = {c: pop.wear(c) for c in comps}
        last_readings = {m: np.full(pop.size, np.nan) for m in PRECURSOR_METRICS}
        for m in PRECURSOR_METRICS:
            last_readings[m][frame.asset] = frame.metrics[m]
        for c in comps:
            for i in np.flatnonzero(pop.failed(c)):
                pop.renew(int(i), c)
    return {
        "seed": seed,
        "elevators": pop.size,
        "years": years,
        "wear_bins": list(WEAR_BINS),
        "per_100k_trips": {
            c: {
                "trips_m": [round(t / 1e6, 1) for t in trips_in[c]],
                "faults": _per_100k(faults_in[c], trips_in[c]),
                "random_fault_failures": _per_100k(fatal_in[c], trips_in[c]),
            }
            for c in comps
        },
        "faults_per_100k_trips_by_building": {
            c: dict(zip(BUILDING_TYPES, _per_100k(type_faults[c], type_trips[c]), strict=True))
            for c in comps
        },
        "failures_by_cause": causes,
        "door_readings_before_a_random_fault_failure": {
            m: _matched_difference(before_fault[m], reference[m]) for m in PRECURSOR_METRICS
        },
    }


def _per_100k(count: np.ndarray, trips: np.ndarray) -> list[float | None]:
    return [round(1e5 * n / t, 3) if t else None for n, t in zip(count, trips, strict=True)]


def _matched_difference(
    cases: list[tuple[float, float]], reference: list[tuple[float, float]]
) -> dict[str, float | int]:
    """Mean reading before a random-fault failure minus the mean reading of parts at the
    same wear (bins of ``PRECURSOR_BIN``) that did not fail, and the readings' spread."""
    ref = np.asarray(reference)
    bins = np.floor(ref[:, 0] / PRECURSOR_BIN).astype(int)
    sums = np.bincount(bins, weights=ref[:, 1])
    counts = np.bincount(bins)
    diffs = []
    for wear, value in cases:
        b = int(wear // PRECURSOR_BIN)
        if b < counts.shape[0] and counts[b]:
            diffs.append(value - sums[b] / counts[b])
    spread = float(np.std(ref[:, 1] - (sums / np.maximum(counts, 1))[bins]))
    d = np.asarray(diffs)
    return {
        "failures": int(d.size),
        "mean_difference": round(float(d.mean()), 4) if d.size else float("nan"),
        "standard_error": round(float(d.std() / np.sqrt(d.size)), 4) if d.size else float("nan"),
        "spread_at_same_wear": round(spread, 4),
    }


# --- what knowing the wear exactly would buy ----------------------------------------------


def run_known_wear(world: World, days: float, replace_at: dict[str, float]) -> StrategyResult:
    """Replace each part the moment its hidden wear reaches ``replace_at[component]``: no
    model, no lead time, no part to wait for (better than any policy the product can run)."""
    w = copy.deepcopy(world)
    result = StrategyResult(lives=w.lives)
    end_h = w.now_h + days * 24.0
    while w.now_h < end_h - 1e-9:
        w.step()
        for c in w.components:
            due = (w.population.wear(c) >= replace_at[c]) & ~w.population.failed(c)
            for asset in np.flatnonzero(due).tolist():
                w.replace_planned(asset, c)
    return result


def known_wear_frontier(
    seeds: list[int],
    door: tuple[float, ...] = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
    brake: tuple[float, ...] = (0.85, 0.9, 0.95),
    assets: int = 48,
    days: float = 365.0,
) -> dict[str, Any]:
    """Per pair of replacement wears: on how many of the evaluation fleets of ``seeds`` (built
    as ``fleetcare evaluate`` builds them) the target on every failure is met, the worst
    figures and the mean cost."""
    per_pair: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        intervals = preventive_intervals(run_tuning_fleet(KIND, seed + 2_000, assets, days))
        world = new_world(KIND, seed, assets, purpose=0)
        warm_up(world, seed)
        base = {
            s: summarise(KIND, run_strategy(world, s, days, intervals=intervals), days)
            for s in ("run_to_failure", "preventive")
        }
        for d in door:
            for b in brake:
                res = run_known_wear(world, days, {DOOR: d, BRAKE: b})
                pred = summarise(KIND, res, days)
                c = compare({**base, "predictive": pred})
                per_pair.setdefault(f"door {d}, brake {b}", []).append(
                    {"seed": seed, "failures": pred["failures"],
                     "random_faults": pred["failures_random_fault"],
                     "prevented": c["predictive_prevented_share_all_failures"],
                     "waste_vs_preventive": c["predictive_waste_vs_preventive"],
                     "total_eur": pred["total_eur"],
                     "run_to_failure_eur": base["run_to_failure"]["total_eur"]}
                )  # fmt: skip
    out = {}
    for pair, runs in per_pair.items():
        met = [
            r["prevented"] is not None
            and r["prevented"] >= TARGET_PREVENTED
            and r["waste_vs_preventive"] <= TARGET_WASTE_RATIO
            for r in runs
        ]
        out[pair] = {
            "fleets": len(runs),
            "target_met_all_failures": sum(met),
            "lowest_prevented": min(r["prevented"] for r in runs),
            "highest_waste_vs_preventive": max(r["waste_vs_preventive"] for r in runs),
            "mean_failures": round(float(np.mean([r["failures"] for r in runs])), 2),
            "mean_total_eur": round(float(np.mean([r["total_eur"] for r in runs]))),
        }
    return {"seeds": seeds, "pairs": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation.faults", description=__doc__)
    parser.add_argument("--hazard-seed", type=int, default=7)
    parser.add_argument("--buildings", type=int, default=200)
    parser.add_argument("--years", type=float, default=6.0)
    parser.add_argument("--frontier-seeds", default="", help="e.g. 1001-1010 ('' for none)")
    args = parser.parse_args(argv)
    print(json.dumps({"hazard": fault_hazard(args.hazard_seed, args.buildings, args.years)}))
    if args.frontier_seeds:
        first, _, last = args.frontier_seeds.partition("-")
        seeds = list(range(int(first), int(last or first) + 1))
        print(json.dumps({"known_wear_frontier": known_wear_frontier(seeds)}))


if __name__ == "__main__":
    main()
