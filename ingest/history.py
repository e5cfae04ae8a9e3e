"""History import: a customer's recorded telemetry, read through a payload profile from CSV,
whitespace-separated text or Parquet files, streamed in batches of columns (pyarrow) and
written with binary COPY; whole lifetimes (each asset's rows end in its failure or
replacement) for training, or the running history of assets still in service (backfill).

Idempotent by construction: readings on the (asset, metric, time) key, assets on (customer,
external id), lives on (asset, component, end). Memory is bounded by the batch, not the file:
only per-asset summaries (first and last time, last usage) are kept across batches. Each batch
commits on its own (the import is its own transaction owner, like a worker job), so an
interrupted import is finished by running it again. No SQL text here (``ingest.repository``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from psycopg import Connection

from fleet.causes import UNKNOWN, FailureCause, life_outcome
from fleetcare.errors import Invalid
from fleetcare.inputs import EARLIEST, LATEST
from ingest import history_repository as history_repo
from ingest import repository as repo
from ingest.catalogue import MetricCatalogue, MetricSpec
from ingest.history_files import (
    PARQUET_SUFFIXES,
    Locate,
    as_text,
    floats,
    not_a_file,
    parquet_batches,
    text_batches,
)
from ingest.history_lives import refuse_overlapping_lives
from ingest.history_report import ImportReport, strict_stop
from ingest.profiles import CompiledProfile, ProfileError
from ingest.times import UNIX_EPOCH, epoch_us, number_text_problem, us_datetime

Conn = Connection[Any]
Mode = Literal["lifetimes", "in-service"]
EndReason = Literal["failure", "replacement"]
PROGRESS_EVERY_S = 2.0
BAD_TIME = int(np.iinfo(np.int64).min)  # a row whose time cannot be read
# readings lie between 1970 and 2200, as the API's times do (fleetcare.inputs.Moment)
EARLIEST_US = int((EARLIEST - UNIX_EPOCH).total_seconds()) * 1_000_000
LATEST_US = int((LATEST - UNIX_EPOCH).total_seconds()) * 1_000_000


Progress = Callable[[str, int, int, ImportReport], None]  # file, bytes done, bytes total


@dataclass
class _AssetSummary:
    asset_id: int
    first_us: int
    last_us: int
    usage: float | None = None
    usage_us: int = -(2**62)


@dataclass
class _Context:
    conn: Conn
    customer_id: int
    kind: str
    profile: CompiledProfile
    specs: dict[str, MetricSpec]
    usage_id: int | None
    report: ImportReport
    assets: dict[str, int | None] = field(default_factory=dict)  # ref → id (None: refused)
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)  # ref → (reason, detail)
    summaries: dict[int, _AssetSummary] = field(default_factory=dict)
    created: set[int] = field(default_factory=set)


# --- columns → values -----------------------------------------------------------------------


def _times_us(ctx: _Context, column: pa.ChunkedArray) -> NDArray[np.int64]:
    """Epoch µs of each row; the minimum int64 where the time cannot be read."""
    spec = ctx.profile.doc.time
    assert spec is not None
    bad = BAD_TIME
    fmt = spec.format
    if pa.types.is_boolean(column.type):  # true/false is no time (a cast would read 1 and 0)
        return np.full(len(column), bad, dtype=np.int64)
    if fmt in ("epoch_s", "epoch_ms", "cycle"):
        values, empty = floats(column)
        if fmt == "cycle":
            assert spec.origin is not None and spec.step_s is not None
            delta = spec.origin - UNIX_EPOCH
            base = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            factor = spec.step_s * 1e6
        else:
            base, factor = 0, 1e6 if fmt == "epoch_s" else 1e3
        us = np.rint(values * factor) + base
        ok = np.isfinite(us) & ~empty & (np.abs(us) < 2.5e17)
        return np.where(ok, np.where(ok, us, 0).astype(np.int64), bad)
    if pa.types.is_timestamp(column.type):
        try:
            stamps = pc.cast(column, pa.timestamp("us", tz="UTC"))
        except pa.ArrowInvalid:  # a time beyond what microseconds hold: no time of ours
            return np.full(len(column), bad, dtype=np.int64)
        ints = np.asarray(stamps.cast(pa.int64()).to_numpy(False), dtype=np.float64)
        return np.where(np.isfinite(ints), ints, bad).astype(np.int64)
    if fmt == "rfc3339" and pa.types.is_string(column.type):
        try:
            stamps = pc.cast(column, pa.timestamp("us", tz="UTC"))
            return np.asarray(stamps.cast(pa.int64()).to_numpy(False), dtype=np.int64)
        except pa.ArrowInvalid:
            pass  # a cell is not RFC 3339 with an offset: cell by cell
    read = ctx.profile.read_time
    return np.array(
        [bad if (v := read(cell)) is None else v for cell in column.to_pylist()], dtype=np.int64
    )


def _asset_refs(ctx: _Context, column: pa.ChunkedArray) -> tuple[list[str], NDArray[np.intp]]:
    """The distinct asset ids of a batch (in order of appearance) and each row's index."""
    # each distinct cell is cleaned once (a file repeats a few ids over many rows): trimmed,
    # 7.0 → 7; cells that clean to the same id (" 7", "7.0") then share one index
    assert ctx.profile.doc.asset is not None
    text = as_text(column, ctx.profile.doc.asset)
    encoded = text.combine_chunks().dictionary_encode("encode")
    cleaned = pc.utf8_trim_whitespace(encoded.dictionary)
    cleaned = pc.replace_substring_regex(cleaned, r"^([0-9]+)\.0*$", r"\1")
    merged = cleaned.dictionary_encode("encode")  # a null cell: an empty id
    prefix = ctx.profile.prefix
    distinct = [prefix + r if r else "" for r in merged.dictionary.to_pylist()]
    to_merged = np.asarray(merged.indices.to_numpy(zero_copy_only=False), dtype=np.intp)
    rows = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.intp)
    return distinct, to_merged[rows]


