"""``fleetcare evaluate``: run-to-failure vs preventive vs predictive on simulated fleets.
Heavy imports happen inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetcare.commandline import fail


def evaluate(
    seed: Annotated[
        int, typer.Option(min=0, max=10**9, help="same seed, same fleets, same figures")
    ] = 1,
    assets: Annotated[
        int, typer.Option(help="assets per kind (whole trucks/buildings/aircraft)")
    ] = 48,
    days: Annotated[float, typer.Option(help="simulated days per strategy")] = 365.0,
    kinds: Annotated[str, typer.Option(help="comma-separated kinds")] = "tire,elevator,engine",
    coverage: Annotated[
        float | None,
        typer.Option(
            help="interval coverage whose low end gives the due date, every component "
            "(default: the rule's choice on the validation fleets 101-104, evaluation.choice, "
            "which the kind's model.coverage setting equals)"
        ),
    ] = None,
    sweep: Annotated[
        str,
        typer.Option(
            help="coverages run on a validation fleet and reported, e.g. 0.8,0.85,0.9,0.95 "
            "(evaluation.run.SWEEP_COVERAGES); '' for none"
        ),
    ] = "",
    choose: Annotated[
        bool,
        typer.Option(
            "--choose",
            help="score at the coverage the rule (evaluation.choice) chooses per component on "
            "this run's validation sweep instead of on the stored validation fleets 101-104",
        ),
    ] = False,
    chart: Annotated[Path, typer.Option(help="where to write the PNG chart")] = Path(
        ".fleetcare/evaluate.png"
    ),
    jobs: Annotated[int, typer.Option(help="processes for model fitting")] = 2,
    training_lives: Annotated[
        int | None, typer.Option(help="lives the training fleet records (default: per kind)")
    ] = None,
    mobile_only: Annotated[
        bool,
        typer.Option(
            "--mobile-only",
            help="only the mobile kinds' figures: parts at the station before the carrier",
        ),
    ] = False,
    carriers: Annotated[
        int | None,
        typer.Option(
            "--carriers",
            "--tails",
            help="carriers of each mobile kind's evaluation (default: 30 aircraft, 20 trucks)",
        ),
    ] = None,
    evaluation_sweep: Annotated[
        bool,
        typer.Option(
            "--evaluation-sweep",
            help="also run the evaluation fleet at every coverage of the sweep "
            "(the held-out trade-off; reported, never used to choose)",
        ),
    ] = False,
    joined_mid_life: Annotated[
        bool,
        typer.Option(
            "--joined-mid-life",
            help="the evaluation fleet joins fleetcare now, its parts already in use: their "
            "readings before the first day are not seen (usage counters still count since "
            "fitted), as a real fleet connected mid-life",
        ),
    ] = False,
) -> None:
    """Run-to-failure vs preventive vs predictive on a simulated fleet; table, chart, JSON."""
    import json
    import time

    from evaluation import report
    from evaluation import run as ev
    from kinds.loader import builtin_kinds

    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
    known = builtin_kinds()
    unknown = [k for k in chosen if k not in known]
    if not chosen or unknown:
        raise fail(f"--kinds: unknown kind(s) {', '.join(unknown) or '(none)'}; known: "
                   f"{', '.join(known)}")  # fmt: skip
    if assets < 1 or assets > 2_000:
        raise fail("--assets must be between 1 and 2000")
    if not 1 <= days <= 3_650:
        raise fail("--days must be between 1 and 3650")
    if jobs < 1:
        raise fail("--jobs must be at least 1")
    if training_lives is not None and training_lives < 2:
        raise fail("--training-lives must be at least 2")
    try:
        coverages = tuple(float(c) for c in sweep.split(",") if c.strip())
    except ValueError as exc:
        raise fail(f"--sweep: not a list of numbers: {sweep!r}") from exc
    for c in (*coverages, *([] if coverage is None else [coverage])):
        if not 0 < c < 1:
            raise fail(f"coverage must be between 0 and 1 (exclusive), got {c}")
    if choose and not coverages:
        raise fail("--choose needs a validation sweep (--sweep 0.8,0.85,0.9,0.95)")
    if choose and coverage is not None:
        raise fail("--choose and --coverage both set the coverage: give one")
    if chart.exists() and chart.is_dir():
        raise fail(f"--chart {chart} is a directory")
    if carriers is not None and not 1 <= carriers <= 500:
        raise fail("--carriers must be between 1 and 500")
    mobile_kinds = [k for k in chosen if known[k].mobile]
    if mobile_only and not mobile_kinds:
        raise fail(f"--mobile-only: none of {', '.join(chosen)} is a mobile kind (mobile: true)")
    config = ev.EvaluationConfig(
        seed=seed, assets=assets, days=days, kinds=chosen, coverage=coverage,
        sweep=tuple(sorted(set(coverages))), choose=choose, jobs=jobs,
        training_lives=training_lives, evaluation_sweep=evaluation_sweep,
        joined_mid_life=joined_mid_life,
    )  # fmt: skip
    started = time.monotonic()

    def say(msg: str) -> None:
        typer.echo(f"[{time.monotonic() - started:6.1f}s] {msg}", err=True)

    # the mobile evaluation scores with the wear model the kind's predictive strategy trains
    prepared: dict[str, ev.KindSetup] = {}
    if mobile_kinds:
        from evaluation.mobile import evaluate_mobile, format_mobile

        mobile = {}
        for kind in mobile_kinds:
            setup = prepared[kind] = ev.prepare_kind(kind, config, say)
            say(f"{kind}: mobile evaluation (carriers on their itineraries)")
            mobile[kind] = evaluate_mobile(
                kind, setup.model, setup.intervals, seed=seed, carriers=carriers,
                days=min(int(days), 365),
            )  # fmt: skip
            typer.echo(format_mobile(mobile[kind]))
        typer.echo(json.dumps({"mobile": mobile}, sort_keys=True))
        if mobile_only:
            return
    figures = ev.evaluate(config, progress=say, prepared=prepared)
    typer.echo(report.format_table(figures))
    try:
        chart.parent.mkdir(parents=True, exist_ok=True)
        report.write_chart(figures, chart)
    except OSError as exc:
        raise fail(f"cannot write the chart to {chart}: {exc}") from exc
    typer.echo(f"chart: {chart}")
    typer.echo(json.dumps(figures, sort_keys=True))
