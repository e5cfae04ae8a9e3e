"""First run of `fleetcare up`: balanced training rows, and following parallel trainers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli.up import Supervisor, Training, follow_training, wait_for_training
from models.training import balanced_rows


def test_balanced_rows_gives_every_life_the_same_rows_in_order() -> None:
    lengths = [100, 10, 40, 7]  # contiguous lives 0..3; median length 25
    groups = np.repeat(np.arange(4.0), lengths)
    keep = balanced_rows(groups, max_rows=1_000)
    kept_groups, counts = np.unique(groups[keep], return_counts=True)
    assert kept_groups.tolist() == [0, 1, 2, 3]
    assert counts.tolist() == [25, 25, 25, 25]
    assert np.all(np.diff(keep) >= 0)  # rows stay in time order within each life
    first = keep[groups[keep] == 0]
    assert first[0] < 4 and first[-1] > 95  # the long life is thinned over its whole span
    short = keep[groups[keep] == 3]
    assert set(short.tolist()) == set(range(150, 157))  # the short life: every row, repeated


def test_balanced_rows_caps_the_total() -> None:
    groups = np.repeat(np.arange(10.0), 500)
    keep = balanced_rows(groups, max_rows=1_000)
    assert keep.shape[0] == 1_000
    assert np.unique(groups[keep], return_counts=True)[1].tolist() == [100] * 10
    assert balanced_rows(np.zeros(0)).shape == (0,)


def _fake_trainer(
    supervisor: Supervisor, kind: str, code: int, after: Path | None = None
) -> Training:
    """A child that logs like `models train`; with ``after``, it ends only once that log
    says its model was trained."""
    script = (
        "import pathlib, sys, time\n"
        f"print('train {kind}: step 1/7 reading lifetimes (0 s)', flush=True)\n"
        f"other = {str(after)!r} if {after is not None} else None\n"
        "while other and 'trained in' not in pathlib.Path(other).read_text():\n"
        "    time.sleep(0.05)\n"
        "time.sleep(0.6)\n"
        f"print('train {kind}: step 3/7 fitting {kind} (1 s)', flush=True)\n"
        "time.sleep(0.6)\n"
        f"print('model version 1 ({kind}) trained in 1.2 s (0.1 CPU s)') if {code} == 0 else 0\n"
        f"sys.exit({code})\n"
    )
    child = supervisor.start(f"train-{kind}", argv=[sys.executable, "-c", script])
    return Training(kind, child, time.monotonic())


def test_wait_for_training_prints_progress_lines_off_a_terminal(tmp_path: Path) -> None:
    supervisor = Supervisor(env={}, log_dir=tmp_path)
    trainings = [_fake_trainer(supervisor, "tire", 0), _fake_trainer(supervisor, "engine", 0)]
    lines: list[str] = []
    wait_for_training(
        supervisor, trainings, lines.append, interactive=False, every_s=0.3, poll_s=0.05
    )
    progress = [line for line in lines if line.startswith("fleetcare: training ")]
    assert progress, lines
    assert any("fitting tire" in line for line in progress), progress
    assert any(line.startswith("fleetcare: engine model trained in") for line in lines), lines
    assert supervisor.children == []  # trainers are not workers: the watcher never sees them


def test_wait_for_training_fails_with_the_log_of_the_failed_kind(tmp_path: Path) -> None:
    supervisor = Supervisor(env={}, log_dir=tmp_path)
    trainings = [_fake_trainer(supervisor, "elevator", 3)]
    with pytest.raises(RuntimeError, match=r"training elevator failed with exit code 3.*"
                       r"train-elevator\.log"):  # fmt: skip
        wait_for_training(supervisor, trainings, lambda _m: None, interactive=False, poll_s=0.05)
    supervisor.stop()


def test_follow_training_reports_while_the_caller_works_and_raises_on_wait(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(env={}, log_dir=tmp_path)
    trainings = [
        _fake_trainer(supervisor, "tire", 0),
        _fake_trainer(supervisor, "engine", 4, after=tmp_path / "train-tire.log"),
    ]
    lines: list[str] = []
    wait = follow_training(supervisor, trainings, lines.append, interactive=False, every_s=0.2)
    deadline = time.monotonic() + 60  # the caller starts other workers meanwhile
    while not any(line.startswith("fleetcare: tire model trained in") for line in lines):
        assert time.monotonic() < deadline, lines
        time.sleep(0.1)
    with pytest.raises(RuntimeError, match="training engine failed with exit code 4"):
        wait()
    supervisor.stop()
