"""``POST /v1/telemetry`` (and ``/v1/telemetry/position``): readings and carriers' positions
over HTTP for devices that cannot hold an MQTT session."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPBasic
from starlette.concurrency import run_in_threadpool

from api.deps import AppClock, Conn
from api.tenancy import bind_device
from fleetcare.errors import PayloadTooLarge
from fleetcare.tenancy import operator_lookup
from ingest.http import TelemetryReceipt, device_from_basic_auth, ingest_posted
from ingest.schemas import IngestLimits

router = APIRouter(prefix="/v1", tags=["ingest"])
# the routes that take a device's raw message: they bound its size (``read_body``) and leave
# its content to the ingest pipeline (api.guard lets them through)
DEVICE_PATHS = frozenset({"/v1/telemetry", "/v1/telemetry/position"})


class _DocumentedBasic(HTTPBasic):
    """HTTP Basic in the OpenAPI only: FastAPI's own check answers a malformed header with a
    bare "Not authenticated" (even with ``auto_error=False``) before ``device_from_basic_auth``
    can say what is wrong with it, so this one reads nothing."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


# Devices authenticate with their MQTT credentials (HTTP Basic), not with an API key; the
# scheme documents it in the OpenAPI, and ``device_from_basic_auth`` checks the header.
device_basic = _DocumentedBasic(
    auto_error=False, scheme_name="deviceBasic", description="device ref : device secret"
)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused past ``max_bytes`` without reading the rest."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/telemetry",
    responses={200: {"description": "stored (and committed) or quarantined, with counts"}},
    dependencies=[Depends(device_basic)],
)
async def post_telemetry(
    request: Request,
    conn: Conn,
    clock: AppClock,
) -> TelemetryReceipt:
    """One message as the device would publish it over MQTT: native v1 JSON, or the format of
    its payload profile. Device-authenticated (HTTP Basic with the device's MQTT credentials).
    Same validation, quarantine and idempotency as MQTT; the answer comes after the commit."""
    return await _post(request, conn, clock, "telemetry")


@router.post(
    "/telemetry/position",
    responses={200: {"description": "stored (and committed) or quarantined, with counts"}},
    dependencies=[Depends(device_basic)],
)
async def post_position(
    request: Request,
    conn: Conn,
    clock: AppClock,
) -> TelemetryReceipt:
    """A carrier's position (or a batch of them) as the device would publish it on its
    position topic (docs/telemetry.md#positions-of-carriers), for carriers of its own customer.
    Device-authenticated, as ``POST /v1/telemetry``; the answer comes after the commit."""
    return await _post(request, conn, clock, "position")


async def _post(
    request: Request, conn: Conn, clock: AppClock, channel: Literal["telemetry", "position"]
) -> TelemetryReceipt:
    settings = request.app.state.settings
    limits = IngestLimits(topic_root=settings.topic_root)
    authorization = request.headers.get("authorization")

    def device() -> str:
        with operator_lookup(conn):  # the device's row, before its customer is known
            ref = device_from_basic_auth(conn, authorization)
        bind_device(request, conn, ref)
        return ref

    ref = await run_in_threadpool(device)
    payload = await read_body(request, limits.max_payload_bytes)

    def store() -> TelemetryReceipt:
        receipt = ingest_posted(conn, ref, payload, limits=limits, clock=clock, channel=channel)
        conn.commit()
        return receipt

    return await run_in_threadpool(store)
