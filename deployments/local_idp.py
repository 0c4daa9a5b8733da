"""A local identity provider: scim2-server's real SCIM 2.0 app on 127.0.0.1, with fault injection.

The demo's stand-in for a tenant's identity provider (Okta, Entra ID, Google Workspace...), and
the one the lifecycle tests and benchmark run against.

The SCIM side is not faked: requests are served by scim2-server's WSGI application over its
in-memory backend (filters, PATCH, uniqueness of `userName`, 404s and SCIM error bodies are the
library's), in a threaded werkzeug server on a free port. Around it sit two WSGI middlewares,
which are the parts a real provider does not have:

- a bearer token check: a request without `Authorization: Bearer <token>` gets a SCIM 401 (as a
  real provider's gateway would), except `/ServiceProviderConfig` (RFC 7643 §5);
- fault injection, the reason this module exists. A failing request is answered 503 or held for
  `slow_seconds` (longer than the client's timeout) — either *before* the backend sees it (nothing
  done) or *after* the backend handled it (the work is done, the answer is lost: the user exists
  but the client saw a 503 or a timeout). The second kind is what makes idempotency matter;
  `lose_answer_share` sets the split.

Faults come from three sources, checked in this order: `down` (every request 503 with a plain
text body, as a load balancer answers during an outage), `fail_next(...)` (scripted, for
deterministic specs: any status, or slow; before or after the backend) and `failure_rate`
(random, from `random.Random(seed)`: half 503s, half slow). `before_backend` lets a spec act
between two of the client's requests (e.g. create a rival account just before a POST).

One behaviour is added to the backend: deleting a user also removes it from every group's
members, as real identity providers do (scim2-server's in-memory backend keeps the dangling
reference). Only a direct `DELETE /Users/{id}` does this, not a bulk request.

    with LocalIdentityProvider(failure_rate=0.3, seed=7, slow_seconds=1.0) as idp:
        idp.add_group("staff")
        ... ScimConnection(base_url=idp.base_url, bearer_token=idp.token) ...
        idp.users()               # [{"id", "userName", "externalId", "active", ...}]
        idp.requests_seen, idp.failures_injected, idp.answers_lost
        idp.down = True           # an outage, until set back to False

Standalone, for a worker in another process (inspection is then only through SCIM itself):
    python -m deployments.local_idp --port 8020 --token secret --failure-rate 0.3
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from scim2_models import Error, Resource, ResourceType, ScimProvider, UnauthorizedException
from scim2_server.applications.wsgi import WSGIApplication
from scim2_server.memory import InMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.utils import load_default_provider
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from deployments.net import HOST, free_port

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from _typeshed.wsgi import WSGIApplication as WSGICallable

DEFAULT_TOKEN = "fake-idp-token-0123456789abcdef"
SCIM_MEDIA_TYPE = "application/scim+json"

FaultKind = Literal["error", "slow"]


@dataclass(frozen=True)
class _Fault:
    kind: FaultKind  # "error": answered `status`; "slow": held for slow_seconds
    lose_answer: bool  # True: the backend handles the request first, then the answer is spoilt
    status: HTTPStatus = HTTPStatus.SERVICE_UNAVAILABLE
    plain: bool = False  # a non-SCIM body (text/plain), as a load balancer answers


@dataclass
class _Scripted:
    fault: _Fault
    method: str | None


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log line per request (pytest would show them)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def _drain(environ: WSGIEnvironment) -> None:
    """Read the request body the app will not read, so a kept-alive connection stays in step."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)


