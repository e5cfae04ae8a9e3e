"""Logic of ingest's device registry. No SQL text, no MQTT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.errors import Invalid, NotFound
from ingest import repository as repo
from ingest import sparkplug, sparkplug_state
from ingest.profile_service import LoadedProfiles, require_profile
from ingest.schemas import (
    Device,
    DeviceCreate,
    DeviceUpdate,
    IngestHealth,
    NewDevice,
    QuarantinePage,
)
from ingest.subscription import BROKER_UPTIME_TOPIC

Conn = Connection[Any]

# Mosquitto 2's password-file format ($7$: PBKDF2-SHA512), so that the stored hash can be
# written straight into the broker's password file.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12


def hash_device_secret(
    secret: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """Mosquitto-compatible ``$7$iterations$salt$hash`` of a device secret."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_device_secret(secret: str, stored: str) -> bool:
    """True when ``secret`` matches the stored ``$7$`` hash."""
    try:
        _, scheme, iterations, salt_b64, _digest = stored.split("$")
        if scheme != "7":
            return False
        expected = hash_device_secret(
            secret, salt=base64.b64decode(salt_b64), iterations=int(iterations)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, stored)


def create_device(conn: Conn, principal: Principal, body: DeviceCreate) -> NewDevice:
    """Register a device and return its secret, once."""
    principal.require("devices:write")
    owner = fleet.owner_for(principal, body.customer_id)
    customer = fleet.get_customer(conn, principal, owner)
    if customer.retired_at is not None:
        raise Invalid(f"customer {owner} is retired")
    secret = secrets.token_urlsafe(24)
    require_profile(conn, body.profile)
    with fleet.translate_integrity_errors(f"device {body.ref!r}"), conn.transaction():
        device = repo.insert_device(
            conn,
            customer_id=owner,
            ref=body.ref,
            name=body.name,
            secret_hash=hash_device_secret(secret),
        )
        if body.profile is not None:
            repo.set_device_profile(conn, device.id, body.profile)
            device = device.model_copy(update={"profile": body.profile})
    return NewDevice(**device.model_dump(), secret=secret)


def get_device(conn: Conn, principal: Principal, device_id: int) -> Device:
    """A device the caller may see."""
    row = repo.DEVICES.get(conn, device_id, scope=principal.scope)
    if row is None:
        raise NotFound(f"device {device_id} not found", code="device_not_found")
    return row


def list_devices(
    conn: Conn,
    principal: Principal,
    *,
    customer_id: int | None,
    after: int | None,
    limit: int,
    include_retired: bool = False,
) -> tuple[list[Device], int | None]:
    """Devices visible to the caller, one page."""
    return repo.DEVICES.page(
        conn,
        scope=principal.scope,
        filters={"customer_id": customer_id},
        include_retired=include_retired,
        after=after,
        limit=limit,
    )


def update_device(conn: Conn, principal: Principal, device_id: int, body: DeviceUpdate) -> Device:
    """Rename a device."""
    current = get_device(conn, principal, device_id)
    values = body.model_dump(exclude_unset=True, exclude_none=True)
    if "profile" in values:  # "" speaks native v1 again
        profile = values.pop("profile") or None
        require_profile(conn, profile)
        repo.set_device_profile(conn, current.id, profile)
        current = get_device(conn, principal, device_id)
    return repo.DEVICES.update(conn, current.id, values) or current


def retire_device(conn: Conn, principal: Principal, device_id: int) -> Device:
    """Retire a device: the broker config drops it and ingest refuses its readings."""
    return fleet.retire_scoped(conn, principal, repo.DEVICES, device_id, "device")


# --- broker credentials ----------------------------------------------------------------------

INGESTOR_USER = "fleetcare-ingest"
BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"


def ack_topic(topic_root: str, device_ref: str) -> str:
    """Where the ingestor confirms to a device what it has stored (only that device reads)."""
    return f"{topic_root}/{device_ref}/ack"


def broker_password_file(conn: Conn, ingestor_user: str, ingestor_secret_hash: str) -> str:
    """Mosquitto password file: every live device's stored ``$7$`` hash, and the ingestor's."""
    lines = [f"{ingestor_user}:{ingestor_secret_hash}"]
    lines += [f"{ref}:{secret_hash}" for ref, secret_hash in repo.live_device_credentials(conn)]
    return "\n".join(lines) + "\n"


