"""Asset kinds: definitions applied by the operator, read by everyone authenticated."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import Caller, Conn, ReadConn
from kinds import service as kinds
from kinds.schemas import ApplyResult, KindDefinition, KindName, KindRecord, KindSummary

router = APIRouter(prefix="/v1")


@router.post(
    "/kinds",
    tags=["kinds"],
    responses={201: {"model": ApplyResult, "description": "a new kind"}},
)
def apply_kind(body: KindDefinition, conn: Conn, caller: Caller, response: Response) -> ApplyResult:
    """Apply a kind definition (operator): the same document as a kind file. A new kind
    answers 201; a changed one gets a new version (200); an unchanged one changes nothing
    (200); a change that would break stored readings, models or orders answers 409."""
    caller.require("catalogue:write")
    result = kinds.apply_definition(conn, body, source=f"api:{caller.who}")
    if result.created:
        response.status_code = status.HTTP_201_CREATED
    return result


@router.get("/kinds", tags=["kinds"])
def list_kinds(conn: ReadConn, caller: Caller) -> list[KindSummary]:
    """Every asset kind with its version and counts."""
    return kinds.list_kinds(conn)


@router.get("/kinds/{kind}", tags=["kinds"])
def get_kind(kind: KindName, conn: ReadConn, caller: Caller) -> KindRecord:
    """One kind's current definition and version."""
    return kinds.get_record(conn, kind)
