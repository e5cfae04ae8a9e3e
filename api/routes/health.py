"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fleetcare import migrate

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and every migration is applied."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        st = migrate.status(request.app.state.database_url)
        checks["database"] = "ok"
        checks["storage"] = st.storage
        checks["migrations"] = (
            "current"
            if st.current
            else {
                "pending": st.pending,
                "edited": st.edited,
                "missing": st.missing,
            }
        )
        ready = st.current
    except Exception as exc:  # any failure to reach the database means "not ready"
        checks["database"] = f"unavailable: {type(exc).__name__}"
        ready = False
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
