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
    the usage left until the end of the life at each row.

    The labels technicians recorded count: a life replaced with a measured remaining life
    ends that much later (its end is the usage at replacement plus what was left), and a
    false alarm replaced without a measurement is left out (its end is unknown: the
    component had more life than the replacement shows)."""
    spec = get_kind(conn, kind)
    layout = repo.metric_layout(conn, kind, spec.usage_metric, column_names)
    lives = [life for life in repo.fetch_lives(conn, kind) if usable_label(life)]
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
        ids = readings.matrix[:, 0].astype(np.int64)
        usage = readings.matrix[:, 1]
        last_rows = readings.last_rows()
        ends: dict[int, float] = dict(
            zip(ids[last_rows].tolist(), usage[last_rows].tolist(), strict=True)
        )
        for life in mine:  # the recorded end, and what a measurement says was left
            if life.usage_at_end is not None:
                ends[life.id] = life.usage_at_end
            if life.id in ends:
                ends[life.id] += life.remaining_at_end or 0.0
        end = np.array([ends[i] for i in ids.tolist()], dtype=np.float64)
        out[component] = (readings.matrix, np.maximum(end - usage, 0.0))
    return out


def usable_label(life: repo.Life) -> bool:
    """Whether a recorded life's end is known well enough to train on (see
    :func:`lifetime_matrices`)."""
    return not (life.outcome == "false_alarm" and life.remaining_at_end is None)
