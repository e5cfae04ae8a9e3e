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


def unix_us_to_datetime(us: int) -> datetime:
    """Microseconds since 1970 as a UTC datetime."""
    return repo.PG_EPOCH + timedelta(microseconds=int(us) - repo.PG_EPOCH_US)


@dataclass
class _Entry:
    key: str  # window_key of the layout and history it was read for
    renewed_at: datetime
    rows: FloatArray  # readings-matrix rows (head + tail), group id = asset id
    time_us: NDArray[np.int64]  # unix µs of each row
    seeds: np.ndarray  # latest value of each column metric at or before the last row (long)
    built: float  # monotonic time of the full read
    unsaved_rows: int = _NEVER_SAVED  # rows added since the persisted copy


def window_key(layout: repo.MetricLayout, head: int, tail: int) -> str:
    """The key a persisted window is stored under: its format, the metric layout, the history
    length (a model with another layout or history reads its windows again)."""
    columns = ".".join(str(c) for c in layout.column_ids)
    return f"{WINDOW_FORMAT}:u{layout.usage_id}:c{columns}:h{head}:t{tail}"


def encode_window(rows: FloatArray, time_us: NDArray[np.int64], seeds: np.ndarray) -> bytes:
    """One asset's window as the bytes that are persisted."""
    n, columns = rows.shape
    return b"".join(
        (
            _HEADER.pack(n, columns - 1, seeds.size),
            np.ascontiguousarray(time_us, dtype="<i8").tobytes(),
            np.ascontiguousarray(rows[:, 1:], dtype="<f8").tobytes(),
            np.ascontiguousarray(seeds, dtype=repo.LONG_ROW).tobytes(),
        )
    )


