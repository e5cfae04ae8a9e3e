"""``fleetcare models cmapss-score``: predictions (online export or offline) scored against an
RUL file the way an evaluator with the official test files would."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from models.cmapss import CMAPSSDataError, score_predictions


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scores_each_unit_against_its_line(tmp_path: Path) -> None:
    rul = tmp_path / "RUL_FD003.txt"
    rul.write_text("10 \r\n140\n\n30\n")  # trailing space, CRLF, a blank line: the real files'
    online = write(
        tmp_path / "online.jsonl",
        [  # the export's order is the database's; unit 2's truth is capped at 125
            {"external_id": "3", "rul": 35.0, "rul_low": 20.0, "rul_high": 40.0, "kind": "t"},
            {"external_id": "1", "rul": 4.0, "rul_low": 0.0, "rul_high": 9.0},
            {"external_id": "2", "rul": 120.0, "rul_low": 100.0, "rul_high": 125.0},
        ],
    )
    got = score_predictions(online, rul)
    assert (got["dataset"], got["units"]) == ("FD003", 3)
    assert got["rmse"] == pytest.approx(math.sqrt((6**2 + 20**2 + 5**2) / 3))
    assert got["rmse_capped125"] == pytest.approx(math.sqrt((6**2 + 5**2 + 5**2) / 3))
    assert got["phm08_score"] == pytest.approx(
        math.expm1(6 / 13) + math.expm1(20 / 13) + math.expm1(5 / 10)
    )
    assert got["interval_coverage"] == pytest.approx(2 / 3)  # unit 1: 10 is above [0, 9]
    offline = write(
        tmp_path / "offline.jsonl",
        [{"unit": u, "rul": r, "rul_low": r - 1, "rul_high": r + 1} for u, r in
         [(1, 4.0), (2, 120.0), (3, 35.0)]],
    )  # fmt: skip
    assert score_predictions(offline, rul)["rmse"] == pytest.approx(got["rmse"])


def test_a_unit_without_a_prediction_or_a_bad_line_is_named(tmp_path: Path) -> None:
    rul = tmp_path / "RUL_FD001.txt"
    rul.write_text("".join(f"{n}\n" for n in range(1, 13)))
    few = write(tmp_path / "few.jsonl", [{"unit": 1, "rul": 1, "rul_low": 0, "rul_high": 2}])
    with pytest.raises(CMAPSSDataError, match=r"no prediction for unit\(s\) 2, 3, .*11 and 1 more"):
        score_predictions(few, rul)
    extra = write(
        tmp_path / "extra.jsonl",
        [{"unit": u, "rul": 1, "rul_low": 0, "rul_high": 2} for u in range(1, 14)],
    )
    with pytest.raises(CMAPSSDataError, match=r"unit\(s\) 13 beyond the 12 lines"):
        score_predictions(extra, rul)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"unit": 1, "rul": 1, "rul_low": 0, "rul_high": 2}\n{"unit": 2, "rul": 1}\n')
    with pytest.raises(CMAPSSDataError, match=r"bad\.jsonl:2: not a unit's prediction: no field"):
        score_predictions(bad, rul)
    named = write(tmp_path / "named.jsonl", [{"external_id": "ESN-7", "rul": 1, "rul_low": 0,
                                              "rul_high": 2}])  # fmt: skip
    with pytest.raises(CMAPSSDataError, match=r"named\.jsonl:1: .*'ESN-7' is not a C-MAPSS unit"):
        score_predictions(named, rul)
    twice = write(
        tmp_path / "twice.jsonl", [{"unit": 1, "rul": 1, "rul_low": 0, "rul_high": 2}] * 2
    )
    with pytest.raises(CMAPSSDataError, match=r"twice\.jsonl:2: unit 1 predicted twice"):
        score_predictions(twice, rul)


def test_the_command_prints_one_json_line_or_a_one_line_error(tmp_path: Path) -> None:
    rul = tmp_path / "RUL_FD002.txt"
    rul.write_text("5\n")
    ok = write(tmp_path / "p.jsonl", [{"unit": 1, "rul": 7, "rul_low": 3, "rul_high": 9}])
    runner = CliRunner()
    done = runner.invoke(
        app, ["models", "cmapss-score", "--predictions", str(ok), "--rul", str(rul)]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["rmse"] == pytest.approx(2.0)
    missing = runner.invoke(
        app,
        ["models", "cmapss-score", "--predictions", str(tmp_path / "no.jsonl"), "--rul", str(rul)],
    )
    assert missing.exit_code == 2 and "no.jsonl: no such file" in missing.output
