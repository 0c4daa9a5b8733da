"""`ai.draft_message` against a fake OpenAI-compatible chat completions endpoint (a real HTTP
server on 127.0.0.1): the request it makes, the text it returns, and how refusals, outages and
malformed answers are classified without the API key ever showing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from quire.lifecycle.connectors.ai import AiConnection, draft_message
from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    TransientFailure,
)
from tests.support.fake_chat_completions import FakeChatCompletions

TENANT = uuid.uuid4()
KEY = "sk-test-key-0123456789abcdef"
PROMPT = "Write two sentences welcoming Ann Lee, a translator, to the team."


def call(timeout: float = 5.0, **params: Any) -> StepCall:
    defaults = {"instructions": "You write warm, short welcome notes.", "prompt": PROMPT}
    return StepCall(TENANT, "run-1:draft", defaults | params, timeout)


@pytest.fixture
def ai() -> Iterator[FakeChatCompletions]:
    with FakeChatCompletions(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def connection(ai: FakeChatCompletions) -> AiConnection:
    return AiConnection(base_url=ai.base_url, api_key=KEY, model="gpt-test")


def test_the_draft_is_the_models_answer_to_the_instructions_and_prompt(
    ai: FakeChatCompletions, connection: AiConnection
) -> None:
    outcome = draft_message(connection, call(max_tokens=200))

    assert outcome.output == {
        "text": FakeChatCompletions.draft(PROMPT),
        "model": "gpt-test",
        "finish_reason": "stop",
    }
    assert outcome.undo is None
    [request] = ai.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You write warm, short welcome notes."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": 200,
    }


def test_without_instructions_or_a_limit_only_the_prompt_is_sent(
    ai: FakeChatCompletions, connection: AiConnection
) -> None:
    draft_message(connection, StepCall(TENANT, "run-1:draft", {"prompt": PROMPT}))

    assert ai.completions == [
        {"model": "gpt-test", "messages": [{"role": "user", "content": PROMPT}]}
    ]


def test_a_draft_cut_at_max_tokens_says_so(connection: AiConnection) -> None:
    outcome = draft_message(connection, call(max_tokens=3))

    assert outcome.output["text"] == FakeChatCompletions.draft(PROMPT, 3)
    assert outcome.output["finish_reason"] == "length"


def test_a_base_url_with_a_trailing_slash_reaches_the_same_endpoint(
    ai: FakeChatCompletions,
) -> None:
    connection = AiConnection(base_url=ai.base_url + "/", api_key=KEY, model="gpt-test")

    draft_message(connection, call())

    assert [r.path for r in ai.requests] == ["/v1/chat/completions"]


def test_a_refused_key_is_permanent_and_no_part_of_any_key_is_shown(
    ai: FakeChatCompletions,
) -> None:
    wrong = "sk-wrong-key-9876543210fedcba"
    connection = AiConnection(base_url=ai.base_url, api_key=wrong, model="gpt-test")

    with pytest.raises(PermanentFailure, match="answered 401: the API key was refused") as failure:
        draft_message(connection, call())

    assert failure.value.provider is Provider.AI
    for fragment in (wrong, wrong[-4:], KEY, "Incorrect API key"):
        assert fragment not in str(failure.value)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_rate_limits_are_transient(
    ai: FakeChatCompletions, connection: AiConnection, status: int
) -> None:
    ai.fail_next(1, status=status)

    with pytest.raises(TransientFailure, match=f"answered {status}: simulated failure"):
        draft_message(connection, call())


def test_a_request_the_endpoint_refuses_is_permanent_with_its_reason(
    ai: FakeChatCompletions,
) -> None:
    connection = AiConnection(base_url=ai.base_url, api_key=KEY, model="gpt-test")
    ai.answer_next(1, 400, {"error": {"message": "max_tokens is too large: 999999"}})

    with pytest.raises(PermanentFailure, match="answered 400: max_tokens is too large"):
        draft_message(connection, call())


def test_a_wrong_base_url_is_permanent(ai: FakeChatCompletions) -> None:
    connection = AiConnection(base_url=ai.root_url + "/v2", api_key=KEY, model="gpt-test")

    with pytest.raises(PermanentFailure, match="answered 404"):
        draft_message(connection, call())


def test_an_endpoint_that_answers_too_late_is_transient(
    ai: FakeChatCompletions, connection: AiConnection
) -> None:
    ai.slow_seconds = 1.0

    with pytest.raises(TransientFailure, match=r"did not answer within 0\.2 s"):
        draft_message(connection, call(timeout=0.2))


def test_an_endpoint_that_is_down_is_transient(
    ai: FakeChatCompletions, connection: AiConnection
) -> None:
    ai.down = True

    with pytest.raises(TransientFailure, match="could not be reached") as failure:
        draft_message(connection, call())

    assert KEY not in str(failure.value)


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"choices": []}, "no choices"),
        ({"id": "x"}, "no choices"),
        ({"choices": [{"finish_reason": "stop"}]}, r"no choices\[0\].message"),
        ({"choices": [{"message": {"role": "assistant", "content": None}}]}, "content"),
        ([1, 2], "not a JSON object"),
        ("<html>gateway</html>", "not JSON"),
    ],
)
def test_a_malformed_answer_is_permanent_and_names_what_is_missing(
    ai: FakeChatCompletions, connection: AiConnection, body: Any, missing: str
) -> None:
    ai.answer_next(1, 200, body)

    with pytest.raises(PermanentFailure, match=missing):
        draft_message(connection, call())


@pytest.mark.parametrize(
    ("params", "field"),
    [({"prompt": ""}, "prompt"), ({"max_tokens": 0}, "max_tokens"), ({"temperature": 1}, "temp")],
)
def test_bad_parameters_are_permanent_and_name_the_field(
    ai: FakeChatCompletions, connection: AiConnection, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(PermanentFailure, match=f"bad parameters: {field}"):
        draft_message(connection, call(**params))

    assert ai.requests == []


def test_the_api_key_is_hidden_in_the_connections_repr(connection: AiConnection) -> None:
    assert KEY not in repr(connection)
