"""Write each asset's latest prediction as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from fleetcare.errors import Invalid
from models.export import repository as repo
from models.export.repository import Conn, ExportRow

ExportFormat = Literal["jsonl", "csv"]
FIELDS = (
    "external_id",
    "customer",
    "kind",
    "component",
    "life_unit",
    "rul",
    "rul_low",
    "rul_high",
    "coverage",
    "failure_probability",
    "horizon",
    "due_at",
    "due_at_conservative",
    "predicted_at",
    "data_until",
    "model_version_id",
)


def _record(row: ExportRow) -> dict[str, Any]:
    out = row.model_dump(mode="json")
    return {k: out[k] for k in FIELDS}


def export_predictions(
    conn: Conn, out: TextIO, *, kind: str, customer_id: int | None, fmt: ExportFormat
) -> int:
    """Write the latest prediction of each of the kind's assets to ``out``; how many rows."""
    if not repo.kind_exists(conn, kind):
        raise Invalid(f"--kind: no kind {kind!r}")
    rows = repo.latest_predictions(conn, kind, customer_id)
    write_rows(out, (_record(r) for r in rows), fmt)
    return len(rows)


def write_rows(out: TextIO, records: Iterable[dict[str, Any]], fmt: ExportFormat) -> None:
    """JSON lines, or CSV with a header line."""
    if fmt == "jsonl":
        for r in records:
            out.write(json.dumps(r) + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    for r in records:
        writer.writerow(r)
