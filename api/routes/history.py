"""``POST /v1/history/import``: a customer's recorded history as a streamed file upload."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, Conn
from fleet.causes import CAUSE_HELP, FailureCause
from fleetcare.errors import PayloadTooLarge
from ingest.history_upload import MAX_UPLOAD_BYTES, check_upload, import_upload

router = APIRouter(prefix="/v1", tags=["history"])
UPLOAD_PATH = "/v1/history/import"


@router.post("/history/import")
async def import_history(
    request: Request,
    conn: Conn,
    caller: Caller,
    kind: Annotated[str, Query(max_length=63, description="the asset kind of every asset")],
    profile: Annotated[str, Query(max_length=63, description="the csv/text profile")],
    filename: Annotated[
        str, Query(max_length=200, description="its name; the suffix says CSV/text or Parquet")
    ],
    customer_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="required for operator keys")
    ] = None,
    mode: Annotated[Literal["lifetimes", "in-service"], Query()] = "in-service",
    end: Annotated[Literal["failure", "replacement"], Query()] = "failure",
    component: Annotated[str | None, Query(max_length=63)] = None,
    cause: Annotated[FailureCause, Query(description=CAUSE_HELP)] = "unknown",
) -> dict[str, Any]:
    """The body is the file itself (any size up to 20 GiB, streamed to disk, never held in
    memory), imported as ``fleetcare history import`` does: the assets it meets are created,
    importing the same file twice changes nothing, and the answer is the report (rows read,
    stored, rejected with reasons) once every batch is committed. Operator keys name the
    customer; a customer key imports for its own."""
    owner, suffix = await run_in_threadpool(check_upload, conn, caller, customer_id, filename)
    database_url: str = request.app.state.database_url
    with tempfile.TemporaryDirectory(prefix="fleetcare-upload-") as folder:
        # the upload's own name (check_upload vouched for its suffix), so that the report's
        # rejections say "train.txt:7: ...", not a temporary name
        name = Path(filename).name
        if not name or len(name.encode()) > 200:  # a file name is at most 255 bytes
            name = f"upload{suffix}"
        path = Path(folder) / name
        size = 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise PayloadTooLarge(f"the file is larger than {MAX_UPLOAD_BYTES} bytes")
                await run_in_threadpool(out.write, chunk)
        report = await run_in_threadpool(
            import_upload,
            database_url,
            path,
            customer_id=owner,
            kind=kind,
            profile=profile,
            mode=mode,
            end_reason=end,
            component=component,
            cause=cause,
            context=getattr(request.state, "tenant_context", None),
        )
    report["files"] = [filename]
    return report
