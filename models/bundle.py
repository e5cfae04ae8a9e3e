"""The wear-model artifact: one kind's fitted bundle (features, per-component RUL and failure
risk, anomaly scorer) and its safe serialisation.

Artifacts are skops files (no pickle). Loading refuses any type outside
:data:`TRUSTED_TYPES` — an explicit list, never "whatever the file says". The
gradient-boosting trees are stored packed (:class:`PackedTrees`: six arrays a model instead of
three a tree), checked and unpacked after skops' audit; artifacts stored before load as they
are. The bundle lived
in ``models.registry`` before; artifacts stored then name ``models.registry.WearModel``,
which the registry still exports, so they load unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import skops.io as sio
from numpy.typing import NDArray
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from skops.io.exceptions import UntrustedTypesFoundException

from fleetcare.errors import Invalid
from models.estimators import AnomalyScorer, FailureRiskClassifier, RULRegressor
from models.features import WindowFeatures
from models.trees import TreeArrays

FloatArray = NDArray[np.float64]
ARTIFACT_FORMAT = "skops"
DEFAULT_COVERAGE = 0.8

# Every type a wear-model artifact may contain beyond what skops trusts by default.
TRUSTED_TYPES: tuple[str, ...] = (
    "models.bundle.WearModel",
    "models.bundle.PackedTrees",
    "models.bundle.JoinedModels",
    "models.registry.WearModel",  # artifacts stored before the bundle left the registry
    "models.features.WindowFeatures",
    "models.estimators.RULRegressor",
    "models.estimators.FailureRiskClassifier",
    "models.estimators.AnomalyScorer",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
    "builtins.float",
    "builtins.int",
    "builtins.str",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.intp",
    "numpy.random.mtrand.RandomState",
)


@dataclass(frozen=True)
class WearTrees:
    """Per component, the RUL regressor's and the failure-risk classifier's trees as arrays
    (:meth:`WearModel.tree_arrays`); None: that model predicts through scikit-learn."""

    rul: dict[str, TreeArrays | None]
    risk: dict[str, TreeArrays | None]
    # the same of the joined estimators (:class:`JoinedModels`), when the model has them
    joined_rul: dict[str, TreeArrays | None] = field(default_factory=dict)
    joined_risk: dict[str, TreeArrays | None] = field(default_factory=dict)


class WearModel:
    """Everything needed to score one kind: features, per-component RUL and failure risk,
    an asset-level anomaly scorer, and the column layout the features expect.

    ``predict`` takes the features of each asset's last row; all estimators are fitted.
    """

    def __init__(
        self,
        kind: str,
        usage_metric: str,
        setting_names: Sequence[str],
        sensor_names: Sequence[str],
        features: WindowFeatures,
        rul: dict[str, RULRegressor],
        risk: dict[str, FailureRiskClassifier],
        anomaly: AnomalyScorer,
        horizon: float,
        coverage: float = DEFAULT_COVERAGE,
        component_coverage: Mapping[str, float] | None = None,
        joined: JoinedModels | None = None,
    ) -> None:
        self.kind = kind
        self.usage_metric = usage_metric
        self.setting_names = list(setting_names)
        self.sensor_names = list(sensor_names)
        self.features = features
        self.rul = rul
        self.risk = risk
        self.anomaly = anomaly
        self.horizon = float(horizon)
        self.coverage = float(coverage)
        # per component, the interval coverage when it differs from ``coverage`` (the kind's
        # model.coverage setting); artifacts stored before it have none
        self.component_coverage = {c: float(v) for c, v in (component_coverage or {}).items()}
        # the estimators that score the parts first seen mid-life (the kind's joined_model
        # setting); artifacts stored before it, and kinds without it, have none
        self.joined = joined

    def joined_rows(self, first_usage: FloatArray | None) -> NDArray[np.bool_] | None:
        """Which assets (their usage counter at the first reading of the life fleetcare
        has) the joined estimators score; None when none does (no such estimators, or no
        first usage given)."""
        joined = getattr(self, "joined", None)
        if joined is None or first_usage is None:
            return None
        mask = np.asarray(first_usage, dtype=np.float64) > joined.after
        return mask if mask.any() else None

    def coverage_of(self, component: str) -> float:
        """The coverage of ``component``'s RUL interval (its low end gives the due date)."""
        return float(getattr(self, "component_coverage", {}).get(component, self.coverage))

    @property
    def components(self) -> list[str]:
        """Components this model predicts, in a stable order."""
        return sorted(self.rul)

    @property
    def column_names(self) -> list[str]:
        """Metric names of the readings-matrix columns after the usage column."""
        return [*self.setting_names, *self.sensor_names]

    def history_rows(self, tolerance: float = 1e-9) -> tuple[int, int]:
        """(head, tail) rows of an asset's history that scoring reads.

        The head is the baseline the drift features compare with; the tail covers the
        longest window and the rows whose weight in the smoothed level is above
        ``tolerance`` (older rows change the features by less than that, relatively).
        """
        f = self.features
        return int(f.baseline_window), max(max(f.windows), f.ewm_rows(tolerance))

    def tree_arrays(self) -> WearTrees:
        """Each component's gradient-boosting trees as arrays (:class:`models.trees.TreeArrays`)
        for :meth:`predict`: built once per loaded model (~15 ms of CPU for 500 trees), not
        stored."""
        joined = getattr(self, "joined", None)
        return WearTrees(
            rul={c: TreeArrays.of(e.model_) for c, e in self.rul.items()},
            risk={c: TreeArrays.of(getattr(e, "model_", None)) for c, e in self.risk.items()},
            joined_rul={}
            if joined is None
            else {c: TreeArrays.of(e.model_) for c, e in joined.rul.items()},
            joined_risk={}
            if joined is None
            else {c: TreeArrays.of(getattr(e, "model_", None)) for c, e in joined.risk.items()},
        )

    def predict(
        self,
        features: FloatArray,
        components: Sequence[str] | None = None,
        trees: WearTrees | None = None,
        first_usage: FloatArray | None = None,
    ) -> dict[str, dict[str, FloatArray]]:
        """Per component (all, or those named): rul, rul_low, rul_high, failure_probability;
        plus anomaly_score. With ``trees`` (:meth:`tree_arrays`) the gradient-boosting models
        predict in one C call each instead of one call per tree, the same values to the bit.
        ``first_usage``: per row, the usage counter at the first reading of the asset's life
        that the features were computed from; the assets first seen mid-life
        (:meth:`joined_rows`) are scored by the joined estimators."""
        out: dict[str, dict[str, FloatArray]] = {}
        # also checks the features (a matrix of the model's width, every value finite)
        anomaly = self.anomaly.anomaly_score(features)
        if trees is not None:
            features = np.ascontiguousarray(features, dtype=np.float64)  # a row at a time
        else:
            # the trees get the columns contiguous: each reads one feature of row after row,
            # and the gradient boosting then walks ~15% faster on 2,000 rows (the same values)
            features = np.asfortranarray(features)
        joined = self.joined_rows(first_usage)
        for component in self.components if components is None else components:
            values = self._predict_with(
                self.rul[component],
                self.risk[component],
                component,
                features,
                None if trees is None else trees.rul.get(component),
                None if trees is None else trees.risk.get(component),
            )
            if joined is not None and self.joined is not None:
                late = self._predict_with(
                    self.joined.rul[component],
                    self.joined.risk[component],
                    component,
                    features[joined],
                    None if trees is None else trees.joined_rul.get(component),
                    None if trees is None else trees.joined_risk.get(component),
                )
                for name, v in late.items():
                    values[name][joined] = v
            out[component] = {**values, "anomaly_score": anomaly}
        return out

    def _predict_with(
        self,
        regressor: RULRegressor,
        classifier: FailureRiskClassifier,
        component: str,
        features: FloatArray,
        rul_trees: TreeArrays | None,
        risk_trees: TreeArrays | None,
    ) -> dict[str, FloatArray]:
        """One component's predictions by one regressor and classifier (through their trees
        as arrays when given)."""
        if rul_trees is None:
            point = regressor.predict(features)
        else:
            point = regressor.predict_from_raw(rul_trees.raw_predict(features))
        low, high = regressor.predict_interval(
            features, coverage=self.coverage_of(component), point=point
        )
        if risk_trees is None:
            proba = classifier.predict_proba(features)[:, 1]
        else:
            proba = classifier.failure_probability_from_raw(risk_trees.raw_predict(features))
        return {
            "rul": point,
            "rul_low": np.minimum(low, point),
            "rul_high": np.maximum(high, point),
            "failure_probability": np.clip(proba, 0.0, 1.0),
        }


