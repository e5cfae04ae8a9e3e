"""``fleetcare models ...``: offline evaluation of the wear models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fleetcare.commandline import fail
from models.cmapss import CMAPSSDataError, crossvalidate_cmapss, evaluate_cmapss

app = typer.Typer(help="Wear models: offline evaluation.", no_args_is_help=True)


def _emit(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result, sort_keys=False))


@app.command("cmapss")
def cmapss_command(
    train: Annotated[Path, typer.Option("--train", help="C-MAPSS training file (train_FD00x.txt)")],
    test: Annotated[Path, typer.Option("--test", help="C-MAPSS test file (test_FD00x.txt)")],
    rul: Annotated[Path, typer.Option("--rul", help="true RUL of the test units (RUL_FD00x.txt)")],
) -> None:
    """Train on --train, score each --test unit's last cycle against --rul; print one JSON line."""
    try:
        result = evaluate_cmapss(train, test, rul)
    except CMAPSSDataError as exc:
        raise fail(str(exc)) from None
    _emit(result)


@app.command("cmapss-cv")
def cmapss_cv_command(
    train: Annotated[Path, typer.Option("--train", help="C-MAPSS training file (train_FD00x.txt)")],
    folds: Annotated[int, typer.Option("--folds", min=2, help="folds of held-out units")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="seed of the folds and truncations")] = 0,
    truncations: Annotated[
        int, typer.Option("--truncations", min=1, help="random cuts per held-out unit")
    ] = 1,
) -> None:
    """Cross-validate on held-out training units cut at random cycles; print one JSON line."""
    try:
        result = crossvalidate_cmapss(train, folds=folds, seed=seed, truncations=truncations)
    except CMAPSSDataError as exc:
        raise fail(str(exc)) from None
    _emit(result)


# Training from the lifetimes recorded in the database (the registry side, models/commands.py).
from models.commands import train_command  # noqa: E402

app.command("train")(train_command)


if __name__ == "__main__":
    app()
