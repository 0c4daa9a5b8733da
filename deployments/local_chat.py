"""A local Slack incoming webhook: a real HTTP server on 127.0.0.1, the demo's stand-in for a
tenant's chat workspace, and what the chat connector's tests post to.

It answers as Slack does: `200 ok` for a JSON object with `text` or `blocks` POSTed to the
webhook's URL, `400 invalid_payload` for a body that is not one, `400 no_text` for one without
either, `404 no_service` for any other URL. Unlike Slack it honours `Idempotency-Key`: a key it
has delivered before is answered `200 ok` again and not posted twice.

Fault switches, for the failure rules and the retry paths:

    with LocalChat() as chat:
        chat.fail_next(2, status=503)     # the next two posts fail (undelivered), then it recovers
        chat.slow_seconds = 1.0           # each post is delivered, then answered a second late
        chat.down = True                  # the port is closed: connections are refused
        chat.requests                     # every POST received (failed ones too), in order
        chat.messages                     # the JSON bodies delivered, each idempotency key once

`FakeWebService` is the machinery both fakes share (`fake_chat_completions` builds on it): the
server thread on a fixed free port (so that `down` can close it and reopen the same address),
the record of requests, canned answers and the delay.

Standalone, for a worker in another process:
    python -m deployments.local_chat --port 8011
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from deployments.net import HOST, free_port

Answer = tuple[int, Any, Mapping[str, str]]  # status, body (text, or JSON-able), headers


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it (header names in lower case)."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any  # the parsed JSON, or None when the body is not JSON


@dataclass(frozen=True)
class _Canned:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here, not a failure


class FakeWebService:
    """A JSON-over-HTTP fake: subclasses say how to `answer` a request they were not told to
    fail. Start with `with` (or start()/stop())."""

    thread_name = "fake-web-service"

    def __init__(self, *, host: str = HOST, port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.slow_seconds = 0.0
        self._lock = threading.Lock()
        self._canned: list[_Canned] = []
        self._requests: list[Received] = []
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._down = False

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """What a client is configured with (subclasses: the webhook, the API's base)."""
        return self.root_url

    def start(self) -> Self:
        self._running = True
        if not self._down:
            self._open()
        return self

    def stop(self) -> None:
        self._running = False
        self._close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _open(self) -> None:
        if self._server is not None:
            return
        self._server = _QuietServer((self.host, self.port), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that stop() returns at once
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()

    def _close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server, self._thread = None, None

    # --- controls for tests -------------------------------------------------------------------

    @property
    def down(self) -> bool:
        """True: the port is closed (connections are refused) until set back to False."""
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        if value:
            self._close()
        elif self._running:
            self._open()

    def answer_next(
        self, n: int, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """The next `n` requests get this answer instead of the normal one (nothing delivered)."""
        with self._lock:
            self._canned += [_Canned(status, body, dict(headers or {})) for _ in range(n)]

    def fail_next(self, n: int = 1, status: int = 503, *, retry_after: float | None = None) -> None:
        """The next `n` requests fail with `status` (a transient 503 by default)."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self.answer_next(n, status, self.failure_body(status), headers)

    def failure_body(self, status: int) -> Any:
        return f"simulated_failure_{status}"

    @property
    def requests(self) -> list[Received]:
        """Every request received, failed and slow ones included, in order."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._canned.clear()
            self._requests.clear()
            self.forget()
        self.slow_seconds = 0.0

    # --- for subclasses -----------------------------------------------------------------------

    def answer(self, request: Received) -> Answer:
        """The normal answer (called under the fake's lock)."""
        raise NotImplementedError

    def forget(self) -> None:
        """Drop what `answer` kept (called under the fake's lock by reset())."""

    # --- serving ------------------------------------------------------------------------------

    def _serve(self, request: Received) -> Answer:
        with self._lock:
            self._requests.append(request)
            canned = self._canned.pop(0) if self._canned else None
            answer = (
                (canned.status, canned.body, canned.headers) if canned else self.answer(request)
            )
        time.sleep(self.slow_seconds)  # done already: only the answer is late
        return answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "FakeWebService/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _reply(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
                is_json = not isinstance(body, str)
                payload = (json.dumps(body) if is_json else body).encode()
                self.send_response(status)
                kind = "application/json" if is_json else "text/plain; charset=utf-8"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # the client gave up waiting
                    self.wfile.write(payload)

            def _receive(self) -> Received:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {name.lower(): value for name, value in self.headers.items()}
                return Received(self.command, self.path, headers, raw, body)

            def do_POST(self) -> None:
                self._reply(*fake._serve(self._receive()))

            def do_GET(self) -> None:
                self._reply(*fake._serve(self._receive()))

        return Handler


class LocalChat(FakeWebService):
    """A Slack incoming webhook at `webhook_url`."""

    thread_name = "fake-chat"

    def __init__(
        self,
        *,
        token: str = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        host: str = HOST,
        port: int | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.path = f"/services/{token}"
        self._messages: list[Any] = []
        self._keys: set[str] = set()

    @property
    def webhook_url(self) -> str:
        return self.root_url + self.path

    @property
    def url(self) -> str:
        return self.webhook_url

    @property
    def messages(self) -> list[Any]:
        """The JSON bodies delivered (a repeated idempotency key once), in order."""
        with self._lock:
            return list(self._messages)

    def answer(self, request: Received) -> Answer:
        if request.method != "POST" or request.path != self.path:
            return 404, "no_service", {}
        if not isinstance(request.body, dict):
            return 400, "invalid_payload", {}
        if not request.body.get("text") and not request.body.get("blocks"):
            return 400, "no_text", {}
        key = request.headers.get("idempotency-key")
        if key is None or key not in self._keys:
            self._messages.append(request.body)
            if key is not None:
                self._keys.add(key)
        return 200, "ok", {}

    def forget(self) -> None:
        self._messages.clear()
        self._keys.clear()


def serve_standalone(factory: Callable[[str, int], FakeWebService], description: str) -> None:
    """`python -m ...` for a fake: serve on --host/--port until interrupted."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with factory(args.host, args.port) as server:
        print(f"{description} at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    serve_standalone(lambda host, port: LocalChat(host=host, port=port), "a fake Slack webhook")
