"""Training data from recorded lifetimes: each life's readings as a matrix and the usage left
until its end at every row (the RUL target). Training and the registry's held-out
comparison both read lives this way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from fleet.causes import OTHER_FAULT
from kinds.service import get_kind
from models import repository as repo
from models.features import group_bounds

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


# A life a technician found ended by another fault (a failure report's cause, an order's
# outcome: ``other_fault``, fleet.causes; a simulated random fault) ended before its wear did:
# its end says only that the wear end was later (right-censored). Old rows and lives without
# a cause count as wear, as they always did.


def censored_at_end(outcome: str | None, remaining_at_end: float | None = None) -> bool:
    """Whether a life with this recorded ``outcome`` ended before its wear did: ended by
    another fault and no measurement of the life it still had (a measured remaining life
    dates the wear end: :func:`lifetime_matrices`)."""
    return outcome == OTHER_FAULT and remaining_at_end is None


def censored_fit_rows(
    y: FloatArray, censored: NDArray[np.bool_], horizon: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which rows the RUL regressor and the failure-risk classifier learn from, given the
    usage ``y`` left until each row's life ended and whether that end was censored
    (:func:`censored_at_end`, per row).

    The regressor learns the usage left until the wear end, which a censored life never
    showed: its rows are left out (kept, they would teach that parts like it end sooner than
    their wear does). The classifier learns "fails within ``horizon``": a censored row more
    than ``horizon`` from its end lived through the horizon (a negative, as any), and one
    within it is unknown (the wear might or might not have ended it there) and is left out;
    counted as failing, a fault with no precursor is learnt as wear risk (docs/evaluate.md,
    "Elevator seed 76"). The same rule for the product's training and the evaluation."""
    regressor = ~censored
    classifier = regressor | (y > horizon)
    return regressor, classifier


# Every training life is also seen once as a fleet that joined fleetcare mid-life would show
# it: its rows from a point in the life on, the usage counter still counting since the part
# was fitted. The cut falls at a different share of each life (evenly spread over 10-90% of
# its rows by a golden-ratio sequence over the lives), so the lives together cover every
# point a connection can fall at. Without these, a part connected worn shows little change
# "since renewal" (its first reading is the baseline) and the model, which only saw lives
# from new, reads it as young (docs/evaluate.md, "Parts that join mid-life").
LATE_START_RANGE = (0.1, 0.9)
_GOLDEN = (5**0.5 - 1) / 2


def with_late_starts(
    matrix: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The lives of ``matrix`` (readings matrix, a group per life) followed by one copy of
    each that starts late (see ``LATE_START_RANGE``), with new group ids; and per row the id
    of the life it comes from (so a copy stays with its life in cross-validation).

    Copies shorter than 2 rows are left out. The originals come first, unchanged."""
    if matrix.shape[0] == 0:
        return matrix, y, matrix[:, 0].copy()
    starts, ends = group_bounds(matrix[:, 0])
    low, high = LATE_START_RANGE
    next_id = float(np.max(matrix[:, 0])) + 1.0
    parts, targets, sources = [matrix], [y], [matrix[:, 0]]
    for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        share = low + (high - low) * ((k + 1) * _GOLDEN % 1.0)
        cut = a + int(share * (b - a))
        if b - cut < 2:
            continue
        copy = matrix[cut:b].copy()
        copy[:, 0] = next_id
        next_id += 1.0
        parts.append(copy)
        targets.append(y[cut:b])
        sources.append(np.full(b - cut, matrix[a, 0]))
    return np.concatenate(parts), np.concatenate(targets), np.concatenate(sources)


# A life fleetcare first saw with its usage counter above this share of the kind's typical
# life began before fleetcare's first reading of it (a part already in use when its fleet was
# connected): with the kind's joined_model setting, its own estimators score it
# (models.bundle.JoinedModels). A new part's first reading comes within a day or two of its
# fitting (a few hundred km of a tire's ~120,000), and the late starts the joined estimators
# learn from begin at 10% of a life or later (LATE_START_RANGE).
JOINED_AFTER_SHARE = 0.05


def stretch_keys(lives: FloatArray, usage: FloatArray, horizon: float) -> FloatArray:
    """Per row (rows of a life together, in usage order), an id of its life's stretch of usage
    ``[k * horizon, (k + 1) * horizon)``: a new id wherever the life or the stretch changes.
    A horizon of 0 gives one id per life."""
    lives = np.asarray(lives, dtype=np.float64)
    if lives.shape[0] == 0:
        return np.zeros(0)
    change = lives[1:] != lives[:-1]
    if horizon > 0:
        stretch = np.floor(np.maximum(np.asarray(usage, dtype=np.float64), 0.0) / horizon)
        change |= stretch[1:] != stretch[:-1]
    return np.concatenate(([0.0], np.cumsum(change, dtype=np.float64)))


def risk_weights(
    lives: FloatArray, usage: FloatArray, horizon: float, mode: str = "life"
) -> FloatArray:
    """Row weights of the failure-risk classifier, per row of ``lives`` (life id per row, a
    life's rows together in usage order) and ``usage`` (usage since the life's renewal).

    ``"life"``: 1/rows of the life, every life weighs the same. ``"life_per_horizon"``:
    1/rows of the life in its stretch of usage ``[k * horizon, (k + 1) * horizon)``, so every
    life counts once in each stretch it lived through. Weighted per whole life, a life that
    failed early puts all its weight among new parts' rows (a tire that blew out at 7,400 km
    weighed as much there as a whole 120,000-km life, ~15 times its rows' share of the new
    tires: docs/evaluate.md, "Tire seed 56"); per stretch it is one of the lives of its age,
    and the share of them that fail within the horizon is what the classifier should learn.
    A horizon of 0 counts each life once (as ``"life"``). The product's training fits the
    same without weights, on rows balanced over the stretches (:func:`stretch_keys`)."""
    if mode not in ("life", "life_per_horizon"):
        raise ValueError(f"unknown risk weighting {mode!r}")
    keys = stretch_keys(lives, usage, horizon if mode == "life_per_horizon" else 0.0)
    if keys.shape[0] == 0:
        return np.zeros(0)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse.reshape(-1)]


def usage_since_renewal(lives: FloatArray, matrix: FloatArray, source: FloatArray) -> FloatArray:
    """Per row of ``matrix`` (``lives`` and their late-start copies, ``source`` the life id a
    row comes from), its usage counter minus the counter at the first row of its life in
    ``lives``: a late-start copy's usage still counts from its life's renewal."""
    starts, _ = group_bounds(lives[:, 0])
    first = dict(zip(lives[starts, 0].tolist(), lives[starts, 1].tolist(), strict=True))
    base = np.array([first[g] for g in source.tolist()], dtype=np.float64)
    return matrix[:, 1] - base
