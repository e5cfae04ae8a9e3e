"""The wear-model artifact holds each gradient-boosting model's trees packed (a few arrays
instead of three per tree): it predicts exactly what the model predicted, artifacts stored
before still load, and packed trees that do not fit together, point outside their nodes or
hide another type are refused."""

from __future__ import annotations

import copy
import io
import zipfile
from typing import Any

import numpy as np
import pytest
import skops.io as sio

from fleetcare.errors import Invalid
from models.bundle import PackedTrees, WearModel, _packed_estimator, dump_model, load_model
from tests.fixtures.wear import trained_tire_model


class NotAModelPart:
    pass


def _probe(model: WearModel) -> np.ndarray:
    n = model.rul["tire"].model_.n_features_in_
    return np.random.default_rng(5).normal(size=(2_000, n)) * 3


def _assert_predicts_the_same(a: WearModel, b: WearModel) -> None:
    x = _probe(a)
    pa, pb = a.predict(x), b.predict(x)
    assert pa.keys() == pb.keys() == {"tire"}
    for name, values in pa["tire"].items():
        assert np.array_equal(values.view(np.int64), pb["tire"][name].view(np.int64)), name


def _files(data: bytes) -> int:
    return len(zipfile.ZipFile(io.BytesIO(data)).namelist())


def _schema(data: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read("schema.json")


def test_packed_artifact_predicts_to_the_bit_and_holds_few_arrays() -> None:
    model = trained_tire_model()
    data = dump_model(model)
    unpacked = sio.dumps(model)  # how artifacts were stored before packing
    estimators: list[Any] = [*model.rul.values(), *model.risk.values()]
    trees = sum(len(e.model_._predictors) for e in estimators)
    assert trees >= 10
    # each tree was an object of arrays in the artifact; packed, none is
    assert b"TreePredictor" in _schema(unpacked) and b"TreePredictor" not in _schema(data)
    assert _files(data) < _files(unpacked) - trees  # an array file a tree fewer, at least
    assert type(model.rul["tire"].model_._predictors) is list  # the model itself unchanged
    loaded = load_model(data)
    assert type(loaded.rul["tire"].model_._predictors[0][0]).__name__ == "TreePredictor"
    _assert_predicts_the_same(model, loaded)
    _assert_predicts_the_same(model, load_model(unpacked))  # stored before: loads as it is
    _assert_predicts_the_same(model, load_model(dump_model(loaded)))


def _altered(change: Any) -> bytes:
    """An artifact of the tire model whose RUL trees are packed and then ``change``d."""
    model = copy.copy(trained_tire_model())
    model.rul = {"tire": _packed_estimator(model.rul["tire"])}
    packed = model.rul["tire"].model_._predictors
    assert isinstance(packed, PackedTrees)
    change(packed)
    return sio.dumps(model)


def test_packed_trees_that_do_not_fit_are_refused() -> None:
    def fewer_counts(p: PackedTrees) -> None:
        p.node_counts = p.node_counts[:-1]

    def more_nodes(p: PackedTrees) -> None:
        p.node_counts = p.node_counts.copy()
        p.node_counts[0] += 1

    def other_bitsets(p: PackedTrees) -> None:
        p.raw = np.zeros((1, 8), dtype=np.uint32)

    def counts_as_a_list(p: PackedTrees) -> None:
        p.node_counts = p.node_counts.tolist()

    def no_bitsets(p: PackedTrees) -> None:
        del p.raw

    for change in (counts_as_a_list, no_bitsets):
        with pytest.raises(Invalid, match="not the arrays they should be"):
            load_model(_altered(change))
    for change in (fewer_counts, more_nodes, other_bitsets):
        with pytest.raises(Invalid, match="packed trees do not fit together"):
            load_model(_altered(change))


def test_packed_trees_pointing_outside_their_nodes_or_features_are_refused() -> None:
    def far_child(p: PackedTrees) -> None:
        p.nodes = p.nodes.copy()
        split = int(np.flatnonzero(p.nodes["is_leaf"] == 0)[0])
        tree = int(np.searchsorted(np.cumsum(p.node_counts), split, side="right"))
        p.nodes["left"][split] = int(p.node_counts[tree])  # one past its tree's last node

    def unknown_feature(p: PackedTrees) -> None:
        p.nodes = p.nodes.copy()
        p.nodes["feature_idx"][int(np.flatnonzero(p.nodes["is_leaf"] == 0)[0])] = 10_000

    for change in (far_child, unknown_feature):
        with pytest.raises(Invalid, match="point outside their nodes or features"):
            load_model(_altered(change))


def test_packed_trees_are_audited_like_the_rest() -> None:
    def smuggle(p: PackedTrees) -> None:
        p.extra = NotAModelPart()  # type: ignore[attr-defined]

    with pytest.raises(Invalid, match="not trusted"):
        load_model(_altered(smuggle))
