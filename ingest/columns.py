"""The readings of whole messages checked column by column instead of reading by reading.

A message the fast decoder read whole (``Decoded.whole``: every item a ``Reading``) is, in
the usual case, entirely good. For a customer's whole messages of a batch this module takes
each field of every reading at once (``map`` over the readings, in C), looks up assets and
metrics with the same dictionaries the reading-by-reading loop uses, and checks the time
window and the bounds with numpy. Any message with something to say about it — an unknown or
retired asset or metric, a time given as text or outside the window, a value out of bounds —
is handed back, and the reading-by-reading loop of ``ingest.pipeline`` judges it as before,
with the same quarantine rows; the other messages' readings are stored as they are. The
result is the same rows, usage counters and last-seen times either way
(``tests/test_ingest_columns.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ingest.catalogue import MetricSpec
    from ingest.decode import Decoded

# what the checks need of a live asset: its id, its kind's metrics, usage counter, kind
Target = tuple[int, dict[str, "MetricSpec"], int | None, str]

_READINGS = attrgetter("readings")
_ASSET = attrgetter("asset")
_TS = attrgetter("ts")
_METRICS = attrgetter("metrics")
_TARGET_ID = itemgetter(0)
_KNOWN = itemgetter(1)
_SPEC_ID = attrgetter("id")
# epoch milliseconds whose microseconds fit an int64 with room to spare (±285,000 years)
TS_LIMIT_MS = 9 * 10**15
# a row's place in the batch: (message index << POS_SHIFT) + its value's index in the message;
# rows with the same key keep this order (the first one is the one stored)
POS_SHIFT = 32


@dataclass(frozen=True, slots=True)
class Bounds:
    """Each metric's bounds and whether it is its kind's usage counter, indexed by metric id."""

    low: NDArray[np.float64]
    high: NDArray[np.float64]
    usage: NDArray[np.bool_]

    @classmethod
    def of(cls, by_kind: dict[str, dict[str, MetricSpec]], usage_ids: Iterable[int]) -> Bounds:
        """The bounds of every metric of the catalogue (``by_kind``)."""
        specs = [spec for metrics in by_kind.values() for spec in metrics.values()]
        size = max((spec.id for spec in specs), default=0) + 1
        low = np.full(size, np.nan)
        high = np.full(size, np.nan)
        usage = np.zeros(size, dtype=np.bool_)
        for spec in specs:
            low[spec.id], high[spec.id] = spec.low, spec.high
        for metric_id in usage_ids:
            if 0 <= metric_id < size:
                usage[metric_id] = True
        return cls(low, high, usage)


def position(item_index: int, value_index: int) -> int:
    """The order key of a message's ``value_index``-th value."""
    return (item_index << POS_SHIFT) + value_index


@dataclass(slots=True)
class Rows:
    """Telemetry rows gathered from whole messages, plus what they move on their assets."""

    times_us: list[NDArray[np.int64]] = field(default_factory=list)
    asset_ids: list[NDArray[np.int64]] = field(default_factory=list)
    metric_ids: list[NDArray[np.int64]] = field(default_factory=list)
    values: list[NDArray[np.float64]] = field(default_factory=list)
    positions: list[NDArray[np.int64]] = field(default_factory=list)
    # usage counter candidates: (asset id, time µs, position, value)
    usage: list[tuple[int, int, int, float]] = field(default_factory=list)
    # asset id → the latest receipt of a message that stored a reading of it
    seen: dict[int, datetime] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(t) for t in self.times_us)