def decode_window(
    asset_id: int, blob: bytes, n_columns: int
) -> tuple[FloatArray, NDArray[np.int64], np.ndarray] | None:
    """(rows, times, seeds) of a persisted window; None when its bytes do not fit."""
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
    seeds = np.frombuffer(blob, dtype=repo.LONG_ROW, count=n_seeds, offset=at).copy()
    return rows, time_us, seeds


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
    full_reads: int = 0
    incremental_reads: int = 0
    persisted_loads: int = 0  # entries that started from a persisted window
    persisted_writes: int = 0
    range_reads: int = 0  # assets whose new readings came from the range scan

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
        now = time.monotonic()
        unknown = [w for w in windows if not self._current(w, key)]
        if unknown:
            self._load_persisted(conn, layout, unknown, key, now)
        warm: list[repo.Window] = []
        cold: list[repo.Window] = []
        expired: list[tuple[float, repo.Window]] = []
        for w in windows:
            e = self.entries.get(w.asset_id)
            if e is None or not self._current(w, key):
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
            self._advance(conn, layout, warm, head, tail)
        return self._matrix([w.asset_id for w in windows], layout)

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
            rows[i] = encode_window(e.rows, e.time_us, e.seeds)
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
        renewed = {w.asset_id: w.start for w in windows}
        stored = repo.fetch_scoring_windows(conn, list(renewed), key)
        age_offset = time.time()
        for s in stored:
            if s.renewed_at != renewed.get(s.asset_id):
                continue  # a window of an earlier life
            got = decode_window(s.asset_id, s.rows, layout.n_columns)
            if got is None:
                continue
            rows, time_us, seeds = got
            age = max(0.0, age_offset - s.built_at.timestamp())
            self.entries[s.asset_id] = _Entry(
                key=key,
                renewed_at=s.renewed_at,
                rows=rows,
                time_us=time_us,
                seeds=seeds,
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
        ids = got.group_ids()
        bounds = np.flatnonzero(np.concatenate(([True], got.matrix[1:, 0] != got.matrix[:-1, 0])))
        ends = np.concatenate((bounds[1:], [got.matrix.shape[0]]))
        last_us = got.time_us[ends - 1] - repo.PG_EPOCH_US if ids.size else np.zeros(0, np.int64)
        seeds = _latest_at_or_before(long, layout, ids, last_us)
        renewed = {w.asset_id: w.start for w in windows}
        for i, asset_id in enumerate(ids.tolist()):
            a, b = bounds[i], ends[i]
            self.entries[asset_id] = _Entry(
                key=key,
                renewed_at=renewed[asset_id],
                rows=got.matrix[a:b],
                time_us=got.time_us[a:b],
                seeds=seeds.get(asset_id, repo.empty_long()),
                built=built,
            )
        for asset_id in got.missing_groups:  # not scorable yet: read fully next time
            self.entries.pop(asset_id, None)

    def _read_new(
        self, conn: repo.Conn, layout: repo.MetricLayout, ids: Sequence[int], since_us: Any
    ) -> np.ndarray:
        """Long readings of each asset after its ``since_us`` (unix µs): a range scan for
        the assets close to the newest, a lookup per asset and metric for the others."""
        since = np.asarray(since_us, dtype=np.int64)
        steps = [
            int(e.time_us[-1] - e.time_us[-2]) for e in self._entries(ids) if e.time_us.size > 1
        ]
        in_range = np.zeros(len(ids), dtype=np.bool_)
        if steps and self.range_read_rows > 0:
            in_range = since >= since.max() - self.range_read_rows * float(np.median(steps))
        parts: list[np.ndarray] = []
        if in_range.any():
            range_ids = np.asarray(ids, dtype=np.int64)[in_range]
            range_since = since[in_range]
            got = repo.fetch_recent_long_readings(
                conn, layout, range_ids.tolist(), unix_us_to_datetime(int(range_since.min()))
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
            lag = np.flatnonzero(~in_range).tolist()
            parts.append(
                repo.fetch_new_long_readings(
                    conn,
                    layout,
                    [ids[i] for i in lag],
                    [unix_us_to_datetime(int(since[i])) for i in lag],
                )
            )
        return _concat_long(parts)

    def _entries(self, ids: Sequence[int]) -> list[_Entry]:
        return [self.entries[a] for a in ids]

    def _advance(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        windows: Sequence[repo.Window],
        head: int,
        tail: int,
    ) -> None:
        ids = [w.asset_id for w in windows]
        entries = self._entries(ids)
        new = self._read_new(conn, layout, ids, [int(e.time_us[-1]) for e in entries])
        if new.size == 0:
            return
        combined = _concat_long([*(e.seeds for e in entries), new])
        fresh = repo.assemble_matrix(combined, layout, ids)
        if fresh.matrix.shape[0] == 0:
            # only non-usage metrics arrived: no new rows, but the seeds move on
            self._update_seeds(ids, entries, combined, layout)
            return
        added_ids, added = np.unique(fresh.matrix[:, 0].astype(np.int64), return_counts=True)
        for asset_id, n in zip(added_ids.tolist(), added.tolist(), strict=True):
            self.entries[asset_id].unsaved_rows += n
        old_rows = np.concatenate([e.rows for e in entries])
        old_time = np.concatenate([e.time_us for e in entries])
        rows = np.concatenate((old_rows, fresh.matrix))
        times = np.concatenate((old_time, fresh.time_us))
        order = np.lexsort((times, rows[:, 0]))
        rows, times = rows[order], times[order]
        gid = rows[:, 0]
        starts = np.flatnonzero(np.concatenate(([True], gid[1:] != gid[:-1]))).astype(np.intp)
        lengths = np.diff(np.append(starts, gid.shape[0])).astype(np.intp)
        rank = np.arange(gid.shape[0]) - np.repeat(starts, lengths)
        count = np.repeat(lengths, lengths)
        keep = (rank < head) | (rank >= count - tail)
        rows, times = rows[keep], times[keep]
        gid = rows[:, 0]
        starts = np.flatnonzero(np.concatenate(([True], gid[1:] != gid[:-1])))
        ends = np.concatenate((starts[1:], [gid.shape[0]]))
        by_id = {int(gid[s]): (s, e) for s, e in zip(starts, ends, strict=True)}
        for asset_id, entry in zip(ids, entries, strict=True):
            s, e = by_id[asset_id]
            entry.rows, entry.time_us = rows[s:e], times[s:e]
        self._update_seeds(ids, entries, combined, layout)

    def _update_seeds(
        self,
        ids: Sequence[int],
        entries: Sequence[_Entry],
        combined: np.ndarray,
        layout: repo.MetricLayout,
    ) -> None:
        last_us = np.array([int(e.time_us[-1]) - repo.PG_EPOCH_US for e in entries])
        seeds = _latest_at_or_before(combined, layout, np.asarray(ids, dtype=np.int64), last_us)
        for asset_id, entry in zip(ids, entries, strict=True):
            entry.seeds = seeds.get(asset_id, entry.seeds)

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
    the fields of structured arrays pair by pair, ~0.1 ms an array (1.2 s a warm pass of
    10,000 assets) against ~7 µs here."""
    if any(a.dtype != repo.LONG_ROW for a in arrays):
        return np.concatenate(arrays)
    return np.frombuffer(b"".join([a.tobytes() for a in arrays]), dtype=repo.LONG_ROW)


def _latest_at_or_before(
    long: np.ndarray, layout: repo.MetricLayout, ids: NDArray[np.int64], last_pg_us: Any
) -> dict[int, np.ndarray]:
    """Per group: the latest long row of each column metric at or before the group's last
    row time (the forward-fill state that the next rows continue from)."""
    if long.size == 0 or ids.size == 0:
        return {}
    order_ids = np.argsort(ids, kind="stable")
    sorted_ids = ids[order_ids]
    sorted_limit = np.asarray(last_pg_us, dtype=np.int64)[order_ids]
    gid = long["group_id"].astype(np.int64)
    mid = long["metric_id"].astype(np.int64)
    tus = long["time"].astype(np.int64)
    at = np.clip(np.searchsorted(sorted_ids, gid), 0, sorted_ids.shape[0] - 1)
    bound = np.where(sorted_ids[at] == gid, sorted_limit[at], np.iinfo(np.int64).min)
    sel = np.isin(mid, np.asarray(layout.column_ids)) & (tus <= bound)
    sub = long[sel]
    gid, mid, tus = gid[sel], mid[sel], tus[sel]
    order = np.lexsort((tus, mid, gid))
    sub, gid, mid = sub[order], gid[order], mid[order]
    last = np.concatenate(((gid[1:] != gid[:-1]) | (mid[1:] != mid[:-1]), [True]))
    sub, gid = sub[last], gid[last]
    out: dict[int, np.ndarray] = {}
    if gid.size == 0:
        return out
    starts = np.flatnonzero(np.concatenate(([True], gid[1:] != gid[:-1])))
    ends = np.concatenate((starts[1:], [gid.shape[0]]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        out[int(gid[s])] = sub[s:e].copy()
    return out
