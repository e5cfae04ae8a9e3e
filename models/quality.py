"""The data-quality gate before scoring: broken sensors make a prediction low-confidence.

Three findings, each from what scoring already holds (the readings matrix of an asset's last
rows and the features of its last row), so the gate costs a few array passes per chunk:

- **stuck or flat-lined**: a condition metric did not change over the model's longest feature
  window (its ``std`` feature is zero) although, in the training lifetimes, such a constant
  window was rare for that metric (under :data:`STUCK_MAX_TRAINING_SHARE` of the rows, the
  ``constant_share`` of the version's training reference). A metric that stopped reporting
  looks the same: its last value is carried forward on the usage grid. A metric that is
  often constant in training (a demand setting, a reader that comes by rarely) is never
  called stuck.
- **gap**: within that window, one step between readings of the usage counter is more than
  :data:`GAP_FACTOR` times the mean of the other steps.
- **at a bound**: the latest value of a metric sits on the kind's physical bound (``low`` or
  ``high``), where a failed sensor pegs, unless the metric rests there in normal operation:
  a tenth or more of the training rows sat on that bound (the reference's lowest decile edge
  is the low bound, or its highest the high one), as a parked truck's ``speed_kmh`` of 0 or
  an aircraft's ``mach`` on the ground. (Without that exception, `fleetcare up` marked 71% of
  its tires' predictions low-confidence, whenever their truck had stopped, and the policy
  raised no order on them: tires wore out with no order.)

A low-confidence prediction is stored and shown with its findings, and the policy raises no
automatic order or alert on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kinds.schemas import KindDefinition
from models.bundle import WearModel

FloatArray = NDArray[np.float64]
STUCK_MAX_TRAINING_SHARE = 0.01
GAP_FACTOR = 10.0
_CONSTANT = 1e-12  # a window std (in fleet standard deviations) this small is no change


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def resting_bounds(
    columns: tuple[str, ...], low: list[float], high: list[float], signals: dict[str, Any]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per column: whether its low (high) bound is where the metric rests in normal operation,
    from the training reference's decile edges (``models.drift``): a lowest edge on the low
    bound means a tenth or more of the training rows sat there (values never pass a bound:
    ingest quarantines them). Without a reference, no bound is a resting value."""
    rests_low = np.zeros(len(columns), dtype=np.bool_)
    rests_high = np.zeros(len(columns), dtype=np.bool_)
    for j, name in enumerate(columns):
        edges = signals.get(name, {}).get("edges") or []
        if edges:
            rests_low[j] = bool(np.isfinite(low[j]) and edges[0] <= low[j])
            rests_high[j] = bool(np.isfinite(high[j]) and edges[-1] >= high[j])
    return rests_low, rests_high


