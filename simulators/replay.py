"""Replay of the NASA C-MAPSS training units as engines.

A file row is ``unit cycle setting1..3 s1..s21``; a replayed engine publishes one reading
per row, in order, with the settings and sensors under the engine kind's metric names and
``flight_cycles`` equal to the row's cycle. A unit's last row is its failure: the true
remaining life at each row is ``last cycle - cycle`` (the data set's run-to-failure truth).
Reading the file is the caller's I/O (``load_cmapss``); ``ReplayPopulation`` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinds.loader import builtin_kinds
from simulators.cmapss_levels import CMAPSS_SENSORS, CMAPSS_SETTINGS
from simulators.physics import (
    BoolArray,
    Failure,
    FloatArray,
    Frame,
    IntArray,
    empty_frame,
    shift_overlap_hours,
)

CMAPSS_COLUMNS: tuple[str, ...] = ("unit", "cycle", *CMAPSS_SETTINGS, *CMAPSS_SENSORS)
REPLAYED_METRICS: tuple[str, ...] = (*CMAPSS_SETTINGS, *CMAPSS_SENSORS, "flight_cycles")


@dataclass(frozen=True)
class CmapssUnit:
    """One run-to-failure unit: its number and its rows (cycle, settings, sensors)."""

    unit: int
    rows: FloatArray  # shape (cycles, 25): cycle, 3 settings, 21 sensors

    @property
    def cycles(self) -> int:
        return int(self.rows.shape[0])

    def metrics_at(self, index: int) -> dict[str, float]:
        """The reading of row ``index``: settings, sensors and flight_cycles (= cycle)."""
        row = self.rows[index]
        values = {name: float(row[1 + j]) for j, name in enumerate(CMAPSS_SETTINGS)}
        values.update({name: float(row[4 + j]) for j, name in enumerate(CMAPSS_SENSORS)})
        values["flight_cycles"] = float(row[0])
        return values


def parse_cmapss(text: str) -> list[CmapssUnit]:
    """Parse a C-MAPSS training file's text into units, in file order; ValueError if bad."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise ValueError("no rows in the C-MAPSS file")
    for number, row in enumerate(rows, start=1):
        if len(row) != len(CMAPSS_COLUMNS):
            raise ValueError(
                f"line {number}: {len(row)} columns, expected {len(CMAPSS_COLUMNS)} "
                "(unit, cycle, 3 settings, 21 sensors)"
            )
    data = np.array(rows, dtype=float)
    units: list[CmapssUnit] = []
    for unit in dict.fromkeys(data[:, 0].astype(int)):
        part = data[data[:, 0] == unit]
        if not np.array_equal(part[:, 1], np.arange(1, part.shape[0] + 1)):
            raise ValueError(f"unit {unit}: cycles are not 1, 2, 3, ...")
        units.append(CmapssUnit(int(unit), part[:, 1:]))
    return units


def load_cmapss(path: Path) -> list[CmapssUnit]:
    """Read and parse a C-MAPSS training file (train_FD001.txt ... train_FD004.txt)."""
    return parse_cmapss(path.read_text())


class ReplayPopulation:
    """Engines that replay C-MAPSS units, one file row per flight cycle.

    Engine ``i`` starts on unit ``i`` (wrapping around); when its unit's last row has been
    published the engine has failed; renewing it moves it to the next unit not yet used.
    """

    kind = builtin_kinds()["engine"]
    components = ("hpc_module",)

    def __init__(
        self,
        units: list[CmapssUnit],
        aircraft: int,
        engines_per_aircraft: int = 2,
        cycles_per_day: float = 5.0,
    ) -> None:
        if not units:
            raise ValueError("no C-MAPSS units to replay")
        self.units = units
        self.aircraft = aircraft
        self.size = aircraft * engines_per_aircraft
        self.group: IntArray = np.repeat(np.arange(aircraft), engines_per_aircraft).astype(np.int64)
        self.cycles_per_day = cycles_per_day
        self.unit_of: IntArray = np.arange(self.size, dtype=np.int64) % len(units)
        self._next_unit = self.size
        self.position: IntArray = np.zeros(self.size, np.int64)  # rows published of its unit
        self.usage: FloatArray = np.zeros(self.size)
        self._failed: BoolArray = np.zeros(self.size, bool)
        self._progress = np.zeros(aircraft)

    def shift_clock(self, hours: float) -> None:
        """Nothing to move: a replayed unit advances by cycles, not by clock time."""

    def renew(self, asset: int, component: str = "hpc_module") -> None:
        """Replace the engine's unit with the next one of the file."""
        self.unit_of[asset] = self._next_unit % len(self.units)
        self._next_unit += 1
        self.position[asset] = 0
        self.usage[asset] = 0.0
        self._failed[asset] = False

    def _lives(self) -> FloatArray:
        return np.array([self.units[u].cycles for u in self.unit_of], dtype=float)

    def wear(self, component: str = "hpc_module") -> FloatArray:
        """Fraction of the unit's recorded life already published."""
        return self.position / self._lives()

    def failed(self, component: str = "hpc_module") -> BoolArray:
        return self._failed.copy()

    def life_usage(self, component: str = "hpc_module") -> FloatArray:
        return self.usage.copy()

    def expected_rul(self, component: str = "hpc_module") -> FloatArray:
        """Exact: the unit's last cycle minus the cycle published last."""
        return self._lives() - self.position

    def advance(self, start_h: float, hours: float) -> Frame:
        """Publish the rows of the cycles flown during ``hours`` (all engines of an aircraft)."""
        operating = shift_overlap_hours(
            start_h,
            hours,
            np.full(self.aircraft, 6.0),
            np.full(self.aircraft, 17.0),
            np.full(self.aircraft, 7, np.int64),
        )
        self._progress += operating * self.cycles_per_day / 17.0
        cycles = np.floor(self._progress).astype(np.int64)
        self._progress -= cycles
        assets: list[int] = []
        at: list[float] = []
        values: dict[str, list[float]] = {name: [] for name in REPLAYED_METRICS}
        failures: list[Failure] = []
        for engine in range(self.size):
            n = int(cycles[self.group[engine]])
            for c in range(n):
                if self._failed[engine]:
                    break
                unit = self.units[int(self.unit_of[engine])]
                row = unit.metrics_at(int(self.position[engine]))
                self.position[engine] += 1
                self.usage[engine] = row["flight_cycles"]
                when = start_h + hours * (c + 1) / (n + 1)
                assets.append(engine)
                at.append(when)
                for name in REPLAYED_METRICS:
                    values[name].append(row[name])
                if self.position[engine] >= unit.cycles:
                    self._failed[engine] = True
                    failures.append(
                        Failure(engine, "hpc_module", "end_of_unit", when, float(unit.cycles))
                    )
        if not assets:
            frame = empty_frame(REPLAYED_METRICS)
            frame.failures = failures
            return frame
        return Frame(
            asset=np.array(assets, dtype=np.int64),
            at_h=np.array(at),
            metrics={k: np.array(v) for k, v in values.items()},
            failures=failures,
        )
