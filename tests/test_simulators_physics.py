"""Physics of wear: determinism, monotone wear, failure exactly at the limit, and the
conditions that drive wear. Pure: no database, no broker."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fleetcare.clock import SystemClock
from kinds.loader import builtin_kinds
from simulators.fleet import Fleet
from simulators.physics import (
    RANDOM_FAULT,
    TREAD_LIMIT_MM,
    WEAR_LIMIT,
    WEAR_OUT,
    ElevatorPopulation,
    EnginePopulation,
    Population,
    TirePopulation,
    make_population,
)
from simulators.schemas import FleetSpec
from simulators.worker import FleetRunner

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def run_fleet(spec: FleetSpec, ticks: int) -> tuple[Fleet, list[tuple[str, bytes]]]:
    """A fleet and every payload it produces over ``ticks`` one-second ticks of a fixed clock."""
    fleet = Fleet(spec)
    now = START
    fleet.start(now)
    out: list[tuple[str, bytes]] = []
    for _ in range(ticks):
        now += timedelta(seconds=1)
        fleet.advance_to(now)
        payloads, _offline = fleet.payloads(now.timestamp(), 1.0)
        out.extend(payloads)
    return fleet, out


def test_same_seed_gives_the_same_fleet_and_telemetry() -> None:
    spec = FleetSpec(tires=12, elevators=6, engines=4, seed=42, speedup=40_000)
    (fleet_1, first), (fleet_2, second) = run_fleet(spec, 25), run_fleet(spec, 25)
    assert len(first) > 20
    assert first == second
    assert fleet_1.assets == fleet_2.assets and fleet_1.devices == fleet_2.devices
    _, other = run_fleet(spec.model_copy(update={"seed": 43}), 25)
    assert other != first


def test_every_metric_is_read_soon_after_the_warm_up() -> None:
    """The fleet restarts its clock after the warm-up: schedules kept by the population (a
    truck's next depot visit, where tread is read) move with it, or the first tread reading
    would come a simulated year late and no tire could be scored."""
    spec = FleetSpec(tires=12, seed=1, speedup=20_000, faults=False)
    fleet, payloads = run_fleet(spec, 60)  # 60 s at 20,000x: ~14 simulated days
    seen: dict[str, set[str]] = {}
    for _topic, payload in payloads:
        for r in json.loads(payload)["readings"]:
            seen.setdefault(r["asset"], set()).update(r["metrics"])
    tires = [a.ref for a in fleet.assets if a.kind == "tire"]
    assert tires and all("tread_depth_mm" in seen.get(ref, set()) for ref in tires)


def test_payloads_follow_the_telemetry_contract() -> None:
    spec = FleetSpec(tires=6, elevators=3, engines=2, seed=3, speedup=40_000, faults=False)
    fleet, payloads = run_fleet(spec, 20)
    owned = {d.ref: set(d.assets) for d in fleet.devices}
    seen_kinds = set()
    for device, payload in payloads:
        body = json.loads(payload)
        assert set(body) == {"readings"}
        assert 0 < len(body["readings"]) <= spec.batch_max
        for reading in body["readings"]:
            assert reading["asset"] in owned[device]
            assert isinstance(reading["ts"], int | str)
            kind = builtin_kinds()[next(a.kind for a in fleet.assets if a.ref == reading["asset"])]
            seen_kinds.add(kind.name)
            for name, value in reading["metrics"].items():
                metric = kind.metric(name)
                assert metric.low <= value <= metric.high, (name, value)
    assert seen_kinds == {"tire", "elevator", "engine"}


def _lifetimes(population: Population, hours: float, step: float) -> list[dict[str, np.ndarray]]:
    """Snapshots of wear/usage/failed per component after each step, renewing nothing."""
    snaps = []
    h = 0.0
    while h < hours:
        frame = population.advance(h, step)
        h += step
        snap: dict[str, np.ndarray] = {"usage": population.usage.copy()}
        for c in (c.name for c in population.kind.components):
            snap[f"wear:{c}"] = population.wear(c)
            snap[f"failed:{c}"] = population.failed(c)
            snap[f"life:{c}"] = population.life_usage(c)
        snap["failures"] = np.array([(f.asset, f.component) for f in frame.failures], dtype=object)
        snaps.append(snap)
    return snaps


POPULATIONS = [
    pytest.param(lambda: TirePopulation(np.random.default_rng(1), 8, 6), 24 * 900, 6.0, id="tire"),
    pytest.param(
        lambda: ElevatorPopulation(np.random.default_rng(2), 6, 3), 24 * 1500, 12.0, id="elevator"
    ),
    pytest.param(
        lambda: EnginePopulation(np.random.default_rng(3), 10, 2), 24 * 120, 6.0, id="engine"
    ),
]


@pytest.mark.parametrize(("make", "hours", "step"), POPULATIONS)
def test_wear_is_monotone_in_usage(
    make: Callable[[], Population], hours: float, step: float
) -> None:
    population = make()
    snaps = _lifetimes(population, hours, step)
    for c in (c.name for c in population.kind.components):
        wear = np.array([s[f"wear:{c}"] for s in snaps])
        life = np.array([s[f"life:{c}"] for s in snaps])
        assert np.all(np.diff(life, axis=0) >= 0), "usage never goes back within a life"
        assert np.all(np.diff(wear, axis=0) >= -1e-12), "wear never goes back within a life"
        used = np.diff(life, axis=0) > 0
        assert used.sum() > 100
        assert np.all(np.diff(wear, axis=0)[used] > 0), "using a component wears it"
        idle = np.diff(life, axis=0) == 0
        # no usage, no wear (a parked truck, an idle elevator, a grounded aircraft)
        assert np.allclose(np.diff(wear, axis=0)[idle], 0.0)


@pytest.mark.parametrize(("make", "hours", "step"), POPULATIONS)
def test_fails_when_and_only_when_the_limit_is_crossed(
    make: Callable[[], Population], hours: float, step: float
) -> None:
    population = make()
    snaps = _lifetimes(population, hours, step)
    components = [c.name for c in population.kind.components]
    failures = 0
    before = {c: np.zeros(population.size, bool) for c in components}
    for snap in snaps:
        reported = {(int(a), str(c)) for a, c in snap["failures"]}
        for c in components:
            wear, failed = snap[f"wear:{c}"], snap[f"failed:{c}"]
            assert np.all(failed == (wear >= WEAR_LIMIT)), "failed exactly when wear reached 1"
            newly = set(np.flatnonzero(failed & ~before[c]).tolist())
            assert newly == {a for a, comp in reported if comp == c}
            failures += len(newly)
            before[c] = failed
    # a failure grounds its truck or aircraft, so count at least one per group
    groups = len(set(population.group.tolist()))
    assert failures >= groups, "the test ran long enough to see failures"


def test_a_tire_fails_at_the_tread_limit_or_by_blowout() -> None:
    tires = TirePopulation(np.random.default_rng(11), 6, 6)
    modes: dict[str, int] = {}
    h = 0.0
    while h < 24 * 900:
        frame = tires.advance(h, 6.0)
        h += 6.0
        for f in frame.failures:
            modes[f.mode] = modes.get(f.mode, 0) + 1
            if f.mode == "tread_worn":
                assert tires.tread[f.asset] <= TREAD_LIMIT_MM
            else:
                assert tires.carcass[f.asset] >= WEAR_LIMIT
            tires.renew(f.asset)
    assert modes.get("tread_worn", 0) > 20


def _wear_per_km(tires: TirePopulation) -> np.ndarray:
    """Tread worn per km by each tire over one working day (Monday)."""
    before, km_before = tires.tread.copy(), tires.usage.copy()
    tires.advance(0.0, 24.0)
    return (before - tires.tread) / (tires.usage - km_before)


def test_tire_wear_per_km_rises_with_load_under_inflation_speed_road_and_heat() -> None:
    base = TirePopulation(np.random.default_rng(5), 20, 6)
    base.load_factor[:] = 0.4
    base.road[:] = 1

    def variant(change: Callable[[TirePopulation], object]) -> np.ndarray:
        tires = copy.deepcopy(base)  # same random draws: only ``change`` differs
        change(tires)
        return _wear_per_km(tires)

    reference = variant(lambda t: None)
    assert np.all(np.isfinite(reference)) and np.all(reference > 0)
    drive = base.position >= 2
    loaded = variant(lambda t: t.load_factor.__setitem__(slice(None), 1.0))
    assert np.all(loaded[drive] > reference[drive] * 1.5)
    soft = variant(lambda t: t.pressure_cold.__setitem__(slice(None), 0.7 * t.nominal_pressure))
    assert np.all(soft > reference * 1.3)
    rough = variant(lambda t: t.road.__setitem__(slice(None), 3))
    assert np.all(rough > reference * 2.0)
    smooth = variant(lambda t: t.road.__setitem__(slice(None), 0))
    assert np.all(smooth < reference)
    fast = variant(lambda t: t.driver_pace.__setitem__(slice(None), 1.3))
    assert np.all(fast > reference)
    hot = variant(lambda t: t.ambient_c.__setitem__(slice(None), 45.0))  # desert summer
    assert np.all(hot >= reference) and hot.mean() > reference.mean() * 1.05


def test_elevator_sensors_drift_with_wear() -> None:
    lifts = ElevatorPopulation(np.random.default_rng(8), 10, 3)
    first = lifts.advance(0.0, 24.0)
    lifts._wear["door_operator"][:] = 0.9
    lifts._wear["brake"][:] = 0.9
    worn = lifts.advance(24.0, 1.0)
    assert (
        worn.metrics["door_close_time_s"].mean() > first.metrics["door_close_time_s"].mean() + 1.5
    )
    assert worn.metrics["vibration_mm_s"].mean() > first.metrics["vibration_mm_s"].mean() + 1.5
    assert (
        np.abs(worn.metrics["levelling_error_mm"]).mean()
        > np.abs(first.metrics["levelling_error_mm"]).mean()
    )
    assert worn.metrics["brake_wear_pct"].mean() > 75


def test_an_elevator_failure_says_whether_a_random_fault_or_the_wear_caused_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from simulators.physics import elevator

    lifts = ElevatorPopulation(np.random.default_rng(21), 40, 3)
    causes: dict[str, int] = {}
    lowest_fault_wear = {"door_operator": 1.0, "brake": 1.0}
    h = 0.0
    while h < 24 * 1500 and causes.get(RANDOM_FAULT, 0) < 15:
        # the same step without faults (trips are drawn before the faults): the wear alone
        twin = copy.deepcopy(lifts)
        with monkeypatch.context() as m:
            m.setattr(elevator, "_DOOR_FAULT_TRIPS", np.inf)
            m.setattr(elevator, "_BRAKE_FAULT_TRIPS", np.inf)
            twin.advance(h, 12.0)
        before = {c: lifts.wear(c) for c in lifts.components}
        frame = lifts.advance(h, 12.0)
        h += 12.0
        for f in frame.failures:
            causes[f.cause] = causes.get(f.cause, 0) + 1
            worn_alone = twin.wear(f.component)[f.asset] >= WEAR_LIMIT
            assert f.cause == (WEAR_OUT if worn_alone else RANDOM_FAULT)
            if f.cause == RANDOM_FAULT:
                wear = before[f.component][f.asset]
                lowest_fault_wear[f.component] = min(lowest_fault_wear[f.component], wear)
            lifts.renew(f.asset, f.component)
    assert causes.get(WEAR_OUT, 0) > 50 and causes.get(RANDOM_FAULT, 0) >= 15
    # a fault's jump (door 0.1-0.4, brake 0.05-0.2 of a life) ends only a worn part
    assert lowest_fault_wear["door_operator"] >= 0.6
    assert lowest_fault_wear["brake"] >= 0.8
    # the other kinds have no random faults
    tires = TirePopulation(np.random.default_rng(3), 6, 6)
    for step in range(4000):
        assert all(f.cause == WEAR_OUT for f in tires.advance(step * 6.0, 6.0).failures)


def test_engine_sensors_follow_the_c_mapss_degradation_trend() -> None:
    engines = EnginePopulation(np.random.default_rng(4), 30, 2)
    t50, damage, regimes = [], [], []
    h = 0.0
    while h < 24 * 40:
        frame = engines.advance(h, 6.0)
        h += 6.0
        t50.extend(frame.metrics["t50_r"].tolist())
        damage.extend(engines.damage[frame.asset].tolist())
        regimes.extend(frame.metrics["altitude_kft"].round().tolist())
    t50_a, damage_a, regimes_a = np.array(t50), np.array(damage), np.array(regimes)
    assert len(set(regimes_a.tolist())) == 6, "six operating conditions"
    cruise = regimes_a == 42
    assert np.corrcoef(damage_a[cruise], t50_a[cruise])[0, 1] > 0.5, "EGT rises as the HPC degrades"


@pytest.mark.parametrize("kind", ["tire", "elevator", "engine"])
def test_expected_rul_tracks_the_true_remaining_life(kind: str) -> None:
    population = make_population(kind, np.random.default_rng(9), 10, 3)
    component = population.kind.components[0].name
    history: list[tuple[np.ndarray, np.ndarray]] = []  # (life usage, expected RUL) per step
    ratios: list[float] = []
    h = 0.0
    while len(ratios) < 15 and h < 24 * 3000:
        frame = population.advance(h, 6.0)
        h += 6.0
        for f in frame.failures:
            if f.component != component:
                continue
            life = population.life_usage(component)[f.asset]
            # the snapshot nearest to mid-life: expected against the actual remaining life
            used = np.array([u[f.asset] for u, _ in history])
            mid = int(np.argmin(np.abs(used - life / 2)))
            ratios.append(float(history[mid][1][f.asset] / (life - used[mid])))
        for f in frame.failures:
            population.renew(f.asset, f.component)
            history = [(u.copy(), r.copy()) for u, r in history]
            for u, r in history:
                u[f.asset], r[f.asset] = np.inf, np.nan  # that life is over
        history.append((population.life_usage(component), population.expected_rul(component)))
    assert len(ratios) >= 15
    assert 0.7 < float(np.median(ratios)) < 1.4, ratios


class RecordingLink:
    """A stand-in for a device's MQTT connection that keeps what it is asked to publish."""

    def __init__(self) -> None:
        self.active = False
        self.payloads: list[bytes] = []

    def connect(self, timeout: float = 10.0) -> None:
        self.active = True

    def publish(self, payload: bytes) -> None:
        self.payloads.append(payload)

    def disconnect(self, *, send_will: bool = False, timeout: float = 30.0) -> None:
        self.active = False


def _values_of_a_real_time_run(spec: FleetSpec) -> list[tuple[str, dict[str, float]]]:
    fleet = Fleet(spec)
    links = {ref: RecordingLink() for ref in fleet.gateways}
    runner = FleetRunner(fleet, links, SystemClock())
    runner.open()
    runner.run(threading.Event(), duration_s=1.0)
    runner.close()
    out = []
    for link in links.values():
        for payload in link.payloads:
            out += [(r["asset"], r["metrics"]) for r in json.loads(payload)["readings"]]
    return out


def test_same_seed_same_telemetry_on_the_real_clock() -> None:
    """Ticks run on a fixed grid, so scheduling jitter does not change the readings."""
    spec = FleetSpec(
        tires=6, elevators=3, engines=2, seed=11, speedup=50_000, tick_s=0.1, warmup=False
    )
    first, second = _values_of_a_real_time_run(spec), _values_of_a_real_time_run(spec)
    assert len(first) > 50
    assert first == second
