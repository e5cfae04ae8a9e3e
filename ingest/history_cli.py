"""``fleetcare history import``: load a customer's recorded telemetry through a profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer

from fleet.causes import FAILURE_CAUSES, FailureCause
from fleetcare.commandline import database_url, fail, load_settings

history_app = typer.Typer(help="Recorded history: lifetimes and backfill.", no_args_is_help=True)


@history_app.command("import")
def history_import(
    files: Annotated[list[Path], typer.Argument(help="CSV, whitespace-separated text or Parquet")],
    customer: Annotated[str, typer.Option(help="the customer's slug")],
    kind: Annotated[str, typer.Option(help="the asset kind of every asset in the files")],
    profile: Annotated[str, typer.Option(help="the csv/text payload profile that reads them")],
    lifetimes: Annotated[
        bool,
        typer.Option(
            "--lifetimes/--in-service",
            help="whole lifetimes (each asset's last row ends its life) for training, or the "
            "running history of assets in service (backfill)",
        ),
    ] = False,
    end: Annotated[str, typer.Option(help="how imported lives end: failure | replacement")] = (
        "failure"
    ),
    component: Annotated[
        str | None, typer.Option(help="the component whose lives end (kinds with several)")
    ] = None,
    cause: Annotated[
        str,
        typer.Option(
            help="what ended the lives of --end failure: confirmed_wear | other_fault (a "
            "sudden fault, not the wear: training censors those lives) | unknown"
        ),
    ] = "unknown",
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="stop at the first rejected row or value (exit 2, naming file, line and "
            "fault) instead of counting rejections in the report",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Import recorded telemetry; creates the assets it meets; idempotent; prints a report
    (rows read / stored / rejected with reasons) and progress on stderr."""
    from fleet import repository as fleet_repo
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from ingest import history
    from ingest.profile_service import get_profile
    from ingest.profiles import compile_profile, parse_profile

    if end not in ("failure", "replacement"):
        raise fail("--end is failure or replacement")
    if cause not in FAILURE_CAUSES:
        raise fail(f"--cause is {' | '.join(FAILURE_CAUSES)}")
    settings = load_settings()

    def progress(path: str, done: int, total: int, report: history.ImportReport) -> None:
        share = 100.0 * done / total if total else 100.0
        typer.echo(
            f"history: {Path(path).name}: {share:5.1f}% ({done / 1e6:.1f} of {total / 1e6:.1f} MB),"
            f" {report.rows_read:,} rows read, {report.values_stored:,} values stored",
            err=True,
        )

    with database_url(settings) as url:
        try:
            with connect(url, autocommit=True) as conn:
                found = fleet_repo.find_customer_by_slug(conn, customer)
                if found is None or found.retired_at is not None:
                    raise fail(f"--customer: no live customer {customer!r}")
                stored = get_profile(conn, profile)
                compiled = compile_profile(parse_profile(stored.document, f"profile {profile}"))
                report = history.import_history(
                    conn,
                    customer_id=found.id,
                    kind=kind,
                    profile=compiled,
                    paths=files,
                    mode="lifetimes" if lifetimes else "in-service",
                    end_reason="failure" if end == "failure" else "replacement",
                    component=component,
                    cause=cast(FailureCause, cause),  # checked above
                    progress=progress,
                    strict=strict,
                )
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
        except OSError as exc:
            raise fail(f"{exc.filename or 'file'}: {exc.strerror}") from exc
    out = report.as_dict()
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"rows read {report.rows_read:,}, rejected {report.rows_rejected:,}; values stored "
        f"{report.values_stored:,}, already stored {report.values_duplicate:,}, conflicting "
        f"{report.values_conflicting:,}, rejected "
        f"{report.values_rejected:,}; assets {report.assets} ({report.assets_created} new); "
        f"lives recorded {report.lives_recorded}; {report.seconds:.1f} s"
    )
    for reason, item in out["rejected"].items():
        typer.echo(f"  rejected {item['count']:,} {reason}: first: {item['first']}")
    for reason, item in out["warnings"].items():
        typer.echo(f"  warning {item['count']:,} {reason}: first: {item['first']}")
