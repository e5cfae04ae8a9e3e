"""The ``fleetcare`` command line: one typer app composing every domain's sub-commands.

This is the top of the house: it imports downward (the shell, every domain's commands), and
nothing imports it back. The sub-commands share ``fleetcare.commandline`` for settings, the
database and clean failures.
"""

from __future__ import annotations

import sys

import typer

from cli.access import access_app
from cli.backoffice import billing_metrics, subscriptions_app
from cli.commands import (
    api,
    billing_app,
    dispatch,
    keys_app,
    migrate,
    webhooks,
)
from cli.up import up
from evaluation.cli import evaluate as evaluate_strategies
from fleet.audit.cli import audit_app
from fleet.cli import customers_app
from ingest.cli import devices_app, ingest_command
from ingest.history_cli import history_app
from ingest.profile_cli import profiles_app
from kinds.commands import kinds_app
from maintenance.modelwatch.commands import drift_command, watch_command
from models.cli import app as models_app
from models.commands import score_command
from models.export.cli import predictions_app
from people.cli import users_app
from simulators.cli import simulate

app = typer.Typer(
    name="fleetcare",
    help="Predictive maintenance as a subscription. `fleetcare up` runs the whole loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the shell: migrations, the API, API keys, the whole loop
app.command("migrate")(migrate)
app.command("api")(api)
app.add_typer(keys_app, name="keys")
app.add_typer(kinds_app, name="kinds")
app.add_typer(customers_app, name="customers")
app.add_typer(users_app, name="users")
app.add_typer(access_app, name="access")
app.add_typer(audit_app, name="audit")
app.command("up")(up)
# ingest: `fleetcare devices ...`, `fleetcare ingest`
app.add_typer(devices_app, name="devices")
app.command("ingest")(ingest_command)
# payload profiles, history import, predictions export
app.add_typer(profiles_app, name="profiles")
app.add_typer(history_app, name="history")
app.add_typer(predictions_app, name="predictions")
# maintenance: the policy, webhook delivery, billing
app.command("dispatch")(dispatch)
app.command("webhooks")(webhooks)
billing_app.command("metrics")(billing_metrics)
app.add_typer(billing_app, name="billing")
app.add_typer(subscriptions_app, name="subscriptions")
# simulators: `fleetcare simulate`
app.command("simulate")(simulate)
# wear models: `fleetcare models ...` and the scoring worker `fleetcare score`
models_app.command("watch")(watch_command)  # the model watch writes events: maintenance
models_app.command("drift")(drift_command)
app.add_typer(models_app, name="models")
app.command("score")(score_command)
# evaluation: `fleetcare evaluate`
app.command("evaluate")(evaluate_strategies)


def main() -> None:
    """Entry point for ``python -m cli``."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
