"""``fleetcare audit purge``: the audit trail's retention job (the operator's, from cron or by
hand). It runs as the trail's owner — the role the CLI connects as — because the application
role can neither delete a record nor call the purge (migration 0111)."""

from __future__ import annotations

from typing import Annotated

import typer

from fleetcare.settings import MAX_RETENTION_DAYS

audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@audit_app.command("purge")
def audit_purge(
    retention_days: Annotated[
        float | None,
        typer.Option(
            min=1,
            max=MAX_RETENTION_DAYS,
            help="keep this many days (default: FLEETCARE_AUDIT_RETENTION_DAYS)",
        ),
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="records deleted per transaction")
    ] = 10_000,
) -> None:
    """Delete the records older than the retention, a batch per transaction; each purge is
    recorded in the trail (per customer, with the count and time span)."""
    from datetime import UTC, datetime, timedelta

    from fleet.audit import service
    from fleetcare.commandline import database_url, fail, load_settings
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError

    settings = load_settings()
    days = retention_days if retention_days is not None else settings.audit_retention_days
    if days is None:
        raise fail(
            "no retention: pass --retention-days or set FLEETCARE_AUDIT_RETENTION_DAYS"
            " (unset, the trail is kept for ever)"
        )
    total = 0
    now = datetime.now(UTC)
    with database_url(settings) as url, connect(url) as conn:
        try:
            while True:
                purged = service.purge_expired(conn, now, timedelta(days=days), batch)
                conn.commit()
                total += purged
                if purged < batch:
                    break
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    typer.echo(f"purged {total} audit record(s) older than {days:g} day(s)")