def _resolve_assets(
    ctx: _Context, distinct: list[str], index: NDArray[np.intp], times: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Asset id of each distinct ref (0: refused, see ``ctx.refused``); creates the assets met
    for the first time, installed at their first reading here."""
    # in order of appearance: assets (and so their lives) keep the file's order of units; an
    # id met only on rows whose time cannot be read (a header line's "unit") is not an asset
    first = np.full(len(distinct), np.iinfo(np.int64).max, dtype=np.int64)
    ok = times != BAD_TIME
    np.minimum.at(first, index[ok], times[ok])
    first_of = dict(zip(distinct, first.tolist(), strict=True))
    no_time = np.iinfo(np.int64).max
    new = [r for r in distinct if r and r not in ctx.assets and first_of[r] != no_time]
    if new:
        found = repo.find_assets(ctx.conn, [(ctx.customer_id, r) for r in new])
        missing = [r for r in new if (ctx.customer_id, r) not in found]
        if missing:
            created = history_repo.create_imported_assets(
                ctx.conn,
                ctx.customer_id,
                ctx.kind,
                missing,
                [us_datetime(max(min(first_of[r], 2**62), 0)) for r in missing],
            )
            ctx.created.update(created)
            ctx.report.assets_created += len(created)
            found = repo.find_assets(ctx.conn, [(ctx.customer_id, r) for r in new])
        for r in new:
            key = found.get((ctx.customer_id, r))
            ctx.assets[r] = None
            if key is None:  # an id the database refuses (e.g. a character it does not allow)
                ctx.refused[r] = ("bad_asset_id", f"asset id {r[:64]!r} is not a valid id")
            elif key.kind != ctx.kind:
                ctx.refused[r] = ("wrong_kind", f"asset {r!r} is a {key.kind}, not a {ctx.kind}")
            elif key.retired:
                ctx.refused[r] = ("retired_asset", f"asset {r!r} is retired")
            else:
                ctx.assets[r] = key.id
    return np.array([ctx.assets.get(r) or 0 for r in distinct], dtype=np.int64)


def _first(mask: NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _located(where: Locate, row: int, detail: str) -> str:
    return f"{where(row)}: {detail}"


def _store_batch(ctx: _Context, table: pa.Table, where: Locate) -> None:
    report = ctx.report
    rows = table.num_rows
    report.rows_read += rows
    if rows == 0:
        return
    profile = ctx.profile
    doc = profile.doc
    assert doc.time is not None and doc.asset is not None
    distinct, index = _asset_refs(ctx, table.column(doc.asset))
    times = _times_us(ctx, table.column(doc.time.field))
    beyond = (times != BAD_TIME) & ((times < EARLIEST_US) | (times >= LATEST_US))
    if beyond.any():  # a time that reads, but of no reading (and past what datetime holds)
        field, row = doc.time.field, _first(beyond)
        cell = str(table.column(field)[row].as_py())[:64]
        report.reject(
            "bad_timestamp",
            int(beyond.sum()),
            f"{where(row)}: {field} = {cell!r} lies outside {EARLIEST.year}-{LATEST.year}",
            rows=True,
        )
        times = np.where(beyond, BAD_TIME, times)
    bad_time = times == BAD_TIME
    if (unreadable := bad_time & ~beyond).any():
        report.reject(
            "bad_timestamp",
            int(unreadable.sum()),
            lambda: _bad_time_example(ctx, table, where, _first(unreadable)),
            rows=True,
        )
    no_asset = np.array([not r for r in distinct], dtype=bool)[index] & ~bad_time
    if no_asset.any():
        report.reject(
            "bad_structure",
            int(no_asset.sum()),
            lambda: f"{where(_first(no_asset))}: empty asset id",
            rows=True,
        )
    asset_ids = _resolve_assets(ctx, distinct, index, times)[index]
    refused = (asset_ids == 0) & ~bad_time & ~no_asset
    if refused.any():
        counts = np.bincount(index[refused], minlength=len(distinct))
        why: Counter[tuple[str, str]] = Counter()
        row_of: dict[tuple[str, str], int] = {}
        for i in np.flatnonzero(counts).tolist():
            why[ctx.refused[distinct[i]]] += int(counts[i])
            row_of.setdefault(ctx.refused[distinct[i]], _first(refused & (index == i)))
        for (reason, detail), n in why.items():
            row = row_of[(reason, detail)]
            report.reject(reason, n, partial(_located, where, row, detail), rows=True)
    good = ~bad_time & (asset_ids != 0)
    parts_t: list[NDArray[np.int64]] = []
    parts_a: list[NDArray[np.int64]] = []
    parts_m: list[NDArray[np.int64]] = []
    parts_v: list[NDArray[np.float64]] = []
    parts_r: list[NDArray[np.int64]] = []  # each value's row in the batch
    column_of: dict[int, str] = {}  # metric id → the file's column its values came from

    def take(mask: NDArray[np.bool_], metric: MetricSpec, values: NDArray[np.float64]) -> None:
        parts_r.append(np.flatnonzero(mask).astype(np.int64))
        parts_t.append(times[mask])
        parts_a.append(asset_ids[mask])
        parts_m.append(np.full(int(mask.sum()), metric.id, dtype=np.int64))
        parts_v.append(values[mask])
        if metric.id == ctx.usage_id:
            _note_usage(ctx, asset_ids[mask], times[mask], values[mask])

    def check(
        name: str,
        values: NDArray[np.float64],
        empty: NDArray[np.bool_],
        rows_of: NDArray[np.bool_],
        column: str,
    ) -> None:
        spec = ctx.specs.get(name)
        present = rows_of & ~empty
        if spec is None:  # the profile names a metric the kind does not have
            report.reject(
                "unknown_metric",
                int(present.sum()),
                lambda: f"{where(_first(present))}: {ctx.kind} has no metric {name!r}",
                rows=False,
            )
            return
        nan = present & np.isnan(values)
        if nan.any():

            def not_a_number() -> str:
                i = _first(nan)
                raw = table.column(column)[i].as_py()
                cell = str(raw)[:64]
                why = number_text_problem(raw)
                return f"{where(i)}: {column} = {cell!r} is not a number ({name}){why}"

            report.reject("not_a_number", int(nan.sum()), not_a_number, rows=False)
        inside = (values >= spec.low) & (values <= spec.high)
        outside = present & ~nan & ~inside
        if outside.any():

            def out_of_bounds() -> str:
                i = _first(outside)
                return (
                    f"{where(i)}: {name} = {float(values[i]):g} outside "
                    f"[{spec.low:g}, {spec.high:g}] {spec.unit}"
                )

            report.reject("out_of_bounds", int(outside.sum()), out_of_bounds, rows=False)
        column_of.setdefault(spec.id, column)
        take(present & inside, spec, values)

    if doc.layout == "long":
        assert doc.metric_column and doc.value_column
        names = as_text(table.column(doc.metric_column), doc.metric_column).to_pylist()
        values, empty = floats(table.column(doc.value_column))
        unknown = good & np.array([n not in profile.by_file_name for n in names], dtype=bool)
        if unknown.any():
            i = _first(unknown)
            report.reject(
                "unknown_metric",
                int(unknown.sum()),
                lambda: f"{where(i)}: the profile maps no metric {names[i]!r}",
                rows=True,
            )
        for file_name, conv in profile.by_file_name.items():
            mine = good & np.array([n == file_name for n in names], dtype=bool)
            if mine.any():
                values_of = values * conv.scale + conv.offset
                check(conv.name, values_of, empty, mine, doc.value_column)
    else:
        for name, m in doc.metrics.items():
            values, empty = floats(table.column(m.field))
            check(name, values * m.scale + m.offset, empty, good, m.field)
    _note_span(ctx, asset_ids[good], times[good])
    if parts_t:
        t = np.concatenate(parts_t)
        if t.size:
            batch = _Values(
                t,
                np.concatenate(parts_a),
                np.concatenate(parts_m),
                np.concatenate(parts_v),
                np.concatenate(parts_r),
            )
            data = repo.encode_telemetry_copy(
                batch.times,
                batch.assets,
                batch.metrics,
                batch.values,
                in_key_order=True,
                positions=batch.rows,  # of one key, the row first in the file is stored
            )
            stored, conflicting, first = repo.insert_telemetry_noting_conflicts(
                ctx.conn, data, int(t.size)
            )
            report.values_stored += stored
            report.values_conflicting += conflicting
            report.values_duplicate += int(t.size) - stored - conflicting
            if first is not None:
                report.warn(
                    "conflicting_value",
                    conflicting,
                    partial(_conflict_example, ctx, where, batch, first, column_of),
                )


@dataclass
class _Values:
    """The values of a batch as they go to the database, with the row each came from."""

    times: NDArray[np.int64]
    assets: NDArray[np.int64]
    metrics: NDArray[np.int64]
    values: NDArray[np.float64]
    rows: NDArray[np.int64]


def _conflict_example(
    ctx: _Context,
    where: Locate,
    batch: _Values,
    conflict: repo.ValueConflict,
    column_of: dict[int, str],
) -> str:
    """Where the first value with another value already under its key is, and both values."""
    t_us = epoch_us(conflict.time)
    key = (
        (batch.times == t_us)
        & (batch.assets == conflict.asset_id)
        & (batch.metrics == conflict.metric_id)
    )
    rows, values = batch.rows[key], batch.values[key]
    mine = rows[values == conflict.value]
    kept_here = rows[values == conflict.kept]
    ref = next((r for r, i in ctx.assets.items() if i == conflict.asset_id), "?")
    spec = next((m for m in ctx.specs.values() if m.id == conflict.metric_id), None)
    name, unit = (spec.name, spec.unit) if spec is not None else ("?", "")
    column = column_of.get(conflict.metric_id, name)
    at = f"{where(int(mine.min()))}: {column}" if mine.size else column
    unit = f" {unit}" if unit else ""
    source = (
        f"from {where(int(kept_here.min()))}"
        if kept_here.size and (not mine.size or kept_here.min() < mine.min())
        else "stored before (an earlier block, file, import or message)"
    )
    return (
        f"{at}: asset {ref!r} {name} at {conflict.time.isoformat()} = {conflict.value:g}{unit}"
        f" differs from {conflict.kept:g}{unit} {source}; the first stored is kept"
    )


def _note_span(ctx: _Context, ids: NDArray[np.int64], times: NDArray[np.int64]) -> None:
    if ids.size == 0:
        return
    order = np.lexsort((times, ids))
    ids, times = ids[order], times[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    ends = np.append(starts[1:], ids.size) - 1
    for a, lo, hi in zip(
        ids[starts].tolist(), times[starts].tolist(), times[ends].tolist(), strict=True
    ):
        s = ctx.summaries.get(a)
        if s is None:
            ctx.summaries[a] = _AssetSummary(a, lo, hi)
        else:
            s.first_us, s.last_us = min(s.first_us, lo), max(s.last_us, hi)


def _note_usage(
    ctx: _Context, ids: NDArray[np.int64], times: NDArray[np.int64], values: NDArray[np.float64]
) -> None:
    if ids.size == 0:
        return
    order = np.lexsort((times, ids))
    ids, times, values = ids[order], times[order], values[order]
    ends = np.append(np.flatnonzero(ids[1:] != ids[:-1]), ids.size - 1)
    for a, t, v in zip(
        ids[ends].tolist(), times[ends].tolist(), values[ends].tolist(), strict=True
    ):
        s = ctx.summaries.setdefault(a, _AssetSummary(a, t, t))
        if t >= s.usage_us:
            s.usage_us, s.usage = t, v


def _bad_time_example(ctx: _Context, table: pa.Table, where: Locate, row: int) -> str:
    spec = ctx.profile.doc.time
    assert spec is not None
    cell = str(table.column(spec.field)[row].as_py())[:64]
    said = f"{where(row)}: {spec.field} = {cell!r} is not a time of format {spec.format}"
    if cell in (ctx.profile.doc.columns or ()):  # the file's header, under a profile that
        said += f" (a header line? profile {ctx.profile.name} names the columns itself)"
    return said


def _bad_row(report: ImportReport, detail: str) -> None:
    report.rows_read += 1
    report.reject("bad_structure", 1, detail, rows=True)


def import_history(
    conn: Conn,
    *,
    customer_id: int,
    kind: str,
    profile: CompiledProfile,
    paths: Sequence[Path],
    mode: Mode,
    end_reason: EndReason = "failure",
    component: str | None = None,
    cause: FailureCause = UNKNOWN,
    progress: Progress | None = None,
    strict: bool = False,
) -> ImportReport:
    """Import ``paths`` (CSV, text or Parquet) for a customer's assets of ``kind``.

    ``conn`` is in autocommit mode: each batch commits in its own transaction. ``lifetimes``:
    each asset's rows in the files make one life, ended at its last row by ``end_reason``
    (a failure of ``cause``: ``fleet.causes``; ``other_fault`` labels the lives so);
    ``in-service``: the assets' running history (their usage counter and last-seen time
    move forward). A file with no rows is an error. ``strict``: the first rejected row or
    value, or value conflicting with the one stored under its key, stops the import
    (``Invalid`` naming the file, line and fault) and the batch that holds it is not stored;
    otherwise rejections are counted in the report, and conflicting values (the first one
    stored is kept, as ingest keeps it) are counted with a warning.
    """
    started = time.perf_counter()
    if profile.format not in ("csv", "text"):
        raise ProfileError(f"profile {profile.name}: history import reads csv or text profiles")
    catalogue = MetricCatalogue.load(conn)
    if kind not in catalogue.by_kind:
        raise Invalid(f"kind: no kind {kind!r}")
    components = history_repo.kind_components(conn, kind)
    if cause != UNKNOWN and (mode != "lifetimes" or end_reason != "failure"):
        raise Invalid("cause: only lifetimes that end in a failure have a cause")
    if mode == "lifetimes":
        if component is None:
            if len(components) != 1:
                raise Invalid(
                    f"--component: {kind} has components {', '.join(components) or '(none)'}; "
                    "say which one the lifetimes end"
                )
            component = components[0]
        elif component not in components:
            raise Invalid(f"--component: {kind} has no component {component!r}")
    for path in paths:
        if not path.is_file():
            raise Invalid(f"{path}: {not_a_file(path)}")
        if path.stat().st_size == 0:
            raise Invalid(f"{path.name}: empty file")
    report = ImportReport(files=[str(p) for p in paths])
    ctx = _Context(
        conn,
        customer_id,
        kind,
        profile,
        catalogue.by_kind[kind],
        catalogue.usage_metric_id.get(kind),
        report,
    )
    last_progress = time.monotonic()
    for path in paths:
        total = path.stat().st_size
        batches = (
            parquet_batches(path, profile)
            if path.suffix.lower() in PARQUET_SUFFIXES
            else text_batches(path, profile, partial(_bad_row, report))
        )
        rows_before, stored_before = report.rows_read, report.values_stored
        for table, done, where in batches:
            kept = report.values_stored > stored_before  # by earlier batches of this file
            with conn.transaction():
                _store_batch(ctx, table, where)
                if strict and (report.rejected or report.warnings):  # rolls this batch back
                    raise Invalid(strict_stop(report, path, kept))
            if progress is not None and time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                progress(str(path), done, total, report)
                last_progress = time.monotonic()
        if strict and (report.rejected or report.warnings):  # bad rows after the good ones
            raise Invalid(strict_stop(report, path, report.values_stored > stored_before))
        if report.rows_read == rows_before:
            raise Invalid(f"{path.name}: no rows (only blank lines)")
        if progress is not None:
            progress(str(path), total, total, report)
    with conn.transaction():
        _finish(ctx, mode, end_reason, component, strict, cause)
    report.assets = len(ctx.summaries)
    report.seconds = time.perf_counter() - started
    return report


def _finish(
    ctx: _Context,
    mode: Mode,
    end_reason: EndReason,
    component: str | None,
    strict: bool,
    cause: str,
) -> None:
    """Per asset: its life (lifetimes) or its last-seen time and usage (in service)."""
    summaries = sorted(ctx.summaries.values(), key=lambda s: s.asset_id)
    if mode == "lifetimes" and summaries:  # never over the readings of a life recorded before
        assert component is not None
        refused = refuse_overlapping_lives(
            ctx.conn, ctx.report, ctx.assets, summaries, component, strict
        )
        summaries = [s for s in summaries if s.asset_id not in refused]
    if not summaries:
        return
    ids = [s.asset_id for s in summaries]
    first = [us_datetime(s.first_us) for s in summaries]
    last = [us_datetime(s.last_us) for s in summaries]
    if mode == "lifetimes":
        assert component is not None
        ctx.report.lives_recorded = history_repo.insert_imported_lives(
            ctx.conn,
            ids,
            component,
            first,
            last,
            end_reason,
            [s.usage for s in summaries],
            life_outcome(cause),
        )
        history_repo.mark_assets_renewed(ctx.conn, ids, last, created=sorted(ctx.created))
    else:
        repo.update_assets_seen(
            ctx.conn,
            ids,
            last,
            [s.usage for s in summaries],
            [us_datetime(s.usage_us) if s.usage is not None else None for s in summaries],
        )
        created = [
            (s.asset_id, f)
            for s, f in zip(summaries, first, strict=True)
            if s.asset_id in ctx.created
        ]
        if created:
            history_repo.backdate_imported_assets(
                ctx.conn, [a for a, _ in created], [f for _, f in created]
            )
