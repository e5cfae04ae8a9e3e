"""``fleetcare profiles apply FILE | list | show NAME``: payload profiles from files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fleetcare.commandline import database_url, fail, load_settings

profiles_app = typer.Typer(
    help="Payload profiles: how ingest reads a device family's messages.", no_args_is_help=True
)

OPERATOR_KEY_ID = 0  # the CLI acts as the operator


@profiles_app.command("apply")
def profiles_apply(
    files: Annotated[list[Path], typer.Argument(help="profile files (YAML or JSON)")],
) -> None:
    """Check and store each profile (a new version when it changed); all or nothing."""
    from fleet.schemas import Principal
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from ingest import profile_service as service
    from ingest.profiles import load_profile_file

    settings = load_settings()
    try:
        docs = [(path, load_profile_file(path)) for path in files]
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                operator = Principal(key_id=OPERATOR_KEY_ID, role="operator")
                for path, doc in docs:
                    stored = service.apply_profile(
                        conn, operator, doc.model_dump(mode="json"), source=str(path)
                    )
                    typer.echo(f"profile {stored.name} ({stored.format}) version {stored.version}")
        except FleetcareError as exc:
            raise fail(exc.detail) from exc


@profiles_app.command("list")
def profiles_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document per line")] = False,
) -> None:
    """Every profile: name, format, version."""
    from fleetcare.db import connect
    from ingest import profile_service as service

    settings = load_settings()
    with database_url(settings) as url, connect(url) as conn:
        for p in service.list_profiles(conn):
            if as_json:
                typer.echo(p.model_dump_json())
            else:
                typer.echo(f"{p.name}\t{p.format}\tversion {p.version}")


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="profile name")]) -> None:
    """One profile's document, as JSON."""
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from ingest import profile_service as service

    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                p = service.get_profile(conn, name)
            typer.echo(json.dumps({**p.document, "version": p.version}, indent=2))
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