def check_whole_messages(
    indexes: Sequence[int],
    decoded: Sequence[Decoded],
    mine: dict[str, Target],
    window_us: tuple[int, int],
    bounds: Bounds,
    rows: Rows,
) -> list[int]:
    """Store the readings of the whole messages ``decoded[i]`` (``i`` in ``indexes``, all of
    one customer whose live assets are ``mine``) into ``rows`` when each is entirely good;
    return the indexes of the others, for the reading-by-reading checks."""
    items = [decoded[i] for i in indexes]
    lists = list(map(_READINGS, items))
    readings = list(chain.from_iterable(lists))
    if not readings:
        return []
    targets: list[Any] = list(map(mine.get, map(_ASSET, readings)))
    ts = list(map(_TS, readings))
    if None in targets or set(map(type, ts)) != {int}:
        return _split(indexes, lists, decoded, mine, window_us, bounds, rows)
    try:
        ts_ms = np.array(ts, dtype=np.int64)
    except OverflowError:
        return _split(indexes, lists, decoded, mine, window_us, bounds, rows)
    if ts_ms.min() < -TS_LIMIT_MS or ts_ms.max() > TS_LIMIT_MS:
        return _split(indexes, lists, decoded, mine, window_us, bounds, rows)
    metrics = list(map(_METRICS, readings))
    counts = np.array(list(map(len, metrics)), dtype=np.int64)
    names = list(chain.from_iterable(metrics))
    knowns: list[Any] = list(map(_KNOWN, targets))
    ones = len(names) == len(readings) and bool((counts == 1).all())
    if not ones:
        repeats = counts.tolist()
        knowns = list(chain.from_iterable(map(repeat, knowns, repeats)))
        metrics = list(chain.from_iterable(map(repeat, metrics, repeats)))
    specs = list(map(dict.get, knowns, names))
    per_item = np.array(list(map(len, lists)), dtype=np.int64)
    reading_item = np.repeat(np.arange(len(items), dtype=np.int64), per_item)
    value_item = reading_item if ones else np.repeat(reading_item, counts)
    try:
        metric_ids = np.array(list(map(_SPEC_ID, specs)), dtype=np.int64)
    except AttributeError:  # a metric the kind does not have (or not in the cached catalogue)
        unknown = {int(value_item[k]) for k, spec in enumerate(specs) if spec is None}
        return _retry_without(indexes, unknown, decoded, mine, window_us, bounds, rows)
    try:
        values = np.array(list(map(dict.__getitem__, metrics, names)), dtype=np.float64)
    except (OverflowError, TypeError, ValueError):  # an integer too large for a double
        return list(indexes)
    ts_us = ts_ms * 1000
    asset_of_reading = np.array(list(map(_TARGET_ID, targets)), dtype=np.int64)
    in_window = (ts_us >= window_us[0]) & (ts_us <= window_us[1])
    if not ones:
        ts_us = np.repeat(ts_us, counts)
        asset_of_reading = np.repeat(asset_of_reading, counts)
        in_window = np.repeat(in_window, counts)
    low, high = bounds.low[metric_ids], bounds.high[metric_ids]
    # NaN and infinities fail the comparison too (bounds are finite)
    good = in_window & (low <= values) & (values <= high)
    if not good.all():
        bad = {int(i) for i in np.unique(value_item[~good])}
        return _retry_without(indexes, bad, decoded, mine, window_us, bounds, rows)

    m = len(metric_ids)
    first_value = np.cumsum(per_value_count := np.bincount(value_item, minlength=len(items)))
    first_value -= per_value_count
    item_index = np.asarray(indexes, dtype=np.int64)
    positions = (item_index[value_item] << POS_SHIFT) + (
        np.arange(m, dtype=np.int64) - first_value[value_item]
    )
    rows.times_us.append(ts_us)
    rows.asset_ids.append(asset_of_reading)
    rows.metric_ids.append(metric_ids)
    rows.values.append(values)
    rows.positions.append(positions)
    usage = np.flatnonzero(bounds.usage[metric_ids])
    if len(usage):
        rows.usage.extend(
            zip(
                asset_of_reading[usage].tolist(),
                ts_us[usage].tolist(),
                positions[usage].tolist(),
                values[usage].tolist(),
                strict=True,
            )
        )
    _note_seen(items, value_item, asset_of_reading, rows.seen)
    return []


def _note_seen(
    items: list[Decoded],
    value_item: NDArray[np.int64],
    asset_ids: NDArray[np.int64],
    seen: dict[int, datetime],
) -> None:
    """Each asset's latest receipt among the messages that stored a reading of it."""
    received = [item.message.received_at for item in items]
    by_time = sorted(range(len(items)), key=received.__getitem__)
    rank = np.empty(len(items), dtype=np.int64)
    rank[by_time] = np.arange(len(items), dtype=np.int64)
    value_rank = rank[value_item]
    order = np.lexsort((value_rank, asset_ids))
    assets = asset_ids[order]
    last = np.flatnonzero(np.append(assets[1:] != assets[:-1], True))
    for asset_id, r in zip(assets[last].tolist(), value_rank[order][last].tolist(), strict=True):
        at = received[by_time[r]]
        before = seen.get(asset_id)
        if before is None or at > before:
            seen[asset_id] = at


def _retry_without(
    indexes: Sequence[int],
    bad: set[int],
    decoded: Sequence[Decoded],
    mine: dict[str, Target],
    window_us: tuple[int, int],
    bounds: Bounds,
    rows: Rows,
) -> list[int]:
    """The messages at positions ``bad`` (of ``indexes``) go the careful way; the rest again."""
    if not bad:  # nothing to single out (cannot happen): all of them the careful way
        return list(indexes)
    rest = [i for k, i in enumerate(indexes) if k not in bad]
    handed_back = [i for k, i in enumerate(indexes) if k in bad]
    if rest:
        handed_back += check_whole_messages(rest, decoded, mine, window_us, bounds, rows)
    return sorted(handed_back)


def _split(
    indexes: Sequence[int],
    lists: list[Any],
    decoded: Sequence[Decoded],
    mine: dict[str, Target],
    window_us: tuple[int, int],
    bounds: Bounds,
    rows: Rows,
) -> list[int]:
    """Hand back the messages with an unknown or retired asset or a time that is not integer
    epoch milliseconds of a sane size; check the others column by column."""
    bad = {
        k
        for k, readings in enumerate(lists)
        if not all(
            mine.get(r.asset) is not None
            and type(r.ts) is int
            and -TS_LIMIT_MS <= r.ts <= TS_LIMIT_MS
            for r in readings
        )
    }
    return _retry_without(indexes, bad, decoded, mine, window_us, bounds, rows)
