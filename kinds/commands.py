"""``fleetcare kinds apply|list|show``: asset kinds from definition files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fleetcare.commandline import database_url, fail, load_settings

kinds_app = typer.Typer(
    help="Asset kinds: apply definition files, list, show.", no_args_is_help=True
)


@kinds_app.command("apply")
def kinds_apply(
    files: Annotated[list[Path], typer.Argument(help="kind definition files (.yaml/.yml/.json)")],
) -> None:
    """Apply kind definition files: all of them or, on any error, none."""
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from kinds import service
    from kinds.loader import load_file

    try:
        definitions = [(load_file(f), str(f)) for f in files]
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    with database_url(load_settings()) as url:
        try:
            with connect(url) as conn, conn.transaction():
                results = [service.apply_definition(conn, d, source=s) for d, s in definitions]
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    for r in results:
        if not r.changed:
            typer.echo(f"{r.name}: unchanged (version {r.version})")
        else:
            what = "created" if r.created else "changed"
            typer.echo(f"{r.name}: {what}, version {r.version}: {'; '.join(r.changes)}")


@kinds_app.command("list")
def kinds_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
) -> None:
    """The asset kinds in the database."""
    from fleetcare.db import connect
    from kinds import service

    with database_url(load_settings()) as url, connect(url) as conn:
        kinds = service.list_kinds(conn)
    if as_json:
        typer.echo(json.dumps([k.model_dump(mode="json") for k in kinds], indent=2))
        return
    typer.echo(
        f"{'name':<16} {'version':>7}  {'life unit':<10} {'metrics':>7} {'assets':>7}  display name"
    )
    for k in kinds:
        typer.echo(
            f"{k.name:<16} {k.version:>7}  {k.life_unit:<10} {k.metrics:>7} {k.assets:>7}"
            f"  {k.display_name}"
        )


@kinds_app.command("show")
def kinds_show(name: Annotated[str, typer.Argument(help="kind name")]) -> None:
    """A kind's current definition, as JSON (apply it back with ``kinds apply``)."""
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from kinds import service

    with database_url(load_settings()) as url, connect(url) as conn:
        try:
            record = service.get_record(conn, name)
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    typer.echo(f"# version {record.version}, changed {record.updated_at:%Y-%m-%d %H:%M:%S %Z}")
    typer.echo(
        json.dumps(service.definition_document(record.definition), indent=2, ensure_ascii=False)
    )
