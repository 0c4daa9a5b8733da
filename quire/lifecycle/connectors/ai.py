"""The optional `ai.draft_message` step: a text drafted by an OpenAI-compatible model.

Onboarding can open with a personal welcome: the playbook renders the instructions and the
prompt from the event, and a chat completions endpoint (OpenAI, Azure's OpenAI-compatible
endpoint, vLLM, Ollama, LiteLLM...) drafts the text, which later steps use as
`steps.<id>.text` (in the welcome mail, say). The protocol is one POST to
`{base_url}/chat/completions` with `model`, `messages` (the instructions, if any, as `system`,
the prompt as `user`) and `max_tokens` (if given), authorised by `Authorization: Bearer <api
key>`; the answer's text is `choices[0].message.content`.

Not configured means skipped: a tenant without an AI connection still onboards, and it is the
executor that skips the step (as `StepStatus.SKIPPED`), before any call here. Nothing reaches
this module without a connection.

Failures follow `chat.post_json` (timeouts, refused connections, 408/429/5xx transient; other
4xx permanent). A 401/403 says only that the key was refused: OpenAI's own message repeats part
of the key. A 200 whose body lacks the text (no choices, no message, no content: a refusal or a
tool call) is permanent, naming what is missing. No undo: drafting changes nothing anywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, ConfigDict, Field, SecretStr

from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
)
from quire.lifecycle.connectors.chat import http_url, post_json, response_text
from quire.lifecycle.connectors.email import parse_params
from quire.schemas import Input


class AiConnection(Input):
    """A tenant's chat completions endpoint: `base_url` up to the version (`.../v1`)."""

    model_config = ConfigDict(hide_input_in_errors=True)  # a refused key is not echoed

    base_url: Annotated[str, AfterValidator(http_url)]
    api_key: SecretStr
    model: str = Field(min_length=1, max_length=200)
    timeout: float = Field(default=30.0, gt=0, le=600)

    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


class DraftParams(Input):
    """`ai.draft_message`'s parameters."""

    instructions: str | None = None  # the system message; None or empty: none is sent
    prompt: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)


def _explain(response: httpx.Response) -> str:
    """An OpenAI-style error's message, except for a refused key (whose message shows part of
    the key)."""
    if response.status_code in (401, 403):
        return "the API key was refused"
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response_text(response)
    message = error.get("message") if isinstance(error, dict) else error
    return " ".join(str(message).split())[:300] if message else response_text(response)


def completion_text(answer: Any) -> tuple[str, Any]:
    """`choices[0].message.content` and `choices[0].finish_reason`, or a PermanentFailure that
    names the first missing piece."""
    if not isinstance(answer, dict):
        raise PermanentFailure(Provider.AI, "the answer is not a JSON object")
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise PermanentFailure(Provider.AI, "the answer has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise PermanentFailure(Provider.AI, "the answer has no choices[0].message")
    content = message.get("content")
    if not isinstance(content, str):
        raise PermanentFailure(Provider.AI, "the answer has no choices[0].message.content text")
    return content, choice.get("finish_reason")


def draft_message(connection: AiConnection, call: StepCall) -> StepOutcome:
    """`ai.draft_message`: output `{"text", "model", "finish_reason"}`; no undo."""
    params = parse_params(DraftParams, call, Provider.AI)
    messages = [{"role": "user", "content": params.prompt}]
    if params.instructions:
        messages.insert(0, {"role": "system", "content": params.instructions})
    request: dict[str, Any] = {"model": connection.model, "messages": messages}
    if params.max_tokens is not None:
        request["max_tokens"] = params.max_tokens
    key = connection.api_key.get_secret_value()
    response = post_json(
        Provider.AI,
        connection.endpoint(),
        request,
        what="the AI endpoint",
        timeout=min(connection.timeout, call.timeout_seconds),
        headers={"Authorization": f"Bearer {key}"},
        secrets=[key],
        explain=_explain,
    )
    try:
        answer = response.json()
    except ValueError:
        raise PermanentFailure(Provider.AI, "the answer is not JSON") from None
    text, finish_reason = completion_text(answer)
    model = answer.get("model") if isinstance(answer.get("model"), str) else connection.model
    output = {"text": text, "model": model, "finish_reason": finish_reason}
    return StepOutcome(output=output, undo=None)
