"""The ``fleetcare`` command line."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from fleetcare import migrate as migrations
from fleetcare.errors import FleetcareError
from fleetcare.logs import setup_logging
from fleetcare.settings import Settings, load_settings
from kinds.commands import kinds_app

log = logging.getLogger("fleetcare")

app = typer.Typer(
    name="fleetcare",
    help="Predictive maintenance as a subscription. `fleetcare up` runs the whole loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(kinds_app, name="kinds")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except Exception as exc:  # pydantic's message names the bad variable
        raise fail(f"bad configuration: {exc}") from exc
    setup_logging(settings.log_level)
    return settings


def _database_url(settings: Settings) -> tuple[str, Any]:
    """The database to use for a one-shot command, and the context that keeps it up."""
    from fleetcare.services import running_services

    ctx = running_services(settings, need_broker=False)
    services = ctx.__enter__()
    return services.database_url, ctx


@app.command()
def migrate(
    status: Annotated[
        bool, typer.Option("--status", help="show what is applied; change nothing")
    ] = False,
    storage: Annotated[
        str, typer.Option(help="auto | timescaledb | postgres (first run only)")
    ] = "auto",
) -> None:
    """Apply pending migrations (TimescaleDB when available), then sync the metric catalogue."""
    if storage not in ("auto", "timescaledb", "postgres"):
        raise fail("--storage is one of auto, timescaledb, postgres")
    settings = _settings()
    url, ctx = _database_url(settings)
    try:
        if status:
            st = migrations.status(url)
            typer.echo(f"storage path: {st.storage or 'not chosen yet (nothing applied)'}")
            for a in st.applied:
                flag = "" if a.complete else "  (partial: finishes on the next run)"
                typer.echo(
                    f"applied  {a.name}  {a.applied_at:%Y-%m-%d %H:%M:%S}  {a.checksum[:12]}{flag}"
                )
            for name in st.pending:
                typer.echo(f"pending  {name}")
            for name in st.edited:
                typer.echo(f"EDITED   {name}  (changed after it was applied)")
            for name in st.missing:
                typer.echo(f"MISSING  {name}  (applied but no longer on disk)")
            typer.echo("current" if st.current else "not current")
            return
        chosen, applied = apply_and_sync(url, storage)  # type: ignore[arg-type]
        typer.echo(
            f"storage path: {chosen}; applied {len(applied)} migration(s)"
            + (f": {', '.join(applied)}" if applied else "")
        )
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    finally:
        ctx.__exit__(None, None, None)


def apply_and_sync(
    url: str, storage: migrations.StorageChoice = "auto"
) -> tuple[migrations.Storage, list[str]]:
    """Apply migrations and copy the asset kinds into the catalogue."""
    from fleetcare.db import connect
    from fleetcare.fleet.repository import sync_catalogue

    chosen, applied = migrations.apply_migrations(url, storage_choice=storage)
    with connect(url) as conn, conn.transaction():
        sync_catalogue(conn)
    return chosen, applied


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
) -> None:
    """Serve the REST API and dashboard (one stateless worker; run several behind a proxy)."""
    import uvicorn

    from api.app import create_app
    from fleetcare.services import exit_on_sigterm

    settings = _settings()
    exit_on_sigterm()
    url, ctx = _database_url(settings)
    try:
        application = create_app(settings, url)
        uvicorn.run(
            application,
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level=settings.log_level.lower(),
            # the dashboard's live streams never end by themselves: cut them on shutdown
            timeout_graceful_shutdown=5,
        )
    finally:
        ctx.__exit__(None, None, None)


@keys_app.command("create")
def keys_create(
    customer: Annotated[
        str | None, typer.Option(help="customer slug or id; omit with --operator")
    ] = None,
    operator: Annotated[
        bool, typer.Option("--operator", help="an operator key (sees all)")
    ] = False,
    role: Annotated[str, typer.Option(help="customer | technician")] = "customer",
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from fleetcare.db import connect
    from fleetcare.fleet import repository as fleet_repo
    from fleetcare.fleet import service as fleet
    from fleetcare.fleet.schemas import Customer

    if operator == (customer is not None):
        raise fail("give either --customer SLUG or --operator")
    if not operator and role not in ("customer", "technician"):
        raise fail("--role is customer or technician")
    settings = _settings()
    url, ctx = _database_url(settings)
    try:
        with connect(url) as conn:
            customer_id: int | None = None
            if customer is not None:
                found = (
                    fleet_repo.fetch_one(conn, "customers", Customer, int(customer), scope=None)
                    if customer.isdigit()
                    else fleet_repo.find_customer_by_slug(conn, customer)
                )
                if found is None or found.retired_at is not None:
                    raise fail(f"no live customer {customer!r}")
                customer_id = found.id
            key = fleet.issue_api_key(
                conn, role="operator" if operator else role, customer_id=customer_id, name=name
            )
        typer.echo(key.key)
        typer.echo(f"(key {key.id}, role {key.role}; shown once, store it now)", err=True)
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    finally:
        ctx.__exit__(None, None, None)


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="API port")] = None,
    host: Annotated[str | None, typer.Option(help="API bind address")] = None,
    api_only: Annotated[
        bool, typer.Option("--api-only", help="serve the API only: no workers, no simulation")
    ] = False,
    speedup: Annotated[
        float, typer.Option(min=1, max=1e7, help="simulated seconds per real second")
    ] = 20_000.0,
    history: Annotated[
        int, typer.Option(min=1, max=1000, help="lifetimes per kind to train on (first run)")
    ] = 30,
) -> None:
    """Run the whole loop on this machine: services, migrations, demo customers, simulated
    fleets, ingest, scoring, the policy, webhooks to a demo receiver, a technician, the API
    and dashboard.

    Uses FLEETCARE_DATABASE_URL / FLEETCARE_MQTT_URL when set; otherwise the local
    PostgreSQL and our own no-drop Mosquitto, or embedded ones. When no wear model is active
    yet, it first simulates histories and trains. Ctrl-C or SIGTERM stops everything.
    """
    import uvicorn

    from api.app import create_app
    from fleetcare.demo import seed_demo
    from fleetcare.services import exit_on_sigterm, running_services

    # the quick start on one machine: webhooks may go to private addresses (its demo
    # receiver listens on loopback), in the API as in every worker it starts
    settings = _settings().model_copy(update={"webhooks_allow_private": True})
    exit_on_sigterm()
    try:
        with running_services(settings) as services, contextlib.ExitStack() as workers:
            typer.echo(f"fleetcare: {services.describe()}")
            chosen, applied = apply_and_sync(services.database_url)
            typer.echo(f"fleetcare: storage path {chosen}; {len(applied)} migration(s) applied")
            demo = seed_demo(services.database_url, settings.data_dir) if settings.demo else None
            bind_host, bind_port = host or settings.api_host, port or settings.api_port
            base = f"http://{bind_host}:{bind_port}"
            if not api_only:
                receiver = _start_loop(settings, services, workers, speedup, history)
                typer.echo(f"fleetcare: demo webhook receiver on {receiver}")
                typer.echo(f"fleetcare: worker logs in {settings.data_dir.resolve() / 'logs'}")
            typer.echo(f"fleetcare: API on {base}  (docs {base}/docs, health {base}/healthz)")
            typer.echo(f"fleetcare: dashboard on {base}/dashboard")
            if demo:
                typer.echo(f"fleetcare: demo keys in {demo}")
            application = create_app(settings, services.database_url)
            uvicorn.run(
                application,
                host=bind_host,
                port=bind_port,
                log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=5,  # live dashboard streams never end by themselves
            )
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    except RuntimeError as exc:
        raise fail(str(exc)) from exc
    except (KeyboardInterrupt, SystemExit):
        pass  # Ctrl-C or SIGTERM: everything started above has been stopped by now
    typer.echo("fleetcare: stopped")


def _start_loop(
    settings: Settings,
    services: Any,
    workers: contextlib.ExitStack,
    speedup: float,
    history: int,
) -> str:
    """Train when needed, register the demo fleets, then start every worker; return the
    demo receiver's URL. Everything started is stopped when ``workers`` closes."""
    import threading

    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from fleetcare.demo import DEMO_FLEETS, prepare_loop
    from fleetcare.fleet import repository as fleet_repo
    from fleetcare.kinds import KINDS
    from fleetcare.loop import (
        Supervisor,
        child_env,
        follow_training,
        start_training,
        watch,
    )
    from fleetcare.services import free_port, wait_for_port
    from models.repository import active_version_ids
    from simulators.courier import Courier

    data_dir = settings.data_dir.resolve()
    env = child_env(
        services.database_url,
        services.mqtt_url,
        data_dir,
        FLEETCARE_WEBHOOKS_ALLOW_PRIVATE=str(settings.webhooks_allow_private).lower(),
    )
    supervisor = Supervisor(env, data_dir / "logs")
    stop = threading.Event()
    workers.callback(supervisor.stop)
    workers.callback(stop.set)

    with connect(services.database_url) as conn:
        active = active_version_ids(conn)
    missing = [k for k in KINDS if k not in active]
    wait_for_models: Callable[[], None] | None = None
    if missing:
        typer.echo(
            f"fleetcare: no active model for {', '.join(missing)}: simulating "
            f"{history} lifetimes per kind, then training each kind (first run only)"
        )
        with connect(services.database_url) as conn:
            has_history = fleet_repo.find_customer_by_slug(conn, "history-lab") is not None
        if not has_history:
            supervisor.run_step(
                "history", "simulate", "--customer", "history-lab", "--tires", "6",
                "--elevators", "3", "--engines", "2", "--history", str(history),
                "--duration", "0",
            )  # fmt: skip
        # the kinds train in parallel while the rest of the loop starts; the fleets start
        # once every kind has a model
        trainings = start_training(supervisor, missing)
        typer.echo(
            f"fleetcare: training {', '.join(missing)} in parallel; progress below and in "
            f"{supervisor.log_dir / 'train-<kind>.log'}"
        )
        wait_for_models = follow_training(
            supervisor, trainings, typer.echo, interactive=sys.stdout.isatty()
        )
    for fleet in DEMO_FLEETS:
        supervisor.run_step(f"register {fleet.customer}", "simulate", *fleet.simulate_args(),
                            "--duration", "0")  # fmt: skip

    receiver_port = free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    receiver = supervisor.start(
        "demo-receiver",
        argv=[sys.executable, "-m", "uvicorn", "--factory", "api.demo_receiver:app_from_env",
              "--host", "127.0.0.1", "--port", str(receiver_port), "--log-level", "warning"],
    )  # fmt: skip
    wait_for_port("127.0.0.1", receiver_port, 30, receiver.proc, "demo receiver")
    prepare_loop(services.database_url, data_dir, receiver_url, SystemClock())

    supervisor.start("ingest", "ingest", "--no-shared")  # one ingestor: see docs/telemetry.md
    supervisor.start("score", "score")
    supervisor.start("dispatch", "dispatch")
    supervisor.start("webhooks", "webhooks")
    if wait_for_models is not None:
        wait_for_models()
    for fleet in DEMO_FLEETS:
        supervisor.start(
            f"simulate-{fleet.customer}", "simulate", *fleet.simulate_args(),
            "--speedup", str(speedup), "--technician",
        )  # fmt: skip
    courier = Courier(services.database_url, SystemClock(), speedup)
    for target in (lambda: courier.run(stop), lambda: watch(supervisor, stop)):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
    return receiver_url


