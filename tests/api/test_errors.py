"""An unexpected failure is still a well-formed answer: a 500 problem body that carries the
request id (body and `X-Request-ID`), one logged traceback with the same id, and a connection the
client can keep using. Every log line of a request carries its id."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request

from api.app import create_app
from deployments.net import free_port
from quire.settings import Settings


class Boom(RuntimeError):
    pass


def with_test_routes(app: FastAPI) -> FastAPI:
    """Routes only these tests have: one that fails unexpectedly, one that logs, one that says
    which client socket it was called on."""

    async def boom() -> None:
        logging.getLogger("uvicorn.error").warning("about to fail")
        raise Boom("the database caught fire")

    async def chatty() -> dict[str, str]:
        for name in ("quire.orders", "sqlalchemy.engine", "uvicorn.error", "some.library"):
            logging.getLogger(name).warning("working on it")
        return {"status": "ok"}

    async def peer(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    app.add_api_route("/test/boom", boom, methods=["GET", "POST"])
    app.add_api_route("/test/chatty", chatty)
    app.add_api_route("/test/peer", peer)
    return app


@pytest.fixture
async def test_client(settings: Settings, database) -> AsyncIterator[httpx.AsyncClient]:
    app = with_test_routes(create_app(settings, database=database))
    async with LifespanManager(app, startup_timeout=30):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://quire.test") as c:
            yield c


def request_records(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "request_id", None) == request_id]


async def test_an_unexpected_error_is_a_500_problem_with_its_request_id(test_client, caplog):
    caplog.set_level(logging.INFO)
    response = await test_client.get("/test/boom", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "trace-500"
    body = response.json()
    assert body["status"] == 500
    assert body["code"] == "internal_error"
    assert body["request_id"] == "trace-500"
    assert "fire" not in body["detail"]  # the exception's text stays in the log

    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert tracebacks[0].exc_info[0] is Boom
    assert tracebacks[0].request_id == "trace-500"
    # Every line of that request carries the id: the route's own, the traceback, the access log.
    mine = request_records(caplog, "trace-500")
    assert {r.name for r in mine} >= {"uvicorn.error", "quire.api", "quire.api.access"}
    access = next(r for r in mine if r.name == "quire.api.access")
    assert access.status == 500


async def test_a_500_after_reading_a_body_is_the_same_problem(test_client):
    response = await test_client.post("/test/boom", json={"title": "x"})
    assert response.status_code == 500
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_every_log_line_of_a_request_carries_its_id(test_client, caplog):
    caplog.set_level(logging.INFO)
    response = await test_client.get("/test/chatty")
    request_id = response.headers["x-request-id"]
    lines = [r for r in caplog.records if r.getMessage() in ("working on it", "request")]
    assert len(lines) == 5
    assert {r.request_id for r in lines} == {request_id}
    logging.getLogger("quire.api").info("between requests")
    assert caplog.records[-1].request_id is None


async def test_a_500_is_counted_in_the_metrics(test_client):
    await test_client.get("/test/boom")
    text = (await test_client.get("/metrics")).text
    assert 'quire_http_requests_total{method="GET",route="/test/boom",status="500"}' in text


@pytest.fixture
def live_app(settings: Settings) -> Iterator[str]:
    """The app with the test routes, served by a real uvicorn on a socket (in a thread)."""
    app = with_test_routes(create_app(settings))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_the_connection_survives_a_500(live_app):
    """One keep-alive connection: a request that fails, then ordinary requests on the same
    socket (the server answered the 500 and kept the connection instead of dropping it)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=live_app, limits=limits, timeout=10) as client:
        before = client.get("/test/peer").json()["port"]
        failed = client.get("/test/boom", headers={"X-Request-ID": "live-500"})
        assert (failed.status_code, failed.headers["x-request-id"]) == (500, "live-500")
        assert failed.json()["request_id"] == "live-500"
        assert failed.headers.get("connection") != "close"
        after = client.get("/test/peer")
        assert after.status_code == 200
        assert after.json()["port"] == before
        assert client.get("/health/live").json() == {"status": "ok"}
