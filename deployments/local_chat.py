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

The server thread, the record of requests and these switches are `FakeWebService`'s, in
deployments/local_web.py, which the other JSON-over-HTTP fakes build on too.

Standalone, for a worker in another process:
    python -m deployments.local_chat --port 8011
"""

from __future__ import annotations

from typing import Any

from deployments.local_web import Answer, FakeWebService, Received, serve_standalone
from deployments.net import HOST


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


if __name__ == "__main__":
    serve_standalone(lambda host, port: LocalChat(host=host, port=port), "a fake Slack webhook")
