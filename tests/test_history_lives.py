"""History import of lifetimes over lives already recorded: a file that is cut short (a
truncated download imported without --strict) and then imported whole, or a part of a unit's
rows imported again, must not give an asset two lives over the same readings (each would
label them with its own remaining life, and training would learn both)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import Connection

from fleet import service as fleet
from fleetcare.db import connect
from fleetcare.errors import Invalid
from tests.test_history_import import ORIGIN, run, text_file

HOUR = timedelta(hours=1)


@pytest.fixture
def auto(db_url: str) -> Any:
    with connect(db_url, autocommit=True) as c:
        yield c


def lives(conn: Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT a.ref, l.started_at, l.ended_at FROM asset_lives l"
        " JOIN assets a ON a.id = l.asset_id ORDER BY a.ref, l.ended_at"
    ).fetchall()


def test_a_truncated_file_then_the_whole_one_keeps_one_life_per_unit_and_says_why(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    whole = text_file(tmp_path / "train.txt", {1: 30, 2: 20})
    cut = tmp_path / "cut.txt"  # the download stopped inside unit 2's last row
    cut.write_bytes(whole.read_bytes()[:-12])
    first = run(auto, acme.id, [cut])
    assert first.reasons == {"bad_structure": 1} and first.lives_recorded == 2
    renewed = auto.execute("SELECT renewed_at FROM assets WHERE ref = '2'").fetchone()
    again = run(auto, acme.id, [whole])
    assert again.lives_recorded == 0  # unit 1's life was there; unit 2's overlaps its first
    assert again.warnings == {"overlapping_life": 1}
    example = again.warning_examples["overlapping_life"]
    assert "asset '2'" in example and "not recorded" in example, example
    assert "2020-01-01T20:00:00+00:00" in example and "2020-01-01T19:00:00+00:00" in example
    assert lives(auto) == [
        ("1", ORIGIN + HOUR, ORIGIN + 30 * HOUR),
        ("2", ORIGIN + HOUR, ORIGIN + 19 * HOUR),
    ]
    # the asset is not renewed at the end of a life that was not recorded
    assert auto.execute("SELECT renewed_at FROM assets WHERE ref = '2'").fetchone() == renewed
    # the readings of the whole file are kept: the row the cut lost is stored now
    assert again.values_stored == 3 and again.rows_rejected == 0


def test_part_of_a_recorded_life_imported_again_is_no_second_life(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    run(auto, acme.id, [text_file(tmp_path / "train.txt", {1: 30})])
    part = run(auto, acme.id, [text_file(tmp_path / "part.txt", {1: 2})])
    assert (part.lives_recorded, part.warnings) == (0, {"overlapping_life": 1})
    assert lives(auto) == [("1", ORIGIN + HOUR, ORIGIN + 30 * HOUR)]


def test_strict_import_stops_on_an_overlapping_life_and_records_none(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    run(auto, acme.id, [text_file(tmp_path / "train.txt", {1: 30})])
    with pytest.raises(Invalid) as caught:
        run(auto, acme.id, [text_file(tmp_path / "more.txt", {1: 2, 7: 10})], strict=True)
    assert "asset '1'" in caught.value.detail and "overlapping_life" in caught.value.detail
    assert "no life of more.txt recorded" in caught.value.detail
    assert lives(auto) == [("1", ORIGIN + HOUR, ORIGIN + 30 * HOUR)]  # unit 7's neither


def test_the_next_life_of_an_asset_is_recorded(auto: Connection[Any], tmp_path: Path) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    run(auto, acme.id, [text_file(tmp_path / "first.txt", {1: 30})])
    second = tmp_path / "second.txt"  # the same unit's next life, after the first ended
    second.write_text("".join(f"1 {c} 600.0 1400.0\n" for c in range(31, 51)))
    report = run(auto, acme.id, [second], strict=True)
    assert (report.lives_recorded, report.warnings) == (1, {})
    assert lives(auto) == [
        ("1", ORIGIN + HOUR, ORIGIN + 30 * HOUR),
        ("1", ORIGIN + 31 * HOUR, ORIGIN + 50 * HOUR),
    ]
