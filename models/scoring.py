"""Scoring: turn each changed asset's recent readings into predictions.

One pass = find the assets with new telemetry, read their readings matrices, compute the
features of each asset's last row with the model's own transformer, predict RUL with its
interval, failure risk and anomaly score per component, convert RUL to due dates with the
asset's recent usage rate, and write one prediction per asset and component.

Scoring reads, per asset, the first ``head`` rows since renewal (the drift baseline) and
the last ``tail`` rows (the windows, and every row whose weight in the smoothed level is
above 1e-9): see :meth:`models.bundle.WearModel.history_rows`. A :class:`ReadingsCache`
(models.readings_cache) keeps those rows between passes, and persists them with the scoring
state, so that a warm pass, and a fresh worker's first, read only the telemetry that arrived
since; both ways give the same matrix (tests check it).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from fleetcare.clock import MAX_DUE_DAYS, Clock
from kinds.service import get_kind
from models import repository as repo
from models.bundle import WearModel, WearTrees
from models.explain import Explainer, build_explainer, encode_utf8
from models.quality import QualityGate
from models.readings_cache import ReadingsCache
from models.registry import load_version

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
USAGE_RATE_LOOKBACK = timedelta(days=7)
# No usage rate (so no due date) before a day of history since renewal: a partial day of
# shifts or flights overstates the rate several times over.
USAGE_RATE_MIN_HISTORY = timedelta(days=1)


def pg_us_to_datetime(us: int) -> datetime:
    """A PostgreSQL binary timestamptz (µs since 2000-01-01) as a datetime."""
    return repo.PG_EPOCH + timedelta(microseconds=int(us))


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
    rate_lookups: int = 0  # usage rates looked up in telemetry (not held by the window)
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
    gate: QualityGate
    trees: WearTrees  # the model's trees as arrays: predicted in one C call per model
    building: Future[Explainer | None]  # the explainer, built beside the pass's first read

    @property
    def explainer(self) -> Explainer | None:
        """The explainer (waits for its build); None: a model shap cannot read (predictions
        go unexplained)."""
        return self.building.result()


@dataclass
class ModelCache:
    """Loaded models by version id, with each kind's layout, explainer and gate.

    The explainer is built on a thread of its own, beside a fresh worker's first read of the
    readings, which waits on the database (its tree conversion takes a few ms since it no
    longer imports shap: models.saabas)."""

    loaded: dict[int, LoadedModel] = field(default_factory=dict)
    builder: ThreadPoolExecutor | None = None

    def get(self, conn: repo.Conn, version_id: int) -> LoadedModel:
        """The model of a version and what goes with it, loaded once."""
        if version_id not in self.loaded:
            model = load_version(conn, version_id)
            kind = get_kind(conn, model.kind)
            if self.builder is None:
                self.builder = ThreadPoolExecutor(1, thread_name_prefix="explainer-build")
            self.loaded[version_id] = LoadedModel(
                version_id=version_id,
                model=model,
                layout=repo.metric_layout(conn, model.kind, model.usage_metric, model.column_names),
                gate=QualityGate.build(model, kind, repo.get_reference(conn, version_id)),
                trees=model.tree_arrays(),
                building=self.builder.submit(build_explainer, model, kind),
            )
        return self.loaded[version_id]


def keep_out_of_collections() -> None:
    """Once a worker has loaded a model: collect, then move every object alive into the
    garbage collector's permanent generation (``gc.freeze``), which its collections skip.

    What a worker keeps (the modules scikit-learn and numpy import, the models, the explainer,
    the readings cache: ~194,000 objects since the explainer no longer imports shap,
    ``models.saabas``; ~267,000 before) otherwise made about one collection of the oldest
    generation a warm pass traverse them all: 0.1-0.15 CPU-s of a pass of 10,000 assets,
    against ~0.01 s once they are frozen. Call it after the pass's commit (the collection
    costs ~0.1 CPU-s, once per model load); frozen objects are still freed when no longer
    referenced, only a reference cycle among them that becomes garbage later stays.
    """
    gc.collect()
    gc.freeze()


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
        c.where(c.asset_id % shard[1] == shard[0])
        for c in repo.find_changed_assets(conn, kind=kind, limit=limit)
    ]
    changed = [c for c in changed if len(c)]
    result.changed_assets = sum(len(c) for c in changed)
    result.seconds["find"] = time.perf_counter() - tick
    if not changed:
        return result
    active = repo.active_version_ids(conn)
    now = clock.now()
    for assets in changed:
        version_id = active.get(assets.kind)
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
    assets: repo.ChangedAssets,
    now: datetime,
    cache: ReadingsCache | None,
    result: PassResult,
) -> None:
    model, layout = loaded.model, loaded.layout
    head, tail = model.history_rows()
    tick = time.perf_counter()
    if cache is not None:
        readings = cache.readings_of(conn, layout, assets.asset_id, assets.renewed_us, head, tail)
    else:
        windows = repo.windows_since(assets.asset_id, assets.renewed_us)
        readings = repo.fetch_readings(conn, layout, windows, head_rows=head, tail_rows=tail)
    result.add("read", time.perf_counter() - tick)
    result.not_scorable += len(readings.missing_groups)

    ids = readings.group_ids()
    last = readings.last_rows()
    last_pg_us = readings.time_us[last] - repo.PG_EPOCH_US
    # each scored asset's place among ``assets`` (ids ascending)
    at = np.searchsorted(assets.asset_id, ids)
    has_new = last_pg_us > assets.until_us[at]
    result.unchanged_assets += int(ids.shape[0] - has_new.sum())
    idx = np.flatnonzero(has_new)

    def write_state() -> None:
        # what the pass consumed, on the writer thread beside the predictions
        missing = np.asarray(readings.missing_groups, dtype=np.int64)
        state_ids = np.concatenate((ids, missing))
        state_at = np.concatenate((at, np.searchsorted(assets.asset_id, missing)))
        no_time = np.full(missing.shape[0], repo.NO_TIME, dtype=np.int64)
        repo.record_scoring_state(
            conn,
            state_ids,
            assets.seen_us[state_at],
            np.concatenate((last_pg_us, no_time)),
            assets.renewed_us[state_at],
            now,
            cache.windows_to_persist(state_ids.tolist()) if cache is not None else None,
        )

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-write") as writer:
        if idx.size:
            _predict_and_write(
                conn, loaded, readings, ids, last, idx, now, result, writer, write_state
            )  # fmt: skip
        else:
            tick = time.perf_counter()
            writer.submit(write_state).result()
            result.add("state", time.perf_counter() - tick)


WRITE_CHUNK = 2_000  # assets per prediction write: the server writes one chunk while the
# next is predicted
LAST_CHUNK = 500  # the last chunk's write is the one nothing overlaps: kept small


def write_chunks(n: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of ``n`` assets: ``WRITE_CHUNK`` at a time, the last
    ``LAST_CHUNK`` on their own (each asset's values do not depend on its chunk)."""
    body = n - LAST_CHUNK if n > 2 * LAST_CHUNK else n
    out = [(lo, min(lo + WRITE_CHUNK, body)) for lo in range(0, body, WRITE_CHUNK)]
    return out + ([(body, n)] if body < n else [])


