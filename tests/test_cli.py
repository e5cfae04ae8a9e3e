"""The command line: help, migrate --status, keys create, and bad arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from fleet import service as fleet
from fleetcare.db import connect

runner = CliRunner()


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    return db_url


@pytest.mark.parametrize("command", [[], ["migrate"], ["api"], ["up"], ["keys", "create"]])
def test_every_command_explains_itself(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_migrate_status_shows_storage_and_files(env: str) -> None:
    result = runner.invoke(app, ["migrate", "--status"])
    assert result.exit_code == 0, result.output
    assert "storage path: postgres" in result.output or "timescaledb" in result.output
    assert "applied  0001_core.sql" in result.output
    assert result.output.strip().endswith("current")
    again = runner.invoke(app, ["migrate"])
    assert again.exit_code == 0 and "applied 0 migration(s)" in again.output


def test_keys_create_prints_a_working_key_once(env: str) -> None:
    with connect(env) as conn:
        fleet.ensure_customer(conn, "acme", "ACME")
    result = runner.invoke(app, ["keys", "create", "--customer", "acme"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[0]
    with connect(env) as conn:
        principal = fleet.authenticate(conn, key)
        stored = conn.execute(
            "SELECT key_hash FROM api_keys WHERE id = %s", (principal.key_id,)
        ).fetchone()
    assert principal.role == "customer"
    assert stored is not None and key.encode() not in bytes(stored[0])


@pytest.mark.parametrize(
    "args, message",
    [
        (["keys", "create"], "either --customer"),
        (["keys", "create", "--customer", "nobody"], "no live customer"),
        (["keys", "create", "--customer", "acme", "--operator"], "either --customer"),
        (["keys", "create", "--customer", "acme", "--role", "king"], "--role"),
        (["migrate", "--storage", "mongodb"], "--storage"),
    ],
)
def test_bad_arguments_are_one_line_errors(env: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETCARE_API_PORT", "not-a-port")
    result = runner.invoke(app, ["migrate", "--status"])
    assert result.exit_code == 2
    assert "bad configuration" in result.output and "api_port" in result.output


def test_billing_close_refuses_the_running_month(env: str) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    result = runner.invoke(app, ["billing", "close", "--period", month])
    assert result.exit_code == 2, result.output
    assert "has not ended" in result.output
    result = runner.invoke(app, ["billing", "close", "--period", month, "--open-month"])
    assert result.exit_code == 0, result.output


def test_up_fleet_of_a_kind_defined_from_a_file(
    env: str, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up --fleet KIND=COUNT`: bad items and unknown kinds are one-line errors before
    anything starts; the simulate arguments it runs register a generic fleet of the kind."""
    from cli.up import own_fleet_args, parse_fleets
    from fleetcare.services import free_port

    monkeypatch.setenv("FLEETCARE_MQTT_URL", mqtt_url)
    monkeypatch.setenv("FLEETCARE_DEMO", "false")
    monkeypatch.setenv("FLEETCARE_API_PORT", str(free_port()))  # 8000 may be taken here
    for bad in ("pump", "pump=0", "pump=x", "=3"):
        result = runner.invoke(app, ["up", "--fleet", bad])
        assert result.exit_code == 2 and "--fleet takes KIND=COUNT" in result.output, bad
    result = runner.invoke(app, ["up", "--api-only", "--fleet", "pump=2"])
    assert result.exit_code == 2 and "not with --api-only" in result.output
    result = runner.invoke(app, ["up", "--fleet", "boat=3"])
    assert result.exit_code == 2 and "unknown asset kind 'boat'" in result.output
    applied = runner.invoke(
        app, ["kinds", "apply", str(Path(__file__).parent / "fixtures" / "kinds" / "pump.yaml")]
    )
    assert applied.exit_code == 0, applied.output
    fleets = parse_fleets(["pump=2", "pump=1"])
    assert fleets == {"pump": 3}
    registered = runner.invoke(app, ["simulate", *own_fleet_args(fleets), "--duration", "0"])
    assert registered.exit_code == 0, registered.output
    with connect(env) as conn:
        rows = conn.execute(
            "SELECT a.kind, count(*) FROM assets a JOIN customers c ON c.id = a.customer_id"
            " WHERE c.slug = 'own-fleet' GROUP BY a.kind"
        ).fetchall()
    # (the generic simulator groups assets per site, rounding up)
    assert len(rows) == 1 and rows[0][0] == "pump" and rows[0][1] >= 3


