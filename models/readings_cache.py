"""The scoring worker's readings cache: each scored asset's head and tail rows between passes.

A warm pass reads only the telemetry that arrived since the previous one: the assets whose
data is close to the fleet's newest in one range scan of the recent readings, the few that lag
with a lookup per asset and metric. Each asset's window is also persisted with the scoring
state (migration 0230), a full read's at once and an advanced one every few rows, so that a
fresh worker (a restart, another shard) starts from one stored row per asset and reads only
what arrived after it, instead of probing telemetry ~23 times per asset. Both ways give the
same matrix as a full read (tests check it).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models import repository as repo

FloatArray = NDArray[np.float64]

# The persisted window's format; part of its key, so that a worker never reads another
# format's bytes (it reads the window again from telemetry instead).
WINDOW_FORMAT = "w1"
# rows, matrix columns after the group id, seed records; then the rows' times (int64 µs since
# 1970), the matrix without its group id column (float64, row-major), the seeds (LONG_ROW)
_HEADER = struct.Struct("<III")
_NEVER_SAVED = 1 << 30  # unsaved_rows of an entry read in full: persisted in the same pass
_NO_SEED = np.iinfo(np.int64).min  # a metric without a reading at or before the last row


def unix_us_to_datetime(us: int) -> datetime:
    """Microseconds since 1970 as a UTC datetime."""
    return repo.PG_EPOCH + timedelta(microseconds=int(us) - repo.PG_EPOCH_US)


@dataclass
class _Entry:
    key: str  # window_key of the layout and history it was read for
    renewed_at: datetime
    rows: FloatArray  # readings-matrix rows (head + tail), group id = asset id
    time_us: NDArray[np.int64]  # unix µs of each row
    # per metric column (the layout's column order): the time (PostgreSQL µs) of its latest
    # reading at or before the last row, or _NO_SEED; that reading's value is the last row's
    # (the forward-fill state that the next rows continue from)
    seed_pg_us: NDArray[np.int64]
    built: float  # monotonic time of the full read
    unsaved_rows: int = _NEVER_SAVED  # rows added since the persisted copy


def window_key(layout: repo.MetricLayout, head: int, tail: int) -> str:
    """The key a persisted window is stored under: its format, the metric layout, the history
    length (a model with another layout or history reads its windows again)."""
    columns = ".".join(str(c) for c in layout.column_ids)
    return f"{WINDOW_FORMAT}:u{layout.usage_id}:c{columns}:h{head}:t{tail}"


def encode_window(
    rows: FloatArray,
    time_us: NDArray[np.int64],
    seed_pg_us: NDArray[np.int64],
    column_ids: Sequence[int],
) -> bytes:
    """One asset's window as the bytes that are persisted (seeds as long records in metric id
    order, each with the last row's value of its metric)."""
    n, columns = rows.shape
    by_id = np.argsort(np.asarray(column_ids), kind="stable")
    by_id = by_id[seed_pg_us[by_id] != _NO_SEED]
    seeds = np.empty(by_id.shape[0], dtype=repo.LONG_ROW)
    seeds["group_id"] = rows[0, 0]
    seeds["metric_id"] = np.asarray(column_ids)[by_id]
    seeds["time"] = seed_pg_us[by_id]
    seeds["value"] = rows[-1, 2 + by_id]
    return b"".join(
        (
            _HEADER.pack(n, columns - 1, seeds.size),
            np.ascontiguousarray(time_us, dtype="<i8").tobytes(),
            np.ascontiguousarray(rows[:, 1:], dtype="<f8").tobytes(),
            seeds.tobytes(),
        )
    )