def _predict_and_write(
    conn: repo.Conn,
    loaded: LoadedModel,
    readings: repo.Readings,
    ids: NDArray[Any],
    last: NDArray[np.intp],
    idx: NDArray[np.intp],
    now: datetime,
    result: PassResult,
    writer: ThreadPoolExecutor,
    write_state: Callable[[], None],
) -> None:
    """Features, predictions and their write for the assets at positions ``idx`` of ``ids``
    (``last``: each asset's last row in ``readings``).

    The database works while Python computes: the usage-rate lookups (of the assets whose
    window does not hold the reading a rate is measured from) and ``write_state`` (the
    scoring state) run while the first chunk is predicted, each chunk's write while the next
    one is. One writer thread keeps the statements in order on the
    pass's connection (and its transaction).
    """
    model = loaded.model
    score_ids = ids[idx]
    until_unix_us = readings.time_us[last[idx]]
    rate, look_up = usage_rates_from_windows(
        readings, last, idx, model.history_rows(), USAGE_RATE_LOOKBACK, USAGE_RATE_MIN_HISTORY
    )
    result.rate_lookups += int(look_up.size)
    rates_future = writer.submit(
        repo.usage_rates_per_day,
        conn,
        loaded.layout.usage_id,
        score_ids[look_up].tolist(),
        [pg_us_to_datetime(u - repo.PG_EPOCH_US) for u in until_unix_us[look_up].tolist()],
        readings.matrix[last[idx[look_up]], 1].tolist(),
        USAGE_RATE_LOOKBACK,
        USAGE_RATE_MIN_HISTORY,
    )
    # the scoring state next (it needs nothing from the predictions): the server writes it
    # while the first chunk is predicted, instead of after that chunk's write
    state = writer.submit(write_state)
    writes: list[Future[Any]] = []
    rates: FloatArray | None = None
    first = np.concatenate(([0], last[:-1] + 1))  # each group's first row
    row_group: NDArray[np.intp] | None = None
    for lo, hi in write_chunks(int(score_ids.size)):
        chunk = score_ids[lo:hi]
        tick = time.perf_counter()
        rows: slice | NDArray[np.bool_]
        if idx[hi - 1] - idx[lo] == hi - lo - 1:
            # the chunk's groups follow one another (every asset of a warm pass has new
            # rows): their rows are one slice, a view
            rows = slice(int(first[idx[lo]]), int(last[idx[hi - 1]]) + 1)
        else:
            # each row's group (its position in ``ids``): the rows by a look-up
            if row_group is None:
                row_group = np.repeat(np.arange(ids.shape[0]), np.diff(last, prepend=-1))
            in_chunk = np.zeros(ids.shape[0], dtype=np.bool_)
            in_chunk[idx[lo:hi]] = True
            rows = in_chunk[row_group]
        matrix = readings.matrix[rows]
        matrix.flags.writeable = False  # a view of the readings cache's rows: read only
        feature_ids, features = model.features.transform_last(matrix)
        if not np.array_equal(feature_ids.astype(np.int64), chunk.astype(np.int64)):
            raise RuntimeError("scoring: features came back in another order than assets")
        result.add("features", time.perf_counter() - tick)
        tick = time.perf_counter()
        # the counter at each life's first reading: a part first seen mid-life is scored by
        # the kind's joined estimators (models.bundle.JoinedModels), when it has them
        first_usage = (
            readings.matrix[first[idx[lo:hi]], 1]
            if getattr(model, "joined", None) is not None
            else None
        )
        predicted = model.predict(features, trees=loaded.trees, first_usage=first_usage)
        result.add("predict", time.perf_counter() - tick)
        tick = time.perf_counter()
        explainer = loaded.explainer  # a fresh worker's first pass may wait for its build
        result.add("explainer_wait", time.perf_counter() - tick)
        tick = time.perf_counter()
        issues = loaded.gate.issues(matrix, readings.time_us[rows], features)
        explanations: dict[str, list[bytes | None]] = {c: [None] * chunk.size for c in predicted}
        if explainer is not None:
            found = explainer.explain(matrix, features, predicted, issues)
            explanations = {c: list(encode_utf8(e)) for c, e in found.items()}
        low_confidence = list(map(bool, issues))
        result.low_confidence += sum(low_confidence)
        result.add("explain", time.perf_counter() - tick)
        tick = time.perf_counter()
        if rates is None:
            looked_up = rates_future.result()
            rates = rate
            rates[look_up] = [looked_up.get(a, np.nan) for a in score_ids[look_up].tolist()]
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
                rates[lo:hi],
                until_unix_us[lo:hi],
                now,
            )
        )
        result.add("write", time.perf_counter() - tick)
    tick = time.perf_counter()
    result.predictions += sum(w.result() for w in writes)
    result.scored_assets += int(score_ids.size)
    result.add("write", time.perf_counter() - tick)
    tick = time.perf_counter()
    state.result()
    result.add("state", time.perf_counter() - tick)


