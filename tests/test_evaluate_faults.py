"""evaluation.faults: the elevators' random faults measured on simulated lives."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation import faults


def test_faults_arrive_per_trip_whatever_the_wear_and_end_only_worn_parts() -> None:
    h = faults.fault_hazard(seed=3, buildings=40, years=4.0)
    bins = h["wear_bins"]
    for component, limit in (("door_operator", 0.6), ("brake", 0.8)):
        per = h["per_100k_trips"][component]
        # the physics draws a fault every 400,000 trips (door) / 800,000 (brake), flat in wear:
        # each bin's count within 4 standard deviations of a Poisson count at that rate
        per_trip = 1 / (400_000 if component == "door_operator" else 800_000)
        trips = np.array(per["trips_m"]) * 1e6
        counts = np.array(per["faults"]) * trips / 1e5
        expected = trips * per_trip
        assert np.all(np.abs(counts - expected) <= 4 * np.sqrt(expected) + 1)
        fatal = per["random_fault_failures"]
        below = [f for lo, f in zip(bins[:-1], fatal, strict=True) if lo < limit]
        assert all(f == 0 for f in below)  # a jump of at most 0.4 (0.2) cannot end it
        assert fatal[-1] > 0 and fatal[-1] >= max(fatal[:-1])  # the worn part dies of it
        assert h["failures_by_cause"][component]["random_fault"] > 0
    for rate in h["faults_per_100k_trips_by_building"]["door_operator"].values():
        assert rate == pytest.approx(0.25, rel=0.5)
    close = h["door_readings_before_a_random_fault_failure"]["door_close_time_s"]
    assert close["failures"] > 5
    # nothing tells the door about to fail apart from doors at the same wear
    assert abs(close["mean_difference"]) < 0.5 * close["spread_at_same_wear"]


def test_the_known_wear_frontier_judges_every_failure() -> None:
    out = faults.known_wear_frontier([5], door=(0.8, 1.01), brake=(1.01,), assets=6, days=60)
    late, early = out["pairs"]["door 1.01, brake 1.01"], out["pairs"]["door 0.8, brake 1.01"]
    assert late["fleets"] == early["fleets"] == 1
    # never replacing is run to failure: nothing prevented, nothing wasted
    assert late["lowest_prevented"] == 0.0 and late["highest_waste_vs_preventive"] == 0.0
    assert early["mean_failures"] <= late["mean_failures"]
    assert early["highest_waste_vs_preventive"] > 0
