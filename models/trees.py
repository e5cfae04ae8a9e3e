"""A fitted gradient-boosting model's trees as arrays, predicted by shap's C code in one call.

scikit-learn's ``HistGradientBoosting*.predict`` validates the input, then calls one compiled
routine per tree (an OpenMP region, an output array and an addition into the raw prediction
each): for the tire model's 300 + 200 trees on 2,000 rows that per-tree overhead is most of
the cost. shap's C extension walks every tree of every row in one call
(``dense_tree_predict``) on the arrays its ``TreeEnsemble`` holds, which
:class:`models.saabas.SaabasTrees` already builds for the explanations. It gives the same raw
prediction to the bit: the same comparisons in double precision (``x <= threshold`` left, NaN
to the split's missing side) and the same additions in the same order (zero, plus the
baseline, plus each tree's leaf value in turn), as ``tests/test_trees.py`` checks against
scikit-learn's on every split's threshold and its neighbouring doubles.

Only numerical splits of a model with one tree per iteration (a regressor, a binary
classifier) and no categorical preprocessing are taken; :meth:`TreeArrays.of` gives None for
any other model, which then predicts through scikit-learn.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting

FloatArray = NDArray[np.float64]

_lock = threading.Lock()
_cext: ModuleType | None = None


def shap_cext() -> ModuleType:
    """shap's C extension (``shap._cext``), loaded from the installed package's directory
    without running ``shap/__init__`` (which imports pyplot, numba and pandas); ImportError when
    shap is not installed or has none."""
    global _cext
    with _lock:
        if _cext is None:
            spec = importlib.util.find_spec("shap")  # finds the package; does not import it
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("shap is not installed: predictions cannot be explained")
            found = [
                path
                for folder in spec.submodule_search_locations
                for suffix in importlib.machinery.EXTENSION_SUFFIXES
                if (path := Path(folder) / f"_cext{suffix}").is_file()
            ]
            if not found:
                raise ImportError(f"shap's C extension _cext is not in {spec.origin}")
            loader = importlib.machinery.ExtensionFileLoader("shap._cext", str(found[0]))
            ext_spec = importlib.util.spec_from_loader("shap._cext", loader)
            if ext_spec is None:
                raise ImportError(f"cannot load shap's C extension from {found[0]}")
            module = importlib.util.module_from_spec(ext_spec)
            loader.exec_module(module)
            _cext = module
        return _cext


class TreeArrays:
    """The trees of a fitted ``HistGradientBoostingRegressor`` or binary classifier as shap's
    ``TreeEnsemble`` holds them (one row per tree, padded with -1 / 0).

    With ``expectations`` every internal node's value becomes its children's weighted mean
    (shap's ``compute_expectations``, what Saabas attributions need); leaves keep the model's
    values either way, and :meth:`raw_predict` reads only the leaves."""

    def __init__(self, model: Any, *, expectations: bool = False) -> None:
        if not isinstance(model, BaseHistGradientBoosting):
            raise TypeError(f"not a histogram gradient-boosting model: {type(model).__name__}")
        predictors = model._predictors
        if not predictors or any(len(p) != 1 for p in predictors):
            raise ValueError("the gradient-boosting model has no trees, or several per step")
        cext = shap_cext() if expectations else None
        trees = [p[0].nodes for p in predictors]
        n_trees, width = len(trees), max(t.shape[0] for t in trees)
        self.children_left = np.full((n_trees, width), -1, dtype=np.int32)
        self.children_right = np.full((n_trees, width), -1, dtype=np.int32)
        self.children_default = np.full((n_trees, width), -1, dtype=np.int32)
        self.features = np.full((n_trees, width), -1, dtype=np.int32)
        self.thresholds = np.zeros((n_trees, width), dtype=np.float64)
        self.threshold_types = np.zeros((n_trees, width), dtype=np.int32)  # all numerical
        self.values = np.zeros((n_trees, width, 1), dtype=np.float64)
        max_depth = 0
        for i, nodes in enumerate(trees):
            n = nodes.shape[0]
            leaf = nodes["is_leaf"].astype(bool)
            left = np.where(leaf, -1, nodes["left"]).astype(np.int32)
            right = np.where(leaf, -1, nodes["right"]).astype(np.int32)
            self.children_left[i, :n] = left
            self.children_right[i, :n] = right
            self.children_default[i, :n] = np.where(
                leaf, -1, np.where(nodes["missing_go_to_left"] != 0, nodes["left"], nodes["right"])
            )
            self.features[i, :n] = np.where(leaf, -2, nodes["feature_idx"])
            self.thresholds[i, :n] = nodes["num_threshold"]
            values = np.ascontiguousarray(nodes["value"], dtype=np.float64).reshape(n, 1)
            if cext is not None:
                # shap's SingleTree: each internal node's value becomes the weighted mean of
                # its children's (compute_expectations, in place); the leaves keep the model's
                weights = np.ascontiguousarray(nodes["count"], dtype=np.float64)
                depth = cext.compute_expectations(left, right, weights, values)
                max_depth = max(max_depth, int(depth))
            else:
                max_depth = max(max_depth, int(nodes["depth"].max()))
            self.values[i, :n] = values
        self.max_depth = max_depth
        self.base_offset = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
        if self.base_offset.shape != (1,):
            raise ValueError("the gradient-boosting model has more than one output")

    @classmethod
    def of(cls, model: Any) -> TreeArrays | None:
        """The arrays of ``model`` when :meth:`raw_predict` gives its raw prediction to the
        bit: a fitted histogram gradient-boosting model with one tree per iteration, no
        categorical split and no categorical preprocessing; None for any other."""
        if not isinstance(model, BaseHistGradientBoosting) or not hasattr(model, "_predictors"):
            return None
        if getattr(model, "_preprocessor", None) is not None or any(
            len(step) != 1 or step[0].nodes["is_categorical"].any() for step in model._predictors
        ):
            return None
        try:
            return cls(model)
        except ValueError:
            return None

    def raw_predict(self, features: FloatArray) -> FloatArray:
        """The model's raw prediction of each row (``model._raw_predict(features)[:, 0]``, the
        same doubles): shap's ``dense_tree_predict`` with no output transform. ``features``
        are taken as they are (float64, no validation beyond the shape): the caller has
        checked them (:meth:`models.bundle.WearModel.predict` through the anomaly scorer)."""
        x = self.matrix(features)
        out = np.zeros((x.shape[0], 1), dtype=np.float64)
        self.run_cext("dense_tree_predict", x, out)
        return out[:, 0]

    @staticmethod
    def matrix(features: FloatArray) -> FloatArray:
        """``features`` as the C contiguous float64 matrix shap's C functions take."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be a matrix, got {x.ndim} dimension(s)")
        return x

    def run_cext(self, function: str, x: FloatArray, out: FloatArray) -> None:
        """Run shap's C ``function`` (``dense_tree_predict`` or ``dense_tree_saabas``) over
        every tree for the rows of ``x`` (from :meth:`matrix`), with no output transform,
        into ``out``."""
        getattr(shap_cext(), function)(
            self.children_left,
            self.children_right,
            self.children_default,
            self.features,
            self.thresholds,
            self.threshold_types,
            self.values,
            self.max_depth,
            self.values.shape[0],  # every tree
            self.base_offset,
            0,  # identity output transform: the raw prediction (Saabas applies none)
            x,
            np.isnan(x),
            None,
            out,
        )
