"""The migration runner: applies ``migrations/NNNN_name.sql`` in order, once each.

A file may hold sections, each opened by a marker line::

    -- fleetcare: all                          (the default at the top of a file)
    -- fleetcare: timescaledb                  only when TimescaleDB is the storage path
    -- fleetcare: postgres                     only on plain PostgreSQL
    -- fleetcare: timescaledb no-transaction   TimescaleDB, outside a transaction block
    -- fleetcare: postgres no-transaction      plain PostgreSQL, outside a transaction block

Transactional sections of a file run in one transaction together with the row that records
the file (name, checksum, time). Sections marked ``no-transaction`` (continuous aggregates
cannot be created inside a transaction block) run afterwards one statement at a time; their
statements must be idempotent (``IF NOT EXISTS``, ``if_not_exists => true``) and end with a
``;`` at the end of a line. Until they succeed the file is recorded as ``partial`` and the
next run finishes it.

The storage path is chosen once per database: TimescaleDB when
``CREATE EXTENSION IF NOT EXISTS timescaledb`` succeeds, plain PostgreSQL otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from fleetcare.errors import MigrationError

log = logging.getLogger(__name__)

Storage = Literal["timescaledb", "postgres"]
StorageChoice = Literal["auto", "timescaledb", "postgres"]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
FILE_PATTERN = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
MARKER = re.compile(r"^--\s*fleetcare:\s*(all|timescaledb|postgres)(\s+no-transaction)?\s*$")
# Any constant works; it only has to be the same for every fleetcare process.
ADVISORY_LOCK_ID = 0x666C6565_74636172 & 0x7FFFFFFFFFFFFFFF

# Earlier texts of applied files that a later release amended without changing the schema:
# a database that applied one of them is current. 0005 lost its seed rows, which named asset
# kinds (plans and parts): parts now come from the kind definitions and plans from the
# operator (the demo seeds its own); a database that has the old rows keeps them.
AMENDED: dict[str, frozenset[str]] = {
    "0005_maintenance.sql": frozenset(
        {"09039516fcbbed3613c9ec834811a1a9ecec0a809289c07fcabb61e84bb398ff"}
    ),
}

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    complete    boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS schema_storage (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    storage     text NOT NULL CHECK (storage IN ('timescaledb', 'postgres')),
    chosen_at   timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Section:
    """A run of SQL in one file, with the storage path it is for."""

    target: Literal["all", "timescaledb", "postgres"]
    transactional: bool
    text: str


@dataclass(frozen=True)
class MigrationFile:
    """One migration file on disk."""

    name: str
    path: Path
    checksum: str
    sections: tuple[Section, ...]

    def sections_for(self, storage: Storage, *, transactional: bool) -> list[Section]:
        """The sections that run on ``storage``, in file order."""
        return [
            s
            for s in self.sections
            if s.target in ("all", storage) and s.transactional == transactional and s.text.strip()
        ]


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    name: str
    checksum: str
    applied_at: datetime
    complete: bool


@dataclass(frozen=True)
class MigrationStatus:
    """What ``fleetcare migrate --status`` shows."""

    storage: Storage | None
    applied: list[AppliedMigration]
    pending: list[str]
    edited: list[str]
    missing: list[str]

    @property
    def current(self) -> bool:
        return (
            not self.pending
            and not self.edited
            and not self.missing
            and all(a.complete for a in self.applied)
        )


def parse_sections(text: str) -> tuple[Section, ...]:
    """Split a migration file into its marked sections."""
    sections: list[Section] = []
    target: Literal["all", "timescaledb", "postgres"] = "all"
    transactional = True
    lines: list[str] = []
    for line in text.splitlines():
        m = MARKER.match(line.strip())
        if m:
            sections.append(Section(target, transactional, "\n".join(lines)))
            target = m.group(1)  # type: ignore[assignment]
            transactional = m.group(2) is None
            lines = []
        else:
            lines.append(line)
    sections.append(Section(target, transactional, "\n".join(lines)))
    return tuple(sections)


def split_statements(text: str) -> Iterator[str]:
    """Split a no-transaction section into statements ending with ';' at a line's end."""
    current: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(current).strip()
            current = []
            if statement.strip(";").strip():
                yield statement
    rest = "\n".join(current).strip()
    if rest and not all(ln.strip().startswith("--") or not ln.strip() for ln in current):
        yield rest