def broker_acl_file(conn: Conn, topic_root: str, ingestor_user: str) -> str:
    """Mosquitto ACL: a device may only publish its own telemetry and status (and, when its
    profile has a topic of its own, that topic with its own ref; a Sparkplug B edge node its
    node's topics) and read only its own acknowledgements (or its node's commands); the
    ingestor may read all of those, the broker's dropped-message counter and uptime, and
    write acknowledgements, Sparkplug rebirth commands and its primary host ``STATE`` (which
    edge nodes may read)."""
    profiles = LoadedProfiles(repo.list_profiles(conn))
    out = [
        "# fleetcare broker ACL, written by `fleetcare devices broker-config`.",
        "# Anything not granted here is denied.",
        f"user {ingestor_user}",
        f"topic read {topic_root}/+/telemetry",
        f"topic read {topic_root}/+/position",
        *(f"topic read {f}" for f in profiles.topic_filters()),
        *(
            f"topic read {f}"
            for group in profiles.sparkplug_groups()
            for f in sparkplug.subscription_filters(group)
        ),
        f"topic read {BROKER_DROPPED_TOPIC}",
        f"topic read {BROKER_UPTIME_TOPIC}",
        f"topic write {topic_root}/+/ack",
        f"topic write {sparkplug.rebirth_topic('+', '+')}",
        # each ingestor's own host id (its client id by default): birth, will, and reading
        # its own STATE back (Sparkplug 3.0)
        f"topic readwrite {sparkplug_state.state_topic('+')}",
        "",
    ]
    nodes_of: dict[str, list[tuple[str, str]]] = {}
    for group, edge_node in sorted(profiles.sparkplug_nodes):
        for ref in profiles.sparkplug_nodes[(group, edge_node)]:
            nodes_of.setdefault(ref, []).append((group, edge_node))
    speaks = repo.live_device_profiles(conn)
    for ref, _ in repo.live_device_credentials(conn):
        out += [
            f"user {ref}",
            f"topic write {topic_root}/{ref}/telemetry",
            f"topic write {topic_root}/{ref}/status",
            f"topic write {topic_root}/{ref}/position",
            f"topic read {ack_topic(topic_root, ref)}",
        ]
        own_topic = profiles.topic_of.get(speaks.get(ref) or "")
        if own_topic is not None:
            out.append(f"topic write {own_topic.replace('{device}', ref)}")
        for group, edge_node in nodes_of.get(ref, []):
            base = f"{sparkplug.NAMESPACE}/{group}"
            out += [
                f"topic write {base}/+/{edge_node}",
                f"topic write {base}/+/{edge_node}/+",
                f"topic read {sparkplug.rebirth_topic(group, edge_node)}",
                f"topic read {base}/DCMD/{edge_node}/+",
            ]
        if ref in nodes_of:  # whether its primary host (an ingestor) is online
            out.append(f"topic read {sparkplug_state.state_topic('+')}")
        out.append("")
    return "\n".join(out)


def write_broker_config(
    conn: Conn,
    out_dir: Path,
    *,
    topic_root: str,
    ingestor_user: str = INGESTOR_USER,
    ingestor_secret: str | None = None,
) -> tuple[Path, Path, str]:
    """Write ``passwd`` and ``acl`` into ``out_dir``; return their paths and the ingestor secret.

    Without ``ingestor_secret`` a new one is generated (and must be given to the ingestor).
    """
    if "+" in topic_root or "#" in topic_root or topic_root.endswith("/"):
        raise Invalid(f"topic root {topic_root!r} may not hold wildcards or end with '/'")
    if any(c.isspace() or c == ":" for c in ingestor_user) or not ingestor_user:
        raise Invalid(f"ingestor user {ingestor_user!r} may not be empty or hold spaces or ':'")
    secret = ingestor_secret or secrets.token_urlsafe(24)
    out_dir.mkdir(parents=True, exist_ok=True)
    passwd, acl = out_dir / "passwd", out_dir / "acl"
    for path, text in (
        (passwd, broker_password_file(conn, ingestor_user, hash_device_secret(secret))),
        (acl, broker_acl_file(conn, topic_root, ingestor_user)),
    ):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(path)
    return passwd, acl, secret


# --- ingest health ---------------------------------------------------------------------------

# an ingestor that has not reported for this long is no longer listed
INGESTOR_STALE_AFTER = timedelta(minutes=5)


def ingest_health(
    conn: Conn, principal: Principal, *, now: datetime, since: datetime | None = None
) -> IngestHealth:
    """Quarantine counts per device and reason (the caller's own); ingestors for the operator."""
    since = since or now - timedelta(hours=24)
    ingestors = (
        repo.list_ingestors(conn, seen_since=now - INGESTOR_STALE_AFTER)
        if principal.scope is None
        else []
    )
    dropped = [i.broker_dropped for i in ingestors if i.broker_dropped is not None]
    return IngestHealth(
        since=since,
        ingestors=ingestors,
        quarantine=repo.quarantine_counts(conn, since=since, customer_id=principal.scope),
        broker_dropped=max(dropped) if dropped else None,
        alerts=[
            f"{i.client_id} at {i.alert_at.isoformat()}: {i.alert}"
            for i in ingestors
            if i.alert is not None and i.alert_at is not None and i.alert_at >= since
        ],
    )


def device_quarantine(
    conn: Conn, principal: Principal, device_id: int, *, before: int | None, limit: int
) -> QuarantinePage:
    """A device's quarantined items, newest first; another customer's device is not found."""
    device = get_device(conn, principal, device_id)
    items = repo.list_device_quarantine(
        conn, device.ref, customer_id=device.customer_id, before=before, limit=limit
    )
    return QuarantinePage(
        items=items, next_before=items[-1].id if len(items) == limit and items else None
    )
