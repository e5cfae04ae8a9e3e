"""Command line of ingest: ``fleetcare devices ...`` and ``fleetcare ingest``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from fleetcare.commandline import database_url, fail, load_settings
from fleetcare.errors import FleetcareError, ServiceUnavailable

devices_app = typer.Typer(help="Devices and their broker credentials.", no_args_is_help=True)


@devices_app.command("add")
def devices_add(
    customer: Annotated[str, typer.Option(help="customer slug or id")],
    ref: Annotated[str, typer.Option(help="device reference: the MQTT user name")],
    name: Annotated[str, typer.Option(help="a label")] = "",
    profile: Annotated[
        str | None, typer.Option(help="the payload profile it speaks (default: native v1)")
    ] = None,
) -> None:
    """Register a device and print its secret once (only its hash is stored)."""
    from pydantic import ValidationError

    from fleet import repository as fleet_repo
    from fleet.schemas import Principal
    from fleetcare.db import connect
    from ingest import service
    from ingest.schemas import DeviceCreate

    try:
        body = DeviceCreate(ref=ref, name=name, profile=profile)
    except ValidationError as exc:
        raise fail(f"bad device: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    settings = load_settings()
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                found = (
                    fleet_repo.CUSTOMERS.get(conn, int(customer), scope=None)
                    if customer.isdigit()
                    else fleet_repo.find_customer_by_slug(conn, customer)
                )
                if found is None or found.retired_at is not None:
                    raise fail(f"no live customer {customer!r}")
                operator = Principal(key_id=0, role="operator")
                device = service.create_device(
                    conn, operator, body.model_copy(update={"customer_id": found.id})
                )
            typer.echo(device.secret)
            typer.echo(
                f"(device {device.id} {device.ref!r} of customer {found.slug}; MQTT user "
                f"{device.ref!r}; the secret is shown once: store it now, then run "
                "`fleetcare devices broker-config`)",
                err=True,
            )
        except FleetcareError as exc:
            raise fail(exc.detail) from exc


@devices_app.command("broker-config")
def devices_broker_config(
    out: Annotated[Path, typer.Option(help="folder for the Mosquitto passwd and acl files")],
    ingestor_user: Annotated[str, typer.Option(help="the ingestor's MQTT user")] = (
        "fleetcare-ingest"
    ),
    ingestor_secret: Annotated[
        str | None,
        typer.Option(
            envvar="FLEETCARE_INGESTOR_SECRET", help="the ingestor's password; default: new one"
        ),
    ] = None,
    topic_root: Annotated[
        str | None, typer.Option(help="topic root (default FLEETCARE_TOPIC_ROOT)")
    ] = None,
) -> None:
    """Write Mosquitto password and ACL files for every live device and the ingestor."""
    from fleetcare.db import connect
    from ingest import service

    settings = load_settings()
    root = topic_root or settings.topic_root
    with database_url(settings) as url:
        try:
            with connect(url) as conn:
                passwd, acl, secret = service.write_broker_config(
                    conn,
                    out,
                    topic_root=root,
                    ingestor_user=ingestor_user,
                    ingestor_secret=ingestor_secret,
                )
            typer.echo(f"wrote {passwd} and {acl}")
            typer.echo(
                "add to mosquitto.conf:  allow_anonymous false / "
                f"password_file {passwd.resolve()} / acl_file {acl.resolve()}"
            )
            if ingestor_secret is None:
                typer.echo(f"ingestor password (shown once): {secret}")
                typer.echo(f"  FLEETCARE_MQTT_URL=mqtt://{ingestor_user}:<password>@<host>:<port>")
        except OSError as exc:
            raise fail(f"cannot write to {out}: {exc.strerror}") from exc
        except FleetcareError as exc:
            raise fail(exc.detail) from exc


CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def ingest_command(
    client_id: Annotated[
        str | None,
        typer.Option(
            help="MQTT client id; fixed per ingestor (default FLEETCARE_INGEST_CLIENT_ID)"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="serve Prometheus /metrics here (default FLEETCARE_INGEST_METRICS_PORT)",
        ),
    ] = None,
    batch_messages: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="close a batch at this many")
    ] = 5000,
    batch_wait_ms: Annotated[
        int, typer.Option(min=1, max=600_000, help="or after this long")
    ] = 200,
    queue_messages: Annotated[
        int, typer.Option(min=1, max=10_000_000, help="bound of the in-memory queue")
    ] = 10_000,
    shared: Annotated[
        bool | None,
        typer.Option(
            "--shared/--no-shared",
            help="shared subscription $share/ingest/... (default: true when "
            "FLEETCARE_BROKER_KEEPS_SHARED_SUBSCRIPTIONS says the broker keeps them across "
            "restarts, as EMQX and HiveMQ do; else the ingestor's own persistent session)",
        ),
    ] = None,
) -> None:
    """Consume telemetry from the broker into the database (run several: they share the load)."""
    from prometheus_client import start_http_server

    from fleetcare.services import exit_on_sigterm, running_services
    from ingest.mqtt_client import mqtt_endpoint
    from ingest.schemas import IngestLimits
    from ingest.worker import IngestConfig, IngestWorker

    settings = load_settings()
    client = client_id or settings.ingest_client_id
    if not CLIENT_ID.match(client):
        raise fail(f"client id {client!r} must match {CLIENT_ID.pattern}")
    if settings.mqtt_url and "://" in settings.mqtt_url:  # else a keyword: mosquitto, amqtt
        try:
            mqtt_endpoint(settings.mqtt_url)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    exit_on_sigterm()
    try:
        with running_services(
            settings, check_database=True, database_may_be_passing=True
        ) as services:
            config = IngestConfig(
                mqtt_url=services.mqtt_url,
                database_url=services.database_url,
                client_id=client,
                limits=IngestLimits(topic_root=settings.topic_root),
                batch_max_messages=batch_messages,
                batch_max_wait_s=batch_wait_ms / 1000,
                queue_max_messages=queue_messages,
                # MQTT 5's Receive Maximum is at most 65,535
                receive_maximum=min(max(queue_messages, batch_messages), 65_535),
                shared_subscription=(
                    settings.broker_keeps_shared_subscriptions if shared is None else shared
                ),
                sparkplug_host_id=settings.sparkplug_host_id,
            )
            worker = IngestWorker(config)
            port = metrics_port or settings.ingest_metrics_port
            if port:
                start_http_server(port, addr=settings.api_host, registry=worker.registry)
            worker.run_forever()
    except KeyboardInterrupt:
        pass
    except ServiceUnavailable as exc:
        raise fail(exc.detail) from exc
    except OSError as exc:
        raise fail(str(exc)) from exc