class JoinedModels:
    """Per component, the RUL regressor and failure-risk classifier that score the parts
    fleetcare first saw mid-life: those whose usage counter at the first reading of their
    life is above ``after`` (in the kind's life unit; the counters count since the part was
    fitted). Trained on every life from new and once more from a late start
    (:func:`models.lifetimes.with_late_starts`), so that a worn part whose earlier history
    fleetcare never saw is read from its levels and its counter, not from how little it
    changed since its first reading (docs/evaluate.md, "Parts that join mid-life")."""

    def __init__(
        self,
        rul: dict[str, RULRegressor],
        risk: dict[str, FailureRiskClassifier],
        after: float,
    ) -> None:
        self.rul = rul
        self.risk = risk
        self.after = float(after)


_TREE_ATTRIBUTES = {"nodes", "binned_left_cat_bitsets", "raw_left_cat_bitsets"}
_BITSET_WORDS = 8  # uint32 words of a categorical split's bitset (sklearn's X_BITSET_INNER)


class PackedTrees:
    """The trees of one gradient-boosting model (its ``_predictors``: per iteration, one
    ``TreePredictor`` per output) as six arrays: each tree's nodes and bitsets end to end, and
    how many belong to each tree.

    A ``TreePredictor`` is three numpy arrays; skops stores each array as a file of the
    artifact and each object as nodes of its tree of types, which it audits and builds one
    by one: 500 trees were 1,500 of the artifact's 1,667 arrays and ~5,000 of its ~7,600
    nodes, most of a fresh worker's model load. Packed, the artifact is audited by skops as
    before (this class is in :data:`TRUSTED_TYPES`: numbers only, no code), and
    :meth:`unpack` checks the arrays before it builds the predictors from them."""

    def __init__(self, predictors: Sequence[Sequence[Any]]) -> None:
        steps = len(predictors)
        per_step = len(predictors[0]) if steps else 0
        trees = [tree for step in predictors for tree in step]
        if len(trees) != steps * per_step or any(
            type(t) is not TreePredictor or set(vars(t)) != _TREE_ATTRIBUTES for t in trees
        ):
            raise ValueError("only a gradient-boosting model's TreePredictor lists are packed")
        self.steps = np.array([steps, per_step], dtype=np.int64)
        self.node_counts = np.array([t.nodes.shape[0] for t in trees], dtype=np.int64)
        self.nodes = _joined([t.nodes for t in trees], np.empty(0, PREDICTOR_RECORD_DTYPE))
        no_bitsets = np.empty((0, _BITSET_WORDS), dtype=np.uint32)
        self.binned_counts = np.array(
            [t.binned_left_cat_bitsets.shape[0] for t in trees], dtype=np.int64
        )
        self.binned = _joined([t.binned_left_cat_bitsets for t in trees], no_bitsets)
        self.raw_counts = np.array([t.raw_left_cat_bitsets.shape[0] for t in trees], np.int64)
        self.raw = _joined([t.raw_left_cat_bitsets for t in trees], no_bitsets)

    def unpack(self, n_features: int) -> list[list[TreePredictor]]:
        """The predictors again (views of the packed arrays, the same values); Invalid when
        the arrays do not describe trees of ``n_features`` features."""
        names = ("steps", "node_counts", "nodes", "binned_counts", "binned", "raw_counts", "raw")
        if set(vars(self)) != set(names) or not all(
            type(getattr(self, a)) is np.ndarray for a in names
        ):
            raise Invalid("artifact's packed trees are not the arrays they should be")
        steps, per_step = (int(v) for v in np.asarray(self.steps).reshape(-1)[:2])
        n = steps * per_step
        nodes, binned, raw = self.nodes, self.binned, self.raw
        counts = [self.node_counts, self.binned_counts, self.raw_counts]
        if (
            np.asarray(self.steps).shape != (2,)
            or min(steps, per_step) < 0
            or any(c.dtype != np.int64 or c.shape != (n,) or (c < 0).any() for c in counts)
            or nodes.dtype != PREDICTOR_RECORD_DTYPE
            or nodes.shape != (int(self.node_counts.sum()),)
            or any(
                b.dtype != np.uint32 or b.shape != (int(c.sum()), _BITSET_WORDS)
                for b, c in ((binned, self.binned_counts), (raw, self.raw_counts))
            )
        ):
            raise Invalid("artifact's packed trees do not fit together (damaged or altered)")
        size = np.repeat(self.node_counts, self.node_counts)
        split = nodes["is_leaf"] == 0
        if (self.node_counts == 0).any() or (
            (nodes["left"][split] >= size[split]).any()
            or (nodes["right"][split] >= size[split]).any()
            or (nodes["feature_idx"][split] < 0).any()
            or (nodes["feature_idx"][split] >= n_features).any()
        ):
            raise Invalid("artifact's packed trees point outside their nodes or features")
        ends = [np.cumsum(c)[:-1] for c in counts]
        trees = (
            [
                TreePredictor(t, b, r)
                for t, b, r in zip(
                    np.split(nodes, ends[0]),
                    np.split(binned, ends[1]),
                    np.split(raw, ends[2]),
                    strict=True,
                )
            ]
            if n
            else []
        )
        return [trees[i * per_step : (i + 1) * per_step] for i in range(steps)]


