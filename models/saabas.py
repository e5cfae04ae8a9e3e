"""Saabas path attributions of a gradient-boosting RUL model, by shap's own C code, without
importing the ``shap`` package.

``import shap`` runs the package's ``__init__``, which imports matplotlib's pyplot (through
``shap.plots``), numba and pandas: 0.5-0.9 CPU-s that a fresh scoring worker spent, holding
the GIL, in its first pass. Scoring uses one function of shap: ``TreeExplainer(model)
.shap_values(X, approximate=True)`` on a ``HistGradientBoostingRegressor``, which converts
the trees (``TreeEnsemble``: node arrays, then ``compute_expectations`` on each tree, which
sets every internal node's value to its children's weighted mean), then runs
``dense_tree_saabas`` from shap's C extension ``shap._cext``. :class:`SaabasTrees` does the
same conversion with numpy (:class:`models.trees.TreeArrays`, whose arrays also predict) and
calls the same two C functions, loading the extension module from the installed shap
package's directory on its own (``models.trees.shap_cext``; it needs only numpy). The values are
the same to the bit: ``tests/test_saabas.py`` compares them with ``shap.TreeExplainer``'s.

The extension's functions are shap's internal interface (stable since shap 0.2x, checked
by that test against the shap that is installed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor

from models.trees import TreeArrays, shap_cext

FloatArray = NDArray[np.float64]

__all__ = ["SaabasTrees", "shap_cext"]


class SaabasTrees(TreeArrays):
    """The trees of a fitted ``HistGradientBoostingRegressor`` as shap's ``TreeEnsemble``
    holds them (one row per tree, padded with -1 / 0; :class:`models.trees.TreeArrays`), each
    internal node's value its children's weighted mean, ready for Saabas attributions."""

    def __init__(self, model: Any) -> None:
        if not isinstance(model, HistGradientBoostingRegressor):
            raise TypeError(
                f"Saabas attributions need a HistGradientBoostingRegressor, not"
                f" {type(model).__name__}"
            )
        super().__init__(model, expectations=True)
        # the explained output's expected value, as TreeExplainer computes it: the roots' mean
        # values summed over the trees (the same numpy reduction), plus the baseline
        self.expected_value = float(self.values[:, 0].sum(0)[0] + self.base_offset[0])

    def contributions(self, features: FloatArray) -> FloatArray:
        """Each feature's Saabas contribution to each row's raw prediction (rows x features):
        shap's ``shap_values(features, approximate=True)``."""
        x = self.matrix(features)
        out = np.zeros((x.shape[0], x.shape[1] + 1, 1), dtype=np.float64)
        self.run_cext("dense_tree_saabas", x, out)
        return out[:, :-1, 0]
