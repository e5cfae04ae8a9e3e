"""Why a prediction says what it says: its top contributing signals, the failure mode, an action.

Contributions come from shap's ``TreeExplainer`` on each component's gradient-boosting RUL
model, with ``approximate=True`` (Saabas path attributions: each split on a row's path credits
its feature with the change of the expected output; additive like Tree SHAP, and about 60
times cheaper: ~23 µs against ~1.3 ms per row here, which keeps a 10,000-asset scoring pass
within its budget). A contribution is signed, in the kind's life unit: negative shortens the
remaining life. They explain the model's raw output, before the RUL cap.

Nothing here names a kind: a feature's human name is built from the feature builder's own
name of it (``m4_w20_slope``: metric 4, trend over the last 20 readings) and the kind
definition's words for the metric (its description and unit) and its life unit.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from kinds.schemas import KindDefinition
from models.bundle import WearModel

log = logging.getLogger(__name__)
FloatArray = NDArray[np.float64]
METHOD = "shap.TreeExplainer (approximate: Saabas path attributions)"
TOP_SIGNALS = 3
_FEATURE = re.compile(
    r"^m(?P<metric>\d+)_(?:(?P<level>ewm|drift)|w(?P<window>\d+)_(?P<stat>mean|slope|std))$"
)


@dataclass(frozen=True)
class FeatureMeaning:
    """What one model feature measures: a metric (None: the usage since renewal), a statistic
    (``usage``, ``ewm``, ``drift``, ``mean``, ``slope``, ``std``) and its window in rows."""

    metric: str | None
    stat: str
    window: int | None = None


def feature_meanings(model: WearModel) -> list[FeatureMeaning]:
    """The meaning of each of the model's features, parsed from the feature builder's names."""
    out: list[FeatureMeaning] = []
    for name in model.features.get_feature_names_out():
        if name == "usage":
            out.append(FeatureMeaning(None, "usage"))
            continue
        m = _FEATURE.match(str(name))
        if m is None:
            raise ValueError(f"feature {name!r} has no known meaning")
        metric = model.sensor_names[int(m["metric"])]
        if m["level"]:
            out.append(FeatureMeaning(metric, m["level"]))
        else:
            out.append(FeatureMeaning(metric, m["stat"], int(m["window"])))
    return out


def _number(value: float) -> str:
    """``value`` to two significant digits, with thousands separators (8.3, 12, 5,000)."""
    size = abs(value)
    if size >= 99.5:
        return f"{round(value, 1 - math.floor(math.log10(size))):,.0f}"
    if size >= 9.95:
        return f"{value:.0f}"
    if size >= 0.995:
        return f"{value:.1f}"
    if size == 0 or not math.isfinite(value):
        return "0"
    return f"{value:.2g}"


def _signed(value: float, unit: str) -> str:
    sign = "+" if value > 0 else "-" if value < 0 else "±"
    return f"{sign}{_number(abs(value))}{unit}"


class Explainer:
    """Explains a wear model's predictions in the words of its kind definition.

    Built once per model version (shap converts every tree once); :meth:`explain` is called
    per scoring chunk and gives the same output for the same input.
    """

    def __init__(self, model: WearModel, kind: KindDefinition) -> None:
        import shap  # heavy: imported only where predictions are explained

        self.model = model
        self.kind = kind
        self.meanings = feature_meanings(model)
        self.trees = {c: shap.TreeExplainer(r.model_) for c, r in model.rul.items()}
        self.labels: dict[str, str] = {}
        self.units: dict[str, str] = {}
        for name in model.sensor_names:
            try:
                metric = kind.metric(name)
            except KeyError:
                self.labels[name], self.units[name] = name.replace("_", " "), ""
                continue
            self.labels[name] = metric.description or name.replace("_", " ")
            self.units[name] = metric.unit
        self.thresholds = {
            c: {t.metric: t for t in kind.thresholds_of(c)} for c in kind.component_names
        }
        self.parts = {c.name: c.parts[0] for c in kind.components}
        self.life_unit, self.usage_metric = kind.life_unit, kind.usage_metric
        self._modes: dict[tuple[str, int, bool], dict[str, str]] = {}
        # per feature: its metric's column among the sensors (-1: usage), and the factor that
        # turns the feature (in fleet standard deviations) into the metric's unit per window
        self.columns = [
            -1 if m.metric is None else model.sensor_names.index(m.metric) for m in self.meanings
        ]
        self.per_window = np.array(
            [max(1, m.window or 1) - 1 if m.stat == "slope" else 1 for m in self.meanings],
            dtype=np.float64,
        )

    def contributions(self, component: str, features: FloatArray) -> FloatArray:
        """Signed contribution of each feature to each row's RUL (life units)."""
        values = self.trees[component].shap_values(
            features, approximate=True, check_additivity=False
        )
        return np.asarray(values, dtype=np.float64)

    def explain(
        self,
        matrix: FloatArray,
        features: FloatArray,
        predicted: dict[str, dict[str, FloatArray]],
        quality: Sequence[list[str]],
    ) -> dict[str, list[dict[str, Any]]]:
        """Per component, one explanation per asset (rows of ``features``, groups of
        ``matrix`` in the same order); ``quality`` lists each asset's data-quality issues.

        Plain dicts of the shape of :class:`models.schemas.Explanation` (built for 10,000
        assets a pass: no record objects on this path)."""
        starts = np.flatnonzero(np.concatenate(([True], matrix[1:, 0] != matrix[:-1, 0])))
        ends = np.append(starts[1:], matrix.shape[0])
        # every feature in its metric's unit (trends: the change over the window), at once
        scale = self._scales(matrix[ends - 1])
        factor = np.ones_like(features)
        metric_features = [f for f, j in enumerate(self.columns) if j >= 0]
        factor[:, metric_features] = scale[:, [self.columns[f] for f in metric_features]]
        amounts = features * factor * self.per_window
        usage = matrix[:, 1]
        spans = {
            w: usage[ends - 1] - usage[np.maximum(starts, ends - w)]
            for w in {m.window for m in self.meanings if m.window is not None}
        }
        usage_features = np.array([m.metric is None for m in self.meanings])
        out: dict[str, list[dict[str, Any]]] = {}
        for component, values in predicted.items():
            contrib = self.contributions(component, features)
            k = min(TOP_SIGNALS, contrib.shape[1])
            # stable sort: equal contributions keep the feature order, so ties never flip
            top = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
            # the strongest life-shortening signal of a metric (not usage) names the mode
            shortening = np.where(usage_features[None, :], np.inf, contrib)
            worst = np.argmin(shortening, axis=1)
            base = round(float(np.ravel(self.trees[component].expected_value)[0]), 1)
            rows: list[dict[str, Any]] = []
            for i in range(features.shape[0]):
                row = features[i]
                w = int(worst[i])
                mode = (
                    self._failure_mode(component, w, float(row[w])) if contrib[i, w] < 0 else None
                )
                rows.append(
                    {
                        "method": METHOD,
                        "base_rul": base,
                        "signals": [
                            self._signal(
                                int(f), float(contrib[i, f]), float(amounts[i, f]), spans, i
                            )
                            for f in top[i]
                        ],
                        "failure_mode": mode,
                        "action": self._action(component, values, i, mode, quality[i]),
                        "data_quality": quality[i],
                    }
                )
            out[component] = rows
        return out

    # -- words -----------------------------------------------------------------------------

    def _scales(self, last_rows: FloatArray) -> FloatArray:
        """Per asset: each metric's scale (the fleet's spread in its operating regime)."""
        f = self.model.features
        n = len(self.model.setting_names)
        regime = f._regimes(last_rows[:, 2 : 2 + n])
        return np.asarray(f.metric_scale_[regime], dtype=np.float64)

    def _signal(
        self, f: int, contribution: Any, amount: Any, spans: dict[int, Any], i: int
    ) -> dict[str, Any]:
        """One signal of asset ``i``: feature ``f`` worth ``amount`` in its metric's unit."""
        meaning = self.meanings[f]
        life = self.life_unit
        if meaning.metric is None:
            return {
                "signal": self.usage_metric,
                "text": f"{_number(amount)} {life} since renewal",
                "contribution": _round(contribution),
            }
        label, unit = self.labels[meaning.metric], self.units[meaning.metric]
        unit = f" {unit}" if unit else ""
        span = ""
        if meaning.window is not None:
            covered = float(spans[meaning.window][i])
            span = f" over the last {_number(covered)} {life}" if covered > 0 else ""
        stat = meaning.stat
        if stat == "ewm" or stat == "mean":
            side = "above" if amount >= 0 else "below"
            text = f"{label}{span} {_number(abs(amount))}{unit} {side} the fleet's"
        elif stat == "drift":
            text = f"{label} {_signed(amount, unit)} since renewal"
        elif stat == "slope":
            text = f"{label} trend{span}: {_signed(amount, unit)}"
        else:
            text = f"{label} variability{span}: ±{_number(abs(amount))}{unit}"
        return {"signal": meaning.metric, "text": text, "contribution": _round(contribution)}

    def _failure_mode(self, component: str, feature: int, value: float) -> dict[str, str]:
        """The component and the way its strongest life-shortening signal (``feature``,
        whose value is ``value``) moves: towards the kind's end-of-life threshold on that
        metric when there is one, else the way the value departs (the same few words for
        many assets: cached)."""
        key = (component, feature, value > 0)
        found = self._modes.get(key)
        if found is None:
            found = self._modes[key] = self._describe_mode(component, feature, value)
        return found

    def _describe_mode(self, component: str, feature: int, value: float) -> dict[str, str]:
        meaning = self.meanings[feature]
        assert meaning.metric is not None
        limit = self.thresholds.get(component, {}).get(meaning.metric)
        label = self.labels[meaning.metric]
        if limit is not None:
            # the kind says which way this metric ends the component's life
            direction = "falling" if limit.op in ("<", "<=") else "rising"
            unit = f" {self.units[meaning.metric]}" if self.units[meaning.metric] else ""
            text = f"{component}: {label} {direction} towards {limit.value:g}{unit}"
        else:
            if meaning.stat in ("slope", "drift"):
                direction = "rising" if value > 0 else "falling"
            elif meaning.stat == "std":
                direction = "unsteady"
            else:
                direction = "high" if value > 0 else "low"
            text = f"{component}: {label} {direction}"
        return {
            "component": component,
            "signal": meaning.metric,
            "direction": direction,
            "text": text.strip(),
        }

    def _action(
        self,
        component: str,
        values: dict[str, FloatArray],
        i: int,
        mode: dict[str, str] | None,
        issues: list[str],
    ) -> str:
        life = self.life_unit
        if issues:
            return f"Check the sensors first ({'; '.join(issues)}): no order is raised on this"
        part = self.parts.get(component)
        part_text = f" ({part.name}, {part.sku})" if part is not None else ""
        low = float(values["rul_low"][i])
        if low <= self.model.horizon or float(values["failure_probability"][i]) >= 0.5:
            return f"Replace the {component}{part_text} within {_number(max(low, 0.0))} {life}"
        watch = f"; watch {self.labels[mode['signal']]}" if mode is not None else ""
        return f"No action yet: about {_number(float(values['rul'][i]))} {life} left{watch}"


def build_explainer(model: WearModel, kind: KindDefinition) -> Explainer | None:
    """The explainer of ``model``, or None (logged) when shap cannot read one of its RUL models:
    scoring goes on, unexplained, rather than stopping."""
    try:
        return Explainer(model, kind)
    except Exception as exc:  # shap's InvalidModelError and kin: a model of another family
        log.warning("predictions of %s model go unexplained: %s", model.kind, exc)
        return None


def _round(value: float) -> float:
    """Three significant digits: enough to rank, and the stored value stays small."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return float(f"{value:.3g}")


def encode(explanations: Sequence[dict[str, Any]]) -> list[str]:
    """JSON text of each explanation, for the database."""
    return [orjson.dumps(e).decode() for e in explanations]
