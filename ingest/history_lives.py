"""Lives a history import records: never two over the same readings of an asset.

A file cut short and imported (its last unit's life then ends early), then imported whole, or
a part of a unit's rows imported again, would give the asset a second life over readings a
life already holds; training would label those readings twice, each time with its own
remaining life. Such a life is not recorded and the report says which (strict: the import
stops and records no life).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from psycopg import Connection

from fleetcare.errors import Invalid
from ingest import history_repository as history_repo
from ingest.history_report import ImportReport
from ingest.times import us_datetime


class _Asset(Protocol):
    asset_id: int
    first_us: int
    last_us: int


def refuse_overlapping_lives(
    conn: Connection[Any],
    report: ImportReport,
    refs: dict[str, int | None],
    assets: Sequence[_Asset],
    component: str,
    strict: bool,
) -> set[int]:
    """The assets whose imported life (their first to their last row here) may not be
    recorded: it shares readings with a life recorded before (the same end is the same life,
    recorded again, and idempotent). The report warns of them (strict: ``Invalid``)."""
    ids = [a.asset_id for a in assets]
    starts = [us_datetime(a.first_us) for a in assets]
    ends = [us_datetime(a.last_us) for a in assets]
    overlaps = history_repo.overlapping_lives(conn, ids, component, starts, ends)
    if not overlaps:
        return set()
    i = next(i for i, a in enumerate(ids) if a in overlaps)
    ref = next((r for r, a in refs.items() if a == ids[i]), str(ids[i]))
    was_from, was_to = overlaps[ids[i]]
    example = (
        f"asset {ref!r}: its {component} life here ({starts[i].isoformat()} to "
        f"{ends[i].isoformat()}) shares readings with the life recorded from "
        f"{was_from.isoformat()} to {was_to.isoformat()}; not recorded"
    )
    if strict:
        names = ", ".join(Path(f).name for f in report.files)
        more = f"; {len(overlaps) - 1:,} more" if len(overlaps) > 1 else ""
        raise Invalid(
            f"{example} (overlapping_life{more}); the readings are stored, no life of "
            f"{names} recorded"
        )
    report.warn("overlapping_life", len(overlaps), lambda: example)
    return set(overlaps)