@dataclass(frozen=True)
class QualityGate:
    """The gate of one model version: which metrics may be called stuck, and the bounds."""

    columns: tuple[str, ...]  # readings-matrix metric columns (settings, then sensors)
    units: tuple[str, ...]
    low: FloatArray
    high: FloatArray
    window: int  # rows of the longest feature window
    rests_low: NDArray[np.bool_]  # per column: its low bound is a normal value (not pegged)
    rests_high: NDArray[np.bool_]  # and its high bound
    stuck_features: tuple[int, ...]  # feature index of each checked sensor's window std
    stuck_columns: tuple[int, ...]  # and the sensor's metric column (index into ``columns``)

    @classmethod
    def build(
        cls, model: WearModel, kind: KindDefinition, reference: dict[str, Any] | None
    ) -> QualityGate:
        """The gate for ``model`` with the kind's bounds and the training reference (without
        one, stuck sensors are not judged: nothing says how often a metric is constant)."""
        columns = tuple(model.column_names)
        signals = (reference or {}).get("signals", {})
        low, high, units = [], [], []
        for name in columns:
            try:
                metric = kind.metric(name)
            except KeyError:
                low.append(-np.inf)
                high.append(np.inf)
                units.append("")
                continue
            low.append(metric.low)
            high.append(metric.high)
            units.append(metric.unit)
        rests_low, rests_high = resting_bounds(columns, low, high, signals)
        window = model.features.spread_window()
        names = [str(n) for n in model.features.get_feature_names_out()]
        stuck_features: list[int] = []
        stuck_columns: list[int] = []
        n_settings = len(model.setting_names)
        for j, sensor in enumerate(model.sensor_names):
            share = signals.get(sensor, {}).get("constant_share")
            feature = f"m{j}_w{window}_std"
            if share is not None and share < STUCK_MAX_TRAINING_SHARE and feature in names:
                stuck_features.append(names.index(feature))
                stuck_columns.append(n_settings + j)
        return cls(
            columns=columns,
            units=tuple(units),
            low=np.asarray(low, dtype=np.float64),
            high=np.asarray(high, dtype=np.float64),
            window=window,
            rests_low=rests_low,
            rests_high=rests_high,
            stuck_features=tuple(stuck_features),
            stuck_columns=tuple(stuck_columns),
        )

    def issues(
        self, matrix: FloatArray, time_us: NDArray[np.int64], features: FloatArray
    ) -> list[list[str]]:
        """Per asset (groups of ``matrix`` in order, rows of ``features``): its findings."""
        if matrix.shape[0] == 0:
            return []
        starts = np.flatnonzero(np.concatenate(([True], matrix[1:, 0] != matrix[:-1, 0])))
        ends = np.append(starts[1:], matrix.shape[0])
        rows = ends - starts
        out: list[list[str]] = [[] for _ in range(starts.shape[0])]

        last = matrix[ends - 1, 2:]
        span = np.maximum(self.high - self.low, 1.0)
        at_low = (np.abs(last - self.low) <= 1e-9 * span) & ~self.rests_low
        at_high = (np.abs(last - self.high) <= 1e-9 * span) & ~self.rests_high
        for i, j in zip(*np.nonzero(at_low | at_high), strict=True):
            side, bound = ("lower", self.low[j]) if at_low[i, j] else ("upper", self.high[j])
            unit = f" {self.units[j]}" if self.units[j] else ""
            out[int(i)].append(f"{self.columns[j]} at its {side} bound ({_fmt(bound)}{unit})")

        if self.stuck_features:
            std = features[:, list(self.stuck_features)]
            stuck = (std <= _CONSTANT) & (rows >= self.window)[:, None]
            for i, k in zip(*np.nonzero(stuck), strict=True):
                j = self.stuck_columns[k]
                unit = f" {self.units[j]}" if self.units[j] else ""
                out[int(i)].append(
                    f"{self.columns[j]} stuck at {_fmt(float(last[i, j]))}{unit} over the last"
                    f" {self.window} readings"
                )

        for i, text in self._gaps(time_us, starts, rows):
            out[i].append(text)
        return out

    def _gaps(
        self, time_us: NDArray[np.int64], starts: NDArray[np.intp], rows: NDArray[np.intp]
    ) -> list[tuple[int, str]]:
        """Assets whose last ``window`` rows hold one step far longer than the others."""
        n, groups = time_us.shape[0], starts.shape[0]
        group = np.repeat(np.arange(groups), rows)
        pos = np.arange(n) - np.repeat(starts, rows)
        from_end = np.repeat(rows, rows) - 1 - pos
        steps = np.diff(time_us.astype(np.float64), prepend=0.0)
        inside = (pos >= 1) & (from_end < self.window - 1)
        g, s = group[inside], steps[inside]
        count = np.bincount(g, minlength=groups)
        total = np.bincount(g, weights=s, minlength=groups)
        longest = np.zeros(groups)
        np.maximum.at(longest, g, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            others = (total - longest) / (count - 1)
        flagged = (count >= 3) & (others > 0) & (longest > GAP_FACTOR * others)
        return [
            (
                int(i),
                f"gap of {longest[i] / 3.6e9:.3g} h without readings"
                f" (usually {others[i] / 3.6e9:.2g} h)",
            )
            for i in np.flatnonzero(flagged)
        ]
