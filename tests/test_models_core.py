"""Wear-model core: estimator contract, causal features, interval coverage, risk, anomaly."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from models.estimators import AnomalyScorer, FailureRiskClassifier, RULRegressor
from models.features import WindowFeatures, count_operating_regimes, group_bounds
from models.lifetimes import risk_weights


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny fits run faster on one OpenMP thread, and do not stall on a busy machine."""
    with threadpool_limits(limits=1):
        yield


SETTINGS = np.array([[0.0, 0.0, 100.0], [20.0, 0.7, 100.0], [42.0, 0.84, 60.0]])


def synthetic_fleet(
    n_units: int, seed: int, regimes: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Run-to-failure units in the readings layout (id, usage, 3 settings, 4 metrics) and RUL.

    Two metrics degrade exponentially towards failure at a unit-specific rate, two are
    noise; with ``regimes`` every row runs in one of three operating conditions that
    shift the metrics.
    """
    rng = np.random.default_rng(seed)
    blocks, ruls = [], []
    for unit in range(n_units):
        life = int(rng.integers(80, 200))
        t = np.arange(1, life + 1, dtype=np.float64)
        wear = np.exp((t - life) / (life / 4))  # about 0 early in life, 1 at failure
        regime = rng.integers(0, 3, life) if regimes else np.zeros(life, dtype=int)
        settings = SETTINGS[regime] + rng.normal(0, 0.001, (life, 3))
        shift = 5.0 * regime[:, None]
        metrics = (
            np.column_stack(
                (
                    10 + 3 * wear + rng.normal(0, 0.3, life),
                    5 - 2 * wear + rng.normal(0, 0.3, life),
                    rng.normal(0, 1, life),
                    rng.normal(3, 1, life),
                )
            )
            + shift
        )
        blocks.append(np.column_stack((np.full(life, unit), t, settings, metrics)))
        ruls.append(life - t)
    return np.vstack(blocks), np.concatenate(ruls)


def _expected_failures(estimator: object) -> dict[str, str]:
    if isinstance(estimator, RULRegressor):
        # Same as scikit-learn's own HistGradientBoosting*: min_samples_leaf and the
        # binning count rows, so weights are not equivalent to repeated rows.
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "gradient-boosting weights are not equivalent to repeated rows"
            )
        }
    return {}


@parametrize_with_checks(
    [
        RULRegressor(max_iter=15, calibration_folds=2),
        FailureRiskClassifier(max_iter=15),
        AnomalyScorer(),
    ],
    expected_failed_checks=_expected_failures,
)
def test_estimator_contract(estimator, check):
    check(estimator)


# -- features ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return synthetic_fleet(12, seed=1, regimes=True)


@pytest.fixture(scope="module")
def featurizer(fleet) -> WindowFeatures:
    return WindowFeatures(n_settings=3).fit(fleet[0])


def test_regimes_are_found_and_normalised(fleet, featurizer):
    X, _ = fleet
    assert count_operating_regimes(X[:, 2:5]) == 3
    assert featurizer.n_regimes_ == 3
    assert WindowFeatures(n_settings=3).fit(synthetic_fleet(3, seed=2)[0]).n_regimes_ == 1
    # metric levels are comparable across regimes after per-regime standardisation
    F = featurizer.transform(X)
    names = list(featurizer.get_feature_names_out())
    assert F.shape == (X.shape[0], len(names))
    noise_level = F[:, names.index("m2_ewm")]
    assert abs(noise_level.mean()) < 0.2


def test_prefix_gives_the_same_last_row(fleet, featurizer):
    X, _ = fleet
    unit = X[X[:, 0] == 4]
    whole = featurizer.transform(unit)
    for cut in (1, 2, 7, 31, 60):
        prefix = featurizer.transform(unit[:cut])
        np.testing.assert_allclose(prefix[-1], whole[cut - 1], rtol=1e-9, atol=1e-9)


def test_future_rows_do_not_change_earlier_features(fleet, featurizer):
    X, _ = fleet
    before = featurizer.transform(X)
    changed = X.copy()
    rows = np.flatnonzero(changed[:, 0] == 5)
    future = rows[40:]
    changed[future, 5:] += np.random.default_rng(0).normal(0, 50, (future.size, 4))
    after = featurizer.transform(changed)
    untouched = np.setdiff1d(np.arange(X.shape[0]), future)
    np.testing.assert_array_equal(before[untouched], after[untouched])
    assert not np.allclose(before[future], after[future])


def test_transform_last_matches_transform(fleet, featurizer):
    X, _ = fleet
    ids, last = featurizer.transform_last(X)
    starts, ends = group_bounds(X[:, 0])
    np.testing.assert_array_equal(ids, X[starts, 0])
    np.testing.assert_allclose(last, featurizer.transform(X)[ends - 1], rtol=1e-8, atol=1e-8)
    # a one-row asset works too
    _, single = featurizer.transform_last(X[:1])
    np.testing.assert_allclose(single[0], featurizer.transform(X[:1])[0])


def test_split_groups_are_rejected(fleet, featurizer):
    X, _ = fleet
    a, b = X[X[:, 0] == 0], X[X[:, 0] == 1]
    interleaved = np.vstack((a[:10], b[:10], a[10:20]))
    with pytest.raises(ValueError, match="contiguous"):
        featurizer.transform(interleaved)


def test_wrong_column_count_is_rejected(fleet, featurizer):
    with pytest.raises(ValueError):
        featurizer.transform(fleet[0][:, :-1])
    with pytest.raises(ValueError, match="layout"):
        WindowFeatures(n_settings=3).fit(fleet[0][:, :5])


# -- estimators on features -------------------------------------------------------------------


def _truncated_last_rows(
    X: NDArray[np.float64], rul: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.intp]:
    starts, ends = group_bounds(X[:, 0])
    return np.array([rng.integers(a, b) for a, b in zip(starts, ends, strict=True)])


def test_interval_coverage_on_held_out_units():
    X_train, rul_train = synthetic_fleet(60, seed=3)
    X_test, rul_test = synthetic_fleet(200, seed=4)
    featurizer = WindowFeatures(n_settings=3, windows=(5, 20)).fit(X_train)
    model = RULRegressor(max_rul=60, max_iter=60, learning_rate=0.1).fit(
        featurizer.transform(X_train), rul_train, groups=X_train[:, 0]
    )
    rows = _truncated_last_rows(X_test, rul_test, np.random.default_rng(0))
    F = featurizer.transform(X_test)[rows]
    truth = np.minimum(rul_test[rows], 60)
    point = model.predict(F)
    low, high = model.predict_interval(F, coverage=0.8)
    assert np.all((low <= point) & (point <= high))
    coverage = np.mean((low <= truth) & (truth <= high))
    assert 0.7 <= coverage <= 0.9, coverage
    narrow_low, narrow_high = model.predict_interval(F, coverage=0.5)
    assert np.mean(narrow_high - narrow_low) < np.mean(high - low)
    assert np.sqrt(np.mean((point - truth) ** 2)) < 10


def test_feature_subsampling_is_seeded_and_checked(fleet, featurizer):
    X, rul = fleet
    F = featurizer.transform(X)

    def fit(max_features: float = 1.0) -> NDArray[np.float64]:
        model = RULRegressor(
            max_rul=60, max_iter=20, calibration_folds=2, max_features=max_features
        )
        return model.fit(F, rul, groups=X[:, 0]).predict(F)

    half = fit(max_features=0.5)
    np.testing.assert_array_equal(half, fit(max_features=0.5))  # seeded by random_state
    assert not np.array_equal(half, fit())  # each split sees a random half of the features
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"max_features must be in \(0, 1\], got"):
            RULRegressor(max_features=bad).fit(F, rul)


def test_failure_risk_rises_towards_failure(fleet, featurizer):
    X, rul = fleet
    F = featurizer.transform(X)
    model = FailureRiskClassifier(horizon=20, max_iter=50).fit(F, rul)
    proba = model.predict_proba(F)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert proba[rul <= 5, 1].mean() > 0.8
    assert proba[rul > 60, 1].mean() < 0.1
    constant = FailureRiskClassifier(horizon=-0.0).fit(F[rul > 50], rul[rul > 50])
    assert np.all(constant.predict_proba(F)[:, 1] == 0.0)


def test_anomaly_score_scale_and_direction(fleet, featurizer):
    X, rul = fleet
    F = featurizer.transform(X)
    healthy = X[:, 1] <= 30
    scorer = AnomalyScorer(contamination=0.05).fit(F[healthy])
    healthy_score = scorer.anomaly_score(F[healthy])
    assert 0.5 < np.mean(healthy_score) < 1.5  # documented scale: about 1 when healthy
    assert np.mean(scorer.predict(F[healthy]) == -1) == pytest.approx(0.05, abs=0.01)
    assert np.median(scorer.anomaly_score(F[rul <= 10])) > 5 * np.median(healthy_score)


def test_scoring_needs_only_the_first_and_recent_rows(fleet, featurizer):
    """Documented in transform_last: baseline rows + last ~100 rows give the same features."""
    X, _ = fleet
    lengths = np.bincount(X[:, 0].astype(int))
    unit = X[X[:, 0] == np.argmax(lengths)]
    assert unit.shape[0] > 120
    short = np.vstack((unit[:10], unit[-100:]))
    _, full_last = featurizer.transform_last(unit)
    _, short_last = featurizer.transform_last(short)
    # exactly: the online path (scoring reads these rows) and the offline one must agree
    np.testing.assert_array_equal(short_last, full_last)


def test_an_early_failure_does_not_set_every_new_parts_interval():
    """Issue 20 point 4, tire seed 56: one life that failed early (a sudden failure, its wear
    signal that of a new part) among long lives. Weighted 1/rows of its whole life, its few
    rows carried a whole life's weight into the top range of predicted RUL and set the low
    end there near zero, so every new part was due at once (733 replacements for 48 tires).
    Counted once among the lives with rows in that range, it must not."""
    rng = np.random.default_rng(5)
    rows, ys, groups = [], [], []
    for unit in range(42):
        nominal = rng.uniform(140, 170)
        life = 10.0 if unit < 2 else nominal  # units 0 and 1 fail suddenly, early
        age = np.arange(0.0, life)
        wear = age / nominal + rng.normal(0, 0.01, age.size)
        rows.append(np.column_stack([age, wear]))
        ys.append(life - age)
        groups.append(np.full(age.size, unit))
    model = RULRegressor(max_rul=100, max_iter=60, learning_rate=0.1, calibration_bins=4).fit(
        np.concatenate(rows), np.concatenate(ys), groups=np.concatenate(groups)
    )
    new_parts = np.column_stack([np.arange(0.0, 5.0), np.arange(0.0, 5.0) / 155])
    point = model.predict(new_parts)
    low, _ = model.predict_interval(new_parts, coverage=0.8)
    assert np.all(point > 90), point
    # the long lives' error at this range is a few units; the early failures' is ~90
    assert np.all(low > 60), low


def test_an_early_failure_does_not_make_every_new_part_look_risky():
    """Issue 20 point 4, tire seed 56 again, in the failure-risk classifier: lives that failed
    early (a blowout, their wear signal that of a new part) among long lives. Weighted 1/rows
    of the life, their few rows weigh a whole life each among the new parts' rows (three short
    lives against 39 long lives' first 10 units of ~155: about half the weight) and new parts
    looked likely to fail within the horizon. Weighted once per stretch of the horizon's
    length, they are three lives of the 42 that reached that age, and a new part's risk is
    about that share."""
    rng = np.random.default_rng(7)
    rows, ys, lives = [], [], []
    for unit in range(42):
        nominal = rng.uniform(140, 170)
        life = 10.0 if unit < 3 else nominal  # units 0-2 blow out early
        age = np.arange(0.0, life)
        wear = age / nominal + rng.normal(0, 0.01, age.size)
        rows.append(np.column_stack([age, wear]))
        ys.append(life - age)
        lives.append(np.full(age.size, float(unit)))
    X, y, life_ids = np.concatenate(rows), np.concatenate(ys), np.concatenate(lives)
    new_parts = np.column_stack([np.arange(0.0, 8.0), np.arange(0.0, 8.0) / 155])
    worn_parts = np.column_stack([np.arange(150.0, 156.0), np.arange(150.0, 156.0) / 155])

    def risk(mode: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        weights = risk_weights(life_ids, X[:, 0], 10.0, mode)
        model = FailureRiskClassifier(horizon=10, max_iter=60, learning_rate=0.1)
        model.fit(X, y, sample_weight=weights)
        return model.predict_proba(new_parts)[:, 1], model.predict_proba(worn_parts)[:, 1]

    new_by_life, _ = risk("life")
    new_per_stretch, worn_per_stretch = risk("life_per_horizon")
    # per whole life the short lives are about half the weight among new parts: near the
    # plans' 0.4 threshold, an order for many new parts
    assert np.median(new_by_life) > 0.3, new_by_life
    assert np.all(new_per_stretch < 0.2), new_per_stretch
    assert np.all(worn_per_stretch > 0.5), worn_per_stretch  # worn parts still read as risky


def test_risk_weights_count_each_life_once_per_stretch():
    lives = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    usage = np.array([0.0, 4.0, 12.0, 15.0, 1.0, 2.0])
    assert np.allclose(risk_weights(lives, usage, 10.0, "life"), [0.25] * 4 + [0.5] * 2)
    per = risk_weights(lives, usage, 10.0, "life_per_horizon")
    assert np.allclose(per, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert np.allclose(risk_weights(lives, usage, 0.0, "life_per_horizon"), [0.25] * 4 + [0.5] * 2)
    with pytest.raises(ValueError, match="risk weighting"):
        risk_weights(lives, usage, 10.0, "rows")
