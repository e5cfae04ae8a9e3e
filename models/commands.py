"""CLI commands of the wear models: ``fleetcare models train`` and ``fleetcare score``."""

from __future__ import annotations

import json
import threading
from typing import Annotated, Any

import typer

from fleetcare.commandline import database_url, fail, load_settings

# the training options `models train` and `models retrain` share
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", help="RUL regressor parameter NAME=VALUE (repeatable)"),
]
RiskParamOption = Annotated[
    list[str] | None,
    typer.Option("--risk-param", help="failure-risk classifier parameter NAME=VALUE"),
]
WindowsOption = Annotated[
    str | None, typer.Option(help="feature windows in rows, e.g. 5,10,20,30 (the default)")
]


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param takes NAME=VALUE, got {item!r}")
        try:
            params[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[name.strip()] = raw
    return params


def train_command(
    kind_arg: Annotated[
        str | None, typer.Argument(metavar="KIND", help="asset kind (fleetcare kinds list)")
    ] = None,
    kind_option: Annotated[
        str | None, typer.Option("--kind", help="the same as KIND (older scripts)")
    ] = None,
    param: ParamOption = None,
    risk_param: RiskParamOption = None,
    windows: WindowsOption = None,
    max_rul: Annotated[
        float | None, typer.Option(min=1e-9, max=1e12, help="cap of the RUL target (life units)")
    ] = None,
    horizon: Annotated[
        float | None, typer.Option(min=0, max=1e12, help="failure-risk horizon (life units)")
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="promote when better (or first)")
    ] = True,
    threads: Annotated[
        int,
        typer.Option(
            min=1, help="native (OpenMP) threads; more only pays on an otherwise idle machine"
        ),
    ] = 1,
) -> None:
    """Train a wear model of KIND from the lifetimes recorded in the database.

    On a terminal a progress bar shows the step; otherwise each step is printed as a line
    ``train KIND: step N/7 <what> (<seconds> s)``, which `fleetcare up` follows.
    """
    import sys
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from threadpoolctl import threadpool_limits

    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from models.training import train

    if kind_arg and kind_option and kind_arg != kind_option:
        raise fail(f"KIND {kind_arg!r} and --kind {kind_option!r} differ: give one")
    kind = kind_arg or kind_option
    if not kind:
        raise fail("give the asset kind to train: fleetcare models train KIND")
    rul_params, risk_params, feature_params = _training_params(param, risk_param, windows)
    settings = load_settings()
    steps = 7
    started = time.perf_counter()
    done = 0
    with database_url(settings) as url:
        try:
            with (
                Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    transient=True,
                    disable=not sys.stdout.isatty(),
                ) as bar,
                connect(url) as conn,
                threadpool_limits(limits=threads),
            ):
                task = bar.add_task(f"training {kind}", total=steps)

                def step(message: str) -> None:
                    nonlocal done
                    done += 1
                    bar.update(task, description=f"{kind}: {message}", advance=1)
                    if not sys.stdout.isatty():
                        elapsed = time.perf_counter() - started
                        line = f"train {kind}: step {done}/{steps} {message} ({elapsed:.0f} s)"
                        print(line, flush=True)

                try:
                    with conn.transaction():
                        result = train(
                            conn,
                            kind,
                            SystemClock(),
                            rul_params=rul_params,
                            risk_params=risk_params,
                            feature_params=feature_params,
                            max_rul=max_rul,
                            horizon=horizon,
                            auto_promote=promote,
                            progress=step,
                        )
                except TypeError as exc:  # an unknown --param name
                    raise fail(f"bad --param: {exc}") from exc
                except ValueError as exc:  # a bad --param value, rejected by the estimator
                    raise fail(f"bad --param: {exc}") from exc
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    v = result.version
    status = "active" if result.promoted else "candidate"
    typer.echo(
        f"model version {v.id} ({kind}, kind version {v.kind_version}) trained in "
        f"{result.seconds:.1f} s "
        f"({result.cpu_seconds:.1f} CPU s) on "
        f"{v.training_assets} asset(s), {v.training_rows} row(s); {status}: {result.reason}"
    )
    summary = _summary(v.metrics)
    typer.echo(
        json.dumps(
            {
                "version": v.id,
                "kind_version": v.kind_version,
                "status": v.status,
                "metrics": summary,
            }
        )
    )


