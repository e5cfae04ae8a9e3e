"""A simulated fleet: populations of wearing assets behind their gateways, on a real clock.

``Fleet`` is deterministic given its spec: the same seed gives the same sites, assets,
gateways, wear and readings for the same sequence of clock times. It knows nothing of MQTT
or the database; ``simulators.service`` registers it and ``simulators.worker`` runs it.

Time: real time drives the fleet; simulated time runs ``speedup`` times faster, so wear that
takes a year shows in minutes while readings carry real (current) timestamps. Long steps are
split into sub-steps of at most ``MAX_STEP_H`` simulated hours, each giving a reading.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from kinds.schemas import KindDefinition
from simulators.devices import FaultRates, Gateway, GatewayBehaviour, SensorFaults
from simulators.generic import TYPICAL_LIFE_DAYS, GenericPopulation
from simulators.physics import (
    BUILDING_TYPES,
    ROAD_TYPES,
    ElevatorPopulation,
    EnginePopulation,
    FloatArray,
    Population,
    TirePopulation,
    reported_cause,
)
from simulators.replay import CmapssUnit, ReplayPopulation
from simulators.schemas import (
    ELEVATORS_PER_BUILDING,
    ENGINES_PER_AIRCRAFT,
    TIRES_PER_TRUCK,
    AssetRef,
    DeviceRef,
    FleetSpec,
    LifeEnd,
    SiteRef,
    TruthRow,
)

MAX_STEP_H = 6.0
TIRE_POSITIONS = ("FL", "FR", "RLO", "RLI", "RRO", "RRI")
# decimals each metric is sent with (a sensor's resolution); replayed data is sent as is
DECIMALS: dict[str, int] = {
    "pressure_kpa": 1, "temperature_c": 1, "load_kg": 0, "speed_kmh": 1, "tread_depth_mm": 2,
    "odometer_km": 3, "door_close_time_s": 3, "motor_current_a": 2, "vibration_mm_s": 3,
    "levelling_error_mm": 2, "brake_wear_pct": 2, "trip_count": 0, "flight_cycles": 0,
}  # fmt: skip
ENGINE_DECIMALS = 4
# simulated days of operation before the fleet is registered, so that ages are mixed
WARMUP_DAYS = {"tire": 330.0, "elevator": 330.0, "engine": 45.0}
GENERIC_WARMUP_DAYS = 0.9 * TYPICAL_LIFE_DAYS  # a kind simulated from its definition alone
GENERIC_PER_GROUP = 4  # assets of such a kind behind one gateway


def ms_of(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return round(when.timestamp() * 1000.0)


def at_ms(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000.0, UTC)


def hour_of_week(when: datetime) -> float:
    """Hours since the Monday 00:00 (UTC) before ``when``."""
    utc = when.astimezone(UTC)
    return utc.weekday() * 24.0 + utc.hour + utc.minute / 60.0 + utc.second / 3600.0


@dataclass
class KindFleet:
    """One kind's population with its refs, gateways, sensor faults and life bookkeeping."""

    kind: str
    population: Population
    refs: list[str]
    gateway_of: list[str]
    faults: SensorFaults
    exact: bool = False  # replayed data: sent without rounding
    life_start_h: dict[str, FloatArray] = field(default_factory=dict)
    life_start_usage: dict[str, FloatArray] = field(default_factory=dict)
    repair_due_h: dict[tuple[int, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for c in self.components:
            self.life_start_h[c] = np.zeros(self.population.size)
            self.life_start_usage[c] = self.population.usage.copy()

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.population.kind.components)


@dataclass
class FleetStep:
    """What happened during one advance: the lives that ended, and how many readings."""

    life_ends: list[LifeEnd] = field(default_factory=list)
    readings: int = 0


def _readings(names: tuple[str, ...], columns: list[FloatArray]) -> list[dict[str, float]]:
    """One ``{metric: value}`` per row, leaving out NaN (not measured, or dropped out).

    Rows are grouped by which metrics they carry so that each dict is built by ``zip``."""
    values = np.column_stack(columns)
    missing = np.isnan(values)
    out: list[dict[str, float]] = [{}] * values.shape[0]
    if not missing.any():
        return [dict(zip(names, row, strict=True)) for row in values.tolist()]
    pattern = missing @ (1 << np.arange(len(names), dtype=np.int64))
    for key in np.unique(pattern).tolist():
        rows = np.flatnonzero(pattern == key)
        keep = [j for j in range(len(names)) if not (key >> j) & 1]
        present = tuple(names[j] for j in keep)
        for i, row in zip(
            rows.tolist(),
            values[np.ix_(rows, np.array(keep, dtype=np.int64))].tolist(),
            strict=True,
        ):
            out[i] = dict(zip(present, row, strict=True))
    return out


class Fleet:
    """Everything simulated for one customer: sites, assets, gateways, and their physics."""

    def __init__(
        self,
        spec: FleetSpec,
        *,
        cmapss_units: list[CmapssUnit] | None = None,
        behaviour: GatewayBehaviour | None = None,
        fault_rates: FaultRates | None = None,
        history: bool = False,
        definitions: Mapping[str, KindDefinition] | None = None,
    ) -> None:
        """``definitions``: the definition of every kind in ``spec.other`` (read from the
        database), which the generic degradation process simulates."""
        self.spec = spec
        self.history = history
        self.seeds = np.random.SeedSequence(spec.seed).spawn(8)
        self.behaviour = behaviour or GatewayBehaviour(batch_max=spec.batch_max)
        if behaviour is None and not spec.offline:
            self.behaviour.offline_per_hour = 0.0
        self.fault_rates = fault_rates or (FaultRates() if spec.faults else FaultRates.none())
        self.sites: list[SiteRef] = []
        self.assets: list[AssetRef] = []
        self.devices: list[DeviceRef] = []
        self.gateways: dict[str, Gateway] = {}
        self.kinds: dict[str, KindFleet] = {}
        self._where: dict[str, tuple[str, int]] = {}  # asset ref -> (kind, index)
        # history assets and devices are apart from the live ones: H-TRK-001-FL, <slug>-h-trk-001
        self._slug = spec.customer[:40] + ("-h" if history else "")
        self._prefix = "H-" if history else ""
        self._gateway_seeds = iter(
            self.seeds[7].spawn(spec.trucks + spec.buildings + spec.aircraft)
        )
        if spec.tires:
            self._add_tires()
        if spec.elevators:
            self._add_elevators()
        if spec.engines:
            self._add_engines(cmapss_units)
        for i, (kind, count) in enumerate(sorted(spec.other.items())):
            if count:
                definition = (definitions or {}).get(kind)
                if definition is None:
                    raise KeyError(f"no definition of kind {kind!r} to simulate it with")
                self._add_generic(definition, count, i)
        self._warmup_rng = np.random.default_rng(self.seeds[6])
        self.sim_h = 0.0
        self.observed = True  # False: physics only, no sensor readings (dry runs)
        self.max_step_h = MAX_STEP_H  # longest sub-step (one reading per asset each)
        self.anchor_ms: int | None = None
        self.anchor_h = 0.0
        if spec.warmup:
            self._warm_up()

    def _add_gateways(
        self,
        kind: str,
        refs: list[str],
        per: int,
        names: list[tuple[str, str]],
        seeds: Iterator[np.random.SeedSequence] | None = None,
    ) -> list[str]:
        """One gateway per ``per`` assets; return each asset's gateway."""
        seeds = seeds or self._gateway_seeds
        gateway_of: list[str] = []
        for g, (device_ref, device_name) in enumerate(names):
            mine = tuple(refs[g * per : (g + 1) * per])
            self.devices.append(DeviceRef(ref=device_ref, name=device_name, kind=kind, assets=mine))
            rng = np.random.default_rng(next(seeds))
            self.gateways[device_ref] = Gateway(device_ref, mine, rng, self.behaviour)
            gateway_of.extend([device_ref] * per)
        return gateway_of

    def _add_tires(self) -> None:
        """Trucks of six tires at one depot, each truck with a TPMS gateway."""
        trucks, per = self.spec.trucks, TIRES_PER_TRUCK
        tires = TirePopulation(np.random.default_rng(self.seeds[0]), trucks, per)
        self.sites.append(SiteRef(ref="DEPOT-1", name="Truck depot", region="north"))
        refs = [
            f"{self._prefix}TRK-{t + 1:03d}-{TIRE_POSITIONS[p]}"
            for t in range(trucks)
            for p in range(per)
        ]
        names = [
            (f"{self._slug}-trk-{t + 1:03d}", f"Truck {t + 1} TPMS gateway") for t in range(trucks)
        ]
        gateway_of = self._add_gateways("tire", refs, per, names)
        for i, ref in enumerate(refs):
            attrs: dict[str, str | int | float] = {
                "position": TIRE_POSITIONS[i % per],
                "truck": f"TRK-{i // per + 1:03d}",
                "road_type": ROAD_TYPES[int(tires.road[tires.group[i]])],
            }
            self.assets.append(
                AssetRef(
                    ref=ref, kind="tire", site="DEPOT-1", device=gateway_of[i], attributes=attrs
                )
            )
        faults_rng = np.random.default_rng(self.seeds[3])
        faults = SensorFaults(tires.kind, tires.size, faults_rng, self.fault_rates)
        self._add_kind("tire", tires, refs, gateway_of, faults)

    def _add_elevators(self) -> None:
        """Buildings of three elevators, each building a site with one controller gateway."""
        buildings, per = self.spec.buildings, ELEVATORS_PER_BUILDING
        lifts = ElevatorPopulation(np.random.default_rng(self.seeds[1]), buildings, per)
        refs: list[str] = []
        names: list[tuple[str, str]] = []
        for b in range(buildings):
            btype = BUILDING_TYPES[int(lifts.building_type[b])]
            name = f"{btype.title()} building {b + 1}"
            self.sites.append(SiteRef(ref=f"BLDG-{b + 1:02d}", name=name, region="central"))
            names.append(
                (f"{self._slug}-bldg-{b + 1:02d}", f"Building {b + 1} elevator controller")
            )
            refs.extend(f"{self._prefix}B{b + 1:02d}-E{j + 1}" for j in range(per))
        gateway_of = self._add_gateways("elevator", refs, per, names)
        for i, ref in enumerate(refs):
            b = i // per
            attrs: dict[str, str | int | float] = {
                "building_type": BUILDING_TYPES[int(lifts.building_type[b])]
            }
            site = f"BLDG-{b + 1:02d}"
            self.assets.append(
                AssetRef(
                    ref=ref, kind="elevator", site=site, device=gateway_of[i], attributes=attrs
                )
            )
        faults_rng = np.random.default_rng(self.seeds[4])
        faults = SensorFaults(lifts.kind, lifts.size, faults_rng, self.fault_rates)
        self._add_kind("elevator", lifts, refs, gateway_of, faults)

    def _add_engines(self, cmapss_units: list[CmapssUnit] | None) -> None:
        """Aircraft with two engines each at one hub: synthetic physics or C-MAPSS replay."""
        aircraft, per = self.spec.aircraft, ENGINES_PER_AIRCRAFT
        engines: Population
        if cmapss_units is not None:
            engines = ReplayPopulation(cmapss_units, aircraft, per)
        else:
            engines = EnginePopulation(np.random.default_rng(self.seeds[2]), aircraft, per)
        self.sites.append(SiteRef(ref="HUB-1", name="Maintenance hub", region="west"))
        refs = [
            f"{self._prefix}AC-{a + 1:03d}-E{j + 1}" for a in range(aircraft) for j in range(per)
        ]
        names = [
            (f"{self._slug}-ac-{a + 1:03d}", f"Aircraft {a + 1} engine monitoring unit")
            for a in range(aircraft)
        ]
        gateway_of = self._add_gateways("engine", refs, per, names)
        for i, ref in enumerate(refs):
            attrs: dict[str, str | int | float] = {
                "position": i % per + 1,
                "aircraft": f"AC-{i // per + 1:03d}",
            }
            if isinstance(engines, ReplayPopulation):
                attrs["cmapss_unit"] = engines.units[int(engines.unit_of[i])].unit
            self.assets.append(
                AssetRef(
                    ref=ref, kind="engine", site="HUB-1", device=gateway_of[i], attributes=attrs
                )
            )
        # replayed data is the recorded truth: no simulated sensor faults on top
        rates = self.fault_rates if cmapss_units is None else FaultRates.none()
        faults = SensorFaults(
            engines.kind, engines.size, np.random.default_rng(self.seeds[5]), rates
        )
        self._add_kind("engine", engines, refs, gateway_of, faults, exact=cmapss_units is not None)

    def _add_generic(self, kind: KindDefinition, count: int, index: int) -> None:
        """Assets of a kind without physics of its own, four per gateway at one site."""
        per = GENERIC_PER_GROUP
        groups = -(-count // per)
        population = GenericPopulation(
            kind, np.random.default_rng([self.spec.seed, 100 + index]), groups, per
        )
        tag = kind.name.upper().replace("_", "-")[:20]
        site = f"SITE-{tag}"
        self.sites.append(SiteRef(ref=site, name=f"{kind.display_name} site", region="east"))
        refs = [f"{self._prefix}{tag}-{i + 1:03d}" for i in range(population.size)]
        names = [
            (f"{self._slug}-{tag.lower()}-{g + 1:03d}", f"{kind.display_name} gateway {g + 1}")
            for g in range(groups)
        ]
        seeds = iter(np.random.SeedSequence([self.spec.seed, 200 + index]).spawn(groups))
        gateway_of = self._add_gateways(kind.name, refs, per, names, seeds)
        for i, ref in enumerate(refs):
            self.assets.append(
                AssetRef(ref=ref, kind=kind.name, site=site, device=gateway_of[i], attributes={})
            )
        faults = SensorFaults(
            kind,
            population.size,
            np.random.default_rng([self.spec.seed, 300 + index]),
            self.fault_rates,
        )
        self._add_kind(kind.name, population, refs, gateway_of, faults)

    def _add_kind(
        self,
        kind: str,
        population: Population,
        refs: list[str],
        gateway_of: list[str],
        faults: SensorFaults,
        exact: bool = False,
    ) -> None:
        self.kinds[kind] = KindFleet(kind, population, refs, gateway_of, faults, exact)
        for i, ref in enumerate(refs):
            self._where[ref] = (kind, i)

    def _warm_up(self) -> None:
        """Run each kind unobserved for a while, renewing at failures and at random, so that
        the registered fleet has assets of mixed ages."""
        for kind, kf in self.kinds.items():
            if isinstance(kf.population, ReplayPopulation):
                continue
            total_h = WARMUP_DAYS.get(kind, GENERIC_WARMUP_DAYS) * 24.0
            h = 0.0
            while h < total_h:
                frame = kf.population.advance(h, MAX_STEP_H)
                h += MAX_STEP_H
                for f in frame.failures:
                    self._renew(kf, f.asset, f.component, h)
                for c in kf.components:
                    replace = self._warmup_rng.random(kf.population.size) < MAX_STEP_H / total_h
                    for i in np.flatnonzero(replace & ~kf.population.failed(c)):
                        self._renew(kf, int(i), c, h)
            # the fleet's clock starts at zero for every kind: shift life starts and the
            # population's own schedules accordingly
            for c in kf.components:
                kf.life_start_h[c] -= total_h
            kf.population.shift_clock(-total_h)

    def _renew(self, kf: KindFleet, index: int, component: str, at_h: float) -> None:
        kf.population.renew(index, component)
        kf.life_start_h[component][index] = at_h
        kf.life_start_usage[component][index] = kf.population.usage[index]
        kf.repair_due_h.pop((index, component), None)

    # --- time ------------------------------------------------------------------------------

    def begin_at_hour_of_week(self, hour: float) -> None:
        """Before the clock starts: make simulated hour 0 of the run fall at ``hour`` of the
        week (0 = Monday 00:00), so daily and weekly patterns follow the calendar."""
        if self.anchor_ms is not None:
            raise RuntimeError("the fleet's clock has already started")
        shift = hour - self.sim_h
        self.sim_h = hour
        for kf in self.kinds.values():
            for c in kf.components:
                kf.life_start_h[c] += shift
            kf.repair_due_h = {k: v + shift for k, v in kf.repair_due_h.items()}
            kf.population.shift_clock(shift)

    def start(self, now: datetime) -> None:
        """Pin simulated hour ``sim_h`` to the real time ``now`` (the fleet's clock starts)."""
        self.anchor_ms = ms_of(now)
        self.anchor_h = self.sim_h

    def real_ms(self, sim_h: float) -> int:
        """The real time (epoch ms) at simulated hour ``sim_h``."""
        if self.anchor_ms is None:
            raise RuntimeError("the fleet has not been started (call start(now) first)")
        return self.anchor_ms + round((sim_h - self.anchor_h) * 3_600_000.0 / self.spec.speedup)

    def sim_h_at(self, now: datetime) -> float:
        """The simulated hour at real time ``now``."""
        if self.anchor_ms is None:
            raise RuntimeError("the fleet has not been started (call start(now) first)")
        return self.anchor_h + (ms_of(now) - self.anchor_ms) * self.spec.speedup / 3_600_000.0

    # --- stepping --------------------------------------------------------------------------

    def advance_to(self, now: datetime) -> FleetStep:
        """Simulate up to real time ``now``: wear, failures, repairs; readings to gateways."""
        target_h = self.sim_h_at(now)
        out = FleetStep()
        while target_h - self.sim_h > 1e-12:
            hours = min(self.max_step_h, target_h - self.sim_h)
            self._step(self.sim_h, hours, out)
            self.sim_h += hours
        return out

    def _step(self, start_h: float, hours: float, out: FleetStep) -> None:
        end_h = start_h + hours
        for kind, kf in self.kinds.items():
            for (index, component), due_h in sorted(kf.repair_due_h.items()):
                if due_h <= start_h:
                    self._renew(kf, index, component, start_h)
            frame = kf.population.advance(start_h, hours)
            for f in frame.failures:
                out.life_ends.append(
                    self._life_end(
                        kf, f.asset, f.component, f.at_h, "failure", f.mode, reported_cause(f.cause)
                    )
                )
                if self.spec.repair_after_h is not None:
                    kf.repair_due_h[(f.asset, f.component)] = f.at_h + self.spec.repair_after_h
            if len(frame) == 0 or not self.observed:
                continue
            metrics = kf.faults.apply(frame.asset, frame.metrics)
            names = kf.population.kind.metric_names
            columns = []
            for name in names:
                values = metrics[name]
                if not kf.exact:
                    values = np.round(values, DECIMALS.get(name, ENGINE_DECIMALS))
                columns.append(values)
            times = (
                [self.real_ms(h) for h in frame.at_h.tolist()]
                if kind == "engine"
                else [self.real_ms(end_h)] * len(frame)
            )
            per_gateway: dict[str, list[tuple[str, int, dict[str, float]]]] = {}
            for index, time_ms, reading in zip(
                frame.asset.tolist(), times, _readings(names, columns), strict=True
            ):
                per_gateway.setdefault(kf.gateway_of[index], []).append(
                    (kf.refs[index], time_ms, reading)
                )
            for ref, readings in per_gateway.items():
                self.gateways[ref].collect(readings)
            out.readings += len(frame)

    def _life_end(
        self,
        kf: KindFleet,
        index: int,
        component: str,
        at_h: float,
        reason: str,
        mode: str | None,
        cause: str | None = None,
    ) -> LifeEnd:
        return LifeEnd(
            asset_ref=kf.refs[index],
            kind=kf.kind,
            component=component,
            started_at=at_ms(self.real_ms(float(kf.life_start_h[component][index]))),
            ended_at=at_ms(self.real_ms(at_h)),
            end_reason=reason,  # type: ignore[arg-type]
            failure_mode=mode,
            cause=cause,
            usage_at_start=float(kf.life_start_usage[component][index]),
            usage_at_end=float(kf.population.usage[index]),
        )

    # --- outside world ---------------------------------------------------------------------

    def locate(self, asset_ref: str) -> tuple[KindFleet, int]:
        """The kind fleet and index of an asset; KeyError when it is not in this fleet."""
        kind, index = self._where[asset_ref]
        return self.kinds[kind], index

    def installed_at(self, asset_ref: str) -> datetime | None:
        """When the asset's oldest component life began; None before the clock is pinned."""
        if self.anchor_ms is None:
            return None
        kf, index = self.locate(asset_ref)
        oldest = min(float(kf.life_start_h[c][index]) for c in kf.components)
        return at_ms(self.real_ms(oldest))

    def is_failed(self, asset_ref: str, component: str) -> bool:
        """Whether the component has failed and is not yet repaired."""
        kf, index = self.locate(asset_ref)
        return bool(kf.population.failed(component)[index])

    def replace(self, asset_ref: str, component: str, now: datetime) -> LifeEnd | None:
        """A technician replaces ``component`` at ``now``: the life ends (a replacement,
        unless it had already failed: that end was recorded then) and a new one begins."""
        kf, index = self.locate(asset_ref)
        if component not in kf.components:
            raise KeyError(f"{asset_ref} ({kf.kind}) has no component {component!r}")
        at_h = max(self.sim_h, self.sim_h_at(now)) if self.anchor_ms is not None else self.sim_h
        ended = None
        if not kf.population.failed(component)[index]:
            ended = self._life_end(kf, index, component, at_h, "replacement", None)
        self._renew(kf, index, component, at_h)
        return ended

    def truth(self) -> list[TruthRow]:
        """The hidden state of every live component now: wear, usage and expected RUL."""
        rows: list[TruthRow] = []
        now = at_ms(self.real_ms(self.sim_h))
        for kf in self.kinds.values():
            pop = kf.population
            for c in kf.components:
                wear, rul, failed = pop.wear(c), pop.expected_rul(c), pop.failed(c)
                used = pop.life_usage(c)
                for i in np.flatnonzero(~failed).tolist():
                    rows.append(
                        TruthRow(
                            asset_ref=kf.refs[i], component=c, time=now,
                            life_started_at=at_ms(self.real_ms(float(kf.life_start_h[c][i]))),
                            usage=float(used[i]), wear=float(wear[i]), rul_expected=float(rul[i]),
                        )
                    )  # fmt: skip
        return rows

    def payloads(self, now_s: float, elapsed_s: float) -> tuple[list[tuple[str, bytes]], list[str]]:
        """Payloads of the gateways that are online, and the gateways that went offline."""
        out: list[tuple[str, bytes]] = []
        went_offline: list[str] = []
        for ref, gateway in self.gateways.items():
            was_online = gateway.online
            if not gateway.update_connectivity(now_s, elapsed_s):
                if was_online:
                    went_offline.append(ref)
                continue
            out.extend((ref, p) for p in gateway.drain())
        return out, went_offline
