"""The migration runner: order, idempotency, edited files, concurrent runners, both paths."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from fleetcare import migrate
from fleetcare.errors import MigrationError
from tests.fixtures.services import (
    SERVER_URL,
    create_database,
    drop_database,
    storage_server,
    unique_name,
)


@pytest.fixture
def empty_db() -> Iterator[str]:
    name = unique_name("fc_mig")
    url = create_database(SERVER_URL, name)
    yield url
    drop_database(SERVER_URL, name)


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, target)
    return target


def test_applies_in_order_once(empty_db: str) -> None:
    storage, applied = migrate.apply_migrations(empty_db)
    names = [f.name for f in migrate.load_files()]
    assert applied == names
    assert storage in ("postgres", "timescaledb")
    # a second run changes nothing
    assert migrate.apply_migrations(empty_db) == (storage, [])
    st = migrate.status(empty_db)
    assert st.current and [a.name for a in st.applied] == names
    with psycopg.connect(empty_db) as conn:
        times = [
            r[0]
            for r in conn.execute(
                "SELECT applied_at FROM schema_migrations ORDER BY name"
            ).fetchall()
        ]
    assert times == sorted(times)


def test_refuses_edited_file(empty_db: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    migrate.apply_migrations(empty_db, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        migrate.apply_migrations(empty_db, folder)
    assert migrate.status(empty_db, folder).edited == [first.name]


def test_refuses_missing_applied_file(empty_db: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    migrate.apply_migrations(empty_db, folder)
    last = sorted(folder.glob("*.sql"))[-1]
    last.unlink()
    with pytest.raises(MigrationError, match="missing"):
        migrate.apply_migrations(empty_db, folder)


def test_new_file_applies_after_the_others(empty_db: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    migrate.apply_migrations(empty_db, folder)
    (folder / "9999_extra.sql").write_text("CREATE TABLE extra_probe (id int);\n")
    _, applied = migrate.apply_migrations(empty_db, folder)
    assert applied == ["9999_extra.sql"]


def test_failed_file_leaves_nothing_behind(empty_db: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    migrate.apply_migrations(empty_db, folder)
    (folder / "9998_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )
    with pytest.raises(MigrationError, match=r"9998_broken\.sql failed"):
        migrate.apply_migrations(empty_db, folder)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
    assert migrate.status(empty_db, folder).pending == ["9998_broken.sql"]


def test_bad_file_names_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lowercase_name"):
        migrate.load_files(folder)


def test_two_concurrent_runners_apply_each_file_once(empty_db: str) -> None:
    results: list[tuple[str, list[str]]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(migrate.apply_migrations(empty_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    applied = sorted(results, key=lambda r: len(r[1]))
    assert applied[0][1] == []  # the second runner found nothing left to do
    assert applied[1][1] == [f.name for f in migrate.load_files()]


def test_sections_and_statement_splitting() -> None:
    text = (
        "CREATE TABLE a (id int);\n"
        "-- fleetcare: timescaledb\nSELECT create_hypertable('a', 'id');\n"
        "-- fleetcare: postgres\nCREATE INDEX ON a (id);\n"
        "-- fleetcare: timescaledb no-transaction\n"
        "CREATE MATERIALIZED VIEW v AS\n SELECT 1;\nSELECT 2;\n"
    )
    sections = migrate.parse_sections(text)
    f = migrate.MigrationFile("0001_x.sql", Path("x"), "c", sections)
    assert [s.text.strip() for s in f.sections_for("postgres", transactional=True)] == [
        "CREATE TABLE a (id int);",
        "CREATE INDEX ON a (id);",
    ]
    outside = f.sections_for("timescaledb", transactional=False)
    assert list(migrate.split_statements(outside[0].text)) == [
        "CREATE MATERIALIZED VIEW v AS\n SELECT 1;",
        "SELECT 2;",
    ]
    assert f.sections_for("postgres", transactional=False) == []


def test_plain_postgres_path_has_rollup_table(empty_db: str) -> None:
    migrate.apply_migrations(empty_db, storage_choice="postgres")
    with psycopg.connect(empty_db) as conn:
        conn.execute("SELECT fleetcare_refresh_telemetry_hourly(now() - interval '1 day', now())")
        kind = conn.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'telemetry_hourly'"
        ).fetchone()
    assert kind == ("r",)
    assert migrate.status(empty_db).storage == "postgres"


def test_storage_path_cannot_switch(empty_db: str) -> None:
    migrate.apply_migrations(empty_db, storage_choice="postgres")
    with pytest.raises(MigrationError, match="cannot switch"):
        migrate.apply_migrations(empty_db, storage_choice="timescaledb")


def test_timescaledb_path_creates_hypertables() -> None:
    server = storage_server("timescaledb")
    name = unique_name("fc_ts")
    url = create_database(server, name)
    try:
        storage, applied = migrate.apply_migrations(url)
        assert storage == "timescaledb" and applied
        assert migrate.apply_migrations(url) == ("timescaledb", [])
        with psycopg.connect(url) as conn:
            hypertables = {
                r[0]
                for r in conn.execute(
                    "SELECT hypertable_name FROM timescaledb_information.hypertables"
                ).fetchall()
            }
            caggs = {
                r[0]
                for r in conn.execute(
                    "SELECT view_name FROM timescaledb_information.continuous_aggregates"
                ).fetchall()
            }
        assert "telemetry" in hypertables
        assert "telemetry_hourly" in caggs
    finally:
        drop_database(server, name)


def test_asset_seen_takes_over_the_assets_last_seen_and_usage(
    empty_db: str, tmp_path: Path
) -> None:
    """0330 moves each asset's last-seen time and usage counter into asset_seen (assets that
    never reported get no row and read NULLs through the join) and drops the columns."""
    folder = _copy_migrations(tmp_path)
    later = folder / "later"
    later.mkdir()
    for f in folder.glob("*.sql"):
        if f.name >= "0330":
            f.rename(later / f.name)
    migrate.apply_migrations(empty_db, folder, storage_choice="postgres")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO asset_kinds (name, life_unit, usage_metric, failure, typical_life)"
            " VALUES ('probe', 'km', 'odometer_km', 'wear', 1000)"
        )
        customer = conn.execute(
            "INSERT INTO customers (slug, name) VALUES ('m', 'M') RETURNING id"
        ).fetchone()
        assert customer is not None
        conn.execute(
            """
            INSERT INTO assets (customer_id, kind, ref, usage_counter, usage_at, last_seen_at)
            VALUES (%(c)s, 'probe', 'SEEN', 12.5, '2026-12-01T10:00Z', '2026-12-01T10:05Z'),
                   (%(c)s, 'probe', 'NEVER', NULL, NULL, NULL)
            """,
            {"c": customer[0]},
        )
    for f in later.glob("*.sql"):
        f.rename(folder / f.name)
    _, applied = migrate.apply_migrations(empty_db, folder, storage_choice="postgres")
    assert "0330_asset_seen.sql" in applied
    with psycopg.connect(empty_db, autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT a.ref, s.usage_counter, s.usage_at, s.last_seen_at
              FROM assets a LEFT JOIN asset_seen s ON s.asset_id = a.id ORDER BY a.ref
            """
        ).fetchall()
        gone = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'assets'"
            " AND column_name IN ('usage_counter', 'usage_at', 'last_seen_at')"
        ).fetchone()
    assert [r[0] for r in rows] == ["NEVER", "SEEN"]
    assert rows[0][1:] == (None, None, None)
    assert rows[1][1] == 12.5
    assert rows[1][2:] == (
        datetime(2026, 12, 1, 10, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 5, tzinfo=UTC),
    )
    assert gone == (0,)