def _training_params(
    param: list[str] | None, risk_param: list[str] | None, windows: str | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(RUL, failure-risk, feature) parameters from the command line, or a clean failure."""
    try:
        rul_params = _parse_params(param or [])
        risk_params = _parse_params(risk_param or [])
        feature_params: dict[str, Any] = {}
        if windows is not None:
            feature_params["windows"] = tuple(int(w) for w in windows.split(","))
    except ValueError as exc:
        raise fail(f"{exc} (--windows takes integers like 5,10,20)") from exc
    return rul_params, risk_params, feature_params


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not k.endswith("_asset_ids")}


def score_command(
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit")] = False,
    poll: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=3600,
            help="seconds between passes when no NOTIFY of new telemetry wakes the worker",
        ),
    ] = 1.0,
    kind: Annotated[str | None, typer.Option(help="score only this kind")] = None,
    shard: Annotated[
        str, typer.Option(help="K/N: score assets whose id modulo N is K (several workers)")
    ] = "0/1",
    threads: Annotated[
        int, typer.Option(min=1, help="native threads for prediction; scale out with --shard")
    ] = 1,
) -> None:
    """Score assets with new telemetry: RUL with interval, failure risk, anomaly, due dates."""
    from fleetcare.clock import SystemClock
    from fleetcare.errors import FleetcareError
    from fleetcare.services import exit_on_sigterm
    from models.worker import ScoringWorker

    try:
        k_text, _, n_text = shard.partition("/")
        shard_pair = (int(k_text), int(n_text))
        worker_probe = ScoringWorker("", SystemClock(), poll_s=poll, shard=shard_pair)
    except ValueError as exc:
        raise fail(f"bad --shard or --poll: {exc}") from exc
    del worker_probe
    settings = load_settings()
    with database_url(settings, worker=True) as url:
        worker = ScoringWorker(
            url, SystemClock(), poll_s=poll, kind=kind, shard=shard_pair, threads=threads
        )
        try:
            if kind is not None:
                from fleetcare.db import connect
                from kinds.service import get_kind

                with connect(url) as conn:
                    get_kind(conn, kind)  # NotFound naming the known kinds
            if once:
                result = worker.run_once()
                typer.echo(
                    f"scored {result.scored_assets} asset(s): {result.predictions} prediction(s);"
                    f" {result.unchanged_assets} unchanged, {result.not_scorable} not scorable,"
                    f" {result.no_model} without an active model"
                )
                return
            exit_on_sigterm()
            stop = threading.Event()
            typer.echo(
                f"fleetcare score: woken by new telemetry (LISTEN fleetcare_telemetry),"
                f" polling every {poll:g} s as the fallback (Ctrl-C stops)"
            )
            try:
                worker.run(stop)
            except (KeyboardInterrupt, SystemExit):
                stop.set()
        except FleetcareError as exc:
            raise fail(exc.detail) from exc


def retrain_command(
    kind: Annotated[str, typer.Argument(help="asset kind (fleetcare kinds list)")],
    param: ParamOption = None,
    risk_param: RiskParamOption = None,
    windows: WindowsOption = None,
    trigger: Annotated[
        str, typer.Option(help="why: manual, schedule or drift (recorded with the decision)")
    ] = "manual",
) -> None:
    """Train a challenger of KIND on every lifetime recorded so far and promote it only if it
    beats the champion on the same held-out lifetimes; print and record the decision."""
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from models.retraining import retrain

    if trigger not in ("manual", "schedule", "drift"):
        raise fail(f"--trigger must be manual, schedule or drift, not {trigger!r}")
    rul_params, risk_params, feature_params = _training_params(param, risk_param, windows)
    settings = load_settings()
    with database_url(settings) as url, connect(url) as conn:
        try:
            with conn.transaction():
                outcome = retrain(
                    conn,
                    kind,
                    SystemClock(),
                    trigger=trigger,  # type: ignore[arg-type]
                    rul_params=rul_params,
                    risk_params=risk_params,
                    feature_params=feature_params,
                )
        except (TypeError, ValueError) as exc:  # a bad --param name or value
            raise fail(f"bad --param: {exc}") from exc
        except FleetcareError as exc:
            raise fail(exc.detail) from exc
    d = outcome.decision
    typer.echo(f"{kind}: {d.decision}: {d.reason}")
    typer.echo(d.model_dump_json())
