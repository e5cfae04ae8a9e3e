"""The commands of the shell and of the maintenance workers: ``migrate``, ``api``,
``keys``, ``dispatch``, ``webhooks``, ``billing``. ``cli.main`` registers them."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.schemas import Principal
from fleetcare import migrate as migrations
from fleetcare.commandline import database_url, fail, load_settings
from fleetcare.errors import FleetcareError

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


def migrate(
    status: Annotated[
        bool, typer.Option("--status", help="show what is applied; change nothing")
    ] = False,
    storage: Annotated[
        str, typer.Option(help="auto | timescaledb | postgres (first run only)")
    ] = "auto",
) -> None:
    """Apply pending migrations (TimescaleDB when available), then apply the shipped kind files."""
    if storage not in ("auto", "timescaledb", "postgres"):
        raise fail("--storage is one of auto, timescaledb, postgres")
    settings = load_settings()
    with database_url(settings) as url:
        try:
            if status:
                st = migrations.status(url)
                typer.echo(f"storage path: {st.storage or 'not chosen yet (nothing applied)'}")
                for a in st.applied:
                    flag = "" if a.complete else "  (partial: finishes on the next run)"
                    when = f"{a.applied_at:%Y-%m-%d %H:%M:%S}"
                    typer.echo(f"applied  {a.name}  {when}  {a.checksum[:12]}{flag}")
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


def apply_and_sync(
    url: str, storage: migrations.StorageChoice = "auto"
) -> tuple[migrations.Storage, list[str]]:
    """Apply migrations, then the kind files shipped with fleetcare (as ``kinds apply``)."""
    from fleetcare.db import connect
    from kinds.service import apply_builtin

    chosen, applied = migrations.apply_migrations(url, storage_choice=storage)
    with connect(url) as conn, conn.transaction():
        apply_builtin(conn)
    return chosen, applied


def api(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port")] = None,
) -> None:
    """Serve the REST API and dashboard (one stateless worker; run several behind a proxy)."""
    import uvicorn

    from api.app import create_app
    from fleetcare.services import exit_on_sigterm

    settings = load_settings()
    exit_on_sigterm()
    with database_url(settings, worker=True) as url:
        application = create_app(settings, url)
        uvicorn.run(
            application,
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level=settings.log_level.lower(),
            # the dashboard's live streams never end by themselves: cut them on shutdown
            timeout_graceful_shutdown=5,
        )


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
    from fleet import repository as fleet_repo
    from fleet import service as fleet
    from fleetcare.db import connect

    if operator == (customer is not None):
        raise fail("give either --customer SLUG or --operator")
    if not operator and role not in ("customer", "technician"):
        raise fail("--role is customer or technician")
    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                customer_id: int | None = None
                if customer is not None:
                    found = (
                        fleet_repo.CUSTOMERS.get(conn, int(customer), scope=None)
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


def dispatch(
    poll: Annotated[
        float,
        typer.Option(min=0.01, max=3600, help="poll interval in seconds (besides LISTEN)"),
    ] = 2.0,
    batch: Annotated[
        int, typer.Option(min=1, max=100_000, help="predictions per transaction")
    ] = 50,
) -> None:
    """Run the subscription policy: new predictions become alerts, orders and shipments."""
    import threading

    from fleetcare.services import exit_on_sigterm
    from maintenance.policy.worker import run_dispatcher

    if poll <= 0 or batch <= 0:
        raise fail("--poll and --batch must be positive")
    settings = load_settings()
    exit_on_sigterm()
    with database_url(settings, worker=True) as url:
        stop = threading.Event()
        try:
            typer.echo("fleetcare dispatch: running (Ctrl-C stops)", err=True)
            run_dispatcher(url, stop=stop, poll_interval=poll, batch_size=batch)
        except KeyboardInterrupt:
            stop.set()
        except FleetcareError as exc:
            raise fail(exc.detail) from exc


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

    settings = load_settings()
    exit_on_sigterm()
    with database_url(settings, worker=True) as url:
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


billing_app = typer.Typer(
    help="Invoices: close periods, run the billing worker.", no_args_is_help=True
)


@billing_app.command("close")
def billing_close(
    period: Annotated[str, typer.Option(help="the month to close, YYYY-MM (UTC)")],
    customer: Annotated[int | None, typer.Option(help="only this customer id")] = None,
    issue: Annotated[bool, typer.Option("--issue", help="issue the invoices too")] = False,
    open_month: Annotated[
        bool, typer.Option("--open-month", help="close a month that has not ended (drafts)")
    ] = False,
) -> None:
    """Close an ended month into invoices (drafts; --issue issues them). Safe to run twice."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from maintenance.billing.service import close_period

    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn, conn.transaction():
                result = close_period(
                    conn,
                    period,
                    SystemClock(),
                    customer_id=customer,
                    issue=issue,
                    open_month=open_month,
                )
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
    if result.failures:
        raise typer.Exit(1)


def _operator() -> Principal:
    """The command line acts as the operator."""
    return Principal(key_id=0, role="operator")


@billing_app.command("revenue")
def billing_revenue(
    month: Annotated[str, typer.Option(help="the month, YYYY-MM (UTC)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Recognised, deferred and unbilled revenue per customer and plan; exits 1 when the
    report does not reconcile to the invoices and credit notes."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from maintenance.revenue.service import revenue_report

    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn, conn.transaction():
                report = revenue_report(conn, _operator(), month, SystemClock())
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(
            f"{'customer':>8} {'plan':>5} cur {'recognised':>11} {'deferred open':>13}"
            f" {'billed':>10} {'deferred close':>14} {'unbilled close':>14}"
        )
        for row in [*report.rows, *report.totals.values()]:
            who = "total" if row.customer_id == 0 else str(row.customer_id)
            typer.echo(
                f"{who:>8} {row.plan_id or '-':>5} {row.currency} {row.recognised_minor:>11}"
                f" {row.deferred.opening_minor:>13} {row.deferred.billed_minor:>10}"
                f" {row.deferred.closing_minor:>14} {row.unbilled.closing_minor:>14}"
            )
        for check in report.checks:
            typer.echo(f"check {check.name}: {'ok' if check.ok else 'FAILED'} ({check.detail})")
    if not report.reconciled:
        raise typer.Exit(1)


@billing_app.command("journal")
def billing_journal(
    month: Annotated[str, typer.Option(help="the month, YYYY-MM (UTC)")],
    account: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=CODE, repeatable; NAME one of receivable, unbilled, deferred, tax, revenue"
        ),
    ] = None,
) -> None:
    """The month's revenue as balanced journal entries (CSV on stdout)."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from maintenance.revenue.journal import Accounts, journal_csv
    from maintenance.revenue.service import revenue_report

    settings = load_settings()
    with database_url(settings) as url:
        try:
            accounts = Accounts.parse(account or [])
            with connect(url) as conn, conn.transaction():
                report = revenue_report(conn, _operator(), month, SystemClock())
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    typer.echo(journal_csv(report, accounts), nl=False)


@billing_app.command("worker")
def billing_worker(
    interval: Annotated[
        float, typer.Option(min=1, max=86400 * 31, help="seconds between runs")
    ] = 3600.0,
    grace_days: Annotated[
        float, typer.Option(min=0, max=365, help="days after a month ends before issuing")
    ] = 3,
) -> None:
    """Close last month on schedule and issue it once the grace period is over."""
    import threading
    from datetime import timedelta

    from fleetcare.services import exit_on_sigterm
    from maintenance.billing.worker import run_billing_worker

    if interval <= 0 or grace_days < 0:
        raise fail("--interval must be positive and --grace-days not negative")
    settings = load_settings()
    exit_on_sigterm()
    with database_url(settings, worker=True) as url:
        stop = threading.Event()
        try:
            typer.echo("fleetcare billing worker: running (Ctrl-C stops)", err=True)
            run_billing_worker(url, stop=stop, interval=interval, grace=timedelta(days=grace_days))
        except KeyboardInterrupt:
            stop.set()
