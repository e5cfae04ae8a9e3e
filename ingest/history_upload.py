"""History import from an uploaded file (``POST /v1/history/import``): who may import for which
customer, and the import itself on its own autocommit connection. No HTTP objects here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet import service as fleet
from fleet.causes import UNKNOWN, FailureCause
from fleet.schemas import Principal
from fleetcare.db import connect
from fleetcare.errors import Invalid
from fleetcare.tenancy import TenantContext, session_context
from ingest import history
from ingest.history import EndReason, Mode
from ingest.profile_service import get_profile
from ingest.profiles import compile_profile, parse_profile

# the biggest upload taken (it is streamed to a temporary file, never held in memory)
MAX_UPLOAD_BYTES = 20 * 1024**3
SUFFIXES = (".csv", ".txt", ".tsv", ".dat", ".parquet", ".pq")


def check_upload(
    conn: Any, principal: Principal, customer_id: int | None, filename: str
) -> tuple[int, str]:
    """The customer the import is for (the caller's own, or the operator's choice) and the
    file's suffix; refused for technician and partner keys."""
    principal.require("telemetry:write")
    owner = fleet.owner_for(principal, customer_id)
    customer = fleet.get_customer(conn, principal, owner)
    if customer.retired_at is not None:
        raise Invalid(f"customer {owner} is retired")
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise Invalid(f"filename: the suffix says the format ({', '.join(SUFFIXES)})")
    return owner, suffix


def import_upload(
    database_url: str,
    path: Path,
    *,
    customer_id: int,
    kind: str,
    profile: str,
    mode: Mode,
    end_reason: EndReason,
    component: str | None,
    cause: FailureCause = UNKNOWN,
    context: TenantContext | None = None,
) -> dict[str, Any]:
    """Import the uploaded file (each batch commits) and return the report; ``context``: the
    caller's (its tenant wall and audit actor) for the whole import."""
    with connect(database_url, autocommit=True) as conn:
        if context is not None:
            session_context(conn, context)
        stored = get_profile(conn, profile)
        compiled = compile_profile(parse_profile(stored.document, f"profile {profile}"))
        report = history.import_history(
            conn,
            customer_id=customer_id,
            kind=kind,
            profile=compiled,
            paths=[path],
            mode=mode,
            end_reason=end_reason,
            component=component,
            cause=cause,
        )
    out = report.as_dict()
    out["files"] = [path.name]
    return out
