"""``fleetcare users add | list | disable``: people from the command line (as the operator)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

users_app = typer.Typer(help="Users of the operator, customers and partners.", no_args_is_help=True)


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Option(help="the person's address (unique, any case)")],
    name: Annotated[str, typer.Option(help="display name")],
    role: Annotated[
        str,
        typer.Option(
            help="operator: admin, dispatcher, billing; customer: admin, fleet_manager, viewer,"
            " technician; partner: technician"
        ),
    ],
    customer: Annotated[
        str | None, typer.Option(help="the customer's slug (a customer's user)")
    ] = None,
    partner: Annotated[
        str | None, typer.Option(help="the partner's code (a partner's user)")
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            help="name of an environment variable holding the password; without it the user is"
            " invited and the single-use link is printed"
        ),
    ] = None,
) -> None:
    """Add a user: active with a password, else invited (the link is printed once)."""
    from pydantic import ValidationError

    from fleetcare.commandline import database_url, fail, load_settings
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from people import service
    from people.schemas import UserInvite

    if customer and partner:
        raise fail("--customer and --partner: give at most one")
    try:
        UserInvite(email=email, name=name)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"--{first['loc'][0]}: {first['msg']}") from exc
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise fail(f"--password-env: the environment variable {password_env} is not set")
    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                result = service.add_user_from_cli(
                    conn,
                    email=email.strip(),
                    name=name,
                    role=role,
                    customer_slug=customer,
                    partner_code=partner,
                    password=password,
                    public_url=settings.public_base_url,
                    password_cost=service.PasswordCost.from_settings(settings),
                )
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    user, link = result
    typer.echo(f"user {user.id} {user.email} {user.organisation}:{user.role} {user.status}")
    if link:
        typer.echo(f"invitation link (single use): {link}")


@users_app.command("list")
def users_list() -> None:
    """Every user: id, email, organisation, role, status."""
    from fleet.schemas import Principal
    from fleetcare.commandline import database_url, load_settings
    from fleetcare.db import connect
    from people import service

    settings = load_settings()
    operator = Principal(role="operator", name="the command line")
    with database_url(settings) as url, connect(url) as conn:
        after = None
        while True:
            page, after = service.list_users(conn, operator, after=after, limit=500)
            for u in page:
                org = u.organisation + (
                    f" #{u.customer_id}"
                    if u.customer_id
                    else f" #{u.partner_id}"
                    if u.partner_id
                    else ""
                )
                typer.echo(f"{u.id}\t{u.email}\t{org}\t{u.role}\t{u.status}")
            if after is None:
                break


@users_app.command("disable")
def users_disable(
    user: Annotated[str, typer.Argument(help="the user's id or email")],
) -> None:
    """Disable a user: sign-in is refused and every session ends at once."""
    from fleetcare.commandline import database_url, fail, load_settings
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from people import service

    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                found = service.find_user(conn, user) if not user.isdigit() else None
                user_id = int(user) if user.isdigit() else (found.id if found else None)
                if user_id is None:
                    raise fail(f"no user with the address {user!r}")
                disabled = service.disable_user(conn, user_id)
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    typer.echo(f"user {disabled.id} {disabled.email} disabled")
