"""The demo's webhook receiver: verifies each delivery's Standard Webhooks signature and
shows what it got. `fleetcare up` runs it; a real maintenance team runs its own."""

from __future__ import annotations

import html
import json
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def create_receiver(secrets_file: Path, keep: int = 500) -> FastAPI:
    """An app that accepts POST /hooks/{name}, verified with the secret stored for ``name``."""
    app = FastAPI(title="fleetcare demo webhook receiver")
    received: deque[dict[str, Any]] = deque(maxlen=keep)
    lock = threading.Lock()

    def secret_for(name: str) -> str | None:
        try:
            secrets: dict[str, str] = json.loads(secrets_file.read_text())
        except (OSError, ValueError):
            return None
        return secrets.get(name)

    @app.post("/hooks/{name}")
    async def hook(name: str, request: Request) -> Response:
        body = await request.body()
        secret = secret_for(name)
        if secret is None:
            return JSONResponse({"error": "unknown receiver"}, status_code=404)
        try:
            payload = Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return JSONResponse({"error": f"bad signature: {exc}"}, status_code=400)
        with lock:
            received.appendleft(
                {
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "receiver": name,
                    "id": request.headers.get("webhook-id"),
                    "type": payload.get("type") if isinstance(payload, dict) else None,
                    "payload": payload,
                }
            )
        return Response(status_code=204)

    @app.get("/received")
    def listing() -> list[dict[str, Any]]:
        with lock:
            return list(received)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        with lock:
            rows = list(received)
        lines = "".join(
            f"<tr><td>{html.escape(r['at'])}</td><td>{html.escape(r['receiver'])}</td>"
            f"<td>{html.escape(str(r['type']))}</td><td><code>{html.escape(str(r['id']))}"
            f"</code></td><td><pre>{html.escape(json.dumps(r['payload'], indent=1)[:600])}"
            "</pre></td></tr>"
            for r in rows
        )
        return (
            "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=3>"
            "<title>demo webhook receiver</title><style>body{font:14px sans-serif}"
            "td{vertical-align:top;border-bottom:1px solid #ddd;padding:4px}</style>"
            f"<h1>Webhooks received ({len(rows)}), signatures verified</h1>"
            "<table><tr><th>received</th><th>receiver</th><th>type</th><th>webhook-id</th>"
            f"<th>payload</th></tr>{lines}</table>"
        )

    return app


def app_from_env() -> FastAPI:
    """The receiver for `uvicorn --factory`: secrets in $FLEETCARE_DATA_DIR."""
    import os

    data_dir = Path(os.environ.get("FLEETCARE_DATA_DIR", ".fleetcare"))
    return create_receiver(data_dir / "demo-webhook-secrets.json")