def decode_window(
    asset_id: int, blob: bytes, column_ids: Sequence[int]
) -> tuple[FloatArray, NDArray[np.int64], NDArray[np.int64]] | None:
    """(rows, times, seed times) of a persisted window; None when its bytes do not fit."""
    n_columns = 2 + len(column_ids)
    if len(blob) < _HEADER.size:
        return None
    n, columns, n_seeds = _HEADER.unpack_from(blob)
    size = _HEADER.size + n * 8 + n * columns * 8 + n_seeds * repo.LONG_ROW.itemsize
    if n == 0 or columns != n_columns - 1 or len(blob) != size:
        return None
    at = _HEADER.size
    time_us = np.frombuffer(blob, dtype="<i8", count=n, offset=at).astype(np.int64)
    at += n * 8
    rows = np.empty((n, n_columns), dtype=np.float64)
    rows[:, 0] = asset_id
    rows[:, 1:] = np.frombuffer(blob, dtype="<f8", count=n * columns, offset=at).reshape(n, columns)
    at += n * columns * 8
    seeds = np.frombuffer(blob, dtype=repo.LONG_ROW, count=n_seeds, offset=at)
    where = {int(m): j for j, m in enumerate(column_ids)}
    seed_pg_us = np.full(len(column_ids), _NO_SEED, dtype=np.int64)
    for metric, t, value in zip(
        seeds["metric_id"].tolist(), seeds["time"].tolist(), seeds["value"].tolist(), strict=True
    ):
        j = where.get(metric)
        if j is None or value != rows[-1, 2 + j]:
            return None  # not this layout's, or not the state its last row continues from
        seed_pg_us[j] = t
    return rows, time_us, seed_pg_us


def decode_windows(
    asset_ids: Sequence[int], blobs: Sequence[bytes], layout: repo.MetricLayout
) -> list[tuple[FloatArray, NDArray[np.int64], NDArray[np.int64]] | None]:
    """:func:`decode_window` of each persisted window, the windows of one size (most of a
    fleet's: head + tail rows, a seed per metric) decoded together on arrays."""
    out: list[tuple[FloatArray, NDArray[np.int64], NDArray[np.int64]] | None] = [None] * len(blobs)
    by_size: dict[int, list[int]] = {}
    for i, blob in enumerate(blobs):
        by_size.setdefault(len(blob), []).append(i)
    columns = np.asarray(layout.column_ids, dtype=np.int64)
    by_id = np.argsort(columns, kind="stable")
    k = columns.shape[0]
    for size, members in by_size.items():
        n = (size - _HEADER.size - k * repo.LONG_ROW.itemsize) // (8 + 8 * (k + 1))
        if n <= 0:
            for i in members:
                out[i] = decode_window(asset_ids[i], blobs[i], layout.column_ids)
            continue
        record = np.dtype(
            [
                ("header", "<u4", (3,)),
                ("time", "<i8", (n,)),
                ("rows", "<f8", (n, k + 1)),
                ("seeds", repo.LONG_ROW, (k,)),
            ]
        )
        together = np.zeros(0, dtype=record)
        if record.itemsize == size:
            together = np.frombuffer(b"".join([blobs[i] for i in members]), dtype=record)
            values = together["rows"][:, -1, 1 + by_id]
            seeds = together["seeds"]
            fits = (
                (together["header"] == np.array([n, k + 1, k], dtype=np.uint32)).all(axis=1)
                & (seeds["metric_id"] == columns[by_id]).all(axis=1)
                & (seeds["value"] == values).all(axis=1)
            )
        for at, i in enumerate(members):
            if together.size == 0 or not fits[at]:
                out[i] = decode_window(asset_ids[i], blobs[i], layout.column_ids)
        if together.size == 0:
            continue
        ok = np.flatnonzero(fits)
        rows = np.empty((ok.shape[0], n, k + 2), dtype=np.float64)
        rows[:, :, 0] = np.asarray([asset_ids[members[a]] for a in ok.tolist()])[:, None]
        rows[:, :, 1:] = together["rows"][ok]
        times = together["time"][ok].astype(np.int64)
        seed_pg_us = np.empty((ok.shape[0], k), dtype=np.int64)
        seed_pg_us[:, by_id] = together["seeds"]["time"][ok]
        for j, a in enumerate(ok.tolist()):
            out[members[a]] = (rows[j], times[j], seed_pg_us[j])
    return out


