"""``fleetcare models ...``: offline evaluation of the wear models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fleetcare.commandline import fail

app = typer.Typer(help="Wear models: offline evaluation.", no_args_is_help=True)


def _emit(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result, sort_keys=False))


@app.command("cmapss")
def cmapss_command(
    train: Annotated[Path, typer.Option("--train", help="C-MAPSS training file (train_FD00x.txt)")],
    test: Annotated[Path, typer.Option("--test", help="C-MAPSS test file (test_FD00x.txt)")],
    rul: Annotated[
        Path | None,
        typer.Option("--rul", help="true RUL of the test units (RUL_FD00x.txt); needed to score"),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions", help="write each test unit's RUL and interval here (JSON lines)"
        ),
    ] = None,
) -> None:
    """Train on --train, predict each --test unit's RUL at its last cycle; with --rul score it
    and print one JSON line; with --predictions write one JSON line per unit."""
    from models.cmapss import CMAPSSDataError, evaluate_cmapss  # sklearn: loaded only here

    if rul is None and predictions is None:
        raise fail("give --rul (to score) and/or --predictions (to write them)")
    try:
        result, units = evaluate_cmapss(train, test, rul)
    except CMAPSSDataError as exc:
        raise fail(str(exc)) from None
    if predictions is not None:
        try:
            with predictions.open("w") as out:
                for unit in units:
                    out.write(json.dumps(unit) + "\n")
        except OSError as exc:
            raise fail(f"{predictions}: {exc.strerror}") from None
    if rul is not None:
        _emit(result)


@app.command("cmapss-cv")
def cmapss_cv_command(
    train: Annotated[Path, typer.Option("--train", help="C-MAPSS training file (train_FD00x.txt)")],
    folds: Annotated[int, typer.Option("--folds", min=2, help="folds of held-out units")] = 5,
    # the seed goes to scikit-learn's random_state, a 32-bit unsigned integer
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=2**32 - 1, help="seed of the folds and truncations")
    ] = 0,
    truncations: Annotated[
        int, typer.Option("--truncations", min=1, max=1000, help="random cuts per held-out unit")
    ] = 1,
) -> None:
    """Cross-validate on held-out training units cut at random cycles; print one JSON line."""
    from models.cmapss import CMAPSSDataError, crossvalidate_cmapss  # sklearn: loaded only here

    try:
        result = crossvalidate_cmapss(train, folds=folds, seed=seed, truncations=truncations)
    except CMAPSSDataError as exc:
        raise fail(str(exc)) from None
    _emit(result)


@app.command("cmapss-score")
def cmapss_score_command(
    predictions: Annotated[
        Path,
        typer.Option(
            "--predictions",
            help="JSON lines, one per unit: `fleetcare predictions export --format jsonl` or "
            "`models cmapss --predictions`",
        ),
    ],
    rul: Annotated[
        Path,
        typer.Option("--rul", help="true RUL of the test units (RUL_FD00x.txt), unit k on line k"),
    ],
) -> None:
    """Score predicted RULs against an RUL file: RMSE and PHM08 score (raw and with the truth
    capped at 125), interval coverage; one JSON line."""
    from models.cmapss import CMAPSSDataError, score_predictions  # sklearn: loaded only here

    try:
        result = score_predictions(predictions, rul)
    except CMAPSSDataError as exc:
        raise fail(str(exc)) from None
    _emit(result)


# Training from the lifetimes recorded in the database (the registry side, models/commands.py).
from models.commands import retrain_command, train_command  # noqa: E402

app.command("train")(train_command)
app.command("retrain")(retrain_command)


if __name__ == "__main__":
    app()
