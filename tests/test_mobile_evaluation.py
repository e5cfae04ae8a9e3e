"""The mobile figures of `fleetcare evaluate`: carriers on their itineraries, the kind's trained
wear model, the product's policy and visit planner; the share of parts at the station before
the carrier counted from the shipments and the carriers' actual arrivals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from cli.main import app
from evaluation import carriers, strategies
from evaluation import run as ev
from evaluation.carriers import Airline, Flown
from evaluation.fleets import new_world
from evaluation.mobile import MOBILE_PURPOSE, Job, MobileRun, Shipment, evaluate_mobile
from evaluation.wear_model import WearModel
from kinds import loader
from maintenance.mobility import planning
from maintenance.policy import service as policy

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
runner = CliRunner()


@pytest.fixture(scope="module")
def engine_model() -> ev.KindSetup:
    """A small engine wear model and preventive interval, trained as `fleetcare evaluate`
    trains them (a few CPU-seconds less than half a minute)."""
    config = ev.EvaluationConfig(
        seed=101, assets=4, days=30.0, kinds=("engine",), jobs=1, training_lives=8
    )
    return ev.prepare_kind("engine", config, lambda _msg: None)


def _one_tail_run() -> MobileRun:
    world = new_world("engine", 5, 2, purpose=MOBILE_PURPOSE)
    sim = Airline()
    start = strategies.at(world.now_h)
    fleet = sim.schedule(5, 1, 8, start)
    model = cast(WearModel, None)  # never asked: the test places the orders itself
    return MobileRun(world, sim, fleet, start, 8, "predictive", model, {"hpc_module": 100.0})


def test_the_share_counts_real_shipments_against_the_actual_arrival() -> None:
    run = _one_tail_run()
    shops = set(run.stations)
    legs = [leg for leg in run.fleet[0].travelled() if leg.to_site_id in shops]

    def stop(leg: Any) -> timedelta:
        return cast(timedelta, (run.next_departure[leg.id] or leg.arrives) - leg.arrives)

    night = max(legs, key=stop)
    assert stop(night) > timedelta(hours=9)
    short = next(leg for leg in legs if stop(leg) < timedelta(hours=2))

    def order(asset: int, leg: Any, eta: Any, site: int | None = None) -> Job:
        job = Job(asset, "hpc_module", 0, leg.arrives + timedelta(days=3), leg.arrives)
        job.visit = planning.Visit(leg.to_site_id, leg.id, leg.arrives, run.next_departure[leg.id])
        job.shipment = Shipment(1, leg.to_site_id if site is None else site, eta)
        run.jobs[(asset, "hpc_module")] = job
        return job

    # the part is there an hour before the tail: in time
    order(0, short, short.arrives - timedelta(hours=1))
    run.arrive(Flown(0, short))
    assert (run.tally.jobs, run.tally.before_arrival, run.tally.aog_hours) == (1, 1, 0.0)
    # five hours after the tail at a one-hour turnaround: late, the tail waits for it
    order(1, short, short.arrives + timedelta(hours=5))
    run.arrive(Flown(0, night))  # another leg: nothing is done there
    assert run.tally.jobs == 1 and (1, "hpc_module") in run.jobs
    run.arrive(Flown(0, short))
    assert (run.tally.jobs, run.tally.before_arrival) == (2, 1)
    assert run.tally.aog_hours == pytest.approx(5.0)
    assert run.tally.late == {"raised with a visit in time, no change since": 1}
    # ten minutes after the tail lands for the night: not before it, but in time for the work
    order(0, night, night.arrives + timedelta(minutes=10))
    run.arrive(Flown(0, night))
    assert (run.tally.jobs, run.tally.before_arrival, run.tally.in_time_for_work) == (3, 1, 2)
    assert run.tally.aog_hours == pytest.approx(5.0)
    # a part sent to another station does not count: the fastest lane from now on
    elsewhere = next(s for s in shops if s != short.to_site_id)
    order(1, short, short.arrives - timedelta(hours=3), site=elsewhere)
    run.arrive(Flown(0, short))
    assert (run.tally.jobs, run.tally.before_arrival) == (4, 1)
    assert run.tally.aog_hours == pytest.approx(5.0 + run.net.fastest_hours(short.to_site_id))
    figures = run.tally.figures("engine")
    assert figures["parts_in_time_share"] == 0.25 and figures["planned_jobs"] == 4


def test_predictive_scores_with_the_trained_model_and_decides_with_the_product(
    engine_model: ev.KindSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, int] = {"predict": 0, "due_state": 0, "deadline": 0, "plan": 0}
    bundle = engine_model.model.bundle
    real_predict, real_state = bundle.predict, policy.next_due_state
    real_deadline, real_plan = planning.order_deadline, planning.plan_visit

    def count(name: str, real: Any) -> Any:
        def spy(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return spy

    monkeypatch.setattr(bundle, "predict", count("predict", real_predict))
    monkeypatch.setattr(policy, "next_due_state", count("due_state", real_state))
    monkeypatch.setattr(planning, "order_deadline", count("deadline", real_deadline))
    monkeypatch.setattr(planning, "plan_visit", count("plan", real_plan))
    figures = evaluate_mobile(
        "engine", engine_model.model, engine_model.intervals, seed=7, carriers=4, days=60
    )
    assert all(calls.values()), calls
    s = figures["strategies"]
    predictive, preventive, rtf = s["predictive"], s["preventive"], s["run-to-failure"]
    assert rtf["planned_jobs"] == 0 and rtf["failures"] > predictive["failures"]
    assert predictive["planned_jobs"] > 0 and predictive["orders_raised"] >= predictive[
        "planned_jobs"]  # fmt: skip
    share = predictive["parts_at_station_before_arrival"] / predictive["planned_jobs"]
    assert predictive["parts_in_time_share"] == round(share, 4)
    assert preventive["parts_in_time_share"] == 1.0  # shipped to the home base ahead
    assert predictive["aog_hours_waiting_for_parts"] < rtf["aog_hours_waiting_for_parts"]
    assert figures["assumptions"]["parts_stores"] == ["HAM", "VIE"]
    again = evaluate_mobile(
        "engine", engine_model.model, engine_model.intervals, seed=7, carriers=4, days=60
    )
    assert again == figures


def test_whether_a_kind_is_mobile_is_its_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="not mobile"):
        evaluate_mobile("elevator", cast(WearModel, None), {}, seed=1)
    real = loader.builtin_kinds()
    grounded = {k: v.model_copy(update={"mobile": False}) for k, v in real.items()}
    monkeypatch.setattr(loader, "builtin_kinds", lambda: grounded)
    result = runner.invoke(app, ["evaluate", "--kinds", "engine,tire", "--mobile-only"])
    assert result.exit_code == 2 and "none of engine, tire is a mobile kind" in result.output
    # the carrier that moves a kind comes from its physics, not its name
    assert carriers.simulation_for(new_world("tire", 1, 6, purpose=1).population) is not None
    assert carriers.simulation_for(new_world("elevator", 1, 4, purpose=1).population) is None
