"""Saabas path attributions of a gradient-boosting RUL model, by shap's own C code, without
importing the ``shap`` package.

``import shap`` runs the package's ``__init__``, which imports matplotlib's pyplot (through
``shap.plots``), numba and pandas: 0.5-0.9 CPU-s that a fresh scoring worker spent, holding
the GIL, in its first pass. Scoring uses one function of shap: ``TreeExplainer(model)
.shap_values(X, approximate=True)`` on a ``HistGradientBoostingRegressor``, which converts
the trees (``TreeEnsemble``: node arrays, then ``compute_expectations`` on each tree, which
sets every internal node's value to its children's weighted mean), then runs
``dense_tree_saabas`` from shap's C extension ``shap._cext``. :class:`SaabasTrees` does the
same conversion with numpy and calls the same two C functions, loading the extension module
from the installed shap package's directory on its own (it needs only numpy). The values are
the same to the bit: ``tests/test_saabas.py`` compares them with ``shap.TreeExplainer``'s.

The extension's functions are shap's internal interface (stable since shap 0.2x, checked
by that test against the shap that is installed).
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
from sklearn.ensemble import HistGradientBoostingRegressor

FloatArray = NDArray[np.float64]

_lock = threading.Lock()
_cext: ModuleType | None = None


def shap_cext() -> ModuleType:
    """shap's C extension (``shap._cext``), loaded from the installed package's directory
    without running ``shap/__init__``; ImportError when shap is not installed or has none."""
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


class SaabasTrees:
    """The trees of a fitted ``HistGradientBoostingRegressor`` as shap's ``TreeEnsemble``
    holds them (one row per tree, padded with -1 / 0), ready for Saabas attributions."""

    def __init__(self, model: Any) -> None:
        if not isinstance(model, HistGradientBoostingRegressor):
            raise TypeError(
                f"Saabas attributions need a HistGradientBoostingRegressor, not"
                f" {type(model).__name__}"
            )
        predictors = model._predictors
        if not predictors or any(len(p) != 1 for p in predictors):
            raise ValueError("the gradient-boosting model has no trees, or several per step")
        cext = shap_cext()
        trees = [p[0].nodes for p in predictors]
        n_trees, width = len(trees), max(t.shape[0] for t in trees)
        self.children_left = np.full((n_trees, width), -1, dtype=np.int32)
        self.children_right = np.full((n_trees, width), -1, dtype=np.int32)
        self.children_default = np.full((n_trees, width), -1, dtype=np.int32)
        self.features = np.full((n_trees, width), -1, dtype=np.int32)
        self.thresholds = np.zeros((n_trees, width), dtype=np.float64)
        self.threshold_types = np.zeros((n_trees, width), dtype=np.int32)
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
            # shap's SingleTree: each internal node's value becomes the weighted mean of its
            # children's (compute_expectations, in place); the leaves keep the model's
            values = np.ascontiguousarray(nodes["value"], dtype=np.float64).reshape(n, 1)
            weights = np.ascontiguousarray(nodes["count"], dtype=np.float64)
            depth = cext.compute_expectations(left, right, weights, values)
            self.values[i, :n] = values
            max_depth = max(max_depth, int(depth))
        self.max_depth = max_depth
        self.base_offset = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
        if self.base_offset.shape != (1,):
            raise ValueError("the gradient-boosting model has more than one output")
        # the explained output's expected value, as TreeExplainer computes it: the roots' mean
        # values summed over the trees (the same numpy reduction), plus the baseline
        self.expected_value = float(self.values[:, 0].sum(0)[0] + self.base_offset[0])

    def contributions(self, features: FloatArray) -> FloatArray:
        """Each feature's Saabas contribution to each row's raw prediction (rows x features):
        shap's ``shap_values(features, approximate=True)``."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be a matrix, got {x.ndim} dimension(s)")
        out = np.zeros((x.shape[0], x.shape[1] + 1, 1), dtype=np.float64)
        shap_cext().dense_tree_saabas(
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
            0,  # identity output transform (Saabas applies none)
            x,
            np.isnan(x),
            None,
            out,
        )
        return out[:, :-1, 0]
