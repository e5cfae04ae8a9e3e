"""C-MAPSS loader, evaluation and the ``models`` CLI, on small slices of a training file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from models import cmapss
from models.cli import app
from models.estimators import RULRegressor
from models.features import LIFE_WINDOW, WindowFeatures, fit_conditions_features

TRAIN_FD001 = Path("/work/shared/data/cmapss/train_FD001.txt")
TRAIN_FD002 = Path("/work/shared/data/cmapss/train_FD002.txt")
pytestmark = pytest.mark.skipif(not TRAIN_FD001.is_file(), reason="C-MAPSS data not present")


@pytest.fixture(autouse=True)
def small_fast_model(monkeypatch):
    """A small RUL model on one thread keeps these tests to seconds."""

    def small(random_state: int = 0) -> RULRegressor:
        return RULRegressor(max_iter=40, learning_rate=0.15, calibration_folds=2)

    monkeypatch.setattr(cmapss, "make_rul_regressor", small)
    with threadpool_limits(limits=1):
        yield


def _write(path: Path, rows: np.ndarray) -> Path:
    lines = [" ".join(f"{int(v)}" if j < 2 else f"{v:.4f}" for j, v in enumerate(r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fd001() -> np.ndarray:
    return cmapss.load_cmapss(TRAIN_FD001)


@pytest.fixture
def triple(tmp_path, fd001) -> tuple[Path, Path, Path]:
    """A pseudo train/test/RUL triple: units 1-12 to train, units 13-20 cut at random cycles."""
    train = fd001[fd001[:, 0] <= 12]
    held_out = fd001[(fd001[:, 0] > 12) & (fd001[:, 0] <= 20)]
    test, true = cmapss.truncate_units(held_out, np.random.default_rng(0))
    return (
        _write(tmp_path / "train_FD001.txt", train),
        _write(tmp_path / "test_FD001.txt", test),
        _write(tmp_path / "RUL_FD001.txt", true[:, None]),
    )


def test_loader_reads_the_training_file(fd001):
    assert fd001.shape == (20631, 26)
    assert np.unique(fd001[:, 0]).shape[0] == 100
    rul = cmapss.rul_to_failure(fd001)
    assert rul.min() == 0 and np.all(rul[fd001[:, 0] == 1] == np.arange(191, -1, -1))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no data rows"),
        ("1 1 0.1 0.2\n", "expected 26 columns"),
        ("1 1 " + " ".join(["0.5"] * 23) + " abc\n", "non-numeric value 'abc'"),
        ("1 1 " + " ".join(["nan"] * 24) + "\n", "non-finite"),
        ("1 1 " + " ".join(["0.5"] * 24) + "\n1 3 " + " ".join(["0.5"] * 24) + "\n", "consec"),
    ],
)
def test_loader_rejects_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(cmapss.CMAPSSDataError, match=message):
        cmapss.load_cmapss(path)


def test_loader_reads_a_bom_and_names_the_line_of_bytes_that_are_not_utf8(tmp_path):
    row = "1 1 " + " ".join(["0.5"] * 24)
    path = tmp_path / "x.txt"
    path.write_bytes(
        b"\xef\xbb\xbf" + f"{row}  \r\n".encode() + row.replace("1 1", "1 2", 1).encode()
    )
    assert cmapss.load_cmapss(path).shape == (2, 26)
    path.write_bytes(f"{row}\n\n".encode() + b"1 2 0.5 \xe9" + b" 0.5" * 22 + b"\n")
    with pytest.raises(cmapss.CMAPSSDataError, match=r"x\.txt:3: not UTF-8 text \(byte 0xe9\)"):
        cmapss.load_cmapss(path)


def test_loader_rejects_missing_files(tmp_path):
    with pytest.raises(cmapss.CMAPSSDataError, match="no such file"):
        cmapss.load_cmapss(tmp_path / "absent.txt")
    bad_rul = tmp_path / "rul.txt"
    bad_rul.write_text("12\n-3\n")
    with pytest.raises(cmapss.CMAPSSDataError, match=">= 0"):
        cmapss.load_rul(bad_rul)


def test_truncation_keeps_a_prefix_and_its_rul(fd001):
    units = fd001[fd001[:, 0] <= 5]
    cut, true = cmapss.truncate_units(units, np.random.default_rng(1))
    for i, unit in enumerate(range(1, 6)):
        full, kept = units[units[:, 0] == unit], cut[cut[:, 0] == unit]
        np.testing.assert_array_equal(kept, full[: kept.shape[0]])
        assert true[i] == full.shape[0] - kept.shape[0]
        assert kept.shape[0] >= 31


def test_evaluate_cmapss_returns_all_keys(triple):
    result, _ = cmapss.evaluate_cmapss(*triple)
    assert tuple(result) == cmapss.RESULT_KEYS
    assert result["dataset"] == "FD001"
    # predictions never exceed the cap, so capping the truth can only bring it closer
    assert 0 < result["rmse_capped125"] <= result["rmse"]
    assert result["rmse_capped125"] < 40
    assert 0 <= result["interval_coverage"] <= 1
    assert result["train_seconds"] > 0


def test_evaluate_rejects_mismatched_rul(triple, tmp_path):
    train, test, _ = triple
    short = tmp_path / "short.txt"
    short.write_text("10\n20\n")
    with pytest.raises(cmapss.CMAPSSDataError, match="2 RUL values for 8 test units"):
        cmapss.evaluate_cmapss(train, test, short)


def test_featurizer_follows_the_operating_conditions(fd001):
    assert cmapss.operating_conditions(fd001) == 1
    one = cmapss.make_featurizer(1)
    assert one.smoothing == cmapss.SINGLE_CONDITION_FEATURES["smoothing"]
    assert tuple(one.windows) == cmapss.SINGLE_CONDITION_FEATURES["windows"]
    six = cmapss.make_featurizer(6)
    assert six.smoothing == cmapss.MULTI_CONDITION_FEATURES["smoothing"]
    assert tuple(six.windows) == cmapss.MULTI_CONDITION_FEATURES["windows"]
    # six C-MAPSS flight conditions (altitude kft, Mach, throttle angle), rows in cycle order
    conditions = np.array([[0, 0, 100], [10, 0.25, 100], [20, 0.7, 100], [25, 0.62, 60]])
    rows = fd001[:40].copy()
    rows[:, 2:5] = conditions[np.arange(40) % 4]
    assert cmapss.operating_conditions(rows) == 4


def test_std_windows_keep_the_longest_spread_and_drop_the_others(fd001):
    X = cmapss.readings_matrix(fd001[fd001[:, 0] <= 6])
    full = WindowFeatures(n_settings=3, windows=(5, 10, 30)).fit(X)
    lean = WindowFeatures(n_settings=3, windows=(5, 10, 30), std_windows=(30,)).fit(X)
    full_names = list(full.get_feature_names_out())
    lean_names = list(lean.get_feature_names_out())
    assert [n for n in lean_names if n.endswith("_std")] == [f"m{j}_w30_std" for j in range(14)]
    assert set(lean_names) < set(full_names) and len(lean_names) == len(full_names) - 28
    # the same columns, value for value, as the full transformer's
    columns = [full_names.index(n) for n in lean_names]
    np.testing.assert_array_equal(lean.transform(X), full.transform(X)[:, columns])
    # the scoring path gives the training path's values at each unit's last row
    ids, last = lean.transform_last(X)
    np.testing.assert_array_equal(ids, np.arange(1, 7))
    ends = np.flatnonzero(np.append(X[1:, 0] != X[:-1, 0], True))
    np.testing.assert_allclose(last, lean.transform(X)[ends], rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="std_windows must be among the windows"):
        WindowFeatures(n_settings=3, windows=(5, 10), std_windows=(30,)).fit(X)


def test_the_life_window_is_mean_and_slope_since_renewal(fd001):
    units = fd001[fd001[:, 0] <= 4]
    X = cmapss.readings_matrix(units)
    featurizer = cmapss.make_featurizer(1).fit(X)
    life = LIFE_WINDOW
    assert max(featurizer.windows) == life > np.bincount(units[:, 0].astype(int)).max()
    # the gate and the drift reference read the longest window that keeps its std, not it
    assert featurizer.spread_window() == 60
    names = list(featurizer.get_feature_names_out())
    assert f"m0_w{life}_slope" in names and f"m0_w{life}_std" not in names
    assert "m0_w60_std" in names
    assert WindowFeatures(windows=(5, 20)).spread_window() == 20  # every window keeps its std
    features = featurizer.transform(X)
    z = featurizer._normalised(X)
    starts = np.flatnonzero(np.append(True, X[1:, 0] != X[:-1, 0]))
    ends = np.append(starts[1:], X.shape[0])
    mean_col, slope_col = names.index(f"m3_w{life}_mean"), names.index(f"m3_w{life}_slope")
    for a, b in zip(starts, ends, strict=True):
        for row in (a + 1, a + 40, b - 1):  # every row since renewal, however many
            seen = z[a : row + 1, 3]
            assert features[row, mean_col] == pytest.approx(seen.mean(), abs=1e-9)
            slope = np.polyfit(np.arange(seen.shape[0]), seen, 1)[0]
            assert features[row, slope_col] == pytest.approx(slope, abs=1e-9)
    # the scoring path gives the training path's values at each unit's last row
    ids, last = featurizer.transform_last(X)
    np.testing.assert_array_equal(ids, np.arange(1, 5))
    np.testing.assert_allclose(last, features[ends - 1], rtol=1e-9, atol=1e-9)


@pytest.mark.skipif(not TRAIN_FD002.is_file(), reason="train_FD002.txt not present")
def test_six_conditions_are_normalised_per_regime_as_online_training_does():
    data = cmapss.load_cmapss(TRAIN_FD002)
    data = data[data[:, 0] <= 30]
    featurizer, _ = cmapss.fit_rul_model(data)
    assert featurizer.n_regimes_ == 6
    params = featurizer.get_params()
    assert {k: params[k] for k in cmapss.MULTI_CONDITION_FEATURES} == {
        k: v for k, v in cmapss.MULTI_CONDITION_FEATURES.items()
    }
    # the function online training calls (kinds with features: by_operating_conditions)
    X = cmapss.readings_matrix(data)
    online = fit_conditions_features(X, cmapss.N_SETTINGS)
    assert online.get_params() == params
    np.testing.assert_array_equal(online.transform(X), featurizer.transform(X))
    # each sensor is standardised within its regime: the regime's rows have mean 0, std 1
    z = featurizer._normalised(X)
    regimes = featurizer._regimes(X[:, 2:5])
    assert np.unique(regimes).shape[0] == 6
    for r in range(6):
        np.testing.assert_allclose(z[regimes == r].mean(axis=0), 0.0, atol=1e-9)
        np.testing.assert_allclose(z[regimes == r].std(axis=0), 1.0, atol=1e-6)


def test_phm08_score():
    assert cmapss.phm08_score(np.array([10.0]), np.array([10.0])) == 0.0
    late = cmapss.phm08_score(np.array([20.0]), np.array([10.0]))
    early = cmapss.phm08_score(np.array([0.0]), np.array([10.0]))
    assert late == pytest.approx(np.e - 1) and early == pytest.approx(np.exp(10 / 13) - 1)


# -- CLI ----------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_cmapss_prints_one_json_line(triple):
    train, test, rul = triple
    result = runner.invoke(
        app, ["cmapss", "--train", str(train), "--test", str(test), "--rul", str(rul)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert set(json.loads(lines[0])) == set(cmapss.RESULT_KEYS)


def test_cli_cv_prints_one_json_line(triple):
    result = runner.invoke(app, ["cmapss-cv", "--train", str(triple[0]), "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert tuple(json.loads(result.stdout)) == cmapss.RESULT_KEYS
    two_cuts = runner.invoke(
        app, ["cmapss-cv", "--train", str(triple[0]), "--folds", "2", "--truncations", "2"]
    )
    assert two_cuts.exit_code == 0, two_cuts.output
    assert json.loads(two_cuts.stdout)["rmse"] != json.loads(result.stdout)["rmse"]


@pytest.mark.parametrize("kind", ["missing", "malformed"])
def test_cli_bad_input_is_one_line_and_exit_2(triple, tmp_path, kind):
    train, test, rul = triple
    if kind == "missing":
        train = tmp_path / "nope.txt"
    else:
        test = tmp_path / "bad.txt"
        test.write_text("1 1 2 3\n")
    result = runner.invoke(
        app, ["cmapss", "--train", str(train), "--test", str(test), "--rul", str(rul)]
    )
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "Traceback" not in result.output
