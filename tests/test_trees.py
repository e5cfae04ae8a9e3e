"""The gradient-boosting trees as arrays (models.trees) predict what scikit-learn predicts, to
the bit: on every split's threshold and the doubles next to it (a comparison in single
precision, as a later shap might make, would send some of those rows the other way), on
missing and infinite values, for a regressor, a binary classifier and the tire model's
``WearModel.predict``; models they cannot take predict through scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from models.trees import TreeArrays


def _data(seed: int, missing: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3_000, 7))
    y = 3 * x[:, 0] - 2 * np.abs(x[:, 1]) + x[:, 2] * x[:, 3] + rng.normal(0, 0.3, 3_000)
    if missing:  # NaN in training: each split learns a side for missing values
        x[rng.random(x.shape) < 0.05] = np.nan
    return x, y


def _probe(model: HistGradientBoostingRegressor | HistGradientBoostingClassifier) -> np.ndarray:
    """Rows at each split's threshold, at the doubles just below and above it, and at the
    float32 nearest it; plus random rows with NaN and infinities."""
    rng = np.random.default_rng(5)
    rows = []
    for step in model._predictors:
        nodes = step[0].nodes
        for node in nodes[nodes["is_leaf"] == 0]:
            t = float(node["num_threshold"])
            for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), float(np.float32(t))):
                row = rng.normal(size=model.n_features_in_)
                row[int(node["feature_idx"])] = v
                rows.append(row)
    probe = np.array(rows)
    extra = rng.normal(size=(500, model.n_features_in_)) * 3
    extra[rng.random(extra.shape) < 0.1] = np.nan
    extra[rng.random(extra.shape) < 0.02] = np.inf
    extra[rng.random(extra.shape) < 0.02] = -np.inf
    return np.vstack((probe, extra))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


@pytest.mark.parametrize("missing", [False, True])
def test_a_regressors_trees_predict_as_scikit_learn_to_the_bit(missing: bool) -> None:
    x, y = _data(3, missing)
    model = HistGradientBoostingRegressor(max_iter=80, max_leaf_nodes=15, random_state=0)
    model.fit(x, y)
    trees = TreeArrays.of(model)
    assert trees is not None
    probe = _probe(model)
    assert probe.shape[0] > 80 * 4  # every split's threshold and its neighbours
    assert _same_bits(trees.raw_predict(probe), model._raw_predict(probe)[:, 0])
    assert _same_bits(trees.raw_predict(probe), model.predict(probe))
    # the layout of the features does not matter
    assert _same_bits(trees.raw_predict(np.asfortranarray(probe)), model.predict(probe))


@pytest.mark.parametrize("missing", [False, True])
def test_a_classifiers_trees_predict_as_scikit_learn_to_the_bit(missing: bool) -> None:
    x, y = _data(4, missing)
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0)
    model.fit(x, y > 0)
    trees = TreeArrays.of(model)
    assert trees is not None
    probe = _probe(model)
    raw = trees.raw_predict(probe)
    assert _same_bits(raw, model._raw_predict(probe)[:, 0])
    assert _same_bits(model._loss.predict_proba(raw), model.predict_proba(probe))


def test_models_the_arrays_cannot_take_are_left_to_scikit_learn() -> None:
    x, y = _data(6, False)
    labels = np.digitize(y, [-2.0, 2.0])  # three classes: three trees per iteration
    multi = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, labels)
    assert TreeArrays.of(multi) is None
    categories = np.column_stack((x[:, :3], np.floor(np.abs(x[:, 3]) * 3) % 5))
    categorical = HistGradientBoostingRegressor(
        max_iter=5, categorical_features=[3], random_state=0
    ).fit(categories, y)
    assert TreeArrays.of(categorical) is None
    assert TreeArrays.of(HistGradientBoostingRegressor()) is None  # not fitted
    assert TreeArrays.of(None) is None


def test_the_tire_models_predictions_are_the_same_with_its_tree_arrays() -> None:
    from tests.fixtures.wear import trained_tire_model

    model = trained_tire_model()
    trees = model.tree_arrays()
    assert all(t is not None for t in [*trees.rul.values(), *trees.risk.values()])
    n = model.rul["tire"].model_.n_features_in_
    probe = np.vstack(
        [
            _probe(model.rul["tire"].model_)[:, :n],
            _probe(model.risk["tire"].model_)[:, :n],
        ]
    )
    probe = np.nan_to_num(probe, nan=0.5, posinf=40.0, neginf=-40.0)  # features are finite
    want = model.predict(probe)
    got = model.predict(probe, trees=trees)
    assert want.keys() == got.keys()
    for component, values in want.items():
        assert values.keys() == got[component].keys()
        for name, array in values.items():
            assert _same_bits(got[component][name], array), (component, name)
    with pytest.raises(ValueError):  # the features are still checked
        model.predict(np.full((2, n), np.nan), trees=trees)
