"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from api.errors import problem, responses

router = APIRouter(tags=["operations"])


class Readiness(BaseModel):
    status: str
    database: str


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up (no dependencies checked)."""
    return {"status": "ok"}


@router.get("/health/ready", response_model=Readiness, responses=responses(503))
async def ready(request: Request) -> JSONResponse:
    """Ready to serve: the database answers (else 503 `not_ready`, like every other error)."""
    try:
        async with request.app.state.database.async_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready
        return problem(503, "not_ready", f"the database is unreachable ({type(exc).__name__})")
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
