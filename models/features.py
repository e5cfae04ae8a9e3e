"""Feature extraction: one transformer for training and for scoring.

The input layout (the *readings matrix*) is shared by training (many assets,
each a run to failure or renewal) and by scoring (each live asset's rows since
its last renewal)::

    column 0                      asset / group id (any float-encodable id)
    column 1                      usage since renewal (the kind's cumulative counter,
                                  e.g. kilometres, trips, cycles)
    columns 2 .. 2+n_settings-1   operating-condition settings (may be none)
    remaining columns             condition metrics (sensors)

Rows of one asset are contiguous and in time order; a group id that appears
again after another group's rows is rejected. Every output row is computed only
from its own row and the EARLIER rows of the same group, so a row's features
never depend on the future: the features of an asset's last row are the same
whether the matrix holds its whole history or only the history up to that row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_is_fitted, validate_data

FloatArray = NDArray[np.float64]

_WINDOW_STATS = ("mean", "slope", "std")


def group_bounds(ids: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Return (starts, ends) of the contiguous blocks of equal ids; reject split groups."""
    n = ids.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.intp)
    ends = np.concatenate((change, [n])).astype(np.intp)
    if np.unique(ids[starts]).shape[0] != starts.shape[0]:
        raise ValueError(
            "rows of each group (column 0) must be contiguous and in time order; "
            "a group id reappears after another group's rows"
        )
    return starts, ends


def count_operating_regimes(settings: FloatArray, min_share: float = 0.01) -> int:
    """Count regimes: distinct integer-rounded settings holding >= ``min_share`` of the rows.

    A heuristic that fits C-MAPSS (altitude in kft, Mach, throttle angle): FD001/FD003
    give 1, FD002/FD004 give 6.
    """
    if settings.shape[1] == 0 or settings.shape[0] == 0:
        return 1
    _, counts = np.unique(np.round(settings), axis=0, return_counts=True)
    return max(1, int(np.sum(counts >= min_share * settings.shape[0])))


# Feature windows by operating conditions (the C-MAPSS evaluation's choice). With six
# conditions (FD002, FD004) the sensors stay noisier after per-regime normalisation, so the
# level is smoothed more and the windows look further back. A long window's slope tells the
# wear rate (C-MAPSS wear speeds up towards the end); the spread of the short windows is noise
# to the model, so only the longest window keeps its std (which the data-quality gate reads).
# With six conditions the asset's own baseline (what ``drift`` compares with) is the mean of
# its first 30 rows, not 10: ten rows spread over six regimes leave a noisy baseline.
# A last window of 600 rows (longer than any C-MAPSS life) gives each sensor's mean and slope
# since renewal: how far and how fast the unit has worn over its whole life; it keeps no std
# (the gate reads the 60/80-row std: ``WindowFeatures.spread_window``).
# Held-out-unit CV (docs/models.md, "C-MAPSS wear models"): FD001 RMSE 10.54 -> 9.90; the
# 30-row baseline: FD002 and FD004 3-6% lower; the 600-row window: FD001 and FD003 3% lower.
LIFE_WINDOW = 600
SINGLE_CONDITION_FEATURES: dict[str, Any] = {
    "smoothing": 0.3,
    "windows": (5, 10, 20, 30, 60, LIFE_WINDOW),
    "std_windows": (60,),
}
MULTI_CONDITION_FEATURES: dict[str, Any] = {
    "smoothing": 0.15,
    "windows": (10, 20, 30, 50, 80, LIFE_WINDOW),
    "std_windows": (80,),
    "baseline_window": 30,
}


def conditions_features(n_settings: int, n_conditions: int) -> WindowFeatures:
    """The feature transformer for data with ``n_conditions`` operating conditions."""
    params = SINGLE_CONDITION_FEATURES if n_conditions <= 1 else MULTI_CONDITION_FEATURES
    return WindowFeatures(n_settings=n_settings, n_regimes="auto", **params)


def fit_conditions_features(matrix: FloatArray, n_settings: int) -> WindowFeatures:
    """Count the operating conditions of a training readings matrix and fit their features.

    The one path of a kind with ``features: by_operating_conditions`` (``fleetcare models
    train``) and of the offline C-MAPSS evaluation (``fleetcare models cmapss``)."""
    conditions = count_operating_regimes(matrix[:, 2 : 2 + n_settings])
    return conditions_features(n_settings, conditions).fit(matrix)


