"""Wear-model estimators: RUL with a calibrated interval, failure risk, anomaly score.

All three take a feature matrix (e.g. the output of
:class:`models.features.WindowFeatures`) and follow the scikit-learn estimator
contract: ``__init__`` stores parameters, ``fit`` validates and returns ``self``,
prediction methods start with ``check_is_fitted``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, OutlierMixin, RegressorMixin
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold, KFold
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

FloatArray = NDArray[np.float64]


def weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """Quantile ``q`` in [0, 1] of ``values`` under ``weights`` (inverse of the weighted CDF)."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cdf = np.cumsum(w)
    total = cdf[-1]
    if total <= 0:
        return float(np.quantile(values, q))
    i = int(np.searchsorted(cdf, q * total, side="left"))
    return float(v[min(i, v.shape[0] - 1)])


# The RUL regressor's parameters on the C-MAPSS path: `fleetcare models cmapss` and online
# training of a kind with `features: by_operating_conditions`. Each split chooses among a random
# half of the features: lower held-out-unit RMSE on all four sets, two fold seeds. The intervals
# are calibrated on 3 folds of held-out units instead of 5 (the same point model; 3 refits on 2/3
# of the units instead of 5 on 4/5: a third less training CPU), 80% coverage still in 75-85% on
# all four sets (docs/models.md, "C-MAPSS wear models"). The built-in kinds keep every feature
# and 5 folds.
CONDITIONS_RUL_PARAMS: dict[str, Any] = {"max_features": 0.5, "calibration_folds": 3}


