"""One error body for every failure: RFC 9457 problem details plus a stable `code`.

{"type": "about:blank", "title": "Conflict", "status": 409, "code": "illegal_transition",
 "detail": "cannot claim an order that is claimed ...", "request_id": "...", "errors": [...]}
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.context import request_id_var
from api.openapi import error_response
from api.routing import allowed_methods
from quire.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    Locked,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("quire.api")

STATUS_OF: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    Invalid: 422,
    Unauthenticated: 401,
    Locked: 423,
    RateLimited: 429,
    Unavailable: 503,
}


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str
    request_id: str | None = None
    errors: list[FieldError] | None = None


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
        "request_id": request_id_var.get(),
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def status_for(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def _clean_errors(raw: list[Any]) -> list[dict[str, Any]]:
    cleaned = []
    for err in raw:
        loc = [p for p in err.get("loc", ()) if p != "body" or len(err.get("loc", ())) == 1]
        msg = str(err.get("msg", "invalid"))
        cleaned.append(
            {
                "loc": [p if isinstance(p, int) else str(p) for p in loc],
                "msg": msg,
                "type": str(err.get("type", "value_error")),
            }
        )
    return cleaned


def domain_problem(exc: DomainError) -> JSONResponse:
    """The response for a domain failure (also for routes that must add headers to it)."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    extra = {k: v for k, v in exc.details.items() if k not in ("retry_after",)} or None
    return problem(status_for(exc), exc.code, exc.message, headers=headers, extra=extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return domain_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(list(exc.errors()))
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(
                400, "malformed_json", "the request body is not valid JSON", errors=errors
            )
        summary = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5]
        )
        return problem(422, "validation_failed", summary, errors=errors)

    @app.exception_handler(ValidationError)
    async def _model_validation(_: Request, exc: ValidationError) -> JSONResponse:
        errors = _clean_errors(list(exc.errors()))
        summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem(422, "validation_failed", summary, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        detail = str(exc.detail)
        if exc.status_code == 400:
            # FastAPI's only 400: a body json.loads could not decode. JSON is UTF-8 (RFC 8259),
            # so a body that is not UTF-8 is malformed JSON too: one code for both.
            detail = "the request body is not valid JSON (or not UTF-8)"
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        code = {
            400: "malformed_json",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
            415: "unsupported_media_type",
        }.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, detail, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal_error", "something went wrong on our side")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors only the domain knows a route can return
    (403, 404, 409, 423, 429, 503). `api.openapi` adds the ones the framework implies (400, 401,
    413, 422) and serves each as the `Problem` schema under `application/problem+json`."""
    return {status: {"model": Problem, **error_response(status)} for status in statuses}
