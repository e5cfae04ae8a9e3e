"""The FastAPI app factory: the pool opens in the lifespan; one error handler renders errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.auth_limit import AuthFailureLimiter
from api.errors import install_error_handlers, install_fallback_handlers
from api.guard import InputGuardMiddleware
from api.openapi import install_openapi
from api.routes import (
    audit,
    backoffice,
    billing,
    dashboard,
    dashboard_metrics,
    devices,
    documents,
    fleet,
    health,
    history,
    logistics,
    maintenance,
    mobility,
    people,
    profiles,
    revenue,
    sso,
    subscriptions,
    telemetry,
    value,
    webhooks,
)
from api.routes import ingest as ingest_routes
from api.routes import kinds as kinds_routes
from api.routes import models as model_routes
from fleetcare.db import open_pool
from fleetcare.settings import Settings


def create_app(settings: Settings, database_url: str) -> FastAPI:
    """Build the app for ``database_url``; the pool is opened on startup and closed on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = open_pool(database_url, settings, name="api", per_request=True)
        app.state.pool = pool
        # read-only routes read from a streaming replica when one is configured
        app.state.read_pool = (
            open_pool(settings.read_database_url, settings, name="api-read", per_request=True)
            if settings.read_database_url
            else None
        )
        try:
            yield
        finally:
            if app.state.read_pool is not None:
                app.state.read_pool.close()
            pool.close()

    app = FastAPI(
        title="fleetcare",
        version="0.1.0",
        description="Predictive maintenance as a subscription. Authenticate with "
        "`Authorization: Bearer <API key>` (or a dashboard session cookie, with `X-CSRF-Token` on "
        "writes); customer keys and users see only their own customer. Who may call what: "
        "docs/access.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database_url = database_url
    app.state.auth_limiter = AuthFailureLimiter(
        settings.auth_failure_limit,
        settings.auth_failure_window_s,
        address_limit=settings.auth_failure_address_limit,
    )
    install_error_handlers(app)
    install_fallback_handlers(app)
    app.add_middleware(
        InputGuardMiddleware,
        max_body_bytes=settings.api_max_body_bytes,
        # uploads and device payloads read and bound their bodies themselves; a device's
        # message goes to the ingest pipeline as its MQTT twin would, where a NUL is one
        # reading's quarantine, not the whole message's 422
        streaming_paths=frozenset({history.UPLOAD_PATH, *telemetry.DEVICE_PATHS}),
    )
    app.include_router(health.router)
    app.include_router(fleet.router)
    app.include_router(people.router)
    app.include_router(sso.router)
    app.include_router(kinds_routes.router)
    app.include_router(devices.router)
    app.include_router(ingest_routes.router)
    app.include_router(profiles.router)
    app.include_router(history.router)
    app.include_router(telemetry.router)
    app.include_router(subscriptions.router)
    app.include_router(maintenance.router)
    app.include_router(logistics.router)
    app.include_router(mobility.router)
    app.include_router(webhooks.router)
    app.include_router(billing.router)
    app.include_router(documents.router)
    app.include_router(audit.router)
    app.include_router(revenue.router)
    app.include_router(value.router)
    app.include_router(backoffice.router)
    app.include_router(dashboard_metrics.router)
    dashboard.install(app, settings)
    app.include_router(model_routes.router)
    install_openapi(app)
    return app