def test_first_run_plan_trains_every_kind_up_simulates() -> None:
    """`up` trains a model for the kinds of --fleet as for the built-in ones, simulating the
    training history only of kinds that have none."""
    from cli.demo import DEMO_KINDS
    from cli.up import FirstRunPlan, first_run_plan

    assert first_run_plan([], DEMO_KINDS, ["pump"], set()) == FirstRunPlan(
        train=["tire", "elevator", "engine", "pump"], built_in_history=True, own_history=["pump"]
    )
    # built-in models active, a --fleet kind without one: its history, then its training
    assert first_run_plan(DEMO_KINDS, DEMO_KINDS, ["pump", "fan"], {"tire", "fan"}) == (
        FirstRunPlan(train=["fan", "pump"], built_in_history=False, own_history=["pump"])
    )
    # a history written by an earlier run is not written again; active models are kept
    assert first_run_plan(["tire", "pump"], DEMO_KINDS, ["pump"], {"tire", "engine"}) == (
        FirstRunPlan(train=["elevator", "engine"], built_in_history=False, own_history=[])
    )


def test_demo_fleets_are_data_and_map_onto_simulate_options() -> None:
    """The demo scenario is a file (no kind named in `cli`): each fleet's kinds go to the
    simulator's own physics where it has one (every other physics kind at 0) and to the
    generic process otherwise; mobile kinds get their carriers' operations desks."""
    from cli.demo import DEMO_FLEETS, DEMO_KINDS, DEMO_PLANS
    from simulators.desks import desks_for
    from simulators.schemas import PHYSICS_KINDS, simulate_args

    assert set(DEMO_KINDS) <= set(PHYSICS_KINDS) and DEMO_FLEETS and DEMO_PLANS
    assert simulate_args({"tire": 12, "pump": 3}) == [
        "--tires", "12", "--elevators", "0", "--engines", "0", "--kind", "pump=3",
    ]  # fmt: skip
    assert simulate_args({}) == ["--tires", "0", "--elevators", "0", "--engines", "0"]
    assert [d.kind for d in desks_for({"engine": 4, "tire": 12})] == ["engine", "tire"]
    assert desks_for({"elevator": 6, "pump": 2}) == []


