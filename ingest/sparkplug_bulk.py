"""Sparkplug B DATA read in bulk: the usual DDATA/NDATA of a batch become telemetry rows
through arrays, with no record per reading.

The careful way (``SparkplugMessage.values`` → one ``Reading`` per (asset, time) → the
checks of ``ingest.pipeline``, one reading at a time) stays the reference. A message comes
this way only when the careful way could not say anything else about it:

- it is DATA of a session the host trusts, and every metric is sent by an alias that session
  declared (alias 0 only when the metric carries the alias field and no name), with a
  non-zero timestamp of its own and a non-zero double (a zero may be a null or a value of
  another type: the careful way looks closer);
- every alias the mapping names was declared a double, and no two of the mapping's names
  convert differently into the same (asset, kind metric);
- no (asset, kind metric, time) comes twice in it (the careful way keeps the last);
- every time is inside the accepted window, and — checked for the whole batch at once —
  every asset is one of the device's customer's live assets with that kind metric, and every
  converted value is within the metric's bounds.

Anything else, for any metric of the message, sends the whole message the careful way,
which quarantines with its reason and keeps the good readings. Per metric, the only Python
is three field reads of the decoded protobuf (alias, timestamp, double value); aliases are
resolved through a table made once per session (``AliasTable``) and mapping: alias → row of
(asset, kind metric, scale, offset), and the batch's checks, conversions and rows are numpy
over those rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ingest.columns import POS_SHIFT, Rows
from ingest.sparkplug import DOUBLE, AliasTable, SparkplugMessage, SparkplugTarget

if TYPE_CHECKING:
    from ingest.decode import Decoded

DATA_TYPES = frozenset({"DDATA", "NDATA"})
_UNKNOWN = -1  # an alias the table cannot name here: the careful way

# what the batch knows of a customer's live asset: id, its kind's metrics (name → spec with
# ``id``, ``low``, ``high``), usage counter metric id, kind (``ingest.pipeline.Target``)
AssetTarget = tuple[int, Mapping[str, Any], int | None, str]


@dataclass(frozen=True, slots=True)
class AliasRows:
    """What a session's aliases mean under one mapping, as rows: one row per (asset, kind
    metric) the mapping names; ``index`` maps an alias to its row, or to ``skip`` (= the
    number of rows) when the mapping does not name it (the careful way skips it too)."""

    index: dict[int, int]
    assets: tuple[str, ...]
    metrics: tuple[str, ...]
    scale: NDArray[np.float64]  # per row, then 1.0 for the skip row
    offset: NDArray[np.float64]
    plain: bool  # every row is taken as it is (scale 1, offset 0)
    consistent: bool  # no (asset, kind metric) named twice with different conversions

    @property
    def skip(self) -> int:
        return len(self.assets)


def alias_rows(aliases: AliasTable, targets: Mapping[str, SparkplugTarget]) -> AliasRows:
    """The rows of ``aliases`` under ``targets`` (cached on the table: ``AliasTable.derived``)."""
    row_of: dict[tuple[str, str], int] = {}
    conversion: list[tuple[float, float]] = []
    mapped: dict[int, int] = {}
    unmapped: list[int] = []
    consistent = True
    for alias, (name, datatype) in aliases.items():
        target = targets.get(name)
        if target is None:
            unmapped.append(alias)
            continue
        if datatype != DOUBLE:
            continue  # read the careful way (its value may be in another field)
        asset, metric, scale, offset = target
        row = row_of.setdefault((asset, metric), len(row_of))
        if row == len(conversion):
            conversion.append((scale, offset))
        elif conversion[row] != (scale, offset):
            consistent = False
        mapped[alias] = row
    skip = len(row_of)
    index = dict.fromkeys(unmapped, skip) | mapped
    scales = np.array([s for s, _ in conversion] + [1.0], dtype=np.float64)
    offsets = np.array([o for _, o in conversion] + [0.0], dtype=np.float64)
    return AliasRows(
        index,
        tuple(a for a, _ in row_of),
        tuple(m for _, m in row_of),
        scales,
        offsets,
        bool(np.all(scales == 1.0) and np.all(offsets == 0.0)),
        consistent,
    )


class Columns(NamedTuple):
    """One DATA message read in bulk: per metric its row, epoch ms and value (as sent)."""

    rows: AliasRows
    row_of_metric: list[int]
    times_ms: list[int]
    values: list[float]


def read_columns(
    sp: SparkplugMessage,
    targets: Mapping[str, SparkplugTarget],
    oldest_us: int,
    newest_us: int,
) -> Columns | None:
    """The message's metrics as columns, or None when it must be read the careful way (see
    the module's docstring: what that way would say is not sure to be "store them all")."""
    payload, aliases = sp.payload, sp.aliases
    if type(aliases) is not AliasTable or payload is None:
        return None  # not trusted (no BIRTH, a seq gap), or not a payload
    if sp.topic.message_type not in DATA_TYPES:
        return None
    rows = aliases.derived(targets, alias_rows)
    metrics = payload.metrics
    n = len(metrics)
    if not n or not rows.consistent:
        return None
    sent: list[int] = []
    times: list[int] = []
    values: list[float] = []
    add_alias, add_time, add_value = sent.append, times.append, values.append
    for m in metrics:  # the per-metric Python: three field reads
        add_alias(m.alias)
        add_time(m.timestamp)
        add_value(m.double_value)
    index = list(map(rows.index.get, sent, repeat(_UNKNOWN, n)))
    if _UNKNOWN in index or 0 in times or 0.0 in values:
        return None
    if 0 in sent and not _zero_aliases_sent(metrics, sent):
        return None
    if min(times) * 1000 < oldest_us or max(times) * 1000 > newest_us:
        return None
    if len(set(index)) != n and len(set(zip(index, times, strict=True))) != n:
        return None
    return Columns(rows, index, times, values)


