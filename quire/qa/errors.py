"""How a check that calls another service fails: worth retrying, or not."""

from __future__ import annotations


class ExternalCheckError(Exception):
    """A check that depends on another service could not produce a result."""


class ServiceUnavailable(ExternalCheckError):
    """Transient: the service was unreachable, too slow, overloaded (5xx) or rate limiting (429).

    The same request may well succeed later, so Prefect task retries should retry exactly this.
    `retry_after` is the server's own hint in seconds (Retry-After), when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceRejected(ExternalCheckError):
    """Permanent: the service refused the request (4xx other than 429) or answered nonsense.

    Retrying sends the same request and gets the same answer; configuration must change first.
    """
