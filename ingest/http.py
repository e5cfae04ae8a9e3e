"""The HTTP ingest path for devices that cannot hold an MQTT session (``POST /v1/telemetry``).

The body is one message exactly as the device would publish it (native v1 JSON, or its
profile's format); it goes through the same validation, quarantine and idempotent write as an
MQTT message, in the caller's transaction. No HTTP objects here: ``api.routes.telemetry``
reads the request and commits before answering.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Any, Literal

from psycopg import Connection
from pydantic import BaseModel, Field

from fleetcare.clock import Clock
from fleetcare.errors import Unauthorized
from ingest import repository as repo
from ingest.pipeline import store_messages
from ingest.schemas import IngestLimits, RawMessage
from ingest.service import verify_device_secret

Conn = Connection[Any]


class TelemetryReceipt(BaseModel):
    """What a posted message became, after its commit."""

    device: str
    stored: int = Field(description="new readings stored (metric values)")
    duplicates: int = Field(description="readings already stored (a repeated post is harmless)")
    quarantined: dict[str, int] = Field(description="rejected items by reason")
    positions_stored: int = Field(
        default=0, description="new carrier positions (a device speaking a positions profile)"
    )
    positions_duplicates: int = Field(default=0, description="positions already stored")


def device_from_basic_auth(conn: Conn, authorization: str | None) -> str:
    """The device ref of ``Authorization: Basic base64(ref:secret)``; Unauthorized otherwise."""
    if not authorization or not authorization.lower().startswith("basic "):
        raise Unauthorized(
            "device credentials are required: Authorization: Basic base64(device ref:secret)"
        )
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("Authorization: Basic needs base64 of 'device ref:secret'") from None
    ref, sep, secret = decoded.partition(":")
    if not sep or not ref or len(ref) > 64:
        raise Unauthorized("Authorization: Basic needs base64 of 'device ref:secret'")
    stored = repo.device_secret_hash(conn, ref)
    if stored is None or not verify_device_secret(secret, stored):
        raise Unauthorized("unknown device, retired device, or wrong secret")
    return ref


def ingest_posted(
    conn: Conn,
    device_ref: str,
    payload: bytes,
    *,
    limits: IngestLimits,
    clock: Clock,
    channel: Literal["telemetry", "position"] = "telemetry",
) -> TelemetryReceipt:
    """Store one posted message of ``device_ref`` as if published on its telemetry topic (or
    its position topic: a carrier's positions, ``ingest.positions``)."""
    message = RawMessage(f"{limits.topic_root}/{device_ref}/{channel}", payload, clock.now())
    result = store_messages(conn, [message], limits=limits, clock=clock)
    return TelemetryReceipt(
        device=device_ref,
        stored=result.stored,
        duplicates=result.duplicates,
        quarantined=dict(Counter(result.quarantined)),
        positions_stored=result.positions_stored,
        positions_duplicates=result.positions_duplicates,
    )