def main() -> None:
    """Entry point for ``python -m fleetcare``."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


# --- ingest: `fleetcare devices ...`, `fleetcare ingest` (kept at the end to ease merges) ---
from ingest.cli import devices_app, ingest_command  # noqa: E402

app.add_typer(devices_app, name="devices")
app.command("ingest")(ingest_command)

# --- payload profiles and history import (issue 18) ---
from ingest.history_cli import history_app  # noqa: E402
from ingest.profile_cli import profiles_app  # noqa: E402

app.add_typer(profiles_app, name="profiles")
app.add_typer(history_app, name="history")

from models.export.cli import predictions_app  # noqa: E402

app.add_typer(predictions_app, name="predictions")


@app.command()
def dispatch(
    poll: Annotated[float, typer.Option(help="poll interval in seconds (besides LISTEN)")] = 2.0,
    batch: Annotated[int, typer.Option(help="predictions per transaction")] = 50,
) -> None:
    """Run the subscription policy: new predictions become alerts, orders and shipments."""
    import threading

    from fleetcare.services import exit_on_sigterm
    from maintenance.policy.worker import run_dispatcher

    if poll <= 0 or batch <= 0:
        raise fail("--poll and --batch must be positive")
    settings = _settings()
    exit_on_sigterm()
    url, ctx = _database_url(settings)
    stop = threading.Event()
    try:
        typer.echo("fleetcare dispatch: running (Ctrl-C stops)", err=True)
        run_dispatcher(url, stop=stop, poll_interval=poll, batch_size=batch)
    except KeyboardInterrupt:
        stop.set()
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    finally:
        ctx.__exit__(None, None, None)


@app.command()
def webhooks(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="sender threads (one endpoint each at a time)")
    ] = 4,
    poll: Annotated[float, typer.Option(min=0.05, max=60, help="poll interval, seconds")] = 1.0,
    timeout: Annotated[float, typer.Option(min=0.1, max=60, help="HTTP timeout, seconds")] = 15.0,
) -> None:
    """Deliver events to customers' webhook endpoints (run several anywhere; they share work)."""
    import threading

    from fleetcare.services import exit_on_sigterm
    from maintenance.webhooks.worker import run_webhook_senders

    settings = _settings()
    exit_on_sigterm()
    url, ctx = _database_url(settings)
    stop = threading.Event()
    try:
        run_webhook_senders(
            url, settings, stop=stop, concurrency=concurrency, poll_s=poll, timeout_s=timeout
        )
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        ctx.__exit__(None, None, None)