@dataclass(frozen=True)
class _Block:
    """The windows that the last pass moved on, end to end (each entry's rows are views of
    these arrays until the entry is replaced)."""

    ids: NDArray[np.int64]
    rows: FloatArray
    time_us: NDArray[np.int64]
    ends: NDArray[np.intp]
    # what the entries of ``ids`` are current for (_store and _load_persisted drop the block):
    # window key, renewals (PostgreSQL µs since 2000), oldest full read (monotonic s)
    key: str
    renewed_us: NDArray[np.int64]
    oldest_built: float


@dataclass
class ReadingsCache:
    """Each scored asset's head and tail rows, kept between passes of one worker.

    An entry is rebuilt from the database when the asset was renewed, when its kind's model
    changes layout or history length (entries of several kinds live side by side; a pass
    over a second kind no longer empties the first's), and after ``max_age_s`` (at most
    ``rebuilds_per_pass`` per pass); the rebuild is what picks up late readings older than
    the rows already cached. An asset missing here starts from its persisted window when
    one of this layout and life is stored (its age counts towards ``max_age_s``), else from
    a full read. A window is persisted when read in full, and again once it has advanced
    ``persist_after_rows`` rows (at most ``persists_per_pass`` such per pass, most behind
    first): each write costs ~35 µs of server CPU (4 KB), so writing every asset's window on
    every pass would cost a warm pass about as much as the read it saves a fresh worker.

    New readings of the assets whose last row is within ``range_read_rows`` typical row
    intervals of the newest are read in one range scan from the oldest of them; the others
    (an asset back after a silence) with a lookup per asset and metric.
    """

    max_age_s: float = 900.0
    rebuilds_per_pass: int = 200  # expired entries re-read per pass, oldest first
    persist_after_rows: int = 8
    persists_per_pass: int = 1_000
    range_read_rows: int = 8
    entries: dict[int, _Entry] = field(default_factory=dict)
    key: str | None = None  # the window key of the last readings() call
    column_ids: tuple[int, ...] = ()  # and its layout's metric columns
    _block: _Block | None = field(default=None, repr=False)
    full_reads: int = 0
    incremental_reads: int = 0
    persisted_loads: int = 0  # entries that started from a persisted window
    persisted_writes: int = 0
    range_reads: int = 0  # assets whose new readings came from the range scan
    array_advances: int = 0  # calls that moved the last call's windows on as arrays

    def readings(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        windows: Sequence[repo.Window],
        head: int,
        tail: int,
    ) -> repo.Readings:
        """The readings matrices of ``windows`` (scoring windows: group id = asset id)."""
        key = self.key = window_key(layout, head, tail)
        self.column_ids = layout.column_ids
        now = time.monotonic()
        entries = self.entries
        unknown = [w for w in windows if not self._current(w, key)]
        if unknown:
            self._load_persisted(conn, layout, unknown, key, now)
        warm: list[repo.Window] = []
        cold: list[repo.Window] = []
        expired: list[tuple[float, repo.Window]] = []
        for w in windows:
            e = entries.get(w.asset_id)
            if e is None or e.key != key or e.renewed_at != w.start:  # not _current()
                cold.append(w)
            elif now - e.built >= self.max_age_s:
                expired.append((e.built, w))
            else:
                warm.append(w)
        # Expired entries are re-read a few hundred at a time, so that a pass after a quiet
        # spell does not read the whole fleet again; the rest continue incrementally.
        expired.sort(key=lambda item: item[0])
        cold += [w for _, w in expired[: self.rebuilds_per_pass]]
        warm += [w for _, w in expired[self.rebuilds_per_pass :]]
        if cold:
            self.full_reads += len(cold)
            long = repo.fetch_long_readings(conn, layout, cold, head_rows=head, tail_rows=tail)
            got = repo.assemble_matrix(long, layout, [w.group_id for w in cold])
            self._store(cold, got, long, layout, key, now)
        if warm:
            self.incremental_reads += len(warm)
            warm_ids = np.fromiter((w.asset_id for w in warm), dtype=np.int64, count=len(warm))
            block = self._advance(conn, layout, warm_ids, head, tail, key)
            in_order = not cold and len(warm) == len(windows)
            if in_order and all(w is v for w, v in zip(warm, windows, strict=True)):
                return repo.Readings(block[0], block[1], ())  # already in this order
        return self._matrix([w.asset_id for w in windows], layout)

    def readings_of(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        asset_ids: NDArray[np.int64],
        renewed_us: NDArray[np.int64],
        head: int,
        tail: int,
    ) -> repo.Readings:
        """:meth:`readings` of the scoring windows of ``asset_ids`` (since each renewal, µs
        since 2000). The windows the last call moved on, all current and none due for a
        rebuild (a warm pass), move on without a record per asset, checked on arrays."""
        key, block = window_key(layout, head, tail), self._block
        if (
            block is not None
            and block.key == key
            and np.array_equal(block.ids, asset_ids)
            and np.array_equal(block.renewed_us, renewed_us)
            and time.monotonic() - block.oldest_built < self.max_age_s
        ):
            self.key, self.column_ids = key, layout.column_ids
            self.array_advances += 1
            self.incremental_reads += int(asset_ids.shape[0])
            return repo.Readings(*self._advance(conn, layout, asset_ids, head, tail, key), ())
        return self.readings(conn, layout, repo.windows_since(asset_ids, renewed_us), head, tail)

    def windows_to_persist(self, asset_ids: Sequence[int]) -> repo.PersistedWindows | None:
        """The windows of ``asset_ids`` due to be persisted with this pass's scoring state
        (None for the others); they count as saved from now on."""
        if self.key is None:
            return None
        due: list[tuple[int, int, _Entry]] = []
        for i, asset_id in enumerate(asset_ids):
            e = self.entries.get(asset_id)
            if e is not None and e.key == self.key and e.unsaved_rows >= self.persist_after_rows:
                due.append((e.unsaved_rows, i, e))
        if not due:
            return None
        due.sort(key=lambda item: -item[0])
        advanced = [d for d in due if d[0] < _NEVER_SAVED][: self.persists_per_pass]
        chosen = [d for d in due if d[0] >= _NEVER_SAVED] + advanced
        rows: list[bytes | None] = [None] * len(asset_ids)
        built: list[datetime | None] = [None] * len(asset_ids)
        wall_minus_monotonic = time.time() - time.monotonic()
        for _, i, e in chosen:
            rows[i] = encode_window(e.rows, e.time_us, e.seed_pg_us, self.column_ids)
            built[i] = datetime.fromtimestamp(e.built + wall_minus_monotonic, UTC)
            e.unsaved_rows = 0
        self.persisted_writes += len(chosen)
        return repo.PersistedWindows(self.key, rows, built)

    def _current(self, w: repo.Window, key: str) -> bool:
        e = self.entries.get(w.asset_id)
        return e is not None and e.key == key and e.renewed_at == w.start

    def _load_persisted(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        windows: Sequence[repo.Window],
        key: str,
        now: float,
    ) -> None:
        self._block = None  # entries replaced
        renewed = {w.asset_id: w.start for w in windows}
        stored = repo.fetch_scoring_windows(conn, list(renewed), key)
        age_offset = time.time()
        stored = [s for s in stored if s.renewed_at == renewed.get(s.asset_id)]  # this life's
        decoded = decode_windows([s.asset_id for s in stored], [s.rows for s in stored], layout)
        for s, got in zip(stored, decoded, strict=True):
            if got is None:
                continue
            rows, time_us, seed_pg_us = got
            age = max(0.0, age_offset - s.built_at.timestamp())
            self.entries[s.asset_id] = _Entry(
                key=key,
                renewed_at=s.renewed_at,
                rows=rows,
                time_us=time_us,
                seed_pg_us=seed_pg_us,
                built=now - age,
                unsaved_rows=0,
            )
            self.persisted_loads += 1

    def _store(
        self,
        windows: Sequence[repo.Window],
        got: repo.Readings,
        long: np.ndarray,
        layout: repo.MetricLayout,
        key: str,
        built: float,
    ) -> None:
        self._block = None  # entries replaced
        ids = got.group_ids()
        # each group's rows: [bounds, ends); none when no window was scorable (an empty
        # matrix, e.g. a pass whose only full read is a tire replaced since its last tread read)
        ends = got.last_rows() + 1
        bounds = ends - np.diff(ends, prepend=0)
        last_us = got.time_us[ends - 1] - repo.PG_EPOCH_US if ids.size else np.zeros(0, np.int64)
        seeds = _seed_times(long, layout, ids, last_us)
        renewed = {w.asset_id: w.start for w in windows}
        for i, (asset_id, a, b) in enumerate(
            zip(ids.tolist(), bounds.tolist(), ends.tolist(), strict=True)
        ):
            self.entries[asset_id] = _Entry(
                key=key,
                renewed_at=renewed[asset_id],
                rows=got.matrix[a:b],
                time_us=got.time_us[a:b],
                seed_pg_us=seeds[i],
                built=built,
            )
        for asset_id in got.missing_groups:  # not scorable yet: read fully next time
            self.entries.pop(asset_id, None)

    def _read_new(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        ids: NDArray[np.int64],
        since: NDArray[np.int64],
        steps: NDArray[np.int64],
    ) -> np.ndarray:
        """Long readings of each asset after its ``since`` (unix µs): a range scan for
        the assets close to the newest (``steps``: the assets' last row intervals, µs), a
        lookup per asset and metric for the others."""
        in_range = np.zeros(ids.shape[0], dtype=np.bool_)
        if steps.size and self.range_read_rows > 0:
            in_range = since >= since.max() - self.range_read_rows * float(np.median(steps))
        parts: list[np.ndarray] = []
        if in_range.any():
            range_ids = ids[in_range]
            range_since = since[in_range]
            got = repo.fetch_recent_long_readings(
                conn, layout, range_ids, unix_us_to_datetime(int(range_since.min()))
            )
            # each asset keeps only what is newer than its own last row
            order = np.argsort(range_ids)
            sorted_ids, sorted_since = range_ids[order], range_since[order] - repo.PG_EPOCH_US
            gid = got["group_id"].astype(np.int64)
            at = np.clip(np.searchsorted(sorted_ids, gid), 0, sorted_ids.size - 1)
            keep = (sorted_ids[at] == gid) & (got["time"].astype(np.int64) > sorted_since[at])
            parts.append(got[keep])
            self.range_reads += int(range_ids.size)
        if not in_range.all():
            lag = np.flatnonzero(~in_range)
            parts.append(
                repo.fetch_new_long_readings(
                    conn,
                    layout,
                    ids[lag].tolist(),
                    [unix_us_to_datetime(u) for u in since[lag].tolist()],
                )
            )
        return _concat_long(parts)

    def _advance(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        ids: NDArray[np.int64],
        head: int,
        tail: int,
        key: str,
    ) -> tuple[FloatArray, NDArray[np.int64]]:
        """Read what arrived after the last row of each window of ``ids`` (entries current
        for ``key``) and move them on at once on arrays; the windows' rows, end to end."""
        n = ids.shape[0]
        entries = [self.entries[a] for a in ids.tolist()]
        block = self._block
        if block is not None and np.array_equal(block.ids, ids):
            # the same windows as the last pass moved on, still end to end in its arrays
            rows, times, ends = block.rows, block.time_us, block.ends
            lengths = np.diff(ends, prepend=0)
            renewed_us, oldest_built = block.renewed_us, block.oldest_built
        else:
            lengths = np.fromiter((e.rows.shape[0] for e in entries), dtype=np.intp, count=n)
            rows = np.concatenate([e.rows for e in entries])
            times = np.concatenate([e.time_us for e in entries])
            ends = np.cumsum(lengths)
            renewed_us = np.fromiter((repo.pg_us(e.renewed_at) for e in entries), np.int64, n)
            oldest_built = min((e.built for e in entries), default=0.0)
        starts = ends - lengths
        last_us = times[ends - 1]
        several = lengths > 1
        steps = last_us[several] - times[ends[several] - 2]
        new = self._read_new(conn, layout, ids, last_us, steps)
        self._block = _Block(ids, rows, times, ends, key, renewed_us, oldest_built)
        if new.size == 0:
            return rows, times
        seeds = np.stack([e.seed_pg_us for e in entries])
        pos, fresh, fresh_us, moved = _rows_after(new, layout, ids, rows[ends - 1], seeds)
        if pos.size == 0:
            return rows, times  # only other metrics arrived: no new row, no new seed
        # old rows then new ones per asset (all newer); keep the first head and last tail
        added = np.bincount(pos, minlength=n)
        total = lengths + added
        kept_head = np.minimum(total, head)
        tail_from = np.maximum(kept_head, total - tail)
        kept = kept_head + total - tail_from
        out_ends = np.cumsum(kept)
        out_starts = out_ends - kept
        local = np.arange(int(out_ends[-1])) - np.repeat(out_starts, kept)
        rank = np.where(
            local < np.repeat(kept_head, kept),
            local,
            local - np.repeat(kept_head, kept) + np.repeat(tail_from, kept),
        )
        old_n = np.repeat(lengths, kept)
        from_new = np.flatnonzero(rank >= old_n)
        src = rank + np.repeat(starts, kept)
        src[from_new] = 0  # written below, from the new rows
        fresh_at = (rank - old_n + np.repeat(np.cumsum(added) - added, kept))[from_new]
        out_rows = np.take(rows, src, axis=0)
        out_rows[from_new] = fresh[fresh_at]
        out_us = np.take(times, src)
        out_us[from_new] = fresh_us[fresh_at]
        for e, a, b in zip(entries, out_starts.tolist(), out_ends.tolist(), strict=True):
            e.rows, e.time_us = out_rows[a:b], out_us[a:b]
        for i in np.flatnonzero(added).tolist():
            e = entries[i]
            e.unsaved_rows += int(added[i])
            e.seed_pg_us = moved[i]
        self._block = _Block(ids, out_rows, out_us, out_ends, key, renewed_us, oldest_built)
        return out_rows, out_us

    def _matrix(self, asset_ids: Sequence[int], layout: repo.MetricLayout) -> repo.Readings:
        present = [a for a in asset_ids if a in self.entries]
        missing = tuple(a for a in asset_ids if a not in self.entries)
        if not present:
            return repo.Readings(
                np.zeros((0, layout.n_columns)), np.zeros(0, dtype=np.int64), missing
            )
        return repo.Readings(
            matrix=np.concatenate([self.entries[a].rows for a in present]),
            time_us=np.concatenate([self.entries[a].time_us for a in present]),
            missing_groups=missing,
        )


