"""scim2-client's synchronous client, carried over an `httpx.Client`.

Why this exists: scim2-client (0.13) does the SCIM half of the work — it builds each request from
scim2-models objects, checks the status code, the content type and the payload of each answer,
and turns a SCIM error body into a `scim2_models.SCIMException` — but leaves the sending to an
"engine". The only network engine it ships, `scim2_client.engines.httpx2`, imports `httpx2`
(pydantic's fork of httpx, a different package that Quire does not install); the others run a
WSGI/ASGI app in process, for testing a server. Quire speaks HTTP through `httpx` everywhere, so
this module is that engine for httpx 0.28: the same three hooks the httpx2 engine fills in
(`request`, `_parse_json`, `_stays_under_base_url`), written against httpx's API.

Two things differ from the httpx2 engine. scim2-client defines `BASE_HEADERS` but never sends
them, so this engine asks for `application/scim+json` itself (RFC 7644 §8.1: servers may refuse
plain `application/json` bodies). And httpx's `URL` has no `origin`, so the base-URL guard
compares scheme, host and port.

The engine holds no state of its own beyond the `httpx.Client` it is given: it is as thread-safe
as that client, and whoever made the client closes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from scim2_client import BaseSyncSCIMClient, RequestNetworkException

SCIM_MEDIA_TYPE = "application/scim+json"


@contextmanager
def _network_errors() -> Iterator[None]:
    """Turn httpx's transport errors into scim2-client's, keeping the cause.

    The original `httpx.RequestError` (a timeout, a refused connection, ...) stays reachable as
    `__cause__`, which is how a caller tells a timeout from a refused connection.
    """
    try:
        yield
    except httpx.RequestError as exc:
        network = RequestNetworkException()
        network.add_note(str(exc))
        raise network from exc


class HttpxSCIMClient(BaseSyncSCIMClient):
    """A `scim2_client` synchronous client whose requests go over `client` (an httpx.Client).

    `client.base_url` is the SCIM service root (e.g. `https://idp.example/scim/v2`); the
    resource endpoints (`/Users`, `/Groups`) are resolved under it. Every keyword argument
    after `client` is scim2-client's own (`provider=`, `check_response_payload=`, ...).
    """

    def __init__(self, client: httpx.Client, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        """Whether a resource type's endpoint resolves under the base URL (same origin and path
        prefix), so a server's own description cannot send our credentials elsewhere."""
        base = self.client.base_url
        if not base.is_absolute_url:
            return False
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        return same_origin and url.raw_path.startswith(base.raw_path)

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request as scim2-client prepared it (`params=` for queries, `json=` for
        bodies), in SCIM's media type, and hand back httpx's response unread by SCIM rules."""
        headers = httpx.Headers(kwargs.pop("headers", None))
        headers.setdefault("Accept", SCIM_MEDIA_TYPE)
        if "json" in kwargs or "content" in kwargs:
            headers.setdefault("Content-Type", SCIM_MEDIA_TYPE)
        with _network_errors():
            return self.client.request(method, url, headers=headers, **kwargs)
