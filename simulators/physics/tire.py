"""Truck tires: tread wear per km, carcass damage from heat and under-inflation."""

from __future__ import annotations

import math

import numpy as np

from kinds.loader import builtin_kinds
from simulators.physics.base import (
    WEAR_LIMIT,
    BoolArray,
    Failure,
    FloatArray,
    Frame,
    IntArray,
    in_shift,
    shift_overlap_hours,
)

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
        driving_now = in_shift(end_h, self.shift_start, self.shift_len, self.workdays) & ~grounded
        return self.drive(start_h, hours, km_truck, cruise, driving_now)

    def drive(
        self,
        start_h: float,
        hours: float,
        km_truck: FloatArray,
        cruise: FloatArray,
        driving_now: BoolArray,
    ) -> Frame:
        """The trucks drive ``km_truck`` km each within ``hours`` from ``start_h`` at about
        ``cruise`` km/h (their shifts in ``advance``, or the legs of a route), ``driving_now``
        the ones on the road at the end: wear, leaks, heat, depot visits; one reading per tire."""
        rng, g = self.rng, self.group
        end_h = start_h + hours
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
