"""`chat.post` against a fake Slack incoming webhook (a real HTTP server on 127.0.0.1): what it
posts, that a retry posts once where the receiver deduplicates, and how each failure is
classified without the webhook's URL ever showing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from deployments.local_chat import LocalChat
from deployments.net import free_port
from quire.lifecycle.connectors.base import (
    ConnectorFailure,
    PermanentFailure,
    Provider,
    StepCall,
    TransientFailure,
)
from quire.lifecycle.connectors.chat import ChatConnection, post

TENANT = uuid.uuid4()
TOKEN = "T0001/B0002/secrettokenvalue0123456789"


def call(key: str = "run-1:announce", timeout: float = 5.0, **params: Any) -> StepCall:
    return StepCall(TENANT, key, {"text": "Please welcome Ann Lee!"} | params, timeout)


@pytest.fixture
def chat() -> Iterator[LocalChat]:
    with LocalChat(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def connection(chat: LocalChat) -> ChatConnection:
    return ChatConnection(webhook_url=chat.webhook_url)


def assert_no_secret(failure: ConnectorFailure) -> None:
    assert TOKEN not in str(failure)
    assert "secrettokenvalue" not in str(failure)
    assert "/services/" not in str(failure)


def test_a_post_arrives_as_the_webhooks_json_with_the_idempotency_key(
    chat: LocalChat, connection: ChatConnection
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Welcome* Ann"}}]
    outcome = post(connection, call(channel="#general", blocks=blocks))

    assert chat.messages == [
        {"text": "Please welcome Ann Lee!", "channel": "#general", "blocks": blocks}
    ]
    [request] = chat.requests
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "run-1:announce"
    assert outcome.output == {"response": "ok"}
    assert outcome.undo is None


def test_only_the_given_fields_are_sent(chat: LocalChat, connection: ChatConnection) -> None:
    post(connection, call())

    assert chat.messages == [{"text": "Please welcome Ann Lee!"}]


def test_a_retry_of_a_post_whose_answer_was_lost_is_posted_once(
    chat: LocalChat, connection: ChatConnection
) -> None:
    chat.slow_seconds = 1.0  # delivered, but answered after the step's budget

    with pytest.raises(TransientFailure, match=r"did not answer within 0\.2 s") as failure:
        post(connection, call(timeout=0.2))
    chat.slow_seconds = 0.0
    post(connection, call())

    assert len(chat.requests) == 2
    assert chat.messages == [{"text": "Please welcome Ann Lee!"}]
    assert_no_secret(failure.value)


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_server_errors_rate_limits_and_request_timeouts_are_transient(
    chat: LocalChat, connection: ChatConnection, status: int
) -> None:
    chat.fail_next(1, status=status, retry_after=2)

    with pytest.raises(TransientFailure, match=f"answered {status}") as failure:
        post(connection, call())

    assert failure.value.provider is Provider.CHAT
    assert "retry after 2 s" in failure.value.detail
    assert chat.messages == []
    assert_no_secret(failure.value)


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_other_client_errors_are_permanent(
    chat: LocalChat, connection: ChatConnection, status: int
) -> None:
    chat.fail_next(1, status=status)

    with pytest.raises(PermanentFailure, match=f"answered {status}: simulated_failure") as failure:
        post(connection, call())

    assert_no_secret(failure.value)


def test_a_webhook_url_that_was_revoked_is_permanent_and_not_shown(chat: LocalChat) -> None:
    revoked = ChatConnection(webhook_url=chat.root_url + "/services/T0001/B0002/revoked-token")

    with pytest.raises(PermanentFailure, match="answered 404: no_service") as failure:
        post(revoked, call())

    assert "revoked-token" not in str(failure.value)
    assert chat.messages == []


def test_a_refused_connection_is_transient_and_the_webhook_recovers(
    chat: LocalChat, connection: ChatConnection
) -> None:
    chat.down = True
    with pytest.raises(TransientFailure, match="could not be reached") as failure:
        post(connection, call())
    assert_no_secret(failure.value)

    chat.down = False
    post(connection, call())

    assert chat.messages == [{"text": "Please welcome Ann Lee!"}]


def test_a_closed_port_is_transient() -> None:
    closed = ChatConnection(webhook_url=f"http://127.0.0.1:{free_port()}/services/{TOKEN}")

    with pytest.raises(TransientFailure) as failure:
        post(closed, call())

    assert_no_secret(failure.value)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"text": ""}, "text"), ({"blocks": "not a list"}, "blocks"), ({"emoji": ":x:"}, "emoji")],
)
def test_bad_parameters_are_permanent_and_name_the_field(
    chat: LocalChat, connection: ChatConnection, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(PermanentFailure, match=f"bad parameters: {field}"):
        post(connection, call(**params))

    assert chat.requests == []


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example/services/x", "hooks.example/x", "https:///secret-path"]
)
def test_a_webhook_url_must_be_http_and_is_not_echoed_when_refused(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ChatConnection(webhook_url=url)

    assert url not in str(refused.value)
    assert "hooks.example" not in str(refused.value)


def test_the_webhook_url_is_hidden_in_the_connections_repr(connection: ChatConnection) -> None:
    assert TOKEN not in repr(connection)
