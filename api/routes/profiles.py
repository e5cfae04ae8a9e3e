"""Payload profiles: how ingest reads a device family's messages (operator writes, all read)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from api.deps import Caller, Conn, ReadConn
from fleetcare.inputs import ShortText
from ingest import profile_service as profiles
from ingest.profile_service import Profile

router = APIRouter(prefix="/v1", tags=["profiles"])


@router.post("/profiles")
def apply_profile(
    conn: Conn,
    caller: Caller,
    document: dict[str, Any] = Body(description="the profile document (as in its YAML file)"),
) -> Profile:
    """Create a profile, or store its next version when the document changed (operator)."""
    return profiles.apply_profile(conn, caller, document, source="request body")


@router.get("/profiles")
def list_profiles(conn: ReadConn, caller: Caller) -> list[Profile]:
    """Every profile (a Sparkplug B profile's mappings of the caller's own devices only)."""
    return profiles.list_profiles(conn, caller)


@router.get("/profiles/{profile_name}")
def get_profile(profile_name: ShortText, conn: ReadConn, caller: Caller) -> Profile:
    """One profile (a Sparkplug B profile's mappings of the caller's own devices only)."""
    return profiles.get_profile(conn, profile_name, caller)
