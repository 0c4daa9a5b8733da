"""The domain's failures. Each kind maps to one HTTP status in `api/`; the domain says no HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request is fine but the current state forbids it (lost race, illegal transition)."""

    code = "conflict"


class Forbidden(DomainError):
    code = "forbidden"


class Invalid(DomainError):
    code = "invalid"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Locked(DomainError):
    code = "account_locked"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A service Quire depends on (the workflow engine) cannot be reached; try again later."""

    code = "service_unavailable"