def _answer(
    start_response: StartResponse,
    status: HTTPStatus,
    body: bytes,
    content_type: str = SCIM_MEDIA_TYPE,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(f"{status.value} {status.phrase}", [*headers, *extra_headers])
    return [body]


def _scim_error(status: HTTPStatus, detail: str) -> bytes:
    return json.dumps(Error(status=status.value, detail=detail).model_dump()).encode()


class _PruningApplication(WSGIApplication):
    """scim2-server's WSGI app, plus: a deleted user leaves every group it was a member of."""

    def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        response = super().dispatch_request(request)
        segments = request.path.strip("/").split("/")
        if (
            request.method.upper() == "DELETE"
            and len(segments) == 2
            and segments[0] == "Users"
            and response.status == HTTPStatus.NO_CONTENT
        ):
            self._forget_member(segments[1])
        return response

    def _forget_member(self, user_id: str) -> None:
        group_type = _resource_type(self.provider.resource_types, "Group")
        with self.storage.operation():
            for stored in list(self.storage.resources):
                if stored.meta is None or stored.meta.resource_type != "Group":
                    continue
                members = getattr(stored, "members", None) or []
                kept = [m for m in members if m.value != user_id]
                if len(kept) != len(members):
                    group = stored.model_copy(deep=True)
                    group.members = kept or None
                    self.storage.update(group_type, group)


@functools.cache
def _default_provider() -> ScimProvider:
    """RFC 7643's schemas, User and Group: built once (a tenth of a second), immutable."""
    return load_default_provider()


def _resource_type(resource_types: Iterable[ResourceType], name: str) -> ResourceType:
    return next(rt for rt in resource_types if rt.id == name)


class LocalIdentityProvider:
    """The fake provider and its controls. Start with `with` (or start()/stop()).

    Every control is an attribute that may be changed while the server runs (`down`,
    `failure_rate`, `slow_seconds`, `lose_answer_share`); counters count every request that
    reached the server (`requests_seen`), every fault injected (`failures_injected`) and,
    among those, the ones whose work the backend did before the answer was spoilt
    (`answers_lost`).
    """

    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        failure_rate: float = 0.0,
        seed: int = 0,
        slow_seconds: float = 2.0,
        lose_answer_share: float = 0.5,
        down: bool = False,
        host: str = HOST,
        port: int | None = None,
    ) -> None:
        for name, share in (
            ("failure_rate", failure_rate),
            ("lose_answer_share", lose_answer_share),
        ):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {share}")
        if slow_seconds < 0:
            raise ValueError(f"slow_seconds must not be negative, got {slow_seconds}")
        self.token = token
        self.failure_rate = failure_rate
        self.slow_seconds = slow_seconds
        self.lose_answer_share = lose_answer_share
        self.down = down
        # Called with (method, path) just before the backend serves a request: a spec's way to
        # make something happen between two of the client's requests (e.g. a rival account).
        self.before_backend: Callable[[str, str], None] | None = None
        self.host = host
        self.port = port or free_port(host)
        self.requests_seen = 0
        self.failures_injected = 0
        self.answers_lost = 0
        self._random = random.Random(seed)
        self._scripted: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._provider = _default_provider()
        self._storage = InMemoryStorage()
        self._app = _PruningApplication(self._storage, self._provider)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The SCIM service root, as a client's `base_url`."""
        return f"http://{self.host}:{self.port}/v2"

    def start(self) -> LocalIdentityProvider:
        if self._server is not None:
            raise RuntimeError("the fake identity provider is already running")
        self._stopping.clear()
        app = self._faults(self._authenticated(self._hooked(self._app)))
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-scim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by a "slow" fault are released at once."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalIdentityProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        kind: FaultKind = "error",
        status: int = 503,
        lose_answer: bool = False,
        method: str | None = None,
    ) -> None:
        """Fail the next `count` requests (only those with HTTP `method`, if given): "error"
        answers `status` with a SCIM error body, "slow" holds the request for `slow_seconds`
        (then answers 503); before the backend sees them or, with `lose_answer=True`, after it
        handled them ("slow" then answers the real response, too late)."""
        if kind not in ("error", "slow"):
            raise ValueError(f"kind must be 'error' or 'slow', got {kind!r}")
        fault = _Fault(kind, lose_answer, HTTPStatus(status))
        with self._lock:
            for _ in range(count):
                self._scripted.append(_Scripted(fault, method.upper() if method else None))

    def reset_counters(self) -> None:
        with self._lock:
            self.requests_seen = self.failures_injected = self.answers_lost = 0

    def _draw_fault(self, method: str) -> _Fault | None:
        """What happens to this request (None: it is served normally). Counts it."""
        with self._lock:
            self.requests_seen += 1
            fault = None
            if self.down:
                fault = _Fault("error", lose_answer=False, plain=True)
            else:
                scripted = next((s for s in self._scripted if s.method in (None, method)), None)
                if scripted is not None:
                    self._scripted.remove(scripted)
                    fault = scripted.fault
                elif self.failure_rate and self._random.random() < self.failure_rate:
                    kind: FaultKind = "error" if self._random.random() < 0.5 else "slow"
                    fault = _Fault(kind, self._random.random() < self.lose_answer_share)
            if fault is not None:
                self.failures_injected += 1
                self.answers_lost += fault.lose_answer
            return fault

    def _faults(self, inner: WSGICallable) -> WSGICallable:
        def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            fault = self._draw_fault(environ["REQUEST_METHOD"].upper())
            if fault is None:
                return inner(environ, start_response)
            if fault.lose_answer:
                captured: dict[str, Any] = {}

                def capture(
                    status: str, headers: list[tuple[str, str]], exc_info: Any = None
                ) -> Any:
                    captured.update(status=status, headers=headers)
                    return lambda data: None

                body = b"".join(inner(environ, capture))  # the backend does the work
                if fault.kind == "slow":
                    self._stopping.wait(self.slow_seconds)  # the client has given up by now
                    start_response(captured["status"], captured["headers"])
                    return [body]
            else:
                _drain(environ)
                if fault.kind == "slow":
                    self._stopping.wait(self.slow_seconds)
            if fault.plain:
                body = fault.status.phrase.encode()
                return _answer(start_response, fault.status, body, content_type="text/plain")
            detail = "injected fault" + (" (the request was handled)" if fault.lose_answer else "")
            return _answer(start_response, fault.status, _scim_error(fault.status, detail))

        return middleware

    def _hooked(self, inner: WSGICallable) -> WSGICallable:
        def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            hook = self.before_backend
            if hook is not None:
                hook(environ["REQUEST_METHOD"].upper(), environ.get("PATH_INFO", ""))
            return inner(environ, start_response)

        return middleware

    def _authenticated(self, inner: WSGICallable) -> WSGICallable:
        def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            open_path = environ.get("PATH_INFO", "").rstrip("/").endswith("/ServiceProviderConfig")
            if self.token is None or open_path:
                return inner(environ, start_response)
            scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            if scheme.lower() == "bearer" and given == self.token:
                return inner(environ, start_response)
            _drain(environ)
            error = UnauthorizedException(detail="a valid bearer token is required").to_error()
            return _answer(
                start_response,
                HTTPStatus.UNAUTHORIZED,
                json.dumps(error.model_dump()).encode(),
                extra_headers=[("WWW-Authenticate", 'Bearer realm="fake-idp"')],
            )

        return middleware

    # -- direct inspection and seeding of the backend ----------------------------------------

    def _resources(self, type_name: str) -> list[Resource[Any]]:
        with self._storage.operation():
            return [
                r.model_copy(deep=True)
                for r in self._storage.resources
                if r.meta is not None and r.meta.resource_type == type_name
            ]

    def users(self) -> list[dict[str, Any]]:
        """Every account the provider holds, as it holds it."""
        return [
            {
                "id": u.id,
                "userName": u.user_name,
                "externalId": u.external_id,
                "active": u.active,
                "displayName": u.display_name,
                "emails": [e.value for e in u.emails or []],
            }
            for u in self._resources("User")
        ]

    def groups(self) -> list[dict[str, Any]]:
        """Every group, with its members' user ids."""
        return [
            {
                "id": g.id,
                "displayName": g.display_name,
                "members": [m.value for m in g.members or []],
            }
            for g in self._resources("Group")
        ]

    def members_of(self, display_name: str) -> list[str]:
        """The user ids in the group named `display_name` (KeyError: no such group)."""
        for group in self.groups():
            if group["displayName"] == display_name:
                return list(group["members"])
        raise KeyError(display_name)

    def add_group(self, name: str) -> str:
        """Seed a group straight into the backend; its id."""
        return self._create("Group", display_name=name)

    def add_user(
        self, user_name: str, *, external_id: str | None = None, active: bool = True
    ) -> str:
        """Seed an account straight into the backend (e.g. someone else's); its id."""
        return self._create("User", user_name=user_name, external_id=external_id, active=active)

    def _create(self, type_name: str, **values: Any) -> str:
        resource_type = _resource_type(self._provider.resource_types, type_name)
        model = self._provider.model_for(resource_type)
        assert model is not None
        created = self._storage.create(resource_type, model(**values))
        return str(created.id)


def _serve_until_interrupted(idp: LocalIdentityProvider, announce: Callable[[str], None]) -> None:
    with idp:
        announce(f"fake identity provider on {idp.base_url} (bearer token {idp.token!r})")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A SCIM 2.0 identity provider for local runs.")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument("--lose-answer-share", type=float, default=0.5)
    parser.add_argument("--group", action="append", default=[], help="seed a group (repeatable)")
    args = parser.parse_args(argv)
    idp = LocalIdentityProvider(
        token=args.token,
        failure_rate=args.failure_rate,
        seed=args.seed,
        slow_seconds=args.slow_seconds,
        lose_answer_share=args.lose_answer_share,
        host=args.host,
        port=args.port,
    )
    for group in args.group:
        idp.add_group(group)
    _serve_until_interrupted(idp, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
