"""``fleetcare simulate``: a simulated fleet registered through the product, publishing over
MQTT with each device's own credentials. Heavy imports happen inside the command."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetcare.commandline import fail, load_settings

if TYPE_CHECKING:
    from simulators.worker import RunStats


def _report(stats: RunStats) -> None:
    typer.echo(
        f"simulate: {stats.readings} readings in {stats.payloads} payloads, "
        f"{stats.life_ends} lives ended, {stats.offline_periods} offline periods"
    )


def simulate(
    tires: Annotated[int, typer.Option(help="tires (6 per truck, rounded up)")] = 24,
    elevators: Annotated[int, typer.Option(help="elevators (3 per building, rounded up)")] = 9,
    engines: Annotated[int, typer.Option(help="engines (2 per aircraft, rounded up)")] = 4,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help="NAME=COUNT: assets of another defined kind, simulated by the generic"
            " degradation process from its definition (repeatable)",
        ),
    ] = None,
    customer: Annotated[
        str, typer.Option(help="customer slug (created when missing)")
    ] = "sim-fleet",
    sparkplug: Annotated[
        bool,
        typer.Option(
            help="the --kind fleets' gateways are Sparkplug B edge nodes (group: the customer"
            " slug) that store and forward while their primary host is away",
        ),
    ] = False,
    primary_host: Annotated[
        str | None,
        typer.Option(
            help="--sparkplug: the primary host id the edge nodes wait for (default: "
            "FLEETCARE_SPARKPLUG_HOST_ID, else the ingestor's client id)",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="same seed, same fleet and telemetry")] = 7,
    speedup: Annotated[
        float, typer.Option(help="simulated seconds per real second (wear compression)")
    ] = 20_000.0,
    duration: Annotated[
        float | None,
        typer.Option(help="seconds to run live; 0: none (history only); default: until Ctrl-C"),
    ] = None,
    tick: Annotated[float, typer.Option(help="real seconds between readings")] = 1.0,
    replay: Annotated[
        Path | None, typer.Option(help="C-MAPSS train_FD00N.txt: engines replay its units")
    ] = None,
    history: Annotated[
        int, typer.Option(help="first write N complete lifetimes per kind as past telemetry")
    ] = 0,
    malformed_rate: Annotated[
        float, typer.Option(help="share of payloads followed by a malformed one (0..1)")
    ] = 0.0,
    faults: Annotated[bool, typer.Option(help="sensor faults: stuck, spikes, dropouts")] = True,
    offline: Annotated[bool, typer.Option(help="gateways go offline and flush a backlog")] = True,
    warmup: Annotated[bool, typer.Option(help="start with assets of mixed ages")] = True,
    technician: Annotated[
        bool, typer.Option(help="a technician completes due orders whose parts are on site")
    ] = False,
    api_url: Annotated[
        str | None,
        typer.Option(
            envvar="FLEETCARE_API_URL",
            help="the API the technician and the failure reports use "
            "(default: this machine's, from FLEETCARE_API_HOST/PORT)",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="FLEETCARE_API_KEY",
            help="a technician key of the customer: live failures are reported through the "
            "API and --technician works orders with it; without one, failures stay in the "
            "simulator's ground truth",
        ),
    ] = None,
) -> None:
    """Simulate a fleet of tires, elevators and engines that wear out, over MQTT."""
    import pydantic

    from fleetcare import migrate
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from fleetcare.errors import FleetcareError
    from fleetcare.services import exit_on_sigterm, redact, running_services
    from kinds.service import get_kind
    from simulators import service
    from simulators.api_client import ProductAPI, local_api_url
    from simulators.failures import FailureReporter
    from simulators.fleet import Fleet
    from simulators.history import history_engines, write_history
    from simulators.replay import load_cmapss
    from simulators.schemas import FleetSpec
    from simulators.technician import ProductOrderSource, SimTechnician
    from simulators.worker import DatabaseTruthSink, FleetRunner

    if duration is not None and duration < 0:
        raise fail("--duration is 0 or more seconds")
    if history < 0 or history > 10_000:
        raise fail("--history is between 0 and 10000 lifetimes per kind")
    other: dict[str, int] = {}
    for item in kind or []:
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise fail(f"--kind takes NAME=COUNT, e.g. pump=8; got {item!r}")
        other[name.strip()] = int(count)
    if sparkplug and not any(other.values()):
        raise fail("--sparkplug runs the --kind fleets' gateways as edge nodes: give --kind")
    if technician and not api_key:
        raise fail("--technician needs --api-key (a technician key of the customer)")
    try:
        spec = FleetSpec(
            customer=customer, tires=tires, elevators=elevators, engines=engines, other=other,
            replay=replay, seed=seed, speedup=speedup, duration_s=duration or None, tick_s=tick,
            faults=faults, offline=offline, malformed_rate=malformed_rate, warmup=warmup,
        )  # fmt: skip
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise fail(f"--{where.replace('_', '-')}: {first['msg']}") from exc
    if not (spec.tires or spec.elevators or spec.engines or any(spec.other.values())):
        raise fail("nothing to simulate: give --tires, --elevators, --engines or --kind")
    units = history_units = None
    if spec.replay is not None:
        try:
            units = load_cmapss(spec.replay)
        except (OSError, ValueError) as exc:
            raise fail(f"--replay {spec.replay}: {exc}") from exc
        # history and the live fleet replay different units: no unit is both trained on
        # and watched live
        held = history_engines(history) if history else 0
        if held >= len(units):
            raise fail(
                f"--replay {spec.replay.name} has {len(units)} units: not enough for "
                f"{held} engines of history and a live fleet"
            )
        history_units, units = units[:held] or None, units[held:]
    settings = load_settings()
    spb = None
    if sparkplug:
        from simulators.sparkplug_fleet import SparkplugSetup

        host = primary_host or settings.sparkplug_host_id or settings.ingest_client_id
        if not host or any(c in "/+#" or c.isspace() for c in host):
            raise fail(f"--primary-host {host!r}: one MQTT topic level (no '/', '+', '#')")
        spb = SparkplugSetup(spec.customer, host, frozenset(spec.other))
    exit_on_sigterm()
    stop = threading.Event()
    try:
        with running_services(settings, check_database=True) as services:
            state = migrate.status(services.database_url)
            if not state.current:
                raise fail("the database is not migrated: run `fleetcare migrate` first")
            with connect(services.database_url) as conn:
                definitions = {k: get_kind(conn, k) for k in spec.other}
            fleet = Fleet(spec, cmapss_units=units, definitions=definitions)
            fleet.start(SystemClock().now())
            with connect(services.database_url) as conn:
                with conn.transaction():
                    registration = service.register_fleet(
                        conn, fleet, service.load_secrets(settings.data_dir)
                    )
                    secrets_file = service.save_secrets(settings.data_dir, registration.secrets)
                    if spb is not None:
                        service.apply_sparkplug_profile(conn, fleet, spb)
                if history:
                    typer.echo(f"simulate: writing {history} lifetimes per kind of history ...")
                    summary = write_history(
                        conn,
                        spec,
                        history,
                        settings.topic_root,
                        settings.data_dir,
                        cmapss_units=history_units,
                        definitions=definitions,
                    )
                    typer.echo(f"simulate: history {summary.describe()}")
            typer.echo(
                f"simulate: customer {spec.customer} (id {registration.customer_id}): "
                f"{len(fleet.assets)} assets, {len(fleet.devices)} devices; "
                f"secrets in {secrets_file}"
            )
            if duration == 0:
                return
            typer.echo(
                f"simulate: publishing to {redact(services.mqtt_url)} on "
                f"{settings.topic_root}/+/telemetry, speed-up {spec.speedup:g}x; Ctrl-C stops"
            )
            if spb is not None:
                typer.echo(
                    f"simulate: {', '.join(sorted(spb.kinds))} gateways are Sparkplug B edge "
                    f"nodes of group {spb.group}, primary host {spb.primary_host}"
                )
            api = failures = crew = None
            if api_key:
                url = api_url or local_api_url(settings.api_host, settings.api_port)
                api = ProductAPI(url, api_key)
                failures = FailureReporter(api)
                typer.echo(f"simulate: failures reported to {url} as the customer would")
            else:
                typer.echo("simulate: no --api-key: failures stay in the simulator's truth")
            sink = DatabaseTruthSink(services.database_url, registration.asset_ids, failures)
            if technician and api is not None:
                refs = {asset_id: ref for ref, asset_id in registration.asset_ids.items()}
                crew = SimTechnician(fleet, ProductOrderSource(api, refs), speedup=spec.speedup)
            runner = FleetRunner.over_mqtt(
                fleet, services.mqtt_url, settings.topic_root, registration.secrets,
                SystemClock(), sink=sink, technician=crew, sparkplug=spb,
            )  # fmt: skip
            runner.open()
            try:
                runner.run(stop, spec.duration_s, progress=_report)
            except KeyboardInterrupt:
                pass
            finally:  # Ctrl-C or SIGTERM: flush every backlog before leaving
                stats = runner.close()
                held = runner.sparkplug_held()
                if held:
                    typer.echo(
                        f"simulate: {held} readings still held by Sparkplug edge nodes (their "
                        "primary host was not online) were not sent"
                    )
                sink.close()
                if failures is not None and failures.pending:
                    failures.flush()  # the last chance for reports that waited for the API
                    if failures.pending:
                        typer.echo(f"simulate: {len(failures.pending)} failure reports not sent")
                if api is not None:
                    api.close()
                typer.echo(f"simulate: {stats.as_dict()}")
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    except ConnectionError as exc:
        raise fail(str(exc)) from exc
