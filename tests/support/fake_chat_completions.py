"""A fake OpenAI-compatible chat completions endpoint: a real HTTP server on 127.0.0.1.

`POST {base_url}/chat/completions` (base_url ends in `/v1`) with `Authorization: Bearer <api_key>`
and a body `{"model", "messages": [{"role", "content"}...], "max_tokens"?}` is answered as
OpenAI answers, with a deterministic draft: `FakeChatCompletions.draft(prompt)`, the last user
message behind a fixed greeting, cut to `max_tokens` words (`finish_reason: "length"`).
Errors look like OpenAI's (`{"error": {"message", "type", "code"}}`): 401 for a missing or wrong
key (its message repeats part of the key, as OpenAI's does, so tests can check that no detail
does), 400 for a malformed body, 404 for another path.

    with FakeChatCompletions(api_key="sk-test") as ai:
        ai.fail_next(1, status=500)        # fault switches: see deployments/local_web.py
        ai.answer_next(1, 200, {"choices": []})   # a malformed answer
        ai.completions                     # the request bodies it answered normally

Standalone: python -m tests.support.fake_chat_completions --port 8012
"""

from __future__ import annotations

import hashlib
from typing import Any

from deployments.local_web import Answer, FakeWebService, Received, serve_standalone
from deployments.net import HOST

GREETING = "Welcome aboard!"


def _error(status: int, message: str, kind: str, code: str | None = None) -> Answer:
    return status, {"error": {"message": message, "type": kind, "code": code}}, {}


class FakeChatCompletions(FakeWebService):
    """The fake endpoint and its controls (see FakeWebService)."""

    thread_name = "fake-chat-completions"

    def __init__(
        self,
        *,
        api_key: str = "sk-test-0123456789abcdef",
        host: str = HOST,
        port: int | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self._completions: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def completions(self) -> list[dict[str, Any]]:
        """The request bodies answered with a completion, in order."""
        with self._lock:
            return list(self._completions)

    @staticmethod
    def draft(prompt: str, max_tokens: int | None = None) -> str:
        """The text the fake answers for `prompt`."""
        words = f"{GREETING} {prompt}".split()
        return " ".join(words if max_tokens is None else words[:max_tokens])

    def failure_body(self, status: int) -> Any:
        return {"error": {"message": f"simulated failure ({status})", "type": "server_error"}}

    def answer(self, request: Received) -> Answer:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return _error(404, f"Unknown request URL: {request.method} {request.path}", "invalid")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            shown = f"{given[:3]}***{given[-4:]}" if given else "(none)"
            return _error(
                401, f"Incorrect API key provided: {shown}.", "invalid_request_error", "invalid_key"
            )
        body = request.body
        problem = self._problem(body)
        if problem:
            return _error(400, problem, "invalid_request_error")
        prompt = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        max_tokens = body.get("max_tokens")
        text = self.draft(prompt, max_tokens)
        self._completions.append(body)
        cut = max_tokens is not None and text != self.draft(prompt)
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        return (
            200,
            {
                "id": "chatcmpl-" + hashlib.sha256(request.raw).hexdigest()[:24],
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "length" if cut else "stop",
                    }
                ],
                "usage": usage,
            },
            {},
        )

    @staticmethod
    def _problem(body: Any) -> str | None:
        """What OpenAI would refuse in `body` (None: nothing)."""
        if not isinstance(body, dict):
            return "We could not parse the JSON body of your request."
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty array"
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                return "each message needs a role and a text content"
            if m.get("role") not in ("system", "user", "assistant"):
                return f"'{m.get('role')}' is not a valid role"
        if not any(m["role"] == "user" for m in messages):
            return "the messages hold no user message"
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return "max_tokens must be a positive integer"
        return None

    def forget(self) -> None:
        self._completions.clear()


if __name__ == "__main__":
    serve_standalone(
        lambda host, port: FakeChatCompletions(host=host, port=port),
        "a fake chat completions endpoint",
    )