def _zero_aliases_sent(metrics: Any, sent: list[int]) -> bool:
    """Every alias 0 read was sent (not a missing field) and its metric has no name (the
    careful way reads a metric of alias 0 by its name)."""
    at = -1
    while True:
        try:
            at = sent.index(0, at + 1)
        except ValueError:
            return True
        m = metrics[at]
        if not m.HasField("alias") or m.name:
            return False


@dataclass(slots=True)
class _Group:
    """A batch's DATA messages of one customer read through one ``AliasRows``."""

    rows: AliasRows
    customer: int
    items: list[int] = field(default_factory=list)  # their indexes in the batch's decoded
    counts: list[int] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    times_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class SparkplugBulk:
    """The DATA messages of one batch that are read in bulk (:func:`read_columns`), each
    known by its index in the batch's decoded messages (where it holds no readings)."""

    def __init__(self) -> None:
        self.groups: dict[tuple[int, int], _Group] = {}

    def add(self, item_index: int, customer: int, columns: Columns) -> None:
        """Add the columns of the batch's ``item_index``-th decoded message, of ``customer``."""
        key = (customer, id(columns.rows))
        group = self.groups.get(key)
        if group is None:
            self.groups[key] = group = _Group(columns.rows, customer)
        group.items.append(item_index)
        group.counts.append(len(columns.row_of_metric))
        group.index += columns.row_of_metric
        group.times_ms += columns.times_ms
        group.values += columns.values

    def wanted(self) -> dict[int, set[str]]:
        """Customer → the asset references the messages name (to look up for the batch)."""
        out: dict[int, set[str]] = {}
        for group in self.groups.values():
            used = set(group.index)
            used.discard(group.rows.skip)
            out.setdefault(group.customer, set()).update(map(group.rows.assets.__getitem__, used))
        return out

    def check(
        self,
        decoded: Sequence[Decoded],
        targets: Mapping[int, Mapping[str, AssetTarget]],
        rows: Rows,
    ) -> list[int]:
        """Add the rows of every message whose assets, metrics and bounds check out to
        ``rows`` (with their usage counters and last-seen times, as ``ingest.columns`` does
        for whole native messages); return the indexes of the others, to be read the careful
        way."""
        careful: list[int] = []
        for group in self.groups.values():
            careful += _check_group(group, decoded, targets.get(group.customer, {}), rows)
        return careful


