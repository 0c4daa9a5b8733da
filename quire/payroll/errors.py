"""Payroll's own failures (each a kind of `quire.errors`, so the API maps it to one status)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quire.errors import Invalid, Unavailable


class RatesError(Unavailable):
    """The day's rates could not be had. Both kinds are the provider's failure, never the API
    client's, so an endpoint that needs rates answers 503 either way; `retryable` tells a Prefect
    task whether asking again can help."""

    code = "fx_rates_unavailable"
    retryable = False


class RatesUnavailable(RatesError):
    """Transient: the provider was unreachable, too slow, overloaded (5xx) or rate limiting (429).
    `retry_after` is the provider's own hint in seconds (Retry-After), when it gave one."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class RatesRefused(RatesError):
    """Permanent: the provider refused the request (4xx) or answered something that is not a
    well-formed rates file. The same request gets the same answer; the configuration (or the
    provider) must change first."""

    code = "fx_rates_refused"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one field: `loc` as in a 422's `errors` (e.g. `("iban",)`)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class InvalidPayoutDetails(Invalid):
    """Bank details (or the tenant's debtor account) that cannot be paid to: a 422 whose
    `errors` list every problem, each naming its field."""

    code = "invalid_payout_details"

    def __init__(self, problems: list[FieldProblem], *, code: str | None = None) -> None:
        summary = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems[:5])
        super().__init__(summary, code=code, errors=[p.as_dict() for p in problems])
        self.problems = problems
