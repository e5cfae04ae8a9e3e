"""Drift: does the live fleet still look like the data its model was trained on?

Training stores, with each model version, the distribution of every signal (each setting and
condition metric of the readings matrix) over its training rows: decile edges and the share of
rows in each bin, and how often a window of the signal was constant (which the data-quality
gate reads, :mod:`models.quality`). The drift check reads the live assets' recent rows the way
scoring does (usage grid, forward fill) and computes, per signal, the population stability
index

    PSI = sum over bins of (live share - training share) * ln(live share / training share)

(shares floored at :data:`SHARE_FLOOR`). Usual reading: below 0.1 stable, 0.1-0.25 a moderate
shift, above 0.25 (:data:`DEFAULT_THRESHOLD`) a shift the model has not seen. The check is
recorded (``model_drift_checks``) whatever it finds; whoever runs it emits the
``model.drift_detected`` event (the maintenance side: models never write events).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models import repository as repo
from models.bundle import WearModel
from models.features import WindowFeatures
from models.registry import load_version
from models.schemas import DriftCheck

FloatArray = NDArray[np.float64]
BINS = 10
SHARE_FLOOR = 1e-4
DEFAULT_THRESHOLD = 0.25
DEFAULT_LOOKBACK = timedelta(days=7)
LIVE_ROWS_PER_ASSET = 50  # the latest rows of each live asset within the lookback
MIN_LIVE_ROWS = 50  # fewer live rows than this say nothing: no verdict


def constant_window_counts(
    transformer: WindowFeatures, n_sensors: int, matrix: FloatArray, features: FloatArray
) -> FloatArray:
    """Per sensor: (rows whose longest window is constant, rows with a full window), from a
    readings matrix and its features."""
    window = transformer.spread_window()
    names = [str(n) for n in transformer.get_feature_names_out()]
    ids = matrix[:, 0]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    lengths = np.diff(np.append(starts, ids.shape[0]))
    pos = np.arange(ids.shape[0]) - np.repeat(starts, lengths)
    full = pos >= window - 1
    out = np.zeros((n_sensors, 2))
    for j in range(n_sensors):
        std = features[:, names.index(f"m{j}_w{window}_std")]
        out[j] = (float(np.sum(full & (std <= 1e-12))), float(np.sum(full)))
    return out


def reference_distribution(
    model: WearModel, matrix: FloatArray, constant_counts: FloatArray
) -> dict[str, Any]:
    """The training reference of every signal (columns of ``matrix`` after id and usage)."""
    signals: dict[str, Any] = {}
    n_settings = len(model.setting_names)
    for j, name in enumerate(model.column_names):
        values = matrix[:, 2 + j]
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        shares = _shares(values, edges)
        entry: dict[str, Any] = {
            "edges": [float(e) for e in edges],
            "shares": [float(s) for s in shares],
            "mean": float(values.mean()),
            "std": float(values.std()),
        }
        if j >= n_settings:
            constant, full = constant_counts[j - n_settings]
            entry["constant_share"] = float(constant / full) if full else None
        signals[name] = entry
    return {"rows": int(matrix.shape[0]), "bins": BINS, "signals": signals}


def _shares(values: FloatArray, edges: FloatArray) -> FloatArray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    return counts / max(1, values.shape[0])


def psi(values: FloatArray, reference: dict[str, Any]) -> float:
    """Population stability index of ``values`` against one signal's training reference."""
    edges = np.asarray(reference["edges"], dtype=np.float64)
    expected = np.maximum(np.asarray(reference["shares"], dtype=np.float64), SHARE_FLOOR)
    actual = np.maximum(_shares(values, edges), SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class LiveRows:
    """The live fleet's recent readings matrix of a kind, with how many assets it covers."""

    matrix: FloatArray
    assets: int


def live_rows(
    conn: repo.Conn, model: WearModel, now: datetime, lookback: timedelta = DEFAULT_LOOKBACK
) -> LiveRows:
    """The latest rows (at most :data:`LIVE_ROWS_PER_ASSET`) of each live asset of the model's
    kind within ``lookback``, laid out as the model reads them."""
    layout = repo.metric_layout(conn, model.kind, model.usage_metric, model.column_names)
    since = now - lookback
    windows = [
        repo.Window(a.asset_id, a.asset_id, max(a.renewed_at, since), None)
        for a in repo.live_assets(conn, model.kind, since)
    ]
    readings = repo.fetch_readings(
        conn, layout, windows, head_rows=1, tail_rows=LIVE_ROWS_PER_ASSET
    )
    return LiveRows(readings.matrix, int(readings.group_ids().shape[0]))


def check_drift(
    conn: repo.Conn,
    kind: str,
    now: datetime,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> DriftCheck | None:
    """Compare the live fleet of ``kind`` with its active model's training data and record
    the check; None when the kind has no active model with a reference, or too few rows."""
    active = repo.active_version(conn, kind)
    if active is None:
        return None
    reference = repo.get_reference(conn, active.id)
    if not reference:
        return None
    model = load_version(conn, active.id)
    live = live_rows(conn, model, now, lookback)
    if live.matrix.shape[0] < MIN_LIVE_ROWS:
        return None
    by_signal: dict[str, float] = {}
    for j, name in enumerate(model.column_names):
        ref = reference["signals"].get(name)
        if ref is not None:
            by_signal[name] = round(psi(live.matrix[:, 2 + j], ref), 4)
    drifted = sorted(
        (name for name, value in by_signal.items() if value > threshold),
        key=lambda name: -by_signal[name],
    )
    return repo.insert_drift_check(
        conn,
        kind=kind,
        model_version_id=active.id,
        checked_at=now,
        assets=live.assets,
        rows=int(live.matrix.shape[0]),
        psi=by_signal,
        max_psi=max(by_signal.values(), default=None),
        threshold=threshold,
        drifted_signals=drifted,
    )
