"""Parts that join fleetcare mid-life: the evaluation can connect a fleet after its warm-up
(the readings before are not seen, the usage counters still count since fitted) and report
what the last prediction said before each failure."""

from __future__ import annotations

from evaluation.fleets import new_world, warm_up
from evaluation.run import last_predictions
from evaluation.strategies import FailureSeen


def test_a_fleet_connected_after_its_warm_up_shows_only_later_readings_with_its_counters() -> None:
    world = new_world("tire", 5, 12, purpose=0)
    warm_up(world, 5)
    before = int(world.log.count[0])
    usage = float(world.population.life_usage("tire")[0])
    assert world.log.life_rows(0, "tire")[0].shape[0] > 1  # type: ignore[index]
    world.log.connect()
    assert world.log.life_rows(0, "tire") is None  # nothing seen yet
    for _ in range(8):
        world.step()
    got = world.log.life_rows(0, "tire")
    assert got is not None
    rows, _ = got
    assert rows.shape[0] == int(world.log.count[0]) - before
    # the usage counter counts since the tire was fitted, not since the connection
    assert rows[0, 0] >= usage - 1e-6 and usage > 1_000
    assert world.log.joined["tire"][0]
    world.renew(0, "tire")
    assert not world.log.joined["tire"][0]


def test_the_last_prediction_before_each_failure_is_reported_per_kind_of_life() -> None:
    seen = [
        FailureSeen(True, False, 40_000.0, 9_000.0, 0.3),
        FailureSeen(True, False, 20_000.0, 1_000.0, 0.1),
        FailureSeen(True, False, None, None, None),  # failed before it was scored
        FailureSeen(True, True, 90_000.0, 50_000.0, 0.0),  # a random fault: not counted
        FailureSeen(False, False, 500.0, 0.0, 0.9),
    ]
    out = last_predictions(seen)
    assert out["joined"] == {
        "failures": 3, "never_scored": 1, "rul_median": 30_000.0, "rul_low_median": 5_000.0,
        "failure_probability_median": 0.2,
    }  # fmt: skip
    assert out["fitted_after"]["failures"] == 1 and out["fitted_after"]["rul_median"] == 500.0
