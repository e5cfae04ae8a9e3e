"""Explanations' Saabas attributions come from shap's own C code without importing shap: the
same values to the bit as ``shap.TreeExplainer(...).shap_values(X, approximate=True)``, and a
scoring worker that builds its explainer never imports the shap package (pyplot, numba)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from models.saabas import SaabasTrees


def _fitted(seed: int, missing: bool) -> tuple[HistGradientBoostingRegressor, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3_000, 9))
    y = 3 * x[:, 0] - 2 * np.abs(x[:, 1]) + x[:, 2] * x[:, 3] + rng.normal(0, 0.1, 3_000)
    if missing:  # NaN in training and in what is explained: each split's default side
        x[rng.random(x.shape) < 0.05] = np.nan
    model = HistGradientBoostingRegressor(max_iter=60, max_leaf_nodes=15, random_state=seed)
    model.fit(x, y)
    probe = rng.normal(size=(700, 9)) * 2
    probe[rng.random(probe.shape) < 0.1] = np.nan
    return model, probe


@pytest.mark.parametrize("missing", [False, True])
def test_saabas_attributions_are_shaps_to_the_bit(missing: bool) -> None:
    import shap

    model, probe = _fitted(7, missing)
    ours = SaabasTrees(model)
    theirs = shap.TreeExplainer(model)
    got = ours.contributions(probe)
    want = np.asarray(
        theirs.shap_values(probe, approximate=True, check_additivity=False), dtype=np.float64
    )
    assert got.shape == want.shape == probe.shape
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    assert ours.expected_value == float(np.ravel(theirs.expected_value)[0])
    # additive: the attributions and the expected value give the raw prediction back
    assert np.allclose(got.sum(axis=1) + ours.expected_value, model.predict(probe))


def test_the_tire_models_attributions_are_shaps_to_the_bit() -> None:
    import shap

    from tests.fixtures.wear import trained_tire_model

    model = trained_tire_model()
    regressor = model.rul["tire"].model_
    rng = np.random.default_rng(11)
    probe = rng.normal(size=(400, regressor.n_features_in_)) * 3
    got = SaabasTrees(regressor).contributions(probe)
    want = shap.TreeExplainer(regressor).shap_values(
        probe, approximate=True, check_additivity=False
    )
    assert np.array_equal(got.view(np.int64), np.asarray(want, dtype=np.float64).view(np.int64))


def test_other_models_are_refused_with_a_reason() -> None:
    from sklearn.linear_model import LinearRegression

    with pytest.raises(TypeError, match="HistGradientBoostingRegressor, not LinearRegression"):
        SaabasTrees(LinearRegression().fit(np.zeros((3, 2)), np.zeros(3)))
    model, probe = _fitted(3, False)
    with pytest.raises(ValueError, match="must be a matrix"):
        SaabasTrees(model).contributions(probe[0])


def test_a_worker_building_its_explainer_does_not_import_shap(tmp_path: Path) -> None:
    from models.bundle import dump_model
    from tests.fixtures.wear import trained_tire_model

    artifact = tmp_path / "tire.skops"
    artifact.write_bytes(dump_model(trained_tire_model()))
    # in a process of its own (this test session imports shap elsewhere): load the artifact,
    # build the explainer as the scoring worker does, explain a row
    script = f"""
import sys
import numpy as np
from kinds.loader import builtin_kinds
from models.bundle import load_model
from models.explain import build_explainer
model = load_model(open({str(artifact)!r}, "rb").read())
explainer = build_explainer(model, builtin_kinds()["tire"])
assert explainer is not None
features = np.zeros((1, model.rul["tire"].model_.n_features_in_))
assert explainer.contributions("tire", features).shape == features.shape
heavy = [m for m in ("shap", "matplotlib", "numba") if m in sys.modules]
print(",".join(heavy) or "none")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "none"