def _joined(arrays: Sequence[np.ndarray], empty: np.ndarray) -> np.ndarray:
    return np.concatenate(arrays) if arrays else empty


def _packed_estimator(estimator: Any) -> Any:
    """A shallow copy of ``estimator`` whose gradient-boosting model (``model_``) holds its
    trees packed (:class:`PackedTrees`); ``estimator`` itself when it has none."""
    boosting = getattr(estimator, "model_", None)
    if not isinstance(boosting, BaseHistGradientBoosting):
        return estimator
    packed = copy.copy(boosting)
    packed._predictors = PackedTrees(boosting._predictors)
    out = copy.copy(estimator)
    out.model_ = packed
    return out


def _estimators(model: WearModel) -> list[Any]:
    """Every RUL regressor and failure-risk classifier of ``model``, the joined ones too."""
    joined = getattr(model, "joined", None)
    extra = [] if joined is None else [*joined.rul.values(), *joined.risk.values()]
    return [*model.rul.values(), *model.risk.values(), *extra]


def _unpack_estimators(model: WearModel) -> None:
    """Each gradient-boosting model's trees as predictors again, in place."""
    for estimator in _estimators(model):
        boosting = getattr(estimator, "model_", None)
        trees = getattr(boosting, "_predictors", None)
        if isinstance(boosting, BaseHistGradientBoosting) and isinstance(trees, PackedTrees):
            boosting._predictors = trees.unpack(int(boosting.n_features_in_))


