"""The correlation id of the work in progress: an HTTP request's id, or a flow run's.

One ContextVar in the kernel so that every layer can read it without importing the API: the API's
middleware sets it per request (`X-Request-ID`), flows and jobs set it with `correlated(...)`
(e.g. `flow-run:<id>`), and logging and the audit log read it. ContextVars follow asyncio tasks
and `run_sync` threads, so domain code called from a route sees the request's id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request or run this code works for, or None outside of one."""
    return request_id_var.get()


@contextmanager
def correlated(request_id: str | None) -> Iterator[str | None]:
    """Run the block under `request_id` (restoring the previous id afterwards, even on error)."""
    token = request_id_var.set(request_id)
    try:
        yield request_id
    finally:
        request_id_var.reset(token)
