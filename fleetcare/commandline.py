"""What every ``fleetcare`` sub-command shares: settings, the database, a clean failure.

The command composition lives in ``cli/`` at the top of the house; the sub-commands of each
domain (``ingest/cli.py``, ``models/commands.py``, ``simulators/cli.py``, ...) import this
module, never the composition back.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import typer
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fleetcare import settings as settings_module
from fleetcare.logs import setup_logging
from fleetcare.settings import Settings


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def load_settings() -> Settings:
    """The settings from the environment, logging set up; a bad variable ends the command."""
    try:
        settings = settings_module.load_settings()
    except Exception as exc:  # pydantic's message names the bad variable
        raise fail(f"bad configuration: {exc}") from exc
    setup_logging(settings.log_level)
    return settings


@contextmanager
def database_url(settings: Settings, *, worker: bool = False) -> Iterator[str]:
    """The database URL of a command, kept up (local or embedded) until the block ends. A
    configured database that refuses us ends the command with why, in one line (a ``worker``
    still starts while the server is down for a moment: its pool waits for it)."""
    from fleetcare.errors import FleetcareError
    from fleetcare.services import running_services

    with ExitStack() as stack:
        try:
            services = stack.enter_context(
                running_services(
                    settings,
                    need_broker=False,
                    check_database=True,
                    database_may_be_passing=worker,
                )
            )
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
        yield cli_conninfo(services.database_url)


def cli_conninfo(url: str) -> str:
    """``url`` with the audit trail's session settings of a CLI command: the changes a command
    makes are recorded as ``cli:<os user>`` from ``cli`` (workers it starts set their own)."""
    user = re.sub(r"[^A-Za-z0-9_.@-]", "_", getpass.getuser()) or "unknown"
    options = f"-c fleetcare.actor=cli:{user} -c fleetcare.channel=cli -c fleetcare.source=cli"
    given = conninfo_to_dict(url).get("options")
    return make_conninfo(url, options=f"{given or ''} {options}".strip())