def usage_rates_from_windows(
    readings: repo.Readings,
    last: NDArray[np.intp],
    idx: NDArray[np.intp],
    history_rows: tuple[int, int],
    lookback: timedelta,
    min_history: timedelta,
) -> tuple[FloatArray, NDArray[np.intp]]:
    """Usage per day of the assets at positions ``idx`` (``last``: each asset's last row in
    ``readings``), as :func:`models.repository.usage_rates_per_day` measures it, from the
    readings windows where they hold the counter reading it is measured from: (the rate of
    each, NaN for none; the positions into ``idx`` whose reading the window may not hold,
    to look up in telemetry).

    A window (``history_rows``: its first ``head`` and last ``tail`` usage readings since
    renewal) holds it when its first row is after ``lookback`` before the last (then the
    first reading since renewal is the one), when the latest row at or before that time is
    among the last ``tail`` rows, or when the window holds every reading since renewal
    (fewer rows than ``head + tail``).
    """
    head, tail = history_rows
    rows = last[idx]
    first = np.concatenate(([0], last[:-1] + 1))[idx] if last.size else rows
    n_rows = rows - first + 1
    t = readings.time_us
    usage = readings.matrix[:, 1]
    cutoff = t[rows] - lookback // timedelta(microseconds=1)
    # rows at or before the cutoff, per asset (a prefix of its rows: they are in time order)
    member = np.repeat(np.arange(idx.shape[0]), n_rows)
    span = np.arange(int(n_rows.sum())) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    row_of = np.repeat(first, n_rows) + span
    before = np.bincount(member, weights=t[row_of] <= cutoff[member], minlength=idx.shape[0])
    before = before.astype(np.intp)
    anchor = np.where(before == 0, first, first + before - 1)
    known = (head > 0) & ((before == 0) | (before - 1 >= head) | (n_rows < head + tail))
    days = (t[rows] - t[anchor]) / 1e6 / 86400.0
    min_days = min_history.total_seconds() / 86400.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(
            (days >= min_days) & (usage[rows] > usage[anchor]),
            (usage[rows] - usage[anchor]) / days,
            np.nan,
        )
    rate[~known] = np.nan
    return rate, np.flatnonzero(~known)


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
    explanations: dict[str, list[bytes | None]],
    low_confidence: list[bool],
    rate: FloatArray,
    data_until_unix_us: NDArray[np.int64],
    now: datetime,
) -> int:
    written = 0
    for component, values in predicted.items():
        batch = repo.PredictionBatch(
            component=component,
            asset_ids=asset_ids,
            rul=values["rul"],
            rul_low=values["rul_low"],
            rul_high=values["rul_high"],
            failure_probability=values["failure_probability"],
            anomaly_score=values["anomaly_score"],
            usage_rate_per_day=rate,
            due_unix_s=due_unix_seconds(now, values["rul"], rate),
            due_conservative_unix_s=due_unix_seconds(now, values["rul_low"], rate),
            data_until_unix_us=data_until_unix_us,
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