def dump_model(model: WearModel) -> bytes:
    """Serialise a wear model with skops, each gradient-boosting model's trees packed
    (:class:`PackedTrees`); ``model`` itself is not changed."""
    packed = copy.copy(model)
    packed.rul = {c: _packed_estimator(e) for c, e in model.rul.items()}
    packed.risk = {c: _packed_estimator(e) for c, e in model.risk.items()}
    joined = getattr(model, "joined", None)
    if joined is not None:
        packed.joined = JoinedModels(
            {c: _packed_estimator(e) for c, e in joined.rul.items()},
            {c: _packed_estimator(e) for c, e in joined.risk.items()},
            joined.after,
        )
    return sio.dumps(packed)


def load_model(data: bytes) -> WearModel:
    """Load a skops artifact, refusing any type outside :data:`TRUSTED_TYPES`.

    ``skops.io.loads`` audits the whole object tree against that list before it constructs
    anything, so the artifact is read once (a separate ``get_untrusted_types`` first read and
    audited it twice: half of a fresh worker's artifact load). Packed trees are checked and
    unpacked after; artifacts stored before packing hold the predictors themselves and load
    as they are."""
    try:
        model = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        found = str(exc).splitlines()[0]
        raise Invalid(f"artifact holds types that are not trusted ({found})") from exc
    if not isinstance(model, WearModel):
        raise Invalid(f"artifact is a {type(model).__name__}, not a WearModel")
    _unpack_estimators(model)
    return model
