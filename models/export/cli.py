"""``fleetcare predictions export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fleetcare.commandline import database_url, fail, load_settings

predictions_app = typer.Typer(help="Predictions: export the latest.", no_args_is_help=True)


@predictions_app.command("export")
def predictions_export(
    kind: Annotated[str, typer.Option(help="the asset kind")],
    customer: Annotated[str | None, typer.Option(help="one customer's slug (default: all)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl | csv")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
) -> None:
    """Each asset's latest prediction: external id, RUL with its interval in the kind's life
    unit, failure probability within the horizon, due date."""
    from fleet import repository as fleet_repo
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from models.export.service import ExportFormat, export_predictions

    if fmt not in ("jsonl", "csv"):
        raise fail("--format is jsonl or csv")
    form: ExportFormat = "csv" if fmt == "csv" else "jsonl"
    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                customer_id = None
                if customer is not None:
                    found = fleet_repo.find_customer_by_slug(conn, customer)
                    if found is None:
                        raise fail(f"--customer: no customer {customer!r}")
                    customer_id = found.id
                if out is None:
                    export_predictions(
                        conn,
                        sys.stdout,
                        kind=kind,
                        customer_id=customer_id,
                        fmt=form,
                    )
                else:
                    with out.open("w", newline="") as f:
                        n = export_predictions(
                            conn,
                            f,
                            kind=kind,
                            customer_id=customer_id,
                            fmt=form,
                        )
                    typer.echo(f"wrote {n} predictions to {out}", err=True)
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
        except OSError as exc:
            raise fail(f"{out}: {exc.strerror}") from exc
