"""``fleetcare access table``: who may do what, generated from the code (docs/access.md)."""

from __future__ import annotations

import typer

access_app = typer.Typer(help="Roles and permissions.", no_args_is_help=True)


@access_app.command("table")
def access_table() -> None:
    """Print docs/access.md: every role, every action, every route."""
    from api.access_doc import access_markdown

    typer.echo(access_markdown(), nl=False)


@access_app.command("roles")
def access_roles() -> None:
    """The roles, one a line."""
    from fleet.access import ACCESS_ROLES

    for role in ACCESS_ROLES:
        typer.echo(role)
