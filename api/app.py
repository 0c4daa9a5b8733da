"""The FastAPI application: wiring only. Business rules live in quire/, not here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, openapi
from api.deps import token_config
from api.events.hub import EventHub
from api.observability import (
    Metrics,
    ObservabilityMiddleware,
    configure_logging,
    install_request_id_logging,
)
from api.routes import (
    audit,
    auth,
    health,
    ledger,
    lifecycle,
    orders,
    payouts,
    payroll,
    payslips,
    reconciliation,
    reviews,
    stream,
    users,
)
from quire.db import Database
from quire.settings import Settings, get_settings

DESCRIPTION = """
Quire's marketplace: managers publish orders, specialists bid on or claim them (exactly one
wins), submit work, and everyone follows changes live over SSE or WebSocket.

Authenticate with `Authorization: Bearer <token>`: an access token from `POST /auth/login`, or an
API key. Every error has the same `application/problem+json` body with a stable `code`.
"""


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    own_database = database is None
    database = database or Database(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    metrics = Metrics()
    hub = EventHub(
        database,
        queue_size=settings.stream_queue_size,
        poll_seconds=settings.stream_poll_seconds,
        on_drop=metrics.stream_dropped.inc,
        on_deliver=metrics.events_delivered.inc,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database.after_write.append(hub.poke)
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            database.after_write.remove(hub.poke)
            if own_database:
                await database.async_dispose()

    app = FastAPI(
        title="Quire marketplace API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.token_config = token_config(settings)
    app.state.metrics = metrics
    app.state.hub = hub
    errors.install(app)
    openapi.install(app)
    for module in (
        auth,
        users,
        orders,
        reviews,
        ledger,
        payroll,
        payouts,
        payslips,
        reconciliation,
        lifecycle,
        audit,
        stream,
        health,
    ):
        app.include_router(module.router)
    app.include_router(auth.me_router)
    # Added first, so it runs inside ObservabilityMiddleware: a 500 still has its request id.
    app.add_middleware(errors.LastResort)
    app.add_middleware(
        ObservabilityMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes
    )
    install_request_id_logging()
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory api.app:app_from_env` (what `quire api` runs)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
