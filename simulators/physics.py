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

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from kinds.loader import builtin_kinds
from kinds.schemas import KindDefinition as AssetKind
from simulators.cmapss_levels import (
    CMAPSS_SENSORS,
    CMAPSS_SETTINGS,
    SENSOR_BASE,
    SENSOR_NOISE,
    SENSOR_SHIFT,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

WEAR_LIMIT = 1.0
HOURS_PER_WEEK = 168.0


@dataclass(frozen=True)
class Failure:
    """A component that crossed its wear limit during a step."""

    asset: int
    component: str
    mode: str
    at_h: float
    usage: float


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


def _hour_of_week(start_h: float, hours: float) -> float:
    """Hour of the week (0 = Monday 00:00) at the middle of a step."""
    return (start_h + hours / 2.0) % HOURS_PER_WEEK


# --- tires ---------------------------------------------------------------------------------

TREAD_LIMIT_MM = 1.6
ROAD_TYPES = ("highway", "regional", "urban", "construction")
_ROAD_PROBABILITY = (0.35, 0.35, 0.2, 0.1)
_ROAD_WEAR = np.array([0.75, 1.0, 1.5, 2.5])  # tread wear multiplier by road type
_ROAD_SPEED_KMH = np.array([85.0, 65.0, 35.0, 25.0])  # cruising speed by road type
_TREAD_WEAR_MM_PER_KM = 1.4e-4  # a nominal tire at nominal load and pressure, regional roads
_CARCASS_DAMAGE_PER_KM = 2e-5  # scaled by heat and under-inflation (see TirePopulation)
_PUNCTURE_KM = 40_000.0  # mean distance between punctures that start a slow leak
_NOMINAL_LOAD_KG = (3_400.0, 2_900.0)  # steer, drive/trailer
_NOMINAL_PRESSURE_KPA = (850.0, 800.0)


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


class TirePopulation:
    """Truck tires: tread wear per km and carcass damage from heat and under-inflation.

    Hidden health per tire: tread depth (fails below ``TREAD_LIMIT_MM``) and carcass damage
    (a blowout when it reaches 1). Wear per km rises with load, under-inflation, speed
    (through heat), heat and road type. Slow leaks start at punctures; the depot's drive-over
    reader measures tread now and then and the depot re-inflates low tires.
    """

    kind = builtin_kinds()["tire"]
    components = ("tire",)

    def __init__(self, rng: np.random.Generator, trucks: int, tires_per_truck: int = 6) -> None:
        self.rng = rng
        self.trucks = trucks
        self.size = trucks * tires_per_truck
        self.group: IntArray = np.repeat(np.arange(trucks), tires_per_truck).astype(np.int64)
        self.position: IntArray = np.tile(np.arange(tires_per_truck), trucks).astype(np.int64)
        steer = self.position < 2
        # per truck: route, shift pattern, climate, load
        self.road: IntArray = rng.choice(len(ROAD_TYPES), size=trucks, p=_ROAD_PROBABILITY)
        self.shift_start: FloatArray = rng.uniform(4.0, 10.0, trucks)
        self.shift_len: FloatArray = rng.uniform(7.0, 11.0, trucks)
        self.workdays: IntArray = rng.choice([5, 6], size=trucks, p=[0.7, 0.3]).astype(np.int64)
        self.ambient_c: FloatArray = rng.normal(14.0, 7.0, trucks)
        self.load_factor: FloatArray = rng.uniform(0.3, 1.0, trucks)
        self.driver_pace: FloatArray = rng.uniform(0.85, 1.1, trucks)  # how fast they drive
        self.next_depot_h: FloatArray = rng.uniform(0.0, 48.0, trucks)
        # per tire
        self.nominal_load: FloatArray = np.where(steer, *_NOMINAL_LOAD_KG)
        self.nominal_pressure: FloatArray = np.where(steer, *_NOMINAL_PRESSURE_KPA)
        self.tread_new = np.zeros(self.size)
        self.tread = np.zeros(self.size)
        self.sensitivity = np.zeros(self.size)
        self.carcass = np.zeros(self.size)
        self.pressure_cold = np.zeros(self.size)
        self.leak_kpa_h = np.zeros(self.size)
        self.usage: FloatArray = np.zeros(self.size)
        self._failed = np.zeros(self.size, bool)
        self.temperature = np.zeros(self.size)
        for i in range(self.size):
            self.renew(i, "tire")
        self.temperature[:] = self.ambient_c[self.group]

    def shift_clock(self, hours: float) -> None:
        """Move the trucks' next depot visits (the only absolute times kept) by ``hours``."""
        self.next_depot_h = self.next_depot_h + hours

    def renew(self, asset: int, component: str = "tire") -> None:
        """Fit a new tire at ``asset``'s position: full tread, nominal pressure, odometer 0."""
        self._check_component(component)
        self.tread_new[asset] = self.rng.normal(16.5, 0.4)
        self.tread[asset] = self.tread_new[asset]
        self.sensitivity[asset] = self.rng.lognormal(0.0, 0.12)
        self.carcass[asset] = 0.0
        self.pressure_cold[asset] = self.nominal_pressure[asset]
        self.leak_kpa_h[asset] = 0.0
        self.usage[asset] = 0.0
        self._failed[asset] = False

    def _check_component(self, component: str) -> None:
        if component != "tire":
            raise KeyError(f"a tire has no component {component!r}")

    def tread_wear(self) -> FloatArray:
        """Fraction of the usable tread worn away."""
        return (self.tread_new - self.tread) / (self.tread_new - TREAD_LIMIT_MM)

    def wear(self, component: str = "tire") -> FloatArray:
        """The larger of tread wear and carcass damage: the tire fails when it reaches 1."""
        self._check_component(component)
        return np.maximum(self.tread_wear(), self.carcass)

    def failed(self, component: str = "tire") -> BoolArray:
        self._check_component(component)
        return self._failed.copy()

    def life_usage(self, component: str = "tire") -> FloatArray:
        self._check_component(component)
        return self.usage.copy()

    def _prior_wear_per_km(self) -> FloatArray:
        return _TREAD_WEAR_MM_PER_KM * self.sensitivity * _ROAD_WEAR[self.road[self.group]]

    def expected_rul(self, component: str = "tire") -> FloatArray:
        """Remaining km at the tire's own average wear rate so far (prior-weighted early on)."""
        self._check_component(component)
        prior_km = 5_000.0
        tread_rate = (self.tread_new - self.tread + self._prior_wear_per_km() * prior_km) / (
            self.usage + prior_km
        )
        carcass_rate = (self.carcass + 2e-7 * prior_km) / (self.usage + prior_km)
        rul_tread = (self.tread - TREAD_LIMIT_MM) / tread_rate
        rul_carcass = (1.0 - self.carcass) / carcass_rate
        return np.where(self._failed, 0.0, np.clip(np.minimum(rul_tread, rul_carcass), 0.0, None))

    def advance(self, start_h: float, hours: float) -> Frame:
        """Drive the trucks for ``hours``: wear, leaks, heat, depot visits; one reading per tire."""
        rng, g = self.rng, self.group
        end_h = start_h + hours
        grounded = np.bincount(g, weights=self._failed, minlength=self.trucks) > 0
        drive_h = np.where(
            grounded,
            0.0,
            shift_overlap_hours(start_h, hours, self.shift_start, self.shift_len, self.workdays),
        )
        cruise = (
            _ROAD_SPEED_KMH[self.road] * self.driver_pace * rng.uniform(0.95, 1.05, self.trucks)
        )
        km_truck = drive_h * cruise * 0.85  # stops and traffic
        self.load_factor = np.clip(self.load_factor + rng.normal(0.0, 0.08, self.trucks), 0.2, 1.1)
        steer = self.position < 2
        lf = self.load_factor[g]
        load = self.nominal_load * np.where(steer, 0.9 + 0.1 * lf, 0.25 + 0.8 * lf)
        km = np.where(self._failed, 0.0, km_truck[g])

        # slow leaks: punctures start them; pressure bleeds slowly even without one
        punctured = (self.leak_kpa_h == 0.0) & (
            rng.random(self.size) < -np.expm1(-km / _PUNCTURE_KM)
        )
        new_leak = rng.lognormal(math.log(0.8), 0.8, self.size)
        self.leak_kpa_h = np.where(punctured & ~self._failed, new_leak, self.leak_kpa_h)
        self.pressure_cold = np.maximum(
            self.pressure_cold - (0.02 + self.leak_kpa_h) * hours, 0.25 * self.nominal_pressure
        )
        inflation = self.pressure_cold / self.nominal_pressure
        under = np.clip(1.0 - inflation, 0.0, None)

        # heat while driving (the step's mean condition drives wear)
        ambient = self.ambient_c[g] + rng.normal(0.0, 3.0, self.size)
        heating = (
            22.0 * (cruise[g] / 80.0) ** 1.2 * (load / self.nominal_load) ** 1.2 / inflation**2.5
        )
        heating = np.minimum(heating, 150.0)  # past this the carcass is long gone
        hot = ambient + heating
        wear_per_km = (
            self._prior_wear_per_km()
            * (load / self.nominal_load) ** 1.4
            * (1.0 + 2.5 * under)
            * (1.0 + 0.006 * np.clip(cruise[g] - 50.0, 0.0, None))  # scrub and braking at speed
            * (1.0 + 0.01 * np.clip(hot - 50.0, 0.0, None))
        )
        self.tread = self.tread - wear_per_km * km
        self.carcass = self.carcass + _CARCASS_DAMAGE_PER_KM * km * np.exp((hot - 110.0) / 12.0) * (
            1.0 + 8.0 * np.clip(0.85 - inflation, 0.0, None)
        )
        self.usage = self.usage + km

        # the state at the end of the step is what the sensors see
        driving_now = in_shift(end_h, self.shift_start, self.shift_len, self.workdays) & ~grounded
        speed_now = np.where(driving_now, cruise * rng.uniform(0.6, 1.15, self.trucks), 0.0)[g]
        target = np.where(speed_now > 0, hot, ambient + 2.0)
        self.temperature = target + (self.temperature - target) * math.exp(-hours / 0.5)
        pressure_hot = self.pressure_cold * (self.temperature + 273.15) / (ambient + 273.15)

        # depot visits: drive-over tread reading, re-inflation, sometimes a leak repair
        at_depot = (self.next_depot_h <= end_h) & ~driving_now
        self.next_depot_h = np.where(
            at_depot, end_h + rng.uniform(20.0, 96.0, self.trucks), self.next_depot_h
        )
        read = at_depot[g]
        low = read & (self.pressure_cold < 0.92 * self.nominal_pressure)
        repaired = low & (rng.random(self.size) < 0.6)
        self.pressure_cold = np.where(low, self.nominal_pressure, self.pressure_cold)
        self.leak_kpa_h = np.where(repaired, 0.0, self.leak_kpa_h)

        failures = self._record_failures(end_h)
        live = ~self._failed
        noise = rng.normal(0.0, 1.0, (6, self.size))
        metrics = {
            "pressure_kpa": pressure_hot + 4.0 * noise[0],
            "temperature_c": self.temperature + 1.0 * noise[1],
            "load_kg": load * (1.0 + 0.02 * noise[2]),
            "speed_kmh": np.clip(speed_now + 1.0 * noise[3], 0.0, None) * (speed_now > 0),
            "tread_depth_mm": np.where(
                read, np.clip(self.tread + 0.25 * noise[4], 0.0, None), np.nan
            ),
            "odometer_km": self.usage.copy(),
        }
        index = np.flatnonzero(live | np.isin(np.arange(self.size), [f.asset for f in failures]))
        return Frame(
            asset=index.astype(np.int64),
            at_h=np.full(index.shape, end_h),
            metrics={k: v[index] for k, v in metrics.items()},
            failures=failures,
        )

    def _record_failures(self, end_h: float) -> list[Failure]:
        worn = ~self._failed & (self.tread_wear() >= WEAR_LIMIT)
        burst = ~self._failed & (self.carcass >= WEAR_LIMIT)
        out = []
        for i in np.flatnonzero(worn | burst):
            mode = "blowout" if burst[i] else "tread_worn"
            out.append(Failure(int(i), "tire", mode, end_h, float(self.usage[i])))
        self._failed |= worn | burst
        return out


# --- elevators -----------------------------------------------------------------------------

BRAKE_LIMIT_PCT = 90.0  # lining wear at which the brake no longer holds reliably
BUILDING_TYPES = ("office", "residential", "hospital", "retail")
_BUILDING_PROBABILITY = (0.4, 0.3, 0.1, 0.2)
_TRIPS_PER_DAY = np.array([650.0, 320.0, 950.0, 780.0])  # per elevator, on a weekday
_WEEKEND_FACTOR = np.array([0.15, 1.1, 0.9, 1.3])
_DOOR_FACTOR = np.array([1.0, 0.9, 1.35, 1.2])  # carts, held doors, crowds
_BRAKE_FACTOR = np.array([1.0, 0.85, 1.2, 1.1])  # heavier cars, more stops
_DOOR_WEAR_PER_TRIP = 1.0 / 300_000.0
_BRAKE_WEAR_PER_TRIP = 1.0 / 420_000.0
_DOOR_FAULT_TRIPS = 400_000.0  # mean trips between sudden door faults (a roller, a vane)
_BRAKE_FAULT_TRIPS = 800_000.0


def _daily_profile(peaks: list[tuple[float, float, float]], floor: float) -> FloatArray:
    hours = np.arange(24) + 0.5
    shape = np.full(24, floor)
    for centre, width, height in peaks:
        shape += height * np.exp(-0.5 * ((hours - centre) / width) ** 2)
    return shape / shape.sum()


# share of a day's trips in each hour, per building type
_HOURLY_SHARE = np.stack(
    [
        _daily_profile([(8.5, 1.0, 3.0), (12.5, 1.0, 2.0), (17.5, 1.0, 2.5)], 0.05),
        _daily_profile([(7.5, 1.2, 1.5), (18.5, 2.0, 2.0)], 0.15),
        _daily_profile([(10.0, 3.0, 1.5), (15.0, 3.0, 1.2)], 0.5),
        _daily_profile([(13.0, 2.5, 1.5), (18.0, 2.0, 1.5)], 0.02),
    ]
)


class ElevatorPopulation:
    """Elevators with two wearing components: the door operator and the brake.

    Wear grows per trip (trips per day by building type and hour), faster as the part wears,
    and sudden faults add a step of damage. Door close time, vibration, motor current and
    levelling error drift with wear; the brake's lining wear is measured directly.
    """

    kind = builtin_kinds()["elevator"]
    components = ("door_operator", "brake")

    def __init__(self, rng: np.random.Generator, buildings: int, per_building: int = 3) -> None:
        self.rng = rng
        self.buildings = buildings
        self.size = buildings * per_building
        self.group: IntArray = np.repeat(np.arange(buildings), per_building).astype(np.int64)
        self.building_type: IntArray = rng.choice(
            len(BUILDING_TYPES), size=buildings, p=_BUILDING_PROBABILITY
        )
        self.traffic_share: FloatArray = rng.uniform(0.7, 1.3, self.size)
        self.level_bias_sign: FloatArray = rng.choice([-1.0, 1.0], size=self.size)
        self.usage: FloatArray = np.zeros(self.size)  # trips since installation
        self._sensitivity = {c: np.ones(self.size) for c in self.components}
        self._wear = {c: np.zeros(self.size) for c in self.components}
        self._started = {c: np.zeros(self.size) for c in self.components}  # trip count at renewal
        self._failed = {c: np.zeros(self.size, bool) for c in self.components}
        for i in range(self.size):
            for c in self.components:
                self.renew(i, c)

    def shift_clock(self, hours: float) -> None:
        """Nothing to move: elevators keep no absolute times."""

    def renew(self, asset: int, component: str) -> None:
        """Fit a new door operator or brake lining set."""
        self._check_component(component)
        self._sensitivity[component][asset] = self.rng.lognormal(0.0, 0.15)
        self._wear[component][asset] = 0.0
        self._started[component][asset] = self.usage[asset]
        self._failed[component][asset] = False

    def _check_component(self, component: str) -> None:
        if component not in self.components:
            raise KeyError(f"an elevator has no component {component!r}")

    def wear(self, component: str) -> FloatArray:
        self._check_component(component)
        return self._wear[component].copy()

    def failed(self, component: str) -> BoolArray:
        self._check_component(component)
        return self._failed[component].copy()

    def life_usage(self, component: str) -> FloatArray:
        self._check_component(component)
        return self.usage - self._started[component]

    def _base_rate(self, component: str) -> FloatArray:
        btype = self.building_type[self.group]
        if component == "door_operator":
            base = _DOOR_WEAR_PER_TRIP * _DOOR_FACTOR[btype] + 0.25 / _DOOR_FAULT_TRIPS
        else:
            base = _BRAKE_WEAR_PER_TRIP * _BRAKE_FACTOR[btype] + 0.125 / _BRAKE_FAULT_TRIPS
        return np.asarray(base * self._sensitivity[component])

    def expected_rul(self, component: str) -> FloatArray:
        """Remaining trips at the component's own average wear rate so far (prior-weighted)."""
        self._check_component(component)
        prior_trips = 20_000.0
        used = self.life_usage(component)
        rate = (self._wear[component] + self._base_rate(component) * prior_trips) / (
            used + prior_trips
        )
        rul = (WEAR_LIMIT - self._wear[component]) / rate
        return np.where(self._failed[component], 0.0, np.clip(rul, 0.0, None))

    def in_service(self) -> BoolArray:
        """Elevators with no failed component."""
        return ~(self._failed["door_operator"] | self._failed["brake"])

    def expected_trips(self, start_h: float, hours: float) -> FloatArray:
        """Expected trips of each elevator during [start_h, start_h + hours)."""
        btype = self.building_type[self.group]
        total = np.zeros(self.size)
        t = start_h
        end_h = start_h + hours
        while t < end_h:
            step_end = min(end_h, math.floor(t) + 1.0)
            hour_of_week = t % HOURS_PER_WEEK
            weekend = hour_of_week >= 120.0
            per_day = _TRIPS_PER_DAY[btype] * (_WEEKEND_FACTOR[btype] if weekend else 1.0)
            total += per_day * _HOURLY_SHARE[btype, int(hour_of_week % 24)] * (step_end - t)
            t = step_end
        return total * self.traffic_share

    def advance(self, start_h: float, hours: float) -> Frame:
        """Run the elevators for ``hours``: trips, wear, sudden faults; one reading each."""
        rng = self.rng
        end_h = start_h + hours
        serving = self.in_service()
        trips = np.where(serving, rng.poisson(self.expected_trips(start_h, hours)), 0).astype(float)
        dw, bw = self._wear["door_operator"], self._wear["brake"]
        btype = self.building_type[self.group]
        door_faults = rng.poisson(trips / _DOOR_FAULT_TRIPS)
        brake_faults = rng.poisson(trips / _BRAKE_FAULT_TRIPS)
        door_jump = np.where(door_faults > 0, door_faults * rng.uniform(0.1, 0.4, self.size), 0.0)
        brake_jump = np.where(
            brake_faults > 0, brake_faults * rng.uniform(0.05, 0.2, self.size), 0.0
        )
        self._wear["door_operator"] = (
            dw
            + trips
            * _DOOR_WEAR_PER_TRIP
            * _DOOR_FACTOR[btype]
            * self._sensitivity["door_operator"]
            * (1.0 + 0.8 * dw)
            + door_jump
        )
        self._wear["brake"] = (
            bw
            + trips
            * _BRAKE_WEAR_PER_TRIP
            * _BRAKE_FACTOR[btype]
            * self._sensitivity["brake"]
            * (1.0 + 0.5 * bw)
            + brake_jump
        )
        self.usage = self.usage + trips

        failures: list[Failure] = []
        for component, mode in (
            ("door_operator", "door_operator_failure"),
            ("brake", "brake_failure"),
        ):
            crossed = ~self._failed[component] & (self._wear[component] >= WEAR_LIMIT)
            for i in np.flatnonzero(crossed):
                failures.append(Failure(int(i), component, mode, end_h, float(self.usage[i])))
            self._failed[component] |= crossed

        dw = np.minimum(self._wear["door_operator"], 1.5)
        bw = np.minimum(self._wear["brake"], 1.5)
        noise = rng.normal(0.0, 1.0, (5, self.size))
        load_frac = rng.uniform(0.0, 0.8, self.size)
        hospital = (btype == BUILDING_TYPES.index("hospital")).astype(float)
        metrics = {
            "door_close_time_s": 2.8 + 0.4 * hospital + 3.0 * dw**2 + 0.08 * noise[0],
            "motor_current_a": 45.0 + 40.0 * load_frac + 20.0 * bw**2 + 2.0 * noise[1],
            "vibration_mm_s": np.clip(
                0.6 + 2.5 * dw**1.5 + 1.5 * bw**2 + 0.15 * noise[2], 0.0, None
            ),
            "levelling_error_mm": self.level_bias_sign * 4.0 * bw**2
            + (0.8 + 6.0 * bw**2) * noise[3],
            "brake_wear_pct": np.clip(BRAKE_LIMIT_PCT * bw + 0.5 * noise[4], 0.0, 100.0),
            "trip_count": self.usage.copy(),
        }
        just_failed = np.zeros(self.size, bool)
        just_failed[[f.asset for f in failures]] = True
        index = np.flatnonzero(serving | just_failed).astype(np.int64)
        return Frame(
            asset=index,
            at_h=np.full(index.shape, end_h),
            metrics={k: v[index] for k, v in metrics.items()},
            failures=failures,
        )


# --- aircraft engines ----------------------------------------------------------------------

# The six operating conditions of C-MAPSS FD002/FD004: altitude (kft), Mach, TRA (%).
ENGINE_REGIMES: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 100.0),
    (10.0, 0.25, 100.0),
    (20.0, 0.7, 100.0),
    (25.0, 0.62, 60.0),
    (35.0, 0.84, 100.0),
    (42.0, 0.84, 100.0),
)
# How hard each condition is on the HPC, relative to cruise at 20 kft.
_REGIME_SEVERITY = np.array([1.25, 1.15, 1.0, 0.8, 0.95, 0.9])
_REGIME_PREFERENCE = np.array([2.0, 1.5, 1.5, 1.0, 2.0, 2.0])
_ENGINE_ACCELERATION = 3.0  # damage grows as exp(k * damage): health decays exponentially
_ENGINE_RATE = 0.00141  # median damage per cycle at D=0: about 210 cycles to failure


