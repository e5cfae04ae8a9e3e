"""Logic of ingest's device registry. No SQL text, no MQTT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from psycopg import Connection

from fleetcare.errors import Forbidden, Invalid, NotFound
from fleetcare.fleet import repository as fleet_repo
from fleetcare.fleet import service as fleet
from fleetcare.fleet.schemas import Principal
from ingest import repository as repo
from ingest.schemas import Device, DeviceCreate, DeviceUpdate, NewDevice

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
    if principal.role == "technician":
        raise Forbidden("a technician key cannot register devices")
    owner = fleet.owner_for(principal, body.customer_id)
    customer = fleet.get_customer(conn, principal, owner)
    if customer.retired_at is not None:
        raise Invalid(f"customer {owner} is retired")
    secret = secrets.token_urlsafe(24)
    with fleet.translate_integrity_errors(f"device {body.ref!r}"), conn.transaction():
        device = repo.insert_device(
            conn,
            customer_id=owner,
            ref=body.ref,
            name=body.name,
            secret_hash=hash_device_secret(secret),
        )
    return NewDevice(**device.model_dump(), secret=secret)


def get_device(conn: Conn, principal: Principal, device_id: int) -> Device:
    """A device the caller may see."""
    row = fleet_repo.fetch_one(conn, "devices", Device, device_id, scope=principal.scope)
    if row is None:
        raise NotFound(f"device {device_id} not found")
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
    return fleet_repo.fetch_page(
        conn,
        "devices",
        Device,
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
    return fleet_repo.update_row(conn, "devices", Device, current.id, values) or current


def retire_device(conn: Conn, principal: Principal, device_id: int) -> Device:
    """Retire a device: the broker config drops it and ingest refuses its readings."""
    current = get_device(conn, principal, device_id)
    if current.retired_at is not None:
        return current
    row = fleet_repo.update_row(
        conn, "devices", Device, current.id, {}, extra_sets=["retired_at = now()"]
    )
    assert row is not None
    return row
