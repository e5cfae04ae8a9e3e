"""Scoring: turn each changed asset's recent readings into predictions.

One pass = find the assets with new telemetry, read their readings matrices, compute the
features of each asset's last row with the model's own transformer, predict RUL with its
interval, failure risk and anomaly score per component, convert RUL to due dates with the
asset's recent usage rate, and write one prediction per asset and component.

Scoring reads, per asset, the first ``head`` rows since renewal (the drift baseline) and
the last ``tail`` rows (the windows, and every row whose weight in the smoothed level is
above 1e-9): see :meth:`models.bundle.WearModel.history_rows`. A :class:`ReadingsCache`
keeps those rows between passes, so that a warm pass reads only the telemetry that arrived
since the previous one; both ways give the same matrix (tests check it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from fleetcare.clock import Clock
from kinds.service import get_kind
from models import repository as repo
from models.bundle import WearModel
from models.explain import Explainer, build_explainer, encode
from models.quality import QualityGate
from models.registry import load_version
from models.schemas import ChangedAsset

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
USAGE_RATE_LOOKBACK = timedelta(days=7)
# No usage rate (so no due date) before a day of history since renewal: a partial day of
# shifts or flights overstates the rate several times over.
USAGE_RATE_MIN_HISTORY = timedelta(days=1)


def pg_us_to_datetime(us: int) -> datetime:
    """A PostgreSQL binary timestamptz (µs since 2000-01-01) as a datetime."""
    return repo.PG_EPOCH + timedelta(microseconds=int(us))


def unix_us_to_datetime(us: int) -> datetime:
    """Microseconds since 1970 as a UTC datetime."""
    return repo.PG_EPOCH + timedelta(microseconds=int(us) - repo.PG_EPOCH_US)


# --- readings cache ---------------------------------------------------------------------------


@dataclass
class _Entry:
    renewed_at: datetime
    rows: FloatArray  # readings-matrix rows (head + tail), group id = asset id
    time_us: NDArray[np.int64]  # unix µs of each row
    seeds: np.ndarray  # latest value of each column metric at or before the last row (long)
    built: float  # monotonic time of the full read


@dataclass
class ReadingsCache:
    """Each scored asset's head and tail rows, kept between passes of one worker.

    An entry is rebuilt from the database when the asset was renewed, when the model's
    layout or history length changes, and after ``max_age_s`` (at most
    ``rebuilds_per_pass`` per pass); the rebuild is what picks up late readings older than
    the rows already cached.
    """

    max_age_s: float = 900.0
    rebuilds_per_pass: int = 200  # expired entries re-read per pass, oldest first
    entries: dict[int, _Entry] = field(default_factory=dict)
    key: tuple[Any, ...] | None = None
    full_reads: int = 0
    incremental_reads: int = 0

    def readings(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        windows: Sequence[repo.Window],
        head: int,
        tail: int,
    ) -> repo.Readings:
        """The readings matrices of ``windows`` (scoring windows: group id = asset id)."""
        key = (layout, head, tail)
        if key != self.key:
            self.entries.clear()
            self.key = key
        now = time.monotonic()
        warm: list[repo.Window] = []
        cold: list[repo.Window] = []
        expired: list[tuple[float, repo.Window]] = []
        for w in windows:
            e = self.entries.get(w.asset_id)
            if e is None or e.renewed_at != w.start:
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
            self._store(cold, got, long, layout, now)
        if warm:
            self.incremental_reads += len(warm)
            self._advance(conn, layout, warm, head, tail)
        return self._matrix([w.asset_id for w in windows], layout)

    def _store(
        self,
        windows: Sequence[repo.Window],
        got: repo.Readings,
        long: np.ndarray,
        layout: repo.MetricLayout,
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
                renewed_at=renewed[asset_id],
                rows=got.matrix[a:b],
                time_us=got.time_us[a:b],
                seeds=seeds.get(asset_id, repo.empty_long()),
                built=built,
            )
        for asset_id in got.missing_groups:  # not scorable yet: read fully next time
            self.entries.pop(asset_id, None)

    def _advance(
        self,
        conn: repo.Conn,
        layout: repo.MetricLayout,
        windows: Sequence[repo.Window],
        head: int,
        tail: int,
    ) -> None:
        ids = [w.asset_id for w in windows]
        entries = [self.entries[a] for a in ids]
        since = [unix_us_to_datetime(int(e.time_us[-1])) for e in entries]
        new = repo.fetch_new_long_readings(conn, layout, ids, since)
        if new.size == 0:
            return
        combined = _concat_long([*(e.seeds for e in entries), new])
        fresh = repo.assemble_matrix(combined, layout, ids)
        if fresh.matrix.shape[0] == 0:
            # only non-usage metrics arrived: no new rows, but the seeds move on
            self._update_seeds(ids, entries, combined, layout)
            return
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


# --- a pass -----------------------------------------------------------------------------------


@dataclass
class PassResult:
    """What one scoring pass did."""

    changed_assets: int = 0
    scored_assets: int = 0
    predictions: int = 0
    unchanged_assets: int = 0  # seen again but no new row on the usage grid
    not_scorable: int = 0  # a metric never seen since renewal, or no usage reading
    no_model: int = 0  # kind without an active model
    low_confidence: int = 0  # assets whose data failed the quality gate (models.quality)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, step: str, seconds: float) -> None:
        """Count ``seconds`` towards ``step``."""
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds


@dataclass(frozen=True)
class LoadedModel:
    """A version's model with what scoring needs beside it: the metric layout, the explainer
    (in the kind definition's words) and the data-quality gate."""

    version_id: int
    model: WearModel
    layout: repo.MetricLayout
    explainer: Explainer | None  # None: a model shap cannot read (predictions go unexplained)
    gate: QualityGate


@dataclass
class ModelCache:
    """Loaded models by version id, with each kind's layout, explainer and gate."""

    loaded: dict[int, LoadedModel] = field(default_factory=dict)

    def get(self, conn: repo.Conn, version_id: int) -> LoadedModel:
        """The model of a version and what goes with it, loaded once."""
        if version_id not in self.loaded:
            model = load_version(conn, version_id)
            kind = get_kind(conn, model.kind)
            self.loaded[version_id] = LoadedModel(
                version_id=version_id,
                model=model,
                layout=repo.metric_layout(conn, model.kind, model.usage_metric, model.column_names),
                explainer=build_explainer(model, kind),
                gate=QualityGate.build(model, kind, repo.get_reference(conn, version_id)),
            )
        return self.loaded[version_id]


def score_pass(
    conn: repo.Conn,
    clock: Clock,
    *,
    models: ModelCache,
    cache: ReadingsCache | None = None,
    kind: str | None = None,
    shard: tuple[int, int] = (0, 1),
    limit: int | None = None,
    threads: int | None = None,
) -> PassResult:
    """Score every asset with new telemetry once; the caller owns the transaction.

    ``threads`` caps the native thread pools (OpenMP, BLAS) while predicting; on a machine
    shared with other busy processes 1 avoids threads spinning while they wait for each other.
    """
    with threadpool_limits(limits=threads):
        return _score_pass(conn, clock, models, cache, kind, shard, limit)


def _score_pass(
    conn: repo.Conn,
    clock: Clock,
    models: ModelCache,
    cache: ReadingsCache | None,
    kind: str | None,
    shard: tuple[int, int],
    limit: int | None,
) -> PassResult:
    result = PassResult()
    tick = time.perf_counter()
    repo.tune_scoring_transaction(conn)
    changed = [
        c
        for c in repo.find_changed_assets(conn, kind=kind, limit=limit)
        if c.asset_id % shard[1] == shard[0]
    ]
    result.changed_assets = len(changed)
    result.seconds["find"] = time.perf_counter() - tick
    if not changed:
        return result
    active = repo.active_version_ids(conn)
    by_kind: dict[str, list[ChangedAsset]] = {}
    for c in changed:
        by_kind.setdefault(c.kind, []).append(c)
    now = clock.now()
    for kind_name, assets in by_kind.items():
        version_id = active.get(kind_name)
        if version_id is None:
            result.no_model += len(assets)
            continue
        tick = time.perf_counter()
        loaded = models.get(conn, version_id)  # loaded once per worker (the cold pass)
        result.add("model", time.perf_counter() - tick)
        _score_kind(conn, loaded, assets, now, cache, result)
    return result


def _score_kind(
    conn: repo.Conn,
    loaded: LoadedModel,
    assets: Sequence[ChangedAsset],
    now: datetime,
    cache: ReadingsCache | None,
    result: PassResult,
) -> None:
    model, layout = loaded.model, loaded.layout
    head, tail = model.history_rows()
    windows = [repo.Window(a.asset_id, a.asset_id, a.renewed_at, None) for a in assets]
    tick = time.perf_counter()
    if cache is not None:
        readings = cache.readings(conn, layout, windows, head, tail)
    else:
        readings = repo.fetch_readings(conn, layout, windows, head_rows=head, tail_rows=tail)
    result.add("read", time.perf_counter() - tick)
    result.not_scorable += len(readings.missing_groups)

    ids = readings.group_ids()
    last = readings.last_rows()
    last_pg_us = readings.time_us[last] - repo.PG_EPOCH_US
    data_until = [pg_us_to_datetime(int(u)) for u in last_pg_us]
    previous = {a.asset_id: a.data_until for a in assets}
    fresh: list[bool] = []
    for asset_id, last_until in zip(ids.tolist(), data_until, strict=True):
        before = previous[asset_id]
        fresh.append(before is None or last_until > before)
    has_new = np.asarray(fresh, dtype=np.bool_)
    result.unchanged_assets += len(fresh) - int(has_new.sum())
    idx = np.flatnonzero(has_new)
    if idx.size:
        _predict_and_write(
            conn, loaded, readings, ids, last, idx, data_until, now, result
        )  # fmt: skip
    tick = time.perf_counter()
    seen = {a.asset_id: a for a in assets}
    state_ids = [int(a) for a in ids] + list(readings.missing_groups)
    until_by_id = dict(zip(ids.tolist(), data_until, strict=True))
    repo.record_scoring_state(
        conn,
        state_ids,
        [seen[a].last_seen_at for a in state_ids],
        [until_by_id.get(a) for a in state_ids],
        [seen[a].renewed_at for a in state_ids],
        now,
    )
    result.add("state", time.perf_counter() - tick)


WRITE_CHUNK = 2_000  # assets per prediction write: the server writes one chunk while the
# next is predicted


def _predict_and_write(
    conn: repo.Conn,
    loaded: LoadedModel,
    readings: repo.Readings,
    ids: NDArray[Any],
    last: NDArray[np.intp],
    idx: NDArray[np.intp],
    data_until: Sequence[datetime],
    now: datetime,
    result: PassResult,
) -> None:
    """Features, predictions and their write for the assets at positions ``idx`` of ``ids``
    (``last``: each asset's last row in ``readings``; ``data_until``: its time).

    The database works while Python computes: the usage-rate query runs while the first
    chunk is predicted, and each chunk's write while the next one is. One writer thread
    keeps the statements in order on the pass's connection (and its transaction).
    """
    model = loaded.model
    score_ids = ids[idx]
    last_usage = readings.matrix[last[idx], 1]
    until = [data_until[i] for i in idx]
    until_unix_us = readings.time_us[last[idx]]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-write") as writer:
        rates_future = writer.submit(
            repo.usage_rates_per_day,
            conn,
            loaded.layout.usage_id,
            score_ids.tolist(),
            until,
            last_usage.tolist(),
            USAGE_RATE_LOOKBACK,
            USAGE_RATE_MIN_HISTORY,
        )
        writes: list[Future[int]] = []
        rates: dict[int, float] | None = None
        group = readings.matrix[:, 0]
        for lo in range(0, score_ids.size, WRITE_CHUNK):
            chunk = score_ids[lo : lo + WRITE_CHUNK]
            tick = time.perf_counter()
            rows = np.isin(group, chunk.astype(np.float64))
            matrix = readings.matrix[rows]
            feature_ids, features = model.features.transform_last(matrix)
            if not np.array_equal(feature_ids.astype(np.int64), chunk.astype(np.int64)):
                raise RuntimeError("scoring: features came back in another order than assets")
            result.add("features", time.perf_counter() - tick)
            tick = time.perf_counter()
            predicted = model.predict(features)
            result.add("predict", time.perf_counter() - tick)
            tick = time.perf_counter()
            issues = loaded.gate.issues(matrix, readings.time_us[rows], features)
            explanations: dict[str, list[str | None]] = {
                c: [None] * int(chunk.size) for c in predicted
            }
            if loaded.explainer is not None:
                found = loaded.explainer.explain(matrix, features, predicted, issues)
                explanations = {c: list(encode(e)) for c, e in found.items()}
            low_confidence = [bool(found) for found in issues]
            result.low_confidence += sum(low_confidence)
            result.add("explain", time.perf_counter() - tick)
            tick = time.perf_counter()
            if rates is None:
                rates = rates_future.result()
            writes.append(
                writer.submit(
                    _write_predictions,
                    conn,
                    model,
                    loaded.version_id,
                    chunk.astype(np.int64),
                    predicted,
                    explanations,
                    low_confidence,
                    rates,
                    until_unix_us[lo : lo + WRITE_CHUNK],
                    now,
                )
            )
            result.add("write", time.perf_counter() - tick)
        tick = time.perf_counter()
        result.predictions += sum(w.result() for w in writes)
        result.scored_assets += int(score_ids.size)
        result.add("write", time.perf_counter() - tick)


MAX_DUE_DAYS = 36_500.0  # beyond a century is "not in sight"


def due_unix_seconds(now: datetime, rul: FloatArray, rate_per_day: FloatArray) -> FloatArray:
    """now + rul / rate (as days), in seconds since 1970; NaN without a positive usage rate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        days = np.where(rate_per_day > 0, rul / rate_per_day, np.nan)
    return now.timestamp() + np.minimum(days, MAX_DUE_DAYS) * 86_400.0


def _write_predictions(
    conn: repo.Conn,
    model: WearModel,
    version_id: int,
    asset_ids: NDArray[np.int64],
    predicted: dict[str, dict[str, FloatArray]],
    explanations: dict[str, list[str | None]],
    low_confidence: list[bool],
    rates: dict[int, float],
    data_until_unix_us: NDArray[np.int64],
    now: datetime,
) -> int:
    rate = np.array([rates.get(int(a), np.nan) for a in asset_ids], dtype=np.float64)
    ids = asset_ids.tolist()
    until = data_until_unix_us.tolist()
    written = 0
    for component, values in predicted.items():
        batch = repo.PredictionBatch(
            component=component,
            asset_ids=ids,
            rul=values["rul"].tolist(),
            rul_low=values["rul_low"].tolist(),
            rul_high=values["rul_high"].tolist(),
            failure_probability=values["failure_probability"].tolist(),
            anomaly_score=values["anomaly_score"].tolist(),
            usage_rate_per_day=rate.tolist(),
            due_unix_s=due_unix_seconds(now, values["rul"], rate).tolist(),
            due_conservative_unix_s=due_unix_seconds(now, values["rul_low"], rate).tolist(),
            data_until_unix_us=until,
            explanation=explanations[component],
            low_confidence=low_confidence,
        )
        written += repo.insert_predictions(
            conn,
            batch,
            time=now,
            model_version_id=version_id,
            coverage=model.coverage_of(component),
            horizon=model.horizon,
        )
    return written
