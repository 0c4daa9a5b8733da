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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.openapi import error_response
from api.routing import allowed_methods
from quire.correlation import request_id_var
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
    headers: dict[str, str] | None = None
    if "retry_after" in exc.details:  # 429 and 423: when to come back, in seconds
        headers = {"Retry-After": str(exc.details["retry_after"])}
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

    # No handler for `Exception` here on purpose: Starlette hands that one to its outermost
    # ServerErrorMiddleware, which answers and then re-raises, so uvicorn drops the connection
    # and the request id is already gone. `LastResort` (installed by the app, inside the request
    # id middleware) answers unexpected errors instead.


class LastResort:
    """Pure-ASGI catch-all: an unexpected exception becomes a 500 problem body, not a dropped
    connection.

    It sits inside `ObservabilityMiddleware`, so the request id is still set: the traceback is
    logged once, with the id in its record, and the answer carries the id in its body and (added
    on the way out) in `X-Request-ID`. The exception is not re-raised, so the server keeps the
    keep-alive connection. If the response had already started (a stream broke half-way) there is
    no status left to change: the error is logged and the call returns with the body unfinished,
    which makes the server close that connection (re-raising would log the traceback twice).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "unhandled error",
                extra={"method": scope.get("method"), "path": scope.get("path")},
            )
            if started:
                return
            response = problem(500, "internal_error", "something went wrong on our side")
            await response(scope, receive, send)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors only the domain knows a route can return
    (403, 404, 409, 423, 429, 503). `api.openapi` adds the ones the framework implies (400, 401,
    413, 422) and serves each as the `Problem` schema under `application/problem+json`."""
    return {status: {"model": Problem, **error_response(status)} for status in statuses}