class EnginePopulation:
    """Turbofan engines degrading per flight cycle, with C-MAPSS-like sensors.

    Each flight cycle runs in one of six operating conditions (as in FD002/FD004); HPC damage
    grows per cycle by a rate times the condition's severity times exp(k * damage), so the
    health index decays exponentially; the engine fails when damage reaches 1 (EGT margin
    exhausted). Each cycle gives one snapshot: the three settings and 21 sensors, each its
    healthy level in that condition plus a shift proportional to damage plus noise.
    """

    kind = builtin_kinds()["engine"]
    components = ("hpc_module",)

    def __init__(
        self, rng: np.random.Generator, aircraft: int, engines_per_aircraft: int = 2
    ) -> None:
        self.rng = rng
        self.aircraft = aircraft
        self.size = aircraft * engines_per_aircraft
        self.group: IntArray = np.repeat(np.arange(aircraft), engines_per_aircraft).astype(np.int64)
        self.cycles_per_day: FloatArray = rng.uniform(3.0, 7.0, aircraft)
        self.regime_weights: FloatArray = rng.dirichlet(_REGIME_PREFERENCE * 3.0, size=aircraft)
        self.first_departure_h: FloatArray = rng.uniform(5.0, 7.0, aircraft)
        self.cycle_progress: FloatArray = rng.uniform(0.0, 1.0, aircraft)
        self.damage = np.zeros(self.size)
        self.rate = np.zeros(self.size)
        self.usage: FloatArray = np.zeros(self.size)
        self._failed = np.zeros(self.size, bool)
        for i in range(self.size):
            self.renew(i, "hpc_module")

    def shift_clock(self, hours: float) -> None:
        """Nothing to move: departures are hours of the day."""

    def renew(self, asset: int, component: str = "hpc_module") -> None:
        """Overhaul the HPC module: a fresh engine with a small, random initial wear."""
        self._check_component(component)
        self.damage[asset] = self.rng.uniform(0.0, 0.08)
        self.rate[asset] = _ENGINE_RATE * self.rng.lognormal(0.0, 0.25)
        self.usage[asset] = 0.0
        self._failed[asset] = False

    def _check_component(self, component: str) -> None:
        if component != "hpc_module":
            raise KeyError(f"an engine has no component {component!r}")

    def wear(self, component: str = "hpc_module") -> FloatArray:
        self._check_component(component)
        return self.damage.copy()

    def failed(self, component: str = "hpc_module") -> BoolArray:
        self._check_component(component)
        return self._failed.copy()

    def life_usage(self, component: str = "hpc_module") -> FloatArray:
        self._check_component(component)
        return self.usage.copy()

    def expected_rul(self, component: str = "hpc_module") -> FloatArray:
        """Cycles until damage reaches 1 at the aircraft's mean severity (closed form)."""
        self._check_component(component)
        k = _ENGINE_ACCELERATION
        severity = (self.regime_weights @ _REGIME_SEVERITY)[self.group]
        cycles = (np.exp(-k * self.damage) - math.exp(-k)) / (k * self.rate * severity)
        return np.where(self._failed, 0.0, np.clip(cycles, 0.0, None))

    def snapshot(self, engines: IntArray, regimes: IntArray) -> dict[str, FloatArray]:
        """Settings and sensors of ``engines`` flying in ``regimes`` at their current damage."""
        n = engines.shape[0]
        conditions = np.asarray(ENGINE_REGIMES)[regimes]
        noise = self.rng.normal(0.0, 1.0, (n, len(CMAPSS_SENSORS)))
        values = (
            SENSOR_BASE[regimes]
            + SENSOR_SHIFT[regimes] * np.minimum(self.damage[engines], 1.2)[:, None]
            + SENSOR_NOISE[regimes] * noise
        )
        out = {
            CMAPSS_SETTINGS[0]: conditions[:, 0] + self.rng.normal(0.0, 0.003, n),
            CMAPSS_SETTINGS[1]: np.clip(
                conditions[:, 1] + self.rng.normal(0.0, 0.0003, n), 0.0, None
            ),
            CMAPSS_SETTINGS[2]: conditions[:, 2],
        }
        out.update({name: values[:, j] for j, name in enumerate(CMAPSS_SENSORS)})
        return out

    def advance(self, start_h: float, hours: float) -> Frame:
        """Fly the aircraft for ``hours``: one reading per engine per completed flight cycle."""
        rng = self.rng
        grounded = np.bincount(self.group, weights=self._failed, minlength=self.aircraft) > 0
        operating = shift_overlap_hours(
            start_h,
            hours,
            self.first_departure_h,
            np.full(self.aircraft, 17.0),
            np.full(self.aircraft, 7, np.int64),
        )
        self.cycle_progress = self.cycle_progress + np.where(
            grounded, 0.0, operating * self.cycles_per_day / 17.0
        )
        cycles = np.floor(self.cycle_progress).astype(np.int64)
        self.cycle_progress -= cycles
        rows_asset: list[IntArray] = []
        rows_at: list[FloatArray] = []
        rows_metrics: list[dict[str, FloatArray]] = []
        failures: list[Failure] = []
        k = _ENGINE_ACCELERATION
        for c in range(int(cycles.max(initial=0))):
            flying = np.flatnonzero(cycles > c)
            regime_of = np.array(
                [rng.choice(len(ENGINE_REGIMES), p=self.regime_weights[a]) for a in flying],
                dtype=np.int64,
            )
            engines = np.flatnonzero(np.isin(self.group, flying) & ~self._failed)
            if engines.size == 0:
                continue
            regimes = regime_of[np.searchsorted(flying, self.group[engines])]
            self.damage[engines] += (
                self.rate[engines] * _REGIME_SEVERITY[regimes] * np.exp(k * self.damage[engines])
            )
            self.usage[engines] += 1.0
            at = start_h + hours * (c + 1) / (cycles[self.group[engines]] + 1)
            rows_asset.append(engines)
            rows_at.append(at)
            rows_metrics.append(
                self.snapshot(engines, regimes) | {"flight_cycles": self.usage[engines].copy()}
            )
            crossed = engines[self.damage[engines] >= WEAR_LIMIT]
            for i in crossed:
                failures.append(
                    Failure(
                        int(i),
                        "hpc_module",
                        "egt_margin_exhausted",
                        float(at[engines == i][0]),
                        float(self.usage[i]),
                    )
                )
            self._failed[crossed] = True
        if not rows_asset:
            frame = empty_frame(self.kind.metric_names)
            frame.failures = failures
            return frame
        names = self.kind.metric_names
        return Frame(
            asset=np.concatenate(rows_asset),
            at_h=np.concatenate(rows_at),
            metrics={n: np.concatenate([m[n] for m in rows_metrics]) for n in names},
            failures=failures,
        )


def make_population(kind: str, rng: np.random.Generator, groups: int, per_group: int) -> Population:
    """A population of ``groups`` gateways' worth of assets of ``kind``."""
    if kind == "tire":
        return TirePopulation(rng, groups, per_group)
    if kind == "elevator":
        return ElevatorPopulation(rng, groups, per_group)
    if kind == "engine":
        return EnginePopulation(rng, groups, per_group)
    raise KeyError(f"unknown asset kind {kind!r}")