@pytest.mark.timeout(900)  # a history and a training: minutes on a loaded machine
def test_up_trains_a_model_for_a_fleet_kind_from_its_simulated_history(
    env: str, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands `up --fleet pump=N` runs on a first run: the pump's training history by
    the generic process, then `models train --kind pump` as for the built-in kinds; the pump
    then has an active model, so its assets get predictions."""
    from cli.up import FIRST_RUN_TRAIN_ARGS, own_history_args
    from models.repository import active_version_ids

    monkeypatch.setenv("FLEETCARE_MQTT_URL", mqtt_url)
    applied = runner.invoke(
        app, ["kinds", "apply", str(Path(__file__).parent / "fixtures" / "kinds" / "pump.yaml")]
    )
    assert applied.exit_code == 0, applied.output
    history = runner.invoke(app, ["simulate", *own_history_args(["pump"], 8)])
    assert history.exit_code == 0, history.output
    assert "lives: pump" in history.output, history.output
    trained = runner.invoke(app, ["models", "train", "--kind", "pump", *FIRST_RUN_TRAIN_ARGS])
    assert trained.exit_code == 0, trained.output
    with connect(env) as conn:
        assert "pump" in active_version_ids(conn)


def test_up_says_at_once_that_its_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any service, migration, training or worker: not after minutes of set-up, with
    sign-in links to whatever else listens there."""
    import socket

    import fleetcare.services

    monkeypatch.setattr(fleetcare.services, "exit_on_sigterm", lambda: None)
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["up", "--api-only", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "--port N or FLEETCARE_API_PORT" in result.output
    assert "migration" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "logs").exists()  # nothing was started


@pytest.mark.parametrize(
    "command", [["migrate"], ["customers", "list"], ["up", "--api-only", "--port", "{port}"]]
)
@pytest.mark.parametrize(
    "url, said",
    [
        (
            "{server}/fleetcare_probe_no_such_database",
            'database "fleetcare_probe_no_such_database"',
        ),
        ("postgresql://postgres@127.0.0.1:1/none", "Connection refused"),
        ("not-a-url", 'missing "=" after "not-a-url"'),
    ],
)
def test_a_database_url_that_cannot_be_reached_is_a_one_line_error(
    command: list[str],
    url: str,
    said: str,
    server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A newcomer's FLEETCARE_DATABASE_URL naming a database not created yet (or a server that
    is down, or a typo) is told so in one line naming the variable, not with psycopg's
    traceback; `up` says it before starting a broker."""
    import fleetcare.services

    monkeypatch.setattr(fleetcare.services, "exit_on_sigterm", lambda: None)
    server = server_url.rsplit("/", 1)[0]
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", url.format(server=server))
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    import socket

    with socket.socket() as probe:  # a port free now, for up's check of its own port
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    result = runner.invoke(app, [a.format(port=port) for a in command])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert said in result.output and "FLEETCARE_DATABASE_URL" in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and said in lines[0], result.output
    assert not (tmp_path / "mosquitto").exists()  # up started no broker


@pytest.mark.parametrize(
    "args, option",
    [
        (["api", "--port", "99999"], "--port"),  # uvicorn served on 99999 mod 65536
        (["api", "--port", "-1"], "--port"),
        (["up", "--api-only", "--port", "99999"], "--port"),  # OverflowError from bind()
        (["ingest", "--metrics-port", "99999"], "--metrics-port"),
        (["ingest", "--batch-messages", "99999999999999999999"], "--batch-messages"),
        (["dispatch", "--poll", "inf"], "--poll"),  # OverflowError: timestamp out of range
        (["dispatch", "--poll", "nan"], "--poll"),  # ran, polling every nan s
        (["dispatch", "--batch", "99999999999999999999"], "--batch"),  # bigint out of range
        (["score", "--poll", "nan"], "--poll"),
        (["models", "drift", "tire", "--lookback-days", "1e12"], "--lookback-days"),
        (["models", "drift", "tire", "--lookback-days", "inf"], "--lookback-days"),
        (["models", "watch", "--lookback-days", "inf"], "--lookback-days"),
        (["models", "train", "tire", "--max-rul", "nan"], "--max-rul"),  # said '--param'
        (["models", "train", "tire", "--horizon", "inf"], "--horizon"),
        (["billing", "worker", "--interval", "nan"], "--interval"),
        (["billing", "worker", "--grace-days", "1e12"], "--grace-days"),
        (["billing", "worker", "--grace-days", "nan"], "--grace-days"),
        (["evaluate", "--seed", "-1"], "--seed"),  # a traceback from the fleet's generator
        (["models", "cmapss-cv", "--train", "x.txt", "--seed", "-1"], "--seed"),  # ValueError
        # beyond scikit-learn's random_state: InvalidParameterError after the first fit
        (["models", "cmapss-cv", "--train", "x.txt", "--seed", "99999999999999999999"], "--seed"),
        (["models", "cmapss-cv", "--train", "x.txt", "--truncations", "99999999999"], "--trunc"),
    ],
)
def test_numbers_out_of_an_options_range_are_usage_errors(
    args: list[str], option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each was a traceback, a wrong port served or a worker looping on nan; now the option's
    usage error (exit 2) before any service starts."""
    import fleetcare.services

    monkeypatch.setattr(fleetcare.services, "exit_on_sigterm", lambda: None)
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and option in result.output, result.output
    assert "Invalid value" in result.output, result.output


@pytest.mark.parametrize(
    "variable, value",
    [("FLEETCARE_API_PORT", "99999"), ("FLEETCARE_INGEST_METRICS_PORT", "70000")],
)
def test_a_port_setting_out_of_range_is_a_bad_configuration(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, ["migrate", "--status"])
    assert result.exit_code == 2
    assert "bad configuration" in result.output and "65535" in result.output, result.output
