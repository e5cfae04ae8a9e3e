"""What a scoring worker keeps between passes stays out of the garbage collector's way, and the
binary arrays the passes send arrive as they were made."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from models import worker as scoring_worker
from models.repository.arrays import BinaryArray, register_binary_arrays
from models.worker import ScoringWorker
from testkit import synthetic
from tests.fixtures.wear import install_model, make_fleet, trained_tire_model

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test may freeze the heap (gc.freeze); the tests after it start unfrozen."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_worker_freezes_its_heap_once_after_a_model_load(
    conn: Connection[Any], db_url: str, unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=3)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    frozen: list[int] = []
    real = scoring_worker.keep_out_of_collections

    def counted() -> None:
        real()
        frozen.append(gc.get_freeze_count())

    monkeypatch.setattr(scoring_worker, "keep_out_of_collections", counted)
    worker = ScoringWorker(db_url, clock)
    assert worker.run_once().predictions == 3  # loads the model: collected, then frozen
    assert len(frozen) == 1 and frozen[0] > 10_000  # the modules, the model, the explainer
    assert worker.models.loaded  # still held: frozen objects are the live ones

    a = tires.asset_ids[0]
    synthetic.append_readings(
        conn, [a], tires.last_time[a] + timedelta(hours=1), {a: 7e4}, seen=NOW
    )
    conn.commit()
    clock.advance(60)
    assert worker.run_once().predictions == 1  # the same model: nothing collected or frozen
    assert len(frozen) == 1


def test_text_arrays_travel_with_nulls_and_any_character(conn: Connection[Any]) -> None:
    texts = ['{"a": "±1 ü"}', None, "", 'quote " and \\ backslash', "x" * 5_000]
    with conn.cursor(binary=True) as cur:
        register_binary_arrays(cur)
        back = cur.execute("SELECT %b::text[]", (BinaryArray.of_texts(texts),)).fetchone()
        assert back is not None and back[0] == texts
        empty = cur.execute("SELECT cardinality(%b::text[])", (BinaryArray.of_texts([]),))
        assert empty.fetchone() == (0,)