def _check_group(
    group: _Group,
    decoded: Sequence[Decoded],
    mine: Mapping[str, AssetTarget],
    rows: Rows,
) -> list[int]:
    table, skip = group.rows, group.rows.skip
    used = set(group.index)
    used.discard(skip)
    # per row: asset id, metric id, bounds, whether it is its asset's usage counter; a row
    # whose asset or metric is not there keeps bounds no value meets
    asset_id = np.zeros(skip + 1, dtype=np.int64)
    metric_id = np.zeros(skip + 1, dtype=np.int64)
    low = np.full(skip + 1, np.inf)
    high = np.full(skip + 1, -np.inf)
    is_usage = np.zeros(skip + 1, dtype=bool)
    for r in used:
        target = mine.get(table.assets[r])
        if target is None:  # unknown or retired
            continue
        spec = target[1].get(table.metrics[r])
        if spec is None:  # the careful way may reload the catalogue
            continue
        asset_id[r], metric_id[r], low[r], high[r] = target[0], spec.id, spec.low, spec.high
        is_usage[r] = spec.id == target[2]
    index = np.array(group.index, dtype=np.intp)
    values = np.array(group.values, dtype=np.float64)
    if not table.plain:  # x * 1.0 + 0.0 is x for every x but -0.0, which goes the careful way
        values = values * table.scale[index] + table.offset[index]
    skipped = index == skip
    # NaN fails both comparisons, as in the careful way
    ok = ((low[index] <= values) & (values <= high[index])) | skipped
    counts = np.array(group.counts, dtype=np.int64)
    of_message = np.repeat(np.arange(len(group.items)), counts)
    bad = np.zeros(len(group.items), dtype=bool)
    bad[of_message[~ok]] = True
    careful = [group.items[i] for i in np.flatnonzero(bad).tolist()]
    keep = ~(skipped | bad[of_message])
    if not keep.any():
        return careful
    kept, kept_message = index[keep], of_message[keep]
    times_us = np.array(group.times_ms, dtype=np.int64)[keep] * 1000
    assets, values = asset_id[kept], values[keep]
    # a row's place in the batch: its message's, then its metric's in the message
    first = np.cumsum(counts) - counts
    in_message = np.flatnonzero(keep) - first[kept_message]
    items = np.array(group.items, dtype=np.int64)
    positions = (items[kept_message] << POS_SHIFT) + in_message
    rows.times_us.append(times_us)
    rows.asset_ids.append(assets)
    rows.metric_ids.append(metric_id[kept])
    rows.values.append(values)
    rows.positions.append(positions)
    counters = np.flatnonzero(is_usage[kept])
    if len(counters):
        rows.usage.extend(
            zip(
                assets[counters].tolist(),
                times_us[counters].tolist(),
                positions[counters].tolist(),
                values[counters].tolist(),
                strict=True,
            )
        )
    # the latest receipt of each kept row's asset (receipts ranked: messages are in arrival
    # order, but the clock may have stepped back)
    received = [decoded[i].message.received_at for i in group.items]
    by_receipt = sorted(range(len(received)), key=received.__getitem__)
    rank = np.empty(len(received), dtype=np.int64)
    rank[by_receipt] = np.arange(len(received))
    latest = np.full(skip + 1, -1, dtype=np.int64)
    np.maximum.at(latest, kept, rank[kept_message])
    seen = rows.seen
    for r in used:
        if latest[r] >= 0:
            at = received[by_receipt[latest[r]]]
            asset = int(asset_id[r])
            before = seen.get(asset)
            if before is None or at > before:
                seen[asset] = at
    return careful
