"""The bases of every request and response shape (each domain's `schemas.py` builds on them).

`Input`, for request bodies: unknown fields and NUL characters are refused up front.

PostgreSQL cannot store a NUL (U+0000) in a text column; letting one through turned a client's
typo into a driver `DataError` and a 500 halfway through a write. Refusing it while the input is
parsed makes it an ordinary 422 field error (type `invalid_character`) that names the field, on
every database, before anything is written. Models that inherit `Input` may add their own config:
pydantic merges it with this one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

NUL = "\x00"
# The largest value of a signed 64-bit column (PostgreSQL BIGINT, SQLite INTEGER): an integer
# input meant for one (an id in a cursor) is refused above it instead of failing in the driver.
BIGINT_MAX = 2**63 - 1
INVALID_CHARACTER = "invalid_character"


def has_nul(value: Any) -> bool:
    """True if a NUL hides anywhere in a string, or in the keys or items of a container."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(has_nul(item) for item in value)
    return False


def refuse_nul(value: Any, what: str = "text") -> Any:
    """Pass `value` through, or raise the `invalid_character` error pydantic reports per field."""
    if has_nul(value):
        raise PydanticCustomError(
            INVALID_CHARACTER,
            "{what} must not contain the NUL character (U+0000)",
            {"what": what},
        )
    return value


class Input(BaseModel):
    """A request body: extra fields are an error, and no string in it may hold a NUL."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any, info: ValidationInfo) -> Any:
        # Nested Input models have checked their own fields; this walks plain strings and the
        # lists and dicts of them (metadata, tags, configuration blobs).
        return refuse_nul(value, info.field_name or "text")


class Output(BaseModel):
    """A response shape, read straight from ORM rows or Core rows (`from_attributes`)."""

    model_config = ConfigDict(from_attributes=True)
