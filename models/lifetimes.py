"""Training data from recorded lifetimes: each life's readings as a matrix and the usage left
until its end at every row (the RUL target). Training and the registry's held-out
comparison both read lives this way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from kinds.service import get_kind
from models import repository as repo

FloatArray = NDArray[np.float64]


def lifetime_matrices(
    conn: repo.Conn,
    kind: str,
    column_names: Sequence[str],
    *,
    asset_ids: Sequence[int] | None = None,
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per component: the readings matrix of every recorded life (group id = life id) and
    the usage left until the end of the life at each row."""
    spec = get_kind(conn, kind)
    layout = repo.metric_layout(conn, kind, spec.usage_metric, column_names)
    lives = repo.fetch_lives(conn, kind)
    if asset_ids is not None:
        wanted = set(asset_ids)
        lives = [life for life in lives if life.asset_id in wanted]
    out: dict[str, tuple[FloatArray, FloatArray]] = {}
    for component in sorted({life.component for life in lives}):
        mine = [life for life in lives if life.component == component]
        windows = [
            repo.Window(life.id, life.asset_id, life.started_at, life.ended_at) for life in mine
        ]
        readings = repo.fetch_readings(conn, layout, windows)
        if readings.matrix.shape[0] == 0:
            continue
        end_usage = {life.id: life.usage_at_end for life in mine}
        ids = readings.matrix[:, 0].astype(np.int64)
        usage = readings.matrix[:, 1]
        last_rows = readings.last_rows()
        last_usage = dict(zip(ids[last_rows].tolist(), usage[last_rows].tolist(), strict=True))
        end = np.array(
            [end_usage[i] if end_usage[i] is not None else last_usage[i] for i in ids.tolist()],
            dtype=np.float64,
        )
        out[component] = (readings.matrix, np.maximum(end - usage, 0.0))
    return out
