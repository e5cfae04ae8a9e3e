"""Why a prediction says what it says: its top contributing signals, the failure mode, an action.

Contributions are those of shap's ``TreeExplainer`` on each component's gradient-boosting RUL
model, with ``approximate=True``, computed by shap's own C code without importing the shap
package (:mod:`models.saabas`; Saabas path attributions: each split on a row's path credits
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
from models.saabas import SaabasTrees

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


def _numbers(values: FloatArray) -> list[str]:
    """:func:`_number` of each value: the format of each is chosen with array comparisons, so
    only the formatting itself runs per value (30,000 numbers a scoring pass)."""
    values = np.asarray(values, dtype=np.float64)
    size = np.abs(values)
    finite = np.isfinite(values)
    big = finite & (size >= 99.5)
    whole = finite & ~big & (size >= 9.95)
    tenths = finite & (size < 9.95) & (size >= 0.995)
    small = finite & (size < 0.995) & (size != 0)
    out = np.full(values.shape[0], "0", dtype=object)  # zero, and what is not finite
    for mask, shown, form in (
        (big, _two_digits(values[big]), "{:,.0f}"),
        (whole, values[whole], "{:.0f}"),
        (tenths, values[tenths], "{:.1f}"),
        (small, values[small], "{:.2g}"),
    ):
        if shown.size:
            # each distinct value formatted once (two significant digits: a few hundred
            # distinct among 10,000; none is zero here, so -0.0 and 0.0 never merge)
            distinct, at = np.unique(shown, return_inverse=True)
            texts = np.array([form.format(v) for v in distinct.tolist()], dtype=object)
            out[mask] = texts[at.reshape(-1)]
    return list(out.tolist())


_TENS = 10.0 ** np.arange(16)  # powers of ten that are exact doubles


def _two_digits(values: FloatArray) -> FloatArray:
    """``round(v, 1 - floor(log10(abs(v))))`` (two significant digits) of values of 99.5 and
    more in size, as :func:`_number` rounds them: on arrays where the rounding is clear (an
    exact power of ten as the step, not within 1e-6 of a half step), by Python's ``round``
    for the rest."""
    size = np.abs(values)
    digits = np.searchsorted(_TENS, size, side="right") - 1  # floor(log10(size)), exactly
    step = _TENS[np.clip(digits - 1, 0, _TENS.shape[0] - 1)]
    steps = values / step
    rounded = np.round(steps) * step
    unclear = (size >= 1e15) | (np.abs(np.abs(steps - np.trunc(steps)) - 0.5) <= 1e-6)
    if unclear.any():
        floor, log10 = math.floor, math.log10
        rounded[unclear] = [round(v, 1 - floor(log10(abs(v)))) for v in values[unclear].tolist()]
    return rounded


def _signed(values: FloatArray) -> list[str]:
    """Each value with its sign (``+``, ``-``, ``±`` for zero) and :func:`_number` of its size."""
    signs = np.where(values > 0, "+", np.where(values < 0, "-", "±")).tolist()
    return [f"{sign}{number}" for sign, number in zip(signs, _numbers(np.abs(values)), strict=True)]


class Explainer:
    """Explains a wear model's predictions in the words of its kind definition.

    Built once per model version (shap converts every tree once); :meth:`explain` is called
    per scoring chunk and gives the same output for the same input.
    """

    def __init__(self, model: WearModel, kind: KindDefinition) -> None:
        self.model = model
        self.kind = kind
        self.meanings = feature_meanings(model)
        # shap's Saabas code without ``import shap`` (pyplot, numba, pandas: models.saabas)
        self.trees = {c: SaabasTrees(r.model_) for c, r in model.rul.items()}
        # the trees of the parts first seen mid-life (models.bundle.JoinedModels), if any
        joined = getattr(model, "joined", None)
        self.joined_trees = (
            {} if joined is None else {c: SaabasTrees(r.model_) for c, r in joined.rul.items()}
        )
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
        self.signal_names = [m.metric or self.usage_metric for m in self.meanings]
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

    def contributions(
        self,
        component: str,
        features: FloatArray,
        joined: NDArray[np.bool_] | None = None,
    ) -> FloatArray:
        """Signed contribution of each feature to each row's RUL (life units); the rows of
        ``joined`` (parts first seen mid-life) by the trees that predicted them."""
        out = self.trees[component].contributions(features)
        if joined is not None and component in self.joined_trees:
            out[joined] = self.joined_trees[component].contributions(features[joined])
        return out

    def base_rul(self, component: str, joined: NDArray[np.bool_] | None, n: int) -> list[float]:
        """Per row, the RUL the trees that predicted it start from (rounded as shown)."""
        main = round(float(np.ravel(self.trees[component].expected_value)[0]), 1)
        if joined is None or component not in self.joined_trees:
            return [main] * n
        late = round(float(np.ravel(self.joined_trees[component].expected_value)[0]), 1)
        return [late if j else main for j in joined.tolist()]

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
        n = features.shape[0]
        # the parts first seen mid-life: the joined trees predicted them (WearModel.predict)
        joined = self.model.joined_rows(usage[starts])
        out: dict[str, list[dict[str, Any]]] = {}
        for component, values in predicted.items():
            contrib = self.contributions(component, features, joined)
            k = min(TOP_SIGNALS, contrib.shape[1])
            top = _top(np.abs(contrib), k)
            # the strongest life-shortening signal of a metric (not usage) names the mode
            shortening = np.where(usage_features[None, :], np.inf, contrib)
            worst = np.argmin(shortening, axis=1)
            base = self.base_rul(component, joined, n)
            at = np.arange(n)
            modes = self._modes_of(
                component, worst, features[at, worst] > 0, contrib[at, worst] < 0
            )
            # the words of all n * k signals, feature by feature rather than one by one
            texts = self._texts(top, np.take_along_axis(amounts, top, axis=1), spans)
            shares = _rounded(np.take_along_axis(contrib, top, axis=1).ravel())
            names = [self.signal_names[f] for f in top.ravel().tolist()]
            actions = self._actions(component, values, modes, quality)
            signals = [
                {"signal": name, "text": text, "contribution": share}
                for name, text, share in zip(names, texts, shares, strict=True)
            ]
            out[component] = [
                {
                    "method": METHOD,
                    "base_rul": base[i],
                    "signals": signals[i * k : i * k + k],
                    "failure_mode": modes[i],
                    "action": actions[i],
                    "data_quality": quality[i],
                }
                for i in range(n)
            ]
        return out

    # -- words -----------------------------------------------------------------------------

    def _scales(self, last_rows: FloatArray) -> FloatArray:
        """Per asset: each metric's scale (the fleet's spread in its operating regime)."""
        f = self.model.features
        n = len(self.model.setting_names)
        regime = f._regimes(last_rows[:, 2 : 2 + n])
        return np.asarray(f.metric_scale_[regime], dtype=np.float64)

    def _texts(
        self, top: NDArray[np.intp], amounts: FloatArray, spans: dict[int, Any]
    ) -> list[str]:
        """The text of each signal, row-major over ``top`` (feature ``top[i, j]`` of asset ``i``
        worth ``amounts[i, j]`` in its metric's unit), made feature by feature: the words of a
        feature are fixed, only its numbers change from asset to asset."""
        flat, amount = top.ravel(), amounts.ravel()
        assets = np.repeat(np.arange(top.shape[0]), top.shape[1])
        out = np.empty(flat.shape[0], dtype=object)
        for f in np.unique(flat).tolist():
            at = np.flatnonzero(flat == f)
            out[at] = np.array(self._feature_texts(f, amount[at], assets[at], spans), dtype=object)
        return list(out.tolist())

    def _feature_texts(
        self, f: int, amount: FloatArray, assets: NDArray[np.intp], spans: dict[int, Any]
    ) -> list[str]:
        """The texts of feature ``f`` worth ``amount`` (its metric's unit) for ``assets``."""
        meaning = self.meanings[f]
        life = self.life_unit
        if meaning.metric is None:
            return [f"{number} {life} since renewal" for number in _numbers(amount)]
        label, unit = self.labels[meaning.metric], self.units[meaning.metric]
        unit = f" {unit}" if unit else ""
        if meaning.window is not None:
            covered = np.asarray(spans[meaning.window], dtype=np.float64)[assets]
            span = [
                f" over the last {number} {life}" if c > 0 else ""
                for number, c in zip(_numbers(covered), covered.tolist(), strict=True)
            ]
        else:
            span = [""] * amount.shape[0]
        stat = meaning.stat
        if stat == "ewm" or stat == "mean":
            return [
                f"{label}{s} {number}{unit} {'above' if a >= 0 else 'below'} the fleet's"
                for s, number, a in zip(
                    span, _numbers(np.abs(amount)), amount.tolist(), strict=True
                )
            ]
        if stat == "drift":
            return [f"{label} {signed}{unit} since renewal" for signed in _signed(amount)]
        if stat == "slope":
            return [
                f"{label} trend{s}: {signed}{unit}"
                for s, signed in zip(span, _signed(amount), strict=True)
            ]
        return [
            f"{label} variability{s}: ±{number}{unit}"
            for s, number in zip(span, _numbers(np.abs(amount)), strict=True)
        ]

    def _modes_of(
        self,
        component: str,
        worst: NDArray[np.intp],
        positive: NDArray[np.bool_],
        shortening: NDArray[np.bool_],
    ) -> list[dict[str, str] | None]:
        """Per asset, the failure mode named by its strongest life-shortening signal of a metric
        (feature ``worst``, whose value is ``positive`` or not), or None when that signal does
        not shorten the life (``shortening`` false)."""
        modes: list[dict[str, str] | None] = [None] * worst.shape[0]
        key = worst.astype(np.int64) * 2 + positive
        for code in np.unique(key[shortening]).tolist():
            mode = self._failure_mode(component, code // 2, bool(code % 2))
            for i in np.flatnonzero((key == code) & shortening).tolist():
                modes[i] = mode
        return modes

    def _failure_mode(self, component: str, feature: int, positive: bool) -> dict[str, str]:
        """The component and the way its strongest life-shortening signal (``feature``, whose
        value is ``positive`` or not) moves: towards the kind's end-of-life threshold on that
        metric when there is one, else the way the value departs (the same few words for
        many assets: cached)."""
        key = (component, feature, positive)
        found = self._modes.get(key)
        if found is None:
            found = self._modes[key] = self._describe_mode(component, feature, positive)
        return found

    def _describe_mode(self, component: str, feature: int, positive: bool) -> dict[str, str]:
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
                direction = "rising" if positive else "falling"
            elif meaning.stat == "std":
                direction = "unsteady"
            else:
                direction = "high" if positive else "low"
            text = f"{component}: {label} {direction}"
        return {
            "component": component,
            "signal": meaning.metric,
            "direction": direction,
            "text": text.strip(),
        }

    def _actions(
        self,
        component: str,
        values: dict[str, FloatArray],
        modes: Sequence[dict[str, str] | None],
        quality: Sequence[list[str]],
    ) -> list[str]:
        """Per asset, what to do: check the sensors (any data-quality finding), replace within
        the interval's low end (due within the horizon, or likely to fail), or watch. Each
        number is formatted only for the assets whose words show it."""
        life = self.life_unit
        part = self.parts.get(component)
        part_text = f" ({part.name}, {part.sku})" if part is not None else ""
        low = values["rul_low"]
        replace = (low <= self.model.horizon) | (values["failure_probability"] >= 0.5)
        checked = np.fromiter(map(bool, quality), dtype=np.bool_, count=len(quality))
        out = np.empty(len(quality), dtype=object)
        at = np.flatnonzero(checked)
        if at.size:
            out[at] = np.array(
                [
                    f"Check the sensors first ({'; '.join(quality[i])}): no order is raised on this"
                    for i in at.tolist()
                ],
                dtype=object,
            )
        at = np.flatnonzero(~checked & replace)
        if at.size:
            replace_text = f"Replace the {component}{part_text} within "
            out[at] = np.array(
                [f"{replace_text}{w} {life}" for w in _numbers(np.maximum(low[at], 0.0))],
                dtype=object,
            )
        at = np.flatnonzero(~checked & ~replace)
        if at.size:
            labels = self.labels
            out[at] = np.array(
                [
                    f"No action yet: about {left} {life} left"
                    + (f"; watch {labels[mode['signal']]}" if mode is not None else "")
                    for left, mode in zip(
                        _numbers(values["rul"][at]), [modes[i] for i in at.tolist()], strict=True
                    )
                ],
                dtype=object,
            )
        return list(out.tolist())


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


_EXACT_TENS = 10.0 ** np.arange(23)  # 10**0 .. 10**22: every one an exact double


def _rounded(values: FloatArray) -> list[float]:
    """:func:`_round` of each value, on arrays: the three significant digits as an integer
    ``m`` (from ``v * 10**k``), then ``m / 10**k`` (or ``m * 10**-k``), which, both exact
    doubles, IEEE arithmetic rounds to the double nearest the decimal, as ``float()`` of the
    text does. By Python's formatting where the digits are not clear: within 1e-6 of a half
    step, at the edge of a decade, or beyond the exact powers of ten."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape[0], dtype=np.float64)  # zero, and what is not finite
    at = np.flatnonzero(np.isfinite(values) & (values != 0))
    v = values[at]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = 2 - np.floor(np.log10(np.abs(v))).astype(np.int64)  # decimals kept
        exact = np.abs(k) <= 22
        ten = _EXACT_TENS[np.clip(np.abs(k), 0, 22)]
        scaled = np.where(k >= 0, v * ten, v / ten)
        digits = np.round(scaled)
        size = np.abs(scaled)
        clear = (
            exact
            & (size >= 100.01)
            & (size < 999.99)
            & (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) > 1e-6)
        )
        out[at] = np.where(k >= 0, digits / ten, digits * ten)
    unclear = at[~clear]
    if unclear.size:
        out[unclear] = [float(f"{x:.3g}") for x in values[unclear].tolist()]
    return list(out.tolist())


def _top(sizes: FloatArray, k: int) -> NDArray[np.intp]:
    """The columns of the ``k`` largest ``sizes`` of each row, largest first, ties in column
    order: the first ``k`` of a stable descending sort (``np.argsort(-sizes, kind="stable")``),
    by ``k`` arg-maxima (each the first of its ties) instead of sorting every row's columns."""
    if not np.isfinite(sizes).all() or (sizes < 0).any():
        return np.argsort(-sizes, axis=1, kind="stable")[:, :k]
    left = sizes.copy()
    rows = np.arange(sizes.shape[0])
    top = np.empty((sizes.shape[0], k), dtype=np.intp)
    for j in range(k):
        top[:, j] = np.argmax(left, axis=1)
        left[rows, top[:, j]] = -1.0  # below every size: taken
    return top


def encode(explanations: Sequence[dict[str, Any]]) -> list[str]:
    """JSON text of each explanation, for the database."""
    return [orjson.dumps(e).decode() for e in explanations]


_NEXT = b'},{"method":'  # between two explanations in the JSON of their list


def encode_utf8(explanations: Sequence[dict[str, Any]]) -> list[bytes]:
    """:func:`encode`'s texts as UTF-8 bytes, what the database write sends (no ``str`` made
    and encoded again per asset).

    The list is dumped at once (one ``orjson.dumps`` per explanation cost ~4 times as much)
    and cut between its explanations: each starts with its ``method``, and ``},{"method":``
    cannot occur inside a JSON string (its quotes would be escaped), so the cuts are exactly
    the explanations' bounds; one by one when the count does not come out right."""
    if not explanations:
        return []
    parts = orjson.dumps(list(explanations))[1:-1].split(_NEXT)
    if len(parts) != len(explanations) or not parts[0].startswith(b'{"method":'):
        return [orjson.dumps(e) for e in explanations]
    if len(parts) == 1:
        return parts
    head = b'{"method":'
    return [parts[0] + b"}", *[head + p + b"}" for p in parts[1:-1]], head + parts[-1]]
