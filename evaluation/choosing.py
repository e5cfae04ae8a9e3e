"""``python -m evaluation.choosing --kind K --seed S``: run one validation fleet's sweep (the
steps of ``fleetcare evaluate --seed S --sweep ...`` without the evaluation fleet) and store
it where :mod:`evaluation.choice` reads it; then print the choice on the stored fleets."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from evaluation.choice import CHOICE_COVERAGES, stored_choice, stored_path
from evaluation.run import EvaluationConfig, Progress, prepare_kind, validation_sweep


def validate(
    kind: str,
    seed: int,
    coverages: Sequence[float] = CHOICE_COVERAGES,
    jobs: int = 1,
    say: Progress | None = None,
) -> dict[str, Any]:
    """One validation fleet's sweep, as ``fleetcare evaluate --seed SEED --sweep ...`` runs
    it (the default fleet size and year), without the evaluation fleet."""
    from threadpoolctl import threadpool_limits

    config = EvaluationConfig(seed=seed, kinds=(kind,), sweep=tuple(coverages), jobs=jobs)
    said = say or (lambda _msg: None)
    with threadpool_limits(limits=config.threads):
        setup = prepare_kind(kind, config, said)
        sweep = validation_sweep(kind, config, setup.intervals, setup.model, said)
    return {
        "kind": kind,
        "seed": seed,
        "assets": config.assets,
        "days": config.days,
        "coverages": list(coverages),
        "validation_sweep": sweep,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.choosing",
        description="run one validation fleet's sweep and store it; or print the choice",
    )
    parser.add_argument("--kind", required=True)
    parser.add_argument("--seed", type=int, help="run and store this validation seed")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.seed is not None:

        def say(msg: str) -> None:
            print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

        result = validate(args.kind, args.seed, jobs=args.jobs, say=say)
        path = stored_path(args.kind, args.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"stored {path}", file=sys.stderr)
    print(json.dumps(stored_choice(args.kind), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