def _concat_long(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Long readings arrays end to end. Their bytes are joined: ``np.concatenate`` promotes
    the fields of structured arrays pair by pair, ~0.1 ms an array against ~7 µs here."""
    if any(a.dtype != repo.LONG_ROW for a in arrays):
        return np.concatenate(arrays)
    return np.frombuffer(b"".join([a.tobytes() for a in arrays]), dtype=repo.LONG_ROW)


def _rows_after(
    new: np.ndarray,
    layout: repo.MetricLayout,
    ids: NDArray[np.int64],
    last_rows: FloatArray,
    seeds: NDArray[np.int64],
) -> tuple[NDArray[np.intp], FloatArray, NDArray[np.int64], NDArray[np.int64]]:
    """The readings-matrix rows that ``new`` long readings (all after their asset's last row)
    add to the windows of ``ids`` (``last_rows``: each one's last row; ``seeds``: its seed
    times): (each new row's position in ``ids``, the rows, their unix µs, every asset's seed
    times after its new rows). A metric's value on a new row is its latest new reading at or
    before the row, else the last row's value (its reading at or before the last row): what
    :func:`models.repository.assemble_matrix` gives for the same readings, without the pivot
    of the whole window."""
    cols = repo.LongColumns.of(new, ids)
    u_pos, u_t, u_v = cols.usage_rows(layout.usage_id)
    n = u_pos.shape[0]
    matrix = np.empty((n, layout.n_columns), dtype=np.float64)
    matrix[:, 0] = ids[u_pos]
    matrix[:, 1] = u_v
    moved = seeds.copy()
    if n == 0:
        return u_pos, matrix, u_t + repo.PG_EPOCH_US, moved
    last_new = np.flatnonzero(np.concatenate((u_pos[1:] != u_pos[:-1], [True])))
    is_row = np.ones(n, dtype=np.int8)
    for j, metric_id in enumerate(layout.column_ids):
        # in (position, time) order: a later reading has a higher index
        m_pos, m_t, m_v = cols.metric_rows(metric_id)
        m = m_pos.shape[0]
        value = last_rows[u_pos, 2 + j]
        seed = seeds[u_pos, j]
        if m:
            kind = np.concatenate((np.zeros(m, dtype=np.int8), is_row))
            # readings before rows at the same time: a row takes what is at or before it
            order = np.lexsort((kind, np.concatenate((m_t, u_t)), np.concatenate((m_pos, u_pos))))
            latest = np.maximum.accumulate(np.where(order < m, order, -1))
            row_at = order >= m
            reading = latest[row_at]
            row = order[row_at] - m
            found = reading >= 0
            found[found] = m_pos[reading[found]] == u_pos[row[found]]
            value = value.copy()
            seed = seed.copy()
            value[row[found]] = m_v[reading[found]]
            seed[row[found]] = m_t[reading[found]]
        matrix[:, 2 + j] = value
        moved[u_pos[last_new], j] = seed[last_new]
    return u_pos, matrix, u_t + repo.PG_EPOCH_US, moved


def _seed_times(
    long: np.ndarray, layout: repo.MetricLayout, ids: NDArray[np.int64], last_pg_us: Any
) -> NDArray[np.int64]:
    """Per group of ``ids`` and metric column: the time of the latest long row at or before
    the group's last row time (_NO_SEED: none)."""
    out = np.full((ids.shape[0], len(layout.column_ids)), _NO_SEED, dtype=np.int64)
    if long.size == 0 or ids.size == 0:
        return out
    pos = repo.positions_in(ids, long["group_id"].astype(np.int64))
    mid = long["metric_id"].astype(np.int64)
    tus = long["time"].astype(np.int64)
    limit = np.asarray(last_pg_us, dtype=np.int64)
    bound = np.where(pos >= 0, limit[pos], np.iinfo(np.int64).min)
    columns = np.asarray(layout.column_ids, dtype=np.int64)
    col_order = np.argsort(columns)
    col_at = np.clip(np.searchsorted(columns, mid, sorter=col_order), 0, columns.shape[0] - 1)
    col = col_order[col_at]
    sel = (columns[col] == mid) & (tus <= bound)
    row, col, tus = pos[sel], col[sel], tus[sel]
    if row.size == 0:
        return out
    o = np.lexsort((tus, col, row))
    row, col, tus = row[o], col[o], tus[o]
    last = np.concatenate(((row[1:] != row[:-1]) | (col[1:] != col[:-1]), [True]))
    out[row[last], col[last]] = tus[last]  # the latest of each (group, column)
    return out
