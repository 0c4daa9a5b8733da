"""The `chat.post` step: a message to a Slack-compatible incoming webhook (Slack, Mattermost,
Rocket.Chat and Discord's `/slack` endpoints all speak it).

The protocol is one JSON POST (`{"text", "channel"?, "blocks"?}`) to a URL the chat system gave
out; it answers `200 ok`, or a status with a short reason as text (`400 invalid_payload`,
`403 action_prohibited`, `404 no_service`, `410 channel_is_archived`, `429` when rate limited,
`5xx`). The URL is the only credential (anyone who has it may post), so it is kept as a secret
and no error detail ever contains it, not even its host.

Idempotency: `call.idempotency_key` goes out as an `Idempotency-Key` header. Slack ignores it
(its webhooks have no deduplication, so a post whose answer was lost may show twice after a
retry); a gateway or chat system that honours the header, and the test fake, post once.

No undo: an incoming webhook answers no message id, and there is no webhook call that deletes
or edits a message (that needs a bot token and the Web API). A compensation for a wrong welcome
is a second message, which a playbook can post as a step of its own.

`post_json` below is the JSON-over-HTTP exchange and its failure rules, shared with the AI
connector: transport errors (refused, reset, timed out) and `408`, `429`, `5xx` are transient;
every other non-2xx answer, a redirect included, is permanent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import ConfigDict, Field, SecretStr, field_validator

from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
    TransientFailure,
)
from quire.lifecycle.connectors.email import parse_params
from quire.schemas import Input

TRANSIENT_STATUSES = frozenset({408, 429})


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host (the error does not echo it: it may be secret)."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise ValueError("not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def response_text(response: httpx.Response) -> str:
    """The answer's text, on one line and short (Slack's reasons are a word or two)."""
    return " ".join(response.text.split())[:200]


def _scrub(detail: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    return detail


def post_json(
    provider: Provider,
    url: str,
    payload: Mapping[str, Any],
    *,
    what: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    explain: Callable[[httpx.Response], str] = response_text,
) -> httpx.Response:
    """POST `payload` as JSON; the 2xx response, or the failure classified. `what` names the
    other side in details ("the chat webhook"); `secrets` are masked out of every detail, and
    `explain` says what a refusal's body means (it must not echo a secret either)."""
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(url, json=dict(payload), headers=dict(headers or {}))
    except httpx.TimeoutException:
        raise TransientFailure(provider, f"{what} did not answer within {timeout:g} s") from None
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        detail = _scrub(f"{what} cannot be sent this request: {exc}", secrets)
        raise PermanentFailure(provider, detail) from None
    except httpx.HTTPError as exc:  # refused, reset, unreachable, a broken answer
        detail = _scrub(f"{what} could not be reached: {type(exc).__name__}: {exc}", secrets)
        raise TransientFailure(provider, detail) from None
    if response.is_success:
        return response
    status = response.status_code
    detail = f"{what} answered {status}"
    reason = explain(response)
    if reason:
        detail += f": {reason}"
    if "Retry-After" in response.headers:
        detail += f" (retry after {response.headers['Retry-After'][:20]} s)"
    kind = TransientFailure if status >= 500 or status in TRANSIENT_STATUSES else PermanentFailure
    raise kind(provider, _scrub(detail, secrets))


class ChatConnection(Input):
    """A tenant's incoming webhook. The URL is the credential: it is never shown."""

    model_config = ConfigDict(hide_input_in_errors=True)  # nor when it is refused

    webhook_url: SecretStr
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("webhook_url")
    @classmethod
    def _url_is_http(cls, value: SecretStr) -> SecretStr:
        http_url(value.get_secret_value())
        return value

    def secrets(self) -> list[str]:
        """What must never appear in a detail: the URL, and its path (the token part)."""
        url = self.webhook_url.get_secret_value()
        path = httpx.URL(url).raw_path.decode("ascii", "replace")
        return [url, path] if len(path) > 1 else [url]


class PostParams(Input):
    """`chat.post`'s parameters (`blocks`: Slack's Block Kit, passed on as given)."""

    text: str = Field(min_length=1, max_length=40_000)
    channel: str | None = Field(default=None, min_length=1, max_length=200)
    blocks: list[dict[str, Any]] | None = None


def post(connection: ChatConnection, call: StepCall) -> StepOutcome:
    """`chat.post`: output `{"response"}` (Slack's "ok"); no undo (see the module's docstring)."""
    params = parse_params(PostParams, call, Provider.CHAT)
    payload = params.model_dump(exclude_none=True)
    response = post_json(
        Provider.CHAT,
        connection.webhook_url.get_secret_value(),
        payload,
        what="the chat webhook",
        timeout=min(connection.timeout, call.timeout_seconds),
        headers={"Idempotency-Key": call.idempotency_key},
        secrets=connection.secrets(),
    )
    return StepOutcome(output={"response": response_text(response)}, undo=None)