class RULRegressor(RegressorMixin, BaseEstimator):
    """Remaining-useful-life regressor with split-conformal prediction intervals.

    The point model is a histogram gradient-boosting regressor trained on the RUL
    target capped at ``max_rul`` (a piecewise-linear degradation target: early in
    life the RUL is "at least ``max_rul``"). Predictions lie in ``[min(y), max_rul]``.

    Intervals are calibrated on out-of-fold predictions: ``fit`` refits the model
    ``calibration_folds`` more times, each time leaving out a fold of assets (passed
    as ``groups``), and keeps the held-out residuals (capped truth minus prediction).
    ``predict_interval`` adds weighted residual quantiles to the point prediction,
    separately for ``calibration_bins`` ranges of the predicted RUL (the error grows
    with the RUL). With ``groups``, each residual is weighted 1/rows-of-its-asset in
    its range, so that every asset with rows in a range counts once there (weighted
    over the whole life instead, one early failure's few rows would carry its whole
    weight into the top range and set the low end of every new part's interval).

    Parameters
    ----------
    max_rul : float, default=125.0
        Cap of the RUL target, in the kind's life unit (125 cycles for C-MAPSS).
    learning_rate : float, default=0.05
        Learning rate of the gradient boosting.
    max_iter : int, default=300
        Boosting iterations.
    max_leaf_nodes : int, default=15
        Leaves per boosting tree.
    min_samples_leaf : int, default=40
        Minimum rows per leaf.
    l2_regularization : float, default=1.0
        L2 penalty on leaf values.
    max_features : float, default=1.0
        Share of the features each split chooses among (drawn at random per split, seeded
        by ``random_state``); 1.0 considers them all. The C-MAPSS path uses 0.5
        (:data:`CONDITIONS_RUL_PARAMS`).
    calibration_folds : int, default=5
        Folds for the out-of-fold calibration residuals (the C-MAPSS path uses 3).
    calibration_bins : int, default=4
        Ranges of predicted RUL, each with its own residual quantiles.
    random_state : int or None, default=0
        Seed of the model and of the calibration split when ``groups`` is not given.
    n_jobs : int or None, default=None
        Processes for the ``1 + calibration_folds`` independent fits (joblib; each
        process then boosts on one thread). None fits them one after another.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in ``fit``.
    model_ : HistGradientBoostingRegressor
        The point model, fitted on all rows.
    n_iter_ : int
        Boosting iterations of ``model_``.
    y_min_ : float
        Smallest training target; predictions are clipped to ``[y_min_, max_rul]``.
    calibration_pred_, calibration_residual_, calibration_weight_ : ndarray of shape (n_samples,)
        Out-of-fold predictions, residuals and weights used by :meth:`predict_interval`.
    calibration_bin_edges_ : ndarray of shape (n_bins - 1,)
        Inner edges of the predicted-RUL ranges.
    """

    def __init__(
        self,
        max_rul: float = 125.0,
        learning_rate: float = 0.05,
        max_iter: int = 300,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        max_features: float = 1.0,
        calibration_folds: int = 5,
        calibration_bins: int = 4,
        random_state: int | None = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.max_rul = max_rul
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_features = max_features
        self.calibration_folds = calibration_folds
        self.calibration_bins = calibration_bins
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit_model(
        self, X: FloatArray, y: FloatArray, w: FloatArray | None
    ) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=max(1, min(self.min_samples_leaf, X.shape[0] // 4)),
            l2_regularization=self.l2_regularization,
            max_features=self.max_features,
            early_stopping=False,
            random_state=self.random_state,
        ).fit(X, y, sample_weight=w)

    def fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None) -> RULRegressor:
        """Fit the point model and calibrate the intervals.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features, one row per (asset, time).
        y : array-like of shape (n_samples,)
            Remaining life at each row, in life units; capped at ``max_rul`` here.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights for the model and the calibration. (Weighted fitting of
            scikit-learn's gradient boosting bins features slowly; prefer ``groups``.)
        groups : array-like of shape (n_samples,), default=None
            Asset ids. Calibration folds then hold out whole assets and weigh each
            asset equally. Without them the folds are random rows, which understates
            the error on a new asset.

        Returns
        -------
        self : RULRegressor
        """
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if self.max_rul <= 0:
            raise ValueError(f"max_rul must be > 0, got {self.max_rul}")
        if not 0 < self.max_features <= 1:
            raise ValueError(f"max_features must be in (0, 1], got {self.max_features}")
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X)
        y_fit = np.minimum(y.astype(np.float64), self.max_rul)
        self.y_min_ = float(y_fit.min())
        n = X.shape[0]
        cal_weight = np.ones(n) if w is None else w.copy()
        splitter: Any = None
        if groups is not None:
            groups = np.asarray(groups)
            _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
            cal_weight /= counts[inverse]
            n_splits = min(self.calibration_folds, counts.shape[0])
            if n_splits >= 2:
                splitter = GroupKFold(n_splits=n_splits)
        else:
            n_splits = min(self.calibration_folds, n)
            if n_splits >= 2:
                splitter = KFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        folds = [] if splitter is None else list(splitter.split(X, y_fit, groups))
        everything = np.arange(n)
        jobs = [(everything, everything), *folds]
        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(self._fit_model)(X[tr], y_fit[tr], None if w is None else w[tr])
            for tr, _ in jobs
        )
        self.model_ = fitted[0]
        self.n_iter_ = int(self.model_.n_iter_)
        if splitter is None:
            oof = self.model_.predict(X)
        else:
            oof = np.empty(n)
            for model, (_, te) in zip(fitted[1:], folds, strict=True):
                oof[te] = model.predict(X[te])
        oof = np.clip(oof, self.y_min_, self.max_rul)
        self.calibration_pred_ = oof
        self.calibration_residual_ = y_fit - oof
        n_bins = max(1, min(self.calibration_bins, n // 20))
        inner = np.linspace(0, 1, n_bins + 1)[1:-1]
        self.calibration_bin_edges_ = np.quantile(oof, inner) if inner.size else np.zeros(0)
        if groups is not None:
            # every asset counts once in each range of predicted RUL it has rows in: weighted
            # 1/rows-of-its-whole-life, a short life (an early failure) would weigh as much as
            # all its rows in the one range they fall in, and outweigh the long lives there
            bins = np.searchsorted(self.calibration_bin_edges_, oof, side="right")
            _, pair, pair_counts = np.unique(
                np.column_stack([inverse, bins]), axis=0, return_inverse=True, return_counts=True
            )
            pair = pair.reshape(-1)
            cal_weight = (np.ones(n) if w is None else w.copy()) / pair_counts[pair]
        self.calibration_weight_ = cal_weight
        return self

    def predict(self, X: Any) -> FloatArray:
        """Predict the (capped) remaining life of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        rul : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.clip(self.model_.predict(X), self.y_min_, self.max_rul)

    def predict_from_raw(self, raw: FloatArray) -> FloatArray:
        """What :meth:`predict` returns, from the point model's raw prediction of the same
        rows (``model_._raw_predict(X)[:, 0]``; :meth:`models.trees.TreeArrays.raw_predict`)."""
        check_is_fitted(self)
        return np.clip(self.model_._loss.link.inverse(raw), self.y_min_, self.max_rul)

    def predict_interval(
        self, X: Any, coverage: float = 0.8, point: FloatArray | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Predict an interval that holds the (capped) remaining life with probability ``coverage``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        coverage : float, default=0.8
            Target probability in (0, 1).
        point : ndarray of shape (n_samples,), default=None
            ``predict(X)`` when the caller has it already (it is not computed again).

        Returns
        -------
        low, high : ndarray of shape (n_samples,)
            Interval bounds, ``low <= predict(X) <= high``.
        """
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        point = self.predict(X) if point is None else np.asarray(point, dtype=np.float64)
        if point.shape != (np.shape(X)[0],):
            raise ValueError(f"point has shape {point.shape}, expected ({np.shape(X)[0]},)")
        bins = np.searchsorted(self.calibration_bin_edges_, point, side="right")
        cal_bins = np.searchsorted(
            self.calibration_bin_edges_, self.calibration_pred_, side="right"
        )
        low = np.empty_like(point)
        high = np.empty_like(point)
        lo_q, hi_q = (1 - coverage) / 2, (1 + coverage) / 2
        for b in np.unique(bins):
            mask = cal_bins == b
            if not mask.any():
                mask = np.ones_like(cal_bins, dtype=bool)
            r, w = self.calibration_residual_[mask], self.calibration_weight_[mask]
            sel = bins == b
            low[sel] = point[sel] + weighted_quantile(r, w, lo_q)
            high[sel] = point[sel] + weighted_quantile(r, w, hi_q)
        low = np.clip(np.minimum(low, point), self.y_min_, self.max_rul)
        high = np.clip(np.maximum(high, point), self.y_min_, self.max_rul)
        return low, high


class FailureRiskClassifier(BaseEstimator):
    """Probability that an asset fails within ``horizon`` life units.

    ``fit`` takes the remaining life ``y`` of each row (not class labels) and learns
    the label ``y <= horizon`` with a histogram gradient-boosting classifier (log-loss,
    so probabilities are calibrated in-sample). When the training rows hold one label
    only, the probability is that label's constant.

    Parameters
    ----------
    horizon : float, default=30.0
        Horizon H in life units; class 1 means "fails within H".
    learning_rate : float, default=0.05
    max_iter : int, default=200
    max_leaf_nodes : int, default=15
    min_samples_leaf : int, default=40
    l2_regularization : float, default=1.0
    random_state : int or None, default=0

    Attributes
    ----------
    n_features_in_ : int
    classes_ : ndarray, ``[0, 1]``
    model_ : HistGradientBoostingClassifier or None
        None when training held one label only.
    constant_proba_ : float
        Failure probability used when ``model_`` is None.
    n_iter_ : int
        Boosting iterations of ``model_`` (0 without a model).
    """

    def __init__(
        self,
        horizon: float = 30.0,
        learning_rate: float = 0.05,
        max_iter: int = 200,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        random_state: int | None = 0,
    ) -> None:
        self.horizon = horizon
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FailureRiskClassifier:
        """Fit on features and remaining life.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Remaining life at each row, in life units.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : FailureRiskClassifier
        """
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if self.horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {self.horizon}")
        w = _check_sample_weight(sample_weight, X, dtype=np.float64)
        labels = (y <= self.horizon).astype(np.int64)
        self.classes_ = np.array([0, 1])
        total = w.sum()
        self.constant_proba_ = float((w * labels).sum() / total) if total > 0 else labels.mean()
        if np.unique(labels).shape[0] < 2:
            self.model_: HistGradientBoostingClassifier | None = None
        else:
            self.model_ = HistGradientBoostingClassifier(
                learning_rate=self.learning_rate,
                max_iter=self.max_iter,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=max(1, min(self.min_samples_leaf, X.shape[0] // 4)),
                l2_regularization=self.l2_regularization,
                early_stopping=False,
                random_state=self.random_state,
            )
            # no weights when none were given: weighted histogram binning is ~20x slower
            unweighted = sample_weight is None or total <= 0
            self.model_.fit(X, labels, sample_weight=None if unweighted else w * (w.size / total))
        self.n_iter_ = 0 if self.model_ is None else int(self.model_.n_iter_)
        return self

    def predict_proba(self, X: Any) -> FloatArray:
        """Return ``[P(no failure within horizon), P(failure within horizon)]`` per row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        if self.model_ is None:
            p = np.full(X.shape[0], self.constant_proba_)
        else:
            p = self.model_.predict_proba(X)[:, 1]
        return np.column_stack((1 - p, p))

    def failure_probability_from_raw(self, raw: FloatArray) -> FloatArray:
        """``predict_proba(X)[:, 1]`` from ``model_``'s raw prediction of the same rows
        (``model_._raw_predict(X)[:, 0]``, e.g. :meth:`models.trees.TreeArrays.raw_predict`)."""
        check_is_fitted(self)
        if self.model_ is None:
            raise ValueError("a classifier without a model has no raw prediction")
        return np.asarray(self.model_._loss.predict_proba(raw)[:, 1], dtype=np.float64)

    def predict(self, X: Any) -> NDArray[np.int64]:
        """Return 1 where failure within the horizon is more likely than not, else 0."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


class AnomalyScorer(OutlierMixin, BaseEstimator):
    """Score how unlike healthy history a feature row is (squared Mahalanobis distance).

    Fit it on rows known to be healthy (e.g. each asset's early life). Features are
    standardised, their covariance shrunk with Ledoit-Wolf, and

    ``anomaly_score(x) = d^2(x) / n_features``

    where ``d`` is the Mahalanobis distance to the healthy mean. On healthy data the
    score averages about 1; 3 means three times the typical healthy squared distance.
    Higher is more anomalous. Following scikit-learn's outlier API, ``score_samples``
    is its negative (higher = more normal), ``decision_function`` is negative for the
    ``contamination`` share of most anomalous training rows, and ``predict`` returns
    -1 for an anomaly and 1 otherwise.

    Parameters
    ----------
    contamination : float, default=0.01
        Share of healthy training rows flagged as anomalous; sets ``threshold_``.

    Attributes
    ----------
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation of the healthy features.
    precision_ : ndarray of shape (n_features, n_features)
        Inverse of the shrunk covariance of the standardised features.
    threshold_ : float
        ``anomaly_score`` above which ``predict`` says -1.
    offset_ : float
        ``-threshold_`` (``decision_function = score_samples - offset_``).
    """

    def __init__(self, contamination: float = 0.01) -> None:
        self.contamination = contamination

    def fit(self, X: Any, y: Any = None) -> AnomalyScorer:
        """Fit on healthy feature rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : AnomalyScorer
        """
        X = validate_data(self, X, dtype=np.float64)
        if not 0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        z = (X - self.mean_) / self.scale_
        cov = LedoitWolf(assume_centered=True).fit(z).covariance_
        self.precision_ = np.linalg.pinv(cov, hermitian=True)
        scores = self._score(z)
        self.threshold_ = float(np.quantile(scores, 1 - self.contamination))
        self.offset_ = -self.threshold_
        return self

    def _score(self, z: FloatArray) -> FloatArray:
        d2 = np.einsum("ij,jk,ik->i", z, self.precision_, z)
        return np.maximum(d2, 0.0) / z.shape[1]

    def anomaly_score(self, X: Any) -> FloatArray:
        """Return the anomaly score of each row (about 1 when healthy, higher = more anomalous).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        score : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._score((X - self.mean_) / self.scale_)

    def score_samples(self, X: Any) -> FloatArray:
        """Return ``-anomaly_score(X)``: higher is more normal (scikit-learn convention)."""
        return -self.anomaly_score(X)

    def decision_function(self, X: Any) -> FloatArray:
        """Return ``score_samples(X) - offset_``: negative for anomalies."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> NDArray[np.int64]:
        """Return -1 for anomalous rows and 1 for normal ones."""
        return np.where(self.decision_function(X) < 0, -1, 1).astype(np.int64)
