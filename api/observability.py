"""Request ids, JSON logs, Prometheus metrics and request hygiene (the body limit, no NUL
characters in the query, path or headers), as one ASGI middleware.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses (SSE) pass straight through and the hot
path pays for one wrapper only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem
from quire.correlation import request_id_var
from quire.schemas import INVALID_CHARACTER, NUL

log = logging.getLogger("quire.api.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "quire_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "quire_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.stream_clients = Gauge(
            "quire_stream_clients",
            "Connected live-stream clients",
            ["transport"],
            registry=self.registry,
        )
        self.stream_dropped = Counter(
            "quire_stream_slow_consumers_total",
            "Stream clients cut off for falling behind",
            registry=self.registry,
        )
        self.events_delivered = Counter(
            "quire_stream_events_total",
            "Events fanned out by this process",
            registry=self.registry,
        )


def install_request_id_logging() -> None:
    """Stamp every log record with the id of the request it was emitted for (None outside one).

    A record factory, not a handler filter: it runs where the record is made, so the id is right
    for every logger (ours, SQLAlchemy's, uvicorn's, a traceback) and every handler (pytest's
    caplog included), even when a handler formats the record later on another thread.
    Idempotent: each app instance calls it.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "stamps_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    factory.stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure_logging(level: str = "INFO") -> None:
    install_request_id_logging()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"levelname": "level", "asctime": "time"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # we log requests ourselves


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket" and nul_location(scope) is not None:
                await send({"type": "websocket.close", "code": 1008})  # before accept: a 403
                return
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        limit = self.max_body_bytes

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, request_id, limit)
            self._observe(scope, 413, started)
            request_id_var.reset(token)
            return

        where = nul_location(scope)
        if where is not None:
            await _nul_refused(where)(scope, receive, _with_id(send, request_id))
            self._observe(scope, 422, started)
            request_id_var.reset(token)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            self._observe(scope, status, started)
            request_id_var.reset(token)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.requests.labels(method, path, str(status)).inc()
        self.metrics.latency.labels(method, path).observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


def nul_location(scope: Scope) -> list[str] | None:
    """Where a NUL character hides in the request line or headers (["query", name], ["path"],
    ["header", name]), or None.

    No database stores a NUL in text (PostgreSQL refuses it outright), and no query parameter,
    path segment or header of this API has a use for one, so it is refused here, once, before
    any route, dependency or lookup sees it. Bodies are checked by `quire.schemas.Input`.
    """
    query = scope.get("query_string", b"").decode("latin-1")
    if query and ("%00" in query or NUL in query):
        for name, value in parse_qsl(query, keep_blank_values=True):
            if NUL in name or NUL in value:
                return ["query", name.replace(NUL, "")]
    if NUL in scope.get("path", ""):
        return ["path"]
    for name, value in scope.get("headers", ()):
        if b"\x00" in value:
            return ["header", name.decode("latin-1")]
    return None


def _nul_refused(loc: list[str]) -> Any:
    field = ".".join(loc)
    return problem(
        422,
        "validation_failed",
        f"{field}: must not contain the NUL character (U+0000)",
        errors=[
            {
                "loc": loc,
                "msg": "must not contain the NUL character (U+0000)",
                "type": INVALID_CHARACTER,
            }
        ],
    )


def _with_id(send: Send, request_id: str) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            message["headers"] = headers
        await send(message)

    return send_with_id


async def _too_large(send: Send, request_id: str, limit: int) -> None:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "code": "body_too_large",
        "detail": f"request body exceeds {limit} bytes",
        "request_id": request_id,
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