def load_files(directory: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    """Read and check the migration files of ``directory`` in order."""
    if not directory.is_dir():
        raise MigrationError(f"migrations folder not found: {directory}")
    files: list[MigrationFile] = []
    seen_numbers: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        m = FILE_PATTERN.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        if m.group(1) in seen_numbers:
            raise MigrationError(
                f"{path.name} and {seen_numbers[m.group(1)]} share the number {m.group(1)}"
            )
        seen_numbers[m.group(1)] = path.name
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        files.append(
            MigrationFile(
                name=path.name,
                path=path,
                checksum=hashlib.sha256(raw).hexdigest(),
                sections=parse_sections(text),
            )
        )
    return files


def _ensure_bookkeeping(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(_BOOKKEEPING)


def _applied(conn: psycopg.Connection) -> dict[str, AppliedMigration]:
    rows = conn.execute(
        "SELECT name, checksum, applied_at, complete FROM schema_migrations ORDER BY name"
    ).fetchall()
    return {r[0]: AppliedMigration(*r) for r in rows}


def _recorded_storage(conn: psycopg.Connection) -> Storage | None:
    row = conn.execute("SELECT storage FROM schema_storage").fetchone()
    return row[0] if row else None


def _try_timescaledb(database_url: str) -> bool:
    """True when the TimescaleDB extension is (or can be made) available.

    Tried on a connection of its own: where the library is installed but not preloaded,
    PostgreSQL answers with FATAL and drops the connection.
    """
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as probe:
            probe.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return True
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.info("TimescaleDB not available (%s); using plain PostgreSQL", reason)
        return False


def _choose_storage(conn: psycopg.Connection, database_url: str, choice: StorageChoice) -> Storage:
    recorded = _recorded_storage(conn)
    if recorded is not None:
        if choice != "auto" and choice != recorded:
            raise MigrationError(
                f"this database was migrated for {recorded}; it cannot switch to {choice}"
            )
        if recorded == "timescaledb" and not _try_timescaledb(database_url):
            raise MigrationError(
                "this database was migrated for TimescaleDB but the extension is not available"
            )
        return recorded
    if choice == "postgres":
        storage: Storage = "postgres"
    elif _try_timescaledb(database_url):
        storage = "timescaledb"
    elif choice == "timescaledb":
        raise MigrationError("TimescaleDB was requested but CREATE EXTENSION timescaledb failed")
    else:
        storage = "postgres"
    with conn.transaction():
        conn.execute("INSERT INTO schema_storage (storage) VALUES (%s)", (storage,))
    return storage


def _same(f: MigrationFile, applied_checksum: str) -> bool:
    """Whether the applied text of ``f`` is its text on disk, or an amended earlier one."""
    return applied_checksum == f.checksum or applied_checksum in AMENDED.get(f.name, ())


def status(database_url: str, directory: Path = MIGRATIONS_DIR) -> MigrationStatus:
    """Compare the files with what the database has applied; changes nothing."""
    files = load_files(directory)
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return MigrationStatus(None, [], [f.name for f in files], [], [])
        applied = _applied(conn)
        storage_exists = conn.execute("SELECT to_regclass('schema_storage') IS NOT NULL").fetchone()
        storage = _recorded_storage(conn) if storage_exists and storage_exists[0] else None
    on_disk = {f.name: f for f in files}
    return MigrationStatus(
        storage=storage,
        applied=list(applied.values()),
        pending=[f.name for f in files if f.name not in applied],
        edited=[
            n for n, a in applied.items() if n in on_disk and not _same(on_disk[n], a.checksum)
        ],
        missing=[n for n in applied if n not in on_disk],
    )


def apply_migrations(
    database_url: str,
    directory: Path = MIGRATIONS_DIR,
    *,
    storage_choice: StorageChoice = "auto",
    lock_timeout_s: float = 120.0,
) -> tuple[Storage, list[str]]:
    """Apply every pending migration; return the storage path and the names applied.

    Holds a session advisory lock for the whole run, so concurrent runners apply each file
    once: the second waits, then finds nothing left to do. Refuses to run when an applied
    file was edited or removed.
    """
    files = load_files(directory)
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout_s * 1000)}ms"))
        )
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_ID,))
        except psycopg.errors.LockNotAvailable as exc:
            raise MigrationError(
                f"another migration runner held the lock for over {lock_timeout_s:.0f} s"
            ) from exc
        conn.execute("SET lock_timeout = 0")
        try:
            _ensure_bookkeeping(conn)
            applied = _applied(conn)
            on_disk = {f.name for f in files}
            missing = [n for n in applied if n not in on_disk]
            if missing:
                raise MigrationError(
                    f"applied migrations missing from {directory}: {', '.join(missing)}"
                )
            for f in files:
                a = applied.get(f.name)
                if a and not _same(f, a.checksum):
                    raise MigrationError(
                        f"{f.name} was edited after it was applied (checksum {a.checksum[:12]}"
                        f" applied, {f.checksum[:12]} on disk); write a new migration instead"
                    )
            storage = _choose_storage(conn, database_url, storage_choice)
            for f in files:
                a = applied.get(f.name)
                if a and a.complete:
                    continue
                if a is None:
                    _apply_transactional(conn, f, storage)
                    applied_now.append(f.name)
                _apply_outside_transaction(conn, f, storage)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_ID,))
    return storage, applied_now


def _apply_transactional(conn: psycopg.Connection, f: MigrationFile, storage: Storage) -> None:
    has_outside = bool(f.sections_for(storage, transactional=False))
    log.info("applying %s (%s)", f.name, storage)
    try:
        with conn.transaction():
            for section in f.sections_for(storage, transactional=True):
                conn.execute(section.text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (name, checksum, complete) VALUES (%s, %s, %s)",
                (f.name, f.checksum, not has_outside),
            )
    except psycopg.Error as exc:
        raise MigrationError(f"{f.name} failed: {str(exc).strip()}") from exc


def _apply_outside_transaction(
    conn: psycopg.Connection, f: MigrationFile, storage: Storage
) -> None:
    sections = f.sections_for(storage, transactional=False)
    if not sections:
        return
    for section in sections:
        for statement in split_statements(section.text):
            try:
                conn.execute(statement.encode())
            except psycopg.Error as exc:
                raise MigrationError(
                    f"{f.name} (outside a transaction) failed: {str(exc).strip()}"
                ) from exc
    conn.execute("UPDATE schema_migrations SET complete = true WHERE name = %s", (f.name,))
