"""Asset kinds as data: definition files (good and bad), applying them to the database,
versioned and additive changes, refused breaking changes, and the API."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from psycopg import Connection

from fleetcare.db import connect
from fleetcare.errors import FleetcareError
from kinds import repository as kinds_repo
from kinds import service as kinds
from kinds.loader import KindFileError, builtin_files, load_file
from kinds.schemas import KindDefinition
from tests.conftest import Tenant

PUMP_FILE = Path(__file__).parent / "fixtures" / "kinds" / "pump.yaml"
Doc = dict[str, Any]


def pump_doc() -> Doc:
    doc: Doc = yaml.safe_load(PUMP_FILE.read_text())
    return doc


def write(tmp_path: Path, doc: Any, name: str = "kind.yaml") -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(doc))
    else:
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def kind_state(conn: Connection[Any], name: str) -> tuple[Any, ...]:
    row = kinds_repo.find_kind(conn, name)
    metrics = conn.execute(
        "SELECT name, unit, low, high, role FROM metrics WHERE kind = %s ORDER BY name", (name,)
    ).fetchall()
    parts = conn.execute(
        "SELECT sku, component, price_minor, retired_at IS NULL FROM parts WHERE kind = %s"
        " ORDER BY sku",
        (name,),
    ).fetchall()
    return (row.version if row else None, row.definition if row else None, metrics, parts)


# --- files ---------------------------------------------------------------------------------


def test_the_builtin_kinds_are_files_loaded_like_any_other() -> None:
    names = {load_file(p).name for p in builtin_files()}
    assert names == {"tire", "elevator", "engine"}
    tire = load_file(next(p for p in builtin_files() if p.stem == "tire"))
    assert tire.usage_metric == "odometer_km" and tire.life_unit == "km"
    assert [str(t) for t in tire.end_of_life.thresholds] == ["tread_depth_mm <= 1.6"]
    assert tire.components[0].parts[0].price_minor == 45_000
    # the costs the value reports and `fleetcare evaluate` count with are the file's
    assert tire.economics is not None and tire.economics.failure_downtime_h == 8
    assert all(load_file(p).economics is not None for p in builtin_files())


def test_economics_is_optional_and_a_customer_kind_can_state_it(tmp_path: Path) -> None:
    assert load_file(PUMP_FILE).economics is None
    doc = pump_doc()
    doc["economics"] = {**ECONOMICS, "note": "  a seized pump stops the line  "}
    econ = load_file(write(tmp_path, doc)).economics
    assert econ is not None and econ.labour_eur_per_hour == 95
    assert econ.note == "a seized pump stops the line"


def test_a_json_file_holds_the_same_definition(tmp_path: Path) -> None:
    assert load_file(write(tmp_path, pump_doc(), "pump.json")) == load_file(PUMP_FILE)


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        target: Any = doc
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return change


def _drop(path: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        target: Any = doc
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]

    return change


def _duplicate_metric(doc: Doc) -> None:
    doc["metrics"].append(copy.deepcopy(doc["metrics"][0]))


def _duplicate_component(doc: Doc) -> None:
    doc["components"].append(copy.deepcopy(doc["components"][0]))
    doc["components"][-1]["parts"][0]["sku"] = "OTHER-SKU"


ECONOMICS: Doc = {
    "per_group": 1, "step_h": 1, "order_lead_days": 3, "shipping_days": 1,
    "labour_eur_per_hour": 95, "failure_downtime_h": 20, "downtime_eur_per_hour": 400,
    "max_rul": 15000, "risk_threshold": 0.5, "history_max_days": 900,
}  # fmt: skip


BAD: dict[str, tuple[Callable[[Doc], None], str]] = {
    "unknown top-level field": (_set("colour", "red"), "colour: unknown field"),
    "unknown metric field": (_set("metrics.1.scale", 2), "metrics[1].scale: unknown field"),
    "unknown part field": (
        _set("components.0.parts.0.weight", 3),
        "components[0].parts[0].weight: unknown field",
    ),
    "missing field": (_drop("life"), "life: required field is missing"),
    "bounds reversed": (
        _set("metrics.0.low", 500),
        "metrics[0]: low (500) must be below high (100)",
    ),
    "bounds not finite": (_set("metrics.0.high", float("inf")), "metrics[0]"),
    "bounds not a number": (_set("metrics.0.low", "low"), "metrics[0].low"),
    "duplicate metric": (_duplicate_metric, "metric 'bearing_vibration_mm_s' is defined twice"),
    "bad metric name": (_set("metrics.0.name", "Bearing Vibration"), "metrics[0].name"),
    "unknown role": (_set("metrics.0.role", "decoration"), "metrics[0].role"),
    "usage counter not a metric": (
        _set("life.usage_counter", "odometer"),
        "life.usage_counter: 'odometer' is not one of the metrics",
    ),
    "usage counter without role usage": (
        _set("life.usage_counter", "seal_leak_ml_h"),
        "must be the one metric with role 'usage'",
    ),
    "usage counter not cumulative": (
        _set("metrics.3.cumulative", False),
        "a usage counter must be cumulative",
    ),
    "unknown metric in end of life": (
        _set("end_of_life.thresholds.0.metric", "tread_depth_mm"),
        "end_of_life.thresholds[0]: 'tread_depth_mm' is not one of the metrics",
    ),
    "end of life on a regime metric": (
        _set("end_of_life.thresholds.0.metric", "discharge_pressure_bar"),
        "end_of_life.thresholds[0]: 'discharge_pressure_bar' is not a condition metric",
    ),
    "end of life outside the bounds": (
        _set("end_of_life.thresholds.0.value", 500),
        "end_of_life.thresholds[0]: 500 is outside bearing_vibration_mm_s's bounds",
    ),
    "end of life without its component": (
        _drop("end_of_life.thresholds.1.component"),
        "end_of_life.thresholds[1]: say which component's life it ends",
    ),
    "threshold text unreadable": (
        _set("end_of_life.thresholds.0", "vibration is high"),
        "is not a threshold",
    ),
    "a life that never ends": (
        _set("end_of_life", {"thresholds": [], "failure_events": False}),
        "a life must end somehow",
    ),
    "duplicate component": (_duplicate_component, "component 'bearing' is defined twice"),
    "duplicate SKU": (
        _set("components.1.parts.0.sku", "PMP-BRG-6310"),
        "part SKU PMP-BRG-6310 appears more than once",
    ),
    "negative price": (_set("components.0.parts.0.price", -1), "components[0].parts[0].price"),
    "price below a cent": (
        _set("components.0.parts.0.price", "1.005"),
        "components[0].parts[0].price",
    ),
    "bad currency": (
        _set("components.0.parts.0.currency", "euro"),
        "components[0].parts[0].currency",
    ),
    "no components": (_set("components", []), "components"),
    "horizon beyond max RUL": (_set("model.horizon", 20_000), "must not exceed max_rul"),
    "non-positive max RUL": (_set("model.max_rul", 0), "model.max_rul"),
    "coverage of no component": (
        _set("model.coverage", {"impeller": 0.9}),
        "model.coverage: 'impeller' is not one of the components",
    ),
    "economics: negative labour rate": (
        _set("economics", {**ECONOMICS, "labour_eur_per_hour": -5}),
        "economics.labour_eur_per_hour: Input should be greater than or equal to 0",
    ),
    "economics: unknown field": (
        _set("economics", {**ECONOMICS, "fuel_eur": 3}),
        "economics.fuel_eur: unknown field",
    ),
    "economics: missing field": (
        _set("economics", {k: v for k, v in ECONOMICS.items() if k != "failure_downtime_h"}),
        "economics.failure_downtime_h: required field is missing",
    ),
    "economics: risk threshold not a share": (
        _set("economics", {**ECONOMICS, "risk_threshold": 1.5}),
        "economics.risk_threshold",
    ),
    "economics: not a number": (
        _set("economics", {**ECONOMICS, "downtime_eur_per_hour": "a lot"}),
        "economics.downtime_eur_per_hour",
    ),
    "coverage out of range": (
        _set("model.coverage", {"bearing": 1.0}),
        "coverage.bearing: must be between 0 and 1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_refused_naming_the_file_and_the_field(tmp_path: Path, case: str) -> None:
    change, expected = BAD[case]
    doc = pump_doc()
    change(doc)
    path = write(tmp_path, doc)
    with pytest.raises(KindFileError) as err:
        load_file(path)
    assert str(path) in err.value.detail
    assert expected in err.value.detail, err.value.detail


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "kind.yaml",
            "name: pump\nname: pump2\n",
            "line 2: invalid YAML: key 'name' is given twice",
        ),
        ("kind.yaml", "metrics: [unclosed\n", "invalid YAML"),
        ("kind.json", '{"name": "pump",', "invalid JSON"),
        ("kind.yaml", "- just\n- a list\n", "a kind definition is a mapping"),
        ("kind.toml", "name = 'pump'", "a kind file ends in .yaml, .yml or .json"),
    ],
)
def test_a_file_that_is_not_a_definition_is_refused(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(KindFileError) as err:
        load_file(path)
    assert err.value.detail.startswith(str(path)) and expected in err.value.detail


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KindFileError, match="cannot read"):
        load_file(tmp_path / "absent.yaml")


# --- the database --------------------------------------------------------------------------


def test_the_builtin_kinds_are_in_the_database_and_applying_them_again_changes_nothing(
    conn: Connection[Any],
) -> None:
    assert set(kinds_repo.kind_names(conn)) >= {"tire", "elevator", "engine"}
    before = [kind_state(conn, k) for k in ("tire", "elevator", "engine")]
    results = kinds.apply_builtin(conn)
    assert [r.changed for r in results] == [False, False, False]
    assert [kind_state(conn, k) for k in ("tire", "elevator", "engine")] == before
    engine = kinds.get_kind(conn, "engine")
    roles = dict(conn.execute("SELECT name, role FROM metrics WHERE kind = 'engine'").fetchall())
    assert [n for n, r in roles.items() if r == "regime"] == list(engine.regime_metrics)
    assert roles["flight_cycles"] == "usage"


def test_a_new_kind_applies_with_its_metrics_and_parts(conn: Connection[Any]) -> None:
    result = kinds.apply_file(conn, PUMP_FILE)
    assert (result.created, result.changed, result.version) == (True, True, 1)
    version, definition, metrics, parts = kind_state(conn, "pump")
    assert version == 1 and definition is not None
    assert [m[0] for m in metrics] == sorted(load_file(PUMP_FILE).metric_names)
    assert ("run_hours", "h", 0.0, 1_000_000.0, "usage") in metrics
    assert parts == [("PMP-BRG-6310", "bearing", 8550, True), ("PMP-SEAL-M7", "seal", 24000, True)]
    assert kinds.apply_file(conn, PUMP_FILE).changed is False
    assert kinds.get_kind(conn, "pump") == load_file(PUMP_FILE)
    with pytest.raises(FleetcareError, match="unknown asset kind 'gearbox'; known: elevator"):
        kinds.get_kind(conn, "gearbox")


def _pump_with_readings(conn: Connection[Any]) -> int:
    """A pump asset with readings of its vibration and run hours, and a recorded life."""
    kinds.apply_file(conn, PUMP_FILE)
    customer = conn.execute(
        "INSERT INTO customers (slug, name) VALUES ('plant', 'Plant') RETURNING id"
    ).fetchone()
    assert customer is not None
    asset = conn.execute(
        "INSERT INTO assets (customer_id, kind, ref) VALUES (%s, 'pump', 'P-1') RETURNING id",
        (customer[0],),
    ).fetchone()
    assert asset is not None
    conn.execute(
        """
        INSERT INTO telemetry (time, asset_id, metric_id, value)
        SELECT now(), %s, id, 1.0 FROM metrics
         WHERE kind = 'pump' AND name IN ('bearing_vibration_mm_s', 'run_hours')
        """,
        (asset[0],),
    )
    conn.execute(
        "INSERT INTO asset_lives (asset_id, component, started_at, ended_at, end_reason)"
        " VALUES (%s, 'seal', now() - interval '1 day', now(), 'failure')",
        (asset[0],),
    )
    return int(asset[0])


BREAKING: dict[str, tuple[Callable[[Doc], None], str]] = {
    "removing a metric with readings": (
        lambda d: d["metrics"].pop(0) and d["end_of_life"]["thresholds"].pop(0),
        "metric 'bearing_vibration_mm_s' has stored readings and cannot be removed",
    ),
    "changing the unit of a metric with readings": (
        _set("metrics.0.unit", "in/s"),
        "its unit cannot change from 'mm/s' to 'in/s'",
    ),
    "changing the role of a metric with readings": (
        lambda d: _set("metrics.0.role", "regime")(d) or d["end_of_life"]["thresholds"].pop(0),
        "its role cannot change from 'condition' to 'regime'",
    ),
    "changing the life unit": (
        _set("life.unit", "starts"),
        "the life unit and usage counter cannot change",
    ),
    "removing a component with a recorded life": (
        lambda d: d["components"].pop(1) and d["end_of_life"]["thresholds"].pop(1),
        "component 'seal' has orders, recorded lives or predictions",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_a_change_that_would_break_stored_data_is_refused_and_changes_nothing(
    conn: Connection[Any], case: str
) -> None:
    _pump_with_readings(conn)
    conn.commit()
    before = kind_state(conn, "pump")
    change, expected = BREAKING[case]
    doc = pump_doc()
    change(doc)
    with pytest.raises(kinds.BreakingChange) as err:
        kinds.apply_definition(conn, KindDefinition.model_validate(doc))
    conn.rollback()
    assert expected in err.value.detail and "nothing was applied" in err.value.detail
    assert err.value.status_code == 409
    assert kind_state(conn, "pump") == before


def test_an_additive_change_makes_a_new_version_and_keeps_the_readings(
    conn: Connection[Any],
) -> None:
    asset_id = _pump_with_readings(conn)
    doc = pump_doc()
    doc["metrics"].insert(2, {"name": "motor_temp_c", "unit": "°C", "low": -40, "high": 200})
    doc["metrics"][0]["high"] = 150  # wider bounds
    doc["metrics"][1]["unit"] = "l/h"  # no readings of the seal leak yet: still free
    doc["components"][0]["parts"].append({"sku": "PMP-BRG-6310-C3", "name": "C3", "price": 99})
    doc["model"]["horizon"] = 2500
    doc["life"]["typical_per_day"] = 16  # the dashboard's estimate until a rate is measured
    result = kinds.apply_definition(conn, KindDefinition.model_validate(doc), source="test")
    assert (result.created, result.changed, result.version) == (False, True, 2)
    joined = "; ".join(result.changes)
    assert "added metric 'motor_temp_c'" in joined
    assert "bounds [0, 100] → [0, 150]" in joined
    assert "metric 'seal_leak_ml_h': unit 'ml/h' → 'l/h'" in joined
    assert "changed model" in joined
    assert "life.typical_per_day none → 16" in joined
    readings = conn.execute(
        "SELECT count(*) FROM telemetry WHERE asset_id = %s", (asset_id,)
    ).fetchone()
    assert readings == (2,)
    assert [v for v, *_ in kinds_repo.kind_versions(conn, "pump")] == [1, 2]
    assert kinds.get_kind(conn, "pump").model.horizon == 2500
    # a part dropped from the definition is retired, not deleted (orders may name it)
    doc["components"][0]["parts"].pop()
    assert kinds.apply_definition(conn, KindDefinition.model_validate(doc)).version == 3
    assert ("PMP-BRG-6310-C3", "bearing", 9900, False) in kind_state(conn, "pump")[3]


def test_a_metric_without_readings_can_be_removed(conn: Connection[Any]) -> None:
    _pump_with_readings(conn)
    doc = pump_doc()
    doc["metrics"].pop(2)  # discharge pressure: never measured
    result = kinds.apply_definition(conn, KindDefinition.model_validate(doc))
    assert "removed metric 'discharge_pressure_bar'" in result.changes
    names = {m[0] for m in kind_state(conn, "pump")[2]}
    assert "discharge_pressure_bar" not in names


def test_a_part_of_another_kind_is_refused(conn: Connection[Any]) -> None:
    doc = pump_doc()
    doc["components"][0]["parts"][0]["sku"] = "TIRE-315-80R22.5"
    with pytest.raises(kinds.BreakingChange) as err:
        kinds.apply_definition(conn, KindDefinition.model_validate(doc))
    assert "'TIRE-315-80R22.5' is already a part of kind 'tire'" in err.value.detail


# --- the API -------------------------------------------------------------------------------


def test_kinds_over_the_api_round_trip(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Callable[..., Tenant]
) -> None:
    doc = pump_doc()
    created = client.post("/v1/kinds", json=doc, headers=operator_headers)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["created"] is True
    again = client.post("/v1/kinds", json=doc, headers=operator_headers)
    assert again.status_code == 200 and again.json()["changed"] is False

    tenant = make_tenant()
    listed = client.get("/v1/kinds", headers=tenant.headers)
    assert listed.status_code == 200
    assert {k["name"] for k in listed.json()} >= {"tire", "elevator", "engine", "pump"}
    one = client.get("/v1/kinds/pump", headers=tenant.headers)
    assert one.status_code == 200
    assert KindDefinition.model_validate(one.json()["definition"]) == load_file(PUMP_FILE)
    # what GET returns can be posted back unchanged
    back = client.post("/v1/kinds", json=one.json()["definition"], headers=operator_headers)
    assert back.json()["changed"] is False


def test_only_the_operator_writes_kinds_and_everyone_authenticated_reads(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    refused = client.post("/v1/kinds", json=pump_doc(), headers=tenant.headers)
    assert refused.status_code == 403
    assert client.get("/v1/kinds/pump", headers=operator_headers).status_code == 404
    assert client.get("/v1/kinds").status_code == 401
    assert client.get("/v1/kinds/tire").status_code == 401
    assert client.get("/v1/kinds/tire", headers=tenant.headers).json()["version"] == 1


def test_a_bad_or_breaking_definition_over_the_api_is_a_clear_error(
    client: TestClient, operator_headers: dict[str, str]
) -> None:
    doc = pump_doc()
    doc["end_of_life"]["thresholds"][0]["metric"] = "nope"
    bad = client.post("/v1/kinds", json=doc, headers=operator_headers)
    assert bad.status_code == 422
    assert "'nope' is not one of the metrics" in bad.json()["detail"]
    doc = pump_doc()
    doc["metrics"][0]["colour"] = "red"
    bad = client.post("/v1/kinds", json=doc, headers=operator_headers)
    assert bad.status_code == 422 and "metrics.0.colour" in bad.json()["detail"]
    tire = client.get("/v1/kinds/tire", headers=operator_headers).json()["definition"]
    tire["life"]["unit"] = "miles"
    assert client.post("/v1/kinds", json=tire, headers=operator_headers).status_code == 200
    assert client.get("/v1/kinds/bad name", headers=operator_headers).status_code == 422


def test_an_asset_or_a_plan_of_an_unknown_kind_is_refused_and_a_new_kind_is_accepted(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    asset = {"kind": "pump", "ref": "P-1"}
    refused = client.post("/v1/assets", json=asset, headers=tenant.headers)
    assert refused.status_code == 422
    assert "unknown asset kind 'pump'; known: elevator, engine, tire" in refused.json()["detail"]
    plan = {
        "code": "pump-care",
        "name": "Pump care",
        "kinds": ["tire", "pump"],
        "fee_per_asset_month_minor": 100,
    }
    refused = client.post("/v1/plans", json=plan, headers=operator_headers)
    assert refused.status_code == 422
    assert "kinds[1]: unknown asset kind 'pump'" in refused.json()["detail"]
    client.post("/v1/kinds", json=pump_doc(), headers=operator_headers)
    assert client.post("/v1/assets", json=asset, headers=tenant.headers).status_code == 201
    assert client.post("/v1/plans", json=plan, headers=operator_headers).status_code == 201


def test_migrations_seed_no_kind_and_an_amended_migration_stays_current(
    db_url: str, template_db: str
) -> None:
    from fleetcare import migrate
    from tests.fixtures.services import SERVER_URL, create_database, drop_database, unique_name

    name = unique_name("fc_bare")
    bare = create_database(SERVER_URL, name)
    try:
        migrate.apply_migrations(bare)
        with connect(bare) as c:
            # nothing names a kind before the kind files are applied: no plans, no parts
            assert c.execute("SELECT count(*) FROM plans").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM parts").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM asset_kinds").fetchone() == (0,)
    finally:
        drop_database(SERVER_URL, name)
    # a database that applied 0005 with its old seed rows is current, not "edited"
    (old,) = migrate.AMENDED["0005_maintenance.sql"]
    with connect(db_url) as c:
        c.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE name = '0005_maintenance.sql'",
            (old,),
        )
        c.commit()
    assert migrate.status(db_url).current
    assert migrate.apply_migrations(db_url)[1] == []
    with connect(db_url) as c:
        c.execute("UPDATE schema_migrations SET checksum = 'x' WHERE name = '0005_maintenance.sql'")
        c.commit()
    assert migrate.status(db_url).edited == ["0005_maintenance.sql"]
