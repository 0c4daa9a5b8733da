"""The machinery of Quire's small JSON-over-HTTP stand-in servers, kept here once.

The demo and the tests replace outside web services (a Slack webhook, an OpenAI-compatible chat
completions API, a LanguageTool server) with fakes that are real HTTP servers on 127.0.0.1, so
that Prefect flow runs and workers in other processes reach them as they reach the real thing.
Every such fake needs the same parts, and they used to be written again in each fake: a server
thread on a fixed free port (so that `down` can close the port and reopen the same address), a
record of the requests received, canned answers and faults queued by a test, a delay, and a way
to run standalone. `FakeWebService` holds them; a fake subclasses it and says only how it
`answer`s a request, in the shape of the service it stands in for:

    class LocalChat(FakeWebService):             # deployments/local_chat.py
        def answer(self, request: Received) -> Answer:
            return 200, "ok", {}

The controls every fake then has, for the failure rules and the retry paths:

    with LocalChat() as chat:
        chat.fail_next(2, status=503)   # the next two requests fail (undelivered), then it recovers
        chat.delay_next(1, seconds=5)   # the next one is handled (normally) only 5 s later
        chat.answer_next(1, 200, {})    # the next one gets this answer instead
        chat.slow_seconds = 1.0         # each request is handled at once, answered a second late
        chat.down = True                # the port is closed: connections are refused
        chat.requests                   # every request received (failed ones too), in order

A fake can narrow what the queued faults apply to (`faults_apply`): LanguageTool's apply to its
check requests only, so that a client asking for the language list does not use them up.
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
from urllib.parse import parse_qs

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

    @property
    def form(self) -> dict[str, str]:
        """The body's fields as a form-encoded body carries them (the first value of each, blank
        ones too); bytes that are not UTF-8 read as U+FFFD, as parse_qs reads %-escapes."""
        fields = parse_qs(self.raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {name: values[0] for name, values in fields.items()}


@dataclass(frozen=True)
class _Canned:
    """What the next request the faults apply to gets: this answer, or (status None) the
    normal answer, worked out only after `delay` seconds."""

    status: int | None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here, not a failure


class FakeWebService:
    """A JSON-over-HTTP fake: subclasses say how to `answer` a request they were not told to
    fail. Start with `with` (or start()/stop())."""

    thread_name = "fake-web-service"
    server_version = "FakeWebService/1.0"  # the Server header

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

    def delay_next(self, n: int = 1, seconds: float = 5.0) -> None:
        """The next `n` requests are handled (normally) only after `seconds`: past a client's
        timeout, a request is then delivered or not as the fake's `answer` has it."""
        with self._lock:
            self._canned += [_Canned(None, delay=seconds) for _ in range(n)]

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

    def faults_apply(self, request: Received) -> bool:
        """Whether `request` takes the next of the queued answers and delays (answer_next,
        fail_next, delay_next); one that does not is answered normally and leaves them queued."""
        return True

    def forget(self) -> None:
        """Drop what `answer` kept (called under the fake's lock by reset())."""

    # --- serving ------------------------------------------------------------------------------

    def _serve(self, request: Received) -> Answer:
        with self._lock:
            self._requests.append(request)
            canned = self._canned.pop(0) if self._canned and self.faults_apply(request) else None
            if canned is None:
                answer = self.answer(request)
        if canned is not None:
            answer = self._canned_answer(canned, request)
        time.sleep(self.slow_seconds)  # done already: only the answer is late
        return answer

    def _canned_answer(self, canned: _Canned, request: Received) -> Answer:
        if canned.status is not None:
            return canned.status, canned.body, canned.headers
        time.sleep(canned.delay)  # delay_next: the request is looked at only now
        with self._lock:
            return self.answer(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = fake.server_version

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


def serve_standalone(
    factory: Callable[[str, int], FakeWebService],
    description: str,
    *,
    default_port: int | None = None,
) -> None:
    """`python -m ...` for a fake: serve on --host/--port (required unless it has a default)
    until interrupted, saying where on the first line of stdout."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=default_port is None, default=default_port)
    args = parser.parse_args()
    with factory(args.host, args.port) as server:
        print(f"{description} at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