class WindowFeatures(TransformerMixin, BaseEstimator):
    """Causal per-asset window features from time-ordered readings.

    For every input row the transformer normalises the condition metrics by the
    operating regime of that row, then describes each metric by

    - ``ewm``: its exponentially smoothed level (smoothing factor ``smoothing``),
    - ``drift``: that level minus the mean of the asset's first
      ``baseline_window`` rows (how far it moved since renewal),
    - for each trailing window ``w`` in ``windows``: the ``mean`` and the least-squares
      ``slope`` per row over the last ``min(w, rows so far)`` rows, and their ``std`` for
      the windows in ``std_windows``,

    and adds the usage since renewal (column 1) as the first feature.

    Parameters
    ----------
    n_settings : int, default=0
        Number of operating-setting columns after the usage column.
    n_regimes : int or "auto", default="auto"
        Number of operating regimes to find by clustering the settings (KMeans on
        standardised settings, fitted in ``fit``). ``"auto"`` counts them with
        :func:`count_operating_regimes`. With one regime (or no settings) the
        metrics are standardised globally.
    windows : sequence of int, default=(5, 10, 20, 30)
        Trailing window lengths, in rows.
    smoothing : float, default=0.3
        Exponential smoothing factor in (0, 1]; 1 means no smoothing.
    baseline_window : int, default=10
        Number of first rows of an asset that define its own baseline level.
    std_windows : sequence of int or None, default=None
        The windows (among ``windows``) that also get a ``std`` feature; None: all. The
        data-quality gate and the drift reference read the longest window's ``std`` to
        find stuck sensors, so keep it there.
    random_state : int, RandomState instance or None, default=0
        Seed for the regime clustering.

    Attributes
    ----------
    n_features_in_ : int
        Number of input columns (id, usage, settings, metrics).
    n_regimes_ : int
        Number of operating regimes used.
    settings_mean_, settings_scale_ : ndarray of shape (n_settings,)
        Standardisation of the settings before regime assignment.
    regime_centers_ : ndarray of shape (n_regimes_, n_settings)
        Regime centres in standardised setting space.
    metric_mean_, metric_scale_ : ndarray of shape (n_regimes_, n_metrics)
        Per-regime mean and standard deviation of each metric.

    Notes
    -----
    Input layout: see the module docstring. Output: one row per input row, columns
    named by :meth:`get_feature_names_out`. :meth:`transform_last` computes only
    the last row of every group, vectorised over groups, for scoring many assets.
    """

    def __init__(
        self,
        n_settings: int = 0,
        n_regimes: int | Literal["auto"] = "auto",
        windows: Sequence[int] = (5, 10, 20, 30),
        smoothing: float = 0.3,
        baseline_window: int = 10,
        std_windows: Sequence[int] | None = None,
        random_state: Any = 0,
    ) -> None:
        self.n_settings = n_settings
        self.n_regimes = n_regimes
        self.windows = windows
        self.smoothing = smoothing
        self.baseline_window = baseline_window
        self.std_windows = std_windows
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> WindowFeatures:
        """Learn operating regimes and per-regime metric scales from readings.

        Parameters
        ----------
        X : array-like of shape (n_rows, 2 + n_settings + n_metrics)
            Readings matrix (see the module docstring).
        y : ignored

        Returns
        -------
        self : WindowFeatures
        """
        X = validate_data(self, X, dtype=np.float64)
        self._check_params(X.shape[1])
        settings, metrics = self._split(X)
        if self.n_regimes == "auto":
            n_regimes = count_operating_regimes(settings)
        else:
            n_regimes = int(self.n_regimes)
        n_regimes = max(1, min(n_regimes, X.shape[0]))
        self.settings_mean_ = settings.mean(axis=0)
        self.settings_scale_ = _safe_scale(settings.std(axis=0))
        if n_regimes > 1:
            z = (settings - self.settings_mean_) / self.settings_scale_
            km = KMeans(n_clusters=n_regimes, n_init=10, random_state=self.random_state).fit(z)
            self.regime_centers_ = km.cluster_centers_
        else:
            self.regime_centers_ = np.zeros((1, settings.shape[1]))
        self.n_regimes_ = self.regime_centers_.shape[0]
        regime = self._regimes(settings)
        n_metrics = metrics.shape[1]
        self.metric_mean_ = np.zeros((self.n_regimes_, n_metrics))
        self.metric_scale_ = np.ones((self.n_regimes_, n_metrics))
        for r in range(self.n_regimes_):
            rows = metrics[regime == r]
            if rows.shape[0]:
                self.metric_mean_[r] = rows.mean(axis=0)
                self.metric_scale_[r] = _safe_scale(rows.std(axis=0))
        return self

    def _check_params(self, n_columns: int) -> None:
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if len(self.windows) == 0 or min(self.windows) < 2:
            raise ValueError(f"windows must be a non-empty sequence of ints >= 2: {self.windows}")
        if self.std_windows is not None and not set(self.std_windows) <= set(self.windows):
            raise ValueError(
                f"std_windows must be among the windows {tuple(self.windows)}: {self.std_windows}"
            )
        if self.baseline_window < 1:
            raise ValueError(f"baseline_window must be >= 1, got {self.baseline_window}")
        if n_columns < 3 + self.n_settings:
            raise ValueError(
                f"X has {n_columns} columns; the layout needs id, usage, {self.n_settings} "
                "setting(s) and at least one metric"
            )

    # -- transforming ------------------------------------------------------------------------

    def transform(self, X: Any) -> FloatArray:
        """Compute the features of every row from that row and earlier rows of its group.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features_in_)
            Readings matrix, rows of a group contiguous and in time order.

        Returns
        -------
        features : ndarray of shape (n_rows, n_features_out)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        starts, ends = group_bounds(X[:, 0])
        z = self._normalised(X)
        n = z.shape[0]
        lengths = ends - starts
        start_of_row = np.repeat(starts, lengths)
        row = np.arange(n)
        pos = (row - start_of_row).astype(np.float64)  # index of the row within its group

        alpha = float(self.smoothing)
        ewm = np.empty_like(z)
        # Prefix sums of z, z^2 and pos*z restart at every group (group g's block starts
        # with a zero row at index start+g), so a group's features depend on its rows only.
        prefix = np.empty((3, n + starts.shape[0], z.shape[1]))
        for g, (a, b) in enumerate(zip(starts, ends, strict=True)):
            block = z[a:b]
            # s_0 = z_0, s_t = alpha z_t + (1 - alpha) s_(t-1)
            ewm[a:b] = lfilter(
                [alpha], [1.0, alpha - 1.0], block, axis=0, zi=(1 - alpha) * block[:1]
            )[0]
            prefix[:, a + g] = 0.0
            prefix[0, a + g + 1 : b + g + 1] = np.cumsum(block, axis=0)
            prefix[1, a + g + 1 : b + g + 1] = np.cumsum(block * block, axis=0)
            prefix[2, a + g + 1 : b + g + 1] = np.cumsum(pos[a:b, None] * block, axis=0)
        shift = np.repeat(np.arange(starts.shape[0]), lengths)
        csum, csq, cpos = prefix

        def window_sums(lo: NDArray[np.intp], hi: NDArray[np.intp]) -> list[FloatArray]:
            """Sums of z, z^2 and pos*z over the rows ``lo .. hi-1`` of each row's group."""
            lo, hi = lo + shift, hi + shift
            return [csum[hi] - csum[lo], csq[hi] - csq[lo], cpos[hi] - cpos[lo]]

        b_end = np.minimum(start_of_row + self.baseline_window, row + 1)
        baseline = window_sums(start_of_row, b_end)[0] / (b_end - start_of_row)[:, None]
        windows = []
        for w in self.windows:
            lo = np.maximum(start_of_row, row - w + 1)
            windows.append(((row + 1 - lo).astype(np.float64), *window_sums(lo, row + 1)))
        return self._assemble(X[:, 1], pos, ewm, baseline, windows)

    def transform_last(self, X: Any) -> tuple[FloatArray, FloatArray]:
        """Compute only the features of the last row of each group, vectorised over groups.

        Gives the same values as ``transform(X)`` at each group's last row (up to floating
        point rounding) in a few array passes, without a Python loop over groups: this is
        the scoring path for many assets at once.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features_in_)
            Readings matrix of one or many assets, rows of each contiguous and in time order.
            The features depend on the first ``baseline_window`` rows since renewal, the
            last ``max(windows)`` rows and, through the smoothed level, on earlier rows
            with weight ``(1 - smoothing) ** rows_ago``. So an asset's first
            ``baseline_window`` rows plus its last ~100 rows (at ``smoothing=0.3``) give
            the same features as its whole history to about 1e-15.

        Returns
        -------
        ids : ndarray of shape (n_groups,)
            Group ids in order of first appearance.
        features : ndarray of shape (n_groups, n_features_out)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        starts, ends = group_bounds(X[:, 0])
        z = self._normalised(X, order="F")  # columns contiguous: see _range_sums
        n = z.shape[0]
        if n == 0:
            return X[:0, 0], np.zeros((0, self.get_feature_names_out().shape[0]))
        lengths = ends - starts
        from_end = np.repeat(ends - 1, lengths) - np.arange(n)  # rows after this one

        def last_rows(rows: int) -> NDArray[np.intp]:
            """Where each group's last ``rows`` rows (or all its rows, when fewer) start."""
            return np.maximum(starts, ends - rows)

        # smoothed level at the last row: s = (1-a)^(n-1) z_0 + sum_k>=1 a (1-a)^(n-1-k) z_k,
        # over the last ewm_rows() rows only (older ones weigh less than 1e-9): so the first
        # baseline rows plus the last rows of a history give exactly the features of all of it
        alpha = float(self.smoothing)
        span = self.ewm_rows()
        with np.errstate(under="ignore"):
            weight = alpha * (1.0 - alpha) ** from_end
            first = np.zeros(n, dtype=np.bool_)
            first[last_rows(span)] = True  # the group's first row, or the span's first
            weight[first] = (1.0 - alpha) ** from_end[first]
        (ewm,) = _range_sums([_times_rows(weight, z)], last_rows(span), ends)

        # sums of z, z^2 and k*z over row ranges of each group, with k = -rows after this one
        # (positions counted back from the last row, so that they do not depend on how much
        # older history is present)
        columns = [z, z * z, _times_rows(-from_end.astype(np.float64), z)]
        b_end = np.minimum(starts + self.baseline_window, ends)
        baseline = _range_sums(columns[:1], starts, b_end)[0] / (b_end - starts)[:, None]
        windows = []
        for w in self.windows:
            lo = last_rows(w)
            windows.append(((ends - lo).astype(np.float64), *_range_sums(columns, lo, ends)))
        last = ends - 1
        return X[starts, 0], self._assemble(
            X[last, 1], np.zeros(last.shape[0]), ewm, baseline, windows
        )

    def ewm_rows(self, tolerance: float = 1e-9) -> int:
        """Rows of the smoothed level whose weight is above ``tolerance`` (what
        :meth:`transform_last` sums over)."""
        alpha = float(self.smoothing)
        return 1 if alpha >= 1 else int(np.ceil(np.log(tolerance) / np.log(1 - alpha)))

    def _assemble(
        self,
        usage: FloatArray,
        pos: FloatArray,
        ewm: FloatArray,
        baseline: FloatArray,
        windows: list[tuple[FloatArray, ...]],
    ) -> FloatArray:
        """Feature rows from the smoothed level, the baseline and per-window sums.

        ``windows`` holds, per trailing window, the row count ``m`` and the sums of z, z^2
        and pos*z over the last ``m`` rows ending at row position ``pos``.
        """
        cols: list[FloatArray] = [usage[:, None], ewm, ewm - baseline]
        for w, (m_rows, s_y, s_yy, s_ky) in zip(self.windows, windows, strict=True):
            m = m_rows[:, None]
            # positions in the window are k0 .. k0+m-1 with k0 = pos - m + 1
            k0 = pos[:, None] - m + 1
            s_k = m * k0 + m * (m - 1) / 2
            s_kk = m * k0 * k0 + k0 * m * (m - 1) + (m - 1) * m * (2 * m - 1) / 6
            mean = s_y / m
            var_k = s_kk - s_k * s_k / m
            cov = s_ky - s_k * s_y / m
            slope = np.where(m > 1, cov / np.where(var_k > 0, var_k, 1.0), 0.0)
            cols += [mean, slope]
            if self._has_std(w):
                cols.append(np.sqrt(np.maximum(s_yy / m - mean * mean, 0.0)))
        return np.hstack(cols)

    # -- helpers -----------------------------------------------------------------------------

    def spread_window(self) -> int:
        """The longest window that keeps its std (``m<j>_w<window>_std``): what the
        data-quality gate and the drift reference read to find stuck sensors."""
        kept = self.windows if self.std_windows is None else self.std_windows
        return int(max(kept)) if len(kept) else int(max(self.windows))

    def _has_std(self, window: int) -> bool:
        return self.std_windows is None or window in self.std_windows

    def _split(self, X: FloatArray) -> tuple[FloatArray, FloatArray]:
        k = 2 + self.n_settings
        return X[:, 2:k], X[:, k:]

    def _regimes(self, settings: FloatArray) -> NDArray[np.intp]:
        if self.regime_centers_.shape[0] == 1:
            return np.zeros(settings.shape[0], dtype=np.intp)
        z = (settings - self.settings_mean_) / self.settings_scale_
        best = np.zeros(z.shape[0], dtype=np.intp)
        best_d = ((z - self.regime_centers_[0]) ** 2).sum(axis=1)
        for r in range(1, self.regime_centers_.shape[0]):
            d = ((z - self.regime_centers_[r]) ** 2).sum(axis=1)
            closer = d < best_d
            best[closer], best_d[closer] = r, d[closer]
        return best

    def _normalised(self, X: FloatArray, order: Literal["C", "F"] = "C") -> FloatArray:
        settings, metrics = self._split(X)
        if self.regime_centers_.shape[0] == 1:  # the same values, without per-row copies
            mean, scale = self.metric_mean_[0], self.metric_scale_[0]
        else:
            regime = self._regimes(settings)
            mean, scale = self.metric_mean_[regime], self.metric_scale_[regime]
        return np.divide(np.subtract(metrics, mean, order=order), scale, order=order)

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        """Return the output feature names (``usage``, then ``m<j>_<stat>`` per metric)."""
        check_is_fitted(self)
        p = self.n_features_in_ - 2 - self.n_settings
        names = ["usage"]
        names += [f"m{j}_ewm" for j in range(p)]
        names += [f"m{j}_drift" for j in range(p)]
        for w in self.windows:
            for stat in _WINDOW_STATS if self._has_std(w) else _WINDOW_STATS[:2]:
                names += [f"m{j}_w{w}_{stat}" for j in range(p)]
        return np.asarray(names, dtype=object)


