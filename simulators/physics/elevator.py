"""Elevators: door operator and brake wearing per trip, with sudden faults."""

from __future__ import annotations

import math

import numpy as np

from kinds.loader import builtin_kinds
from simulators.physics.base import (
    HOURS_PER_WEEK,
    RANDOM_FAULT,
    WEAR_LIMIT,
    WEAR_OUT,
    BoolArray,
    Failure,
    FloatArray,
    Frame,
    IntArray,
)

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
    and sudden faults add a step of damage: a fault arrives at random per trip (a door's every
    ``_DOOR_FAULT_TRIPS`` on average, whatever its wear, building or readings) and adds 0.1-0.4
    of a door's life (0.05-0.2 of a brake's), so it ends only a part already worn past 0.6
    (brake: 0.8); a failure it causes is a ``RANDOM_FAULT``. Door close time, vibration,
    motor current and levelling error drift with wear; the brake's lining wear is measured
    directly.
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

    def own_wear(self, component: str, trips: FloatArray) -> FloatArray:
        """Wear each part adds over ``trips`` at its own rate from its current wear: what a
        step adds without a fault's jump."""
        self._check_component(component)
        btype = self.building_type[self.group]
        wear = self._wear[component]
        if component == "door_operator":  # the product in this order: same floats as ever
            return np.asarray(
                trips
                * _DOOR_WEAR_PER_TRIP
                * _DOOR_FACTOR[btype]
                * self._sensitivity[component]
                * (1.0 + 0.8 * wear)
            )
        return np.asarray(
            trips
            * _BRAKE_WEAR_PER_TRIP
            * _BRAKE_FACTOR[btype]
            * self._sensitivity[component]
            * (1.0 + 0.5 * wear)
        )

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
        btype = self.building_type[self.group]
        door_faults = rng.poisson(trips / _DOOR_FAULT_TRIPS)
        brake_faults = rng.poisson(trips / _BRAKE_FAULT_TRIPS)
        door_jump = np.where(door_faults > 0, door_faults * rng.uniform(0.1, 0.4, self.size), 0.0)
        brake_jump = np.where(
            brake_faults > 0, brake_faults * rng.uniform(0.05, 0.2, self.size), 0.0
        )
        # wear without the faults' jumps: a part that crosses the limit only with a jump
        # failed from a random fault (the fault's arrival depends on trips, never on wear)
        worn = {c: self._wear[c] + self.own_wear(c, trips) for c in self.components}
        self._wear["door_operator"] = worn["door_operator"] + door_jump
        self._wear["brake"] = worn["brake"] + brake_jump
        self.usage = self.usage + trips

        failures: list[Failure] = []
        for component, mode in (
            ("door_operator", "door_operator_failure"),
            ("brake", "brake_failure"),
        ):
            crossed = ~self._failed[component] & (self._wear[component] >= WEAR_LIMIT)
            for i in np.flatnonzero(crossed):
                cause = WEAR_OUT if worn[component][i] >= WEAR_LIMIT else RANDOM_FAULT
                failures.append(
                    Failure(int(i), component, mode, end_h, float(self.usage[i]), cause)
                )
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
