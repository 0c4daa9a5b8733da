"""Per-request context visible to logging (the request id travels with every log line)."""

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