billing_app = typer.Typer(
    help="Invoices: close periods, run the billing worker.", no_args_is_help=True
)
app.add_typer(billing_app, name="billing")


@billing_app.command("close")
def billing_close(
    period: Annotated[str, typer.Option(help="the month to close, YYYY-MM (UTC)")],
    customer: Annotated[int | None, typer.Option(help="only this customer id")] = None,
    issue: Annotated[bool, typer.Option("--issue", help="issue the invoices too")] = False,
) -> None:
    """Close a period into invoices (drafts; --issue issues them). Safe to run twice."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from maintenance.billing.service import close_period

    settings = _settings()
    url, ctx = _database_url(settings)
    try:
        with connect(url) as conn, conn.transaction():
            result = close_period(conn, period, SystemClock(), customer_id=customer, issue=issue)
        for invoice in result.invoices:
            typer.echo(
                f"invoice {invoice.id}  customer {invoice.customer_id}  {invoice.period}"
                f"  {invoice.status}  {invoice.line_count} line(s)"
                f"  {invoice.total_minor} {invoice.currency} (minor units)"
            )
        for failure in result.failures:
            typer.echo(f"failed: customer {failure.customer_id}: {failure.error}", err=True)
        typer.echo(f"period {result.period}: {len(result.invoices)} invoice(s)")
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    finally:
        ctx.__exit__(None, None, None)
    if result.failures:
        raise typer.Exit(1)


@billing_app.command("worker")
def billing_worker(
    interval: Annotated[float, typer.Option(help="seconds between runs")] = 3600.0,
    grace_days: Annotated[float, typer.Option(help="days after a month ends before issuing")] = 3,
) -> None:
    """Close last month on schedule and issue it once the grace period is over."""
    import threading
    from datetime import timedelta

    from fleetcare.services import exit_on_sigterm
    from maintenance.billing.worker import run_billing_worker

    if interval <= 0 or grace_days < 0:
        raise fail("--interval must be positive and --grace-days not negative")
    settings = _settings()
    exit_on_sigterm()
    url, ctx = _database_url(settings)
    stop = threading.Event()
    try:
        typer.echo("fleetcare billing worker: running (Ctrl-C stops)", err=True)
        run_billing_worker(url, stop=stop, interval=interval, grace=timedelta(days=grace_days))
    except KeyboardInterrupt:
        stop.set()
    finally:
        ctx.__exit__(None, None, None)


# --- simulators: `fleetcare simulate` (kept at the end to ease merges) ---
from simulators.cli import simulate  # noqa: E402

app.command("simulate")(simulate)


# --- wear models: `fleetcare models ...` and the scoring worker `fleetcare score` -----------
from models.cli import app as models_app  # noqa: E402
from models.commands import score_command  # noqa: E402

app.add_typer(models_app, name="models")
app.command("score")(score_command)


# --- evaluation: `fleetcare evaluate` (kept at the end to ease merges) ---
from evaluation.cli import evaluate as evaluate_strategies  # noqa: E402

app.command("evaluate")(evaluate_strategies)
