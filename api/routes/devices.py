"""Devices: the gateways that publish telemetry."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import After, Caller, Conn, IncludeRetired, Limit, ReadConn
from fleet.schemas import Page
from fleetcare.inputs import Id
from ingest import service as devices
from ingest.schemas import Device, DeviceCreate, DeviceUpdate, NewDevice

router = APIRouter(prefix="/v1", tags=["devices"])


@router.post("/devices", status_code=status.HTTP_201_CREATED)
def create_device(body: DeviceCreate, conn: Conn, caller: Caller) -> NewDevice:
    """Register a device; the response is the only time its secret is shown."""
    return devices.create_device(conn, caller, body)


@router.get("/devices")
def list_devices(
    conn: ReadConn,
    caller: Caller,
    customer_id: Id | None = None,
    after: After = None,
    limit: Limit = 50,
    include_retired: IncludeRetired = False,
) -> Page[Device]:
    """Devices the caller may see."""
    items, nxt = devices.list_devices(
        conn,
        caller,
        customer_id=customer_id,
        after=after,
        limit=limit,
        include_retired=include_retired,
    )
    return Page(items=items, next_after=nxt)


@router.get("/devices/{device_id}")
def get_device(device_id: Id, conn: ReadConn, caller: Caller) -> Device:
    """One device."""
    return devices.get_device(conn, caller, device_id)


@router.patch("/devices/{device_id}")
def update_device(device_id: Id, body: DeviceUpdate, conn: Conn, caller: Caller) -> Device:
    """Rename a device."""
    return devices.update_device(conn, caller, device_id, body)


@router.delete("/devices/{device_id}")
def retire_device(device_id: Id, conn: Conn, caller: Caller) -> Device:
    """Retire a device."""
    return devices.retire_device(conn, caller, device_id)
