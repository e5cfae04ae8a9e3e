"""``fleetcare kinds apply|list|show``: files in, the same definitions out; a bad file among
several applies none of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fleetcare.db import connect
from kinds import repository as kinds_repo
from kinds.commands import kinds_app
from kinds.loader import load_file
from kinds.schemas import KindDefinition

runner = CliRunner()
PUMP_FILE = Path(__file__).parent / "fixtures" / "kinds" / "pump.yaml"


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    return db_url


def test_apply_list_and_show(env: str, tmp_path: Path) -> None:
    applied = runner.invoke(kinds_app, ["apply", str(PUMP_FILE)])
    assert applied.exit_code == 0, applied.output
    assert "pump: created, version 1" in applied.output
    again = runner.invoke(kinds_app, ["apply", str(PUMP_FILE)])
    assert again.exit_code == 0 and "pump: unchanged (version 1)" in again.output

    listed = runner.invoke(kinds_app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {k["name"]: k for k in json.loads(listed.stdout)}
    assert set(by_name) == {"tire", "elevator", "engine", "pump"}
    assert by_name["pump"]["life_unit"] == "hours" and by_name["pump"]["metrics"] == 4
    table = runner.invoke(kinds_app, ["list"])
    assert "Centrifugal pump" in table.output

    shown = runner.invoke(kinds_app, ["show", "pump"])
    assert shown.exit_code == 0, shown.output
    header, _, body = shown.stdout.partition("\n")
    assert header.startswith("# version 1")
    assert KindDefinition.model_validate(json.loads(body)) == load_file(PUMP_FILE)
    # what show prints applies back unchanged
    (tmp_path / "shown.json").write_text(body)
    back = runner.invoke(kinds_app, ["apply", str(tmp_path / "shown.json")])
    assert "pump: unchanged" in back.output


def test_a_bad_file_among_several_applies_none(env: str, tmp_path: Path) -> None:
    doc = yaml.safe_load(PUMP_FILE.read_text())
    good = tmp_path / "gearbox.yaml"
    doc_good = {**doc, "name": "gearbox", "display_name": "Gearbox"}
    for c in doc_good["components"]:
        for p in c["parts"]:
            p["sku"] = "GBX-" + p["sku"]
    good.write_text(yaml.safe_dump(doc_good))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**doc, "metrics": doc["metrics"][:1] * 2}))
    result = runner.invoke(kinds_app, ["apply", str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: " in result.output and "defined twice" in result.output
    with connect(env) as conn:
        assert kinds_repo.find_kind(conn, "gearbox") is None


def test_a_refused_change_says_why_and_an_unknown_kind_is_named(env: str, tmp_path: Path) -> None:
    tire = yaml.safe_load(next(Path(p) for p in _builtin("tire")).read_text())
    with connect(env) as conn:
        customer = conn.execute(
            "INSERT INTO customers (slug, name) VALUES ('t', 'T') RETURNING id"
        ).fetchone()
        assert customer is not None
        conn.execute(
            "WITH a AS (INSERT INTO assets (customer_id, kind, ref) VALUES (%s, 'tire', 'T-1')"
            " RETURNING id) INSERT INTO asset_seen (asset_id, usage_counter) SELECT id, 10 FROM a",
            (customer[0],),
        )
        conn.commit()
    tire["life"]["unit"] = "miles"
    changed = tmp_path / "tire.yaml"
    changed.write_text(yaml.safe_dump(tire, allow_unicode=True))
    result = runner.invoke(kinds_app, ["apply", str(changed)])
    assert result.exit_code == 2
    assert "kind 'tire': change refused" in result.output and "life unit" in result.output
    missing = runner.invoke(kinds_app, ["show", "gearbox"])
    assert missing.exit_code == 2 and "unknown asset kind 'gearbox'" in missing.output


def _builtin(name: str) -> list[Path]:
    from kinds.loader import builtin_files

    return [p for p in builtin_files() if p.stem == name]
