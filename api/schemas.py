"""Shapes only HTTP has: the page of a keyset-paginated list. Every other request and response
shape is its domain's (`quire/<domain>/schemas.py`, `ledger/schemas.py`), on the kernel's bases
(`quire.schemas`)."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )
