"""``fleetcare subscriptions show | terms | cancel``: contracts from the command line (as the
operator), and ``fleetcare billing metrics``. ``cli.main`` registers them."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import typer

from fleetcare.commandline import database_url, fail, load_settings
from fleetcare.errors import FleetcareError

T = TypeVar("T")

subscriptions_app = typer.Typer(help="Subscriptions and their contracts.", no_args_is_help=True)


def _operator() -> Any:
    from fleet.schemas import Principal

    return Principal(key_id=0, role="operator")


def _as_operator(work: Callable[[Any, Any, Any], T]) -> T:
    """Run ``work(conn, operator, clock)`` in one transaction on the configured database; a
    domain error is a one-line failure (exit 2)."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect

    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                return work(conn, _operator(), SystemClock())
        except FleetcareError as exc:
            raise fail(exc.detail) from exc


def _first_error(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        return f"--{where.replace('_', '-')}: {first['msg']}"
    return str(exc)


@subscriptions_app.command("show")
def subscriptions_show(
    subscription_id: Annotated[int, typer.Argument(help="the subscription id", min=1)],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text")] = False,
) -> None:
    """A subscription's contract terms and status history."""
    from maintenance.subscriptions import service

    view, history = _as_operator(
        lambda conn, operator, clock: (
            service.get_subscription(conn, operator, subscription_id, clock),
            service.get_status_history(conn, operator, subscription_id, clock),
        )
    )
    if as_json:
        out = {
            "subscription": view.model_dump(mode="json"),
            "history": [h.model_dump(mode="json") for h in history],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(
        f"subscription {view.id}  customer {view.customer_id}  plan {view.plan_id}  {view.status}"
    )
    typer.echo(
        f"term {view.term_months} month(s), ends {view.current_term_ends_at:%Y-%m-%d}, "
        f"auto-renew {'yes' if view.auto_renew else 'no'}, notice {view.notice_days} d, "
        f"reminder {view.renewal_reminder_days} d"
    )
    typer.echo(
        f"committed assets {view.committed_assets or '-'}, usage {view.committed_usage or '-'}, "
        f"escalation {view.escalation_bps} bps/year, cancellation rule {view.cancellation_rule}"
    )
    if view.cancel_at_term_end:
        typer.echo(f"non-renewal: ends {view.cancel_effective_at:%Y-%m-%d}")
    for h in history:
        until = f"{h.valid_to:%Y-%m-%d %H:%M}" if h.valid_to else "now"
        typer.echo(f"  {h.valid_from:%Y-%m-%d %H:%M} .. {until}  {h.status}  {h.reason}")


@subscriptions_app.command("terms")
def subscriptions_terms(
    subscription_id: Annotated[int, typer.Argument(help="the subscription id", min=1)],
    notice_days: Annotated[int | None, typer.Option(help="days of notice for non-renewal")] = None,
    reminder_days: Annotated[
        int | None, typer.Option(help="days before term end for the renewal reminder")
    ] = None,
    committed_assets: Annotated[int | None, typer.Option(help="assets billed at least")] = None,
    committed_usage: Annotated[str | None, typer.Option(help="usage units billed at least")] = None,
    escalation_bps: Annotated[int | None, typer.Option(help="yearly price rise, bps")] = None,
    cancellation_rule: Annotated[str | None, typer.Option(help="none | remainder | notice")] = None,
    auto_renew: Annotated[bool | None, typer.Option("--auto-renew/--no-auto-renew")] = None,
    term_months: Annotated[int | None, typer.Option(help="months per term")] = None,
) -> None:
    """Change a subscription's contract terms (as the operator)."""
    from pydantic import ValidationError

    from maintenance.subscriptions import service
    from maintenance.subscriptions.schemas import SubscriptionUpdate

    given: dict[str, Any] = {
        "notice_days": notice_days,
        "renewal_reminder_days": reminder_days,
        "committed_assets": committed_assets,
        "committed_usage": committed_usage,
        "escalation_bps": escalation_bps,
        "cancellation_rule": cancellation_rule,
        "auto_renew": auto_renew,
        "term_months": term_months,
    }
    values = {k: v for k, v in given.items() if v is not None}
    if not values:
        raise fail("give at least one term to change (see --help)")
    try:
        if "committed_usage" in values:
            values["committed_usage"] = str(Decimal(values["committed_usage"]))
        body = SubscriptionUpdate.model_validate(values)
    except (ValidationError, ArithmeticError) as exc:
        raise fail(
            _first_error(exc)
            if isinstance(exc, ValidationError)
            else "--committed-usage: not a number"
        ) from exc
    view = _as_operator(
        lambda conn, operator, clock: service.update_subscription(
            conn, operator, subscription_id, body, clock
        )
    )
    typer.echo(f"subscription {view.id}: {', '.join(sorted(values))} changed")


@subscriptions_app.command("cancel")
def subscriptions_cancel(
    subscription_id: Annotated[int, typer.Argument(help="the subscription id", min=1)],
    at_term_end: Annotated[
        bool, typer.Option("--at-term-end", help="end at the term's end (notice applies)")
    ] = False,
) -> None:
    """Cancel now (the contract's cancellation rule applies) or at the end of the term."""
    from maintenance.subscriptions import service

    view = _as_operator(
        lambda conn, operator, clock: service.cancel(
            conn, operator, subscription_id, at_term_end, clock
        )
    )
    ends = view.cancel_effective_at if at_term_end else view.ends_at
    typer.echo(f"subscription {view.id}: ends {ends:%Y-%m-%d %H:%M} UTC")


def billing_metrics(
    month: Annotated[str, typer.Option(help="the month, YYYY-MM (UTC)")],
    months: Annotated[int, typer.Option(help="this many months ending with --month")] = 1,
    currency: Annotated[str, typer.Option(help="plans priced in this currency")] = "EUR",
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """SaaS metrics from the subscription history: MRR, ARR, movements, retention, churn."""
    from maintenance.metrics.service import metrics_series

    series = _as_operator(
        lambda conn, operator, clock: metrics_series(
            conn, operator, month, clock, months=months, currency=currency
        )
    )
    if as_json:
        typer.echo(series.model_dump_json(indent=2))
        return
    head = ("month", "MRR", "ARR", "new", "expansion", "contraction", "churned", "GRR", "NRR",
            "logo churn", "renewals")  # fmt: skip
    typer.echo("  ".join(f"{h:>11}" for h in head))
    for m in series.months:
        renewals = f"{m.renewals}/{m.renewals_due}"
        row = (m.month, _money(m.closing_mrr_minor), _money(m.arr_minor),
               _money(m.new_mrr_minor), _money(m.expansion_mrr_minor),
               _money(m.contraction_mrr_minor), _money(m.churned_mrr_minor),
               m.gross_revenue_retention or "-", m.net_revenue_retention or "-",
               m.logo_churn_rate or "-", renewals)  # fmt: skip
        typer.echo("  ".join(f"{v:>11}" for v in row))
    typer.echo(f"amounts in {series.currency}; rates are fractions of the month's opening")


def _money(minor: int) -> str:
    return f"{minor / 100:.2f}"
