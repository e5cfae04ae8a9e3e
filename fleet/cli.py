"""``fleetcare customers create | list``: customers from the command line (as the operator)."""

from __future__ import annotations

from typing import Annotated

import typer

customers_app = typer.Typer(help="Customers.", no_args_is_help=True)


@customers_app.command("create")
def customers_create(
    slug: Annotated[str, typer.Option(help="lowercase identifier, unique")],
    name: Annotated[str, typer.Option(help="display name")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "EUR",
) -> None:
    """Create a customer; prints its id and slug."""
    from pydantic import ValidationError

    from fleet import service
    from fleet.schemas import CustomerCreate, Principal
    from fleetcare.commandline import database_url, fail, load_settings
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError

    try:
        body = CustomerCreate(slug=slug, name=name, currency=currency)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"--{first['loc'][0]}: {first['msg']}") from exc
    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                operator = Principal(key_id=0, role="operator")
                customer = service.create_customer(conn, operator, body)
            typer.echo(f"customer {customer.id} {customer.slug}")
        except FleetcareError as exc:
            raise fail(exc.detail) from exc


@customers_app.command("list")
def customers_list() -> None:
    """Every live customer: id, slug, name."""
    from fleet import service
    from fleet.schemas import Principal
    from fleetcare.commandline import database_url, load_settings
    from fleetcare.db import connect

    settings = load_settings()
    with database_url(settings) as url, connect(url) as conn:
        after = None
        while True:
            page, after = service.list_customers(
                conn, Principal(key_id=0, role="operator"), after=after, limit=500
            )
            for c in page:
                typer.echo(f"{c.id}\t{c.slug}\t{c.name}")
            if after is None:
                break
