"""Telemetry rows gathered in bulk (numpy columns) next to the reading-by-reading lists of
``ingest.pipeline``, and each row's place in the batch.

A reader that checks a batch's messages in bulk (``ingest.sparkplug_bulk`` for Sparkplug B
DATA) puts the rows of the messages it stores whole into ``Rows``; everything else goes the
reading-by-reading way. The writer concatenates both and sorts by the unique key, keeping the
batch order (``position``) among rows of the same key, so the first one is the one stored
whichever way it came.

(Native v1 readings were checked column by column here too for a while: no gain held in
alternating runs, and a message with a bad reading was looked at twice; see
docs/scaling.md#ingest-where-each-microsecond-per-reading-goes.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ingest.catalogue import MetricSpec

# what the checks need of a live asset: its id, its kind's metrics, usage counter, kind
Target = tuple[int, dict[str, "MetricSpec"], int | None, str]

# a row's place in the batch: (message index << POS_SHIFT) + its value's index in the message;
# rows with the same key keep this order (the first one is the one stored)
POS_SHIFT = 32


def position(item_index: int, value_index: int) -> int:
    """The order key of a message's ``value_index``-th value."""
    return (item_index << POS_SHIFT) + value_index


@dataclass(slots=True)
class Rows:
    """Telemetry rows gathered in bulk, plus what they move on their assets."""

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
