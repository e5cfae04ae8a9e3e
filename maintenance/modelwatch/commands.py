"""``fleetcare models watch`` and ``fleetcare models drift``: the model watch from the command
line (composed into ``fleetcare models`` by the CLI)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Annotated

import typer

from fleetcare.commandline import database_url, fail, load_settings

Threshold = Annotated[
    float,
    typer.Option(min=0.0, max=1e6, help="population stability index above which a signal drifts"),
]
LookbackDays = Annotated[
    float,
    typer.Option(min=0.01, max=36525, help="days of live readings compared with the training data"),
]


def watch_command(
    interval: Annotated[
        float, typer.Option(min=1.0, max=86400 * 31, help="seconds between rounds")
    ] = 3600.0,
    once: Annotated[bool, typer.Option("--once", help="one round, then exit")] = False,
    threshold: Threshold = 0.25,
    lookback_days: LookbackDays = 7.0,
    retrain: Annotated[
        bool, typer.Option("--retrain/--no-retrain", help="retrain weekly and on drift")
    ] = True,
) -> None:
    """Check every kind's live fleet for drift (model.drift_detected) and retrain when due."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import open_pool
    from fleetcare.services import exit_on_sigterm
    from maintenance.modelwatch.service import WatchSettings
    from maintenance.modelwatch.worker import WatchStats, run_model_watch, watch_once

    settings = WatchSettings(threshold=threshold, lookback=timedelta(days=lookback_days))
    with database_url(load_settings(), worker=True) as url:
        if once:
            stats = WatchStats()
            pool = open_pool(url, None, name="models-watch", max_size=1)
            try:
                watch_once(pool, SystemClock(), settings, stats, retrain=retrain)
            finally:
                pool.close()
            for check in stats.checks:
                typer.echo(check.model_dump_json())
            for decision in stats.decisions:
                typer.echo(decision.model_dump_json())
            return
        exit_on_sigterm()
        stop = threading.Event()
        typer.echo(f"fleetcare models watch: every {interval:g} s (Ctrl-C stops)")
        try:
            run_model_watch(url, stop=stop, interval=interval, settings=settings, retrain=retrain)
        except (KeyboardInterrupt, SystemExit):
            stop.set()


def drift_command(
    kind: Annotated[str, typer.Argument(help="asset kind (fleetcare kinds list)")],
    threshold: Threshold = 0.25,
    lookback_days: LookbackDays = 7.0,
) -> None:
    """Compare KIND's live fleet with its active model's training data now; print the PSI of
    every signal (and raise model.drift_detected when it starts drifting)."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from kinds.service import get_kind
    from maintenance.modelwatch.service import WatchSettings, check_kind

    settings = WatchSettings(threshold=threshold, lookback=timedelta(days=lookback_days))
    with database_url(load_settings()) as url, connect(url) as conn:
        try:
            with conn.transaction():
                get_kind(conn, kind)
                check, raised = check_kind(conn, kind, SystemClock().now(), settings)
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    if check is None:
        raise fail(f"no drift check for {kind}: no active model with a training reference, or"
                   " too few live readings")  # fmt: skip
    verdict = f"drifted ({', '.join(check.drifted_signals)})" if check.drifted else "no drift"
    typer.echo(f"{kind}: {verdict}; max PSI {check.max_psi}; event raised: {raised}")
    typer.echo(check.model_dump_json())