def _range_sums(
    arrays: Sequence[FloatArray], lo: NDArray[np.intp], hi: NDArray[np.intp]
) -> list[FloatArray]:
    """Per group ``g``: each array's sum over its rows ``lo[g] .. hi[g]-1`` (ranges non-empty,
    in order, not overlapping), one ``np.add.reduceat`` per array: the even segments of the
    interleaved bounds are the ranges, the odd ones (the rows between) are dropped. The same
    sums, to the last bit, as a reduceat over a copy of the ranges' rows; give the arrays in
    Fortran order (columns contiguous): a reduceat over C-ordered rows of a few columns costs
    per row, 3-7 times as much."""
    bounds = np.empty(2 * lo.shape[0], dtype=np.intp)
    bounds[0::2], bounds[1::2] = lo, hi
    if bounds[-1] == arrays[0].shape[0]:
        bounds = bounds[:-1]  # the last range runs to the end
    return [np.add.reduceat(a, bounds, axis=0)[0::2] for a in arrays]


def _times_rows(factor: NDArray[np.floating[Any]], z: FloatArray) -> FloatArray:
    """``factor[:, None] * z`` in Fortran order, column by column (a broadcast into Fortran
    order runs row by row)."""
    out = np.empty(z.shape, order="F")
    for j in range(z.shape[1]):
        np.multiply(factor, z[:, j], out=out[:, j])
    return out


def _safe_scale(scale: FloatArray) -> FloatArray:
    return np.where(scale > 1e-12, scale, 1.0)
