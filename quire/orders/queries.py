"""Listing orders: filters, sorting and keyset pagination (stable under concurrent inserts)."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from quire.errors import Invalid
from quire.money import MAX_AMOUNT_MINOR
from quire.orders.models import Order
from quire.orders.policy import visible_to
from quire.people.actor import Actor


class SortKey(enum.StrEnum):
    CREATED_AT = "created_at"
    DEADLINE = "deadline"
    FEE = "fee_minor"


@dataclass(frozen=True)
class OrderFilter:
    status: list[str] | None = None
    skill: str | None = None
    currency: str | None = None
    mode: str | None = None
    mine: bool = False
    sort: SortKey = SortKey.CREATED_AT
    descending: bool = True
    limit: int = 50
    cursor: str | None = None


def _encode(value: Any, order_id: Any) -> str:
    raw = json.dumps(
        [value.isoformat() if isinstance(value, dt.datetime) else value, str(order_id)]
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class _BadCursor(Exception):
    """Internal: any way a cursor can be wrong; `decode_cursor` turns it into one 422."""


def _cursor_value(raw: Any, sort: SortKey) -> int | dt.datetime:
    if sort is SortKey.FEE:
        # An integer the column can hold: a cursor always carries a real fee, so anything
        # outside 0..MAX_AMOUNT_MINOR (far inside BIGINT) was not issued by us.
        if type(raw) is not int or not 0 <= raw <= MAX_AMOUNT_MINOR:
            raise _BadCursor
        return raw
    if not isinstance(raw, str):
        raise _BadCursor
    value = dt.datetime.fromisoformat(raw)
    if value.utcoffset() is None:
        raise _BadCursor  # a naive time is ambiguous (and the column refuses it)
    return value.astimezone(dt.UTC)  # OverflowError near year 1 or 9999


def decode_cursor(cursor: str, sort: SortKey) -> tuple[int | dt.datetime, uuid.UUID]:
    """The (sort value, order id) a `next_cursor` of `_encode` carries, checked for the column.

    A cursor is opaque to clients but still client input: anything that is not base64 of a JSON
    `[value, "<uuid>"]` with a value the sort column can hold is `invalid_cursor` (422), on every
    database, before a query is built from it.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(decoded, list) or len(decoded) != 2 or not isinstance(decoded[1], str):
            raise _BadCursor
        return _cursor_value(decoded[0], sort), uuid.UUID(decoded[1])
    except (_BadCursor, ValueError, TypeError, OverflowError, RecursionError):
        # ValueError covers bad base64 (binascii.Error), non-UTF-8, bad JSON, bad ISO times
        # and bad UUIDs.
        raise Invalid("cursor is not one this API issued", code="invalid_cursor") from None


def list_orders(session: Session, actor: Actor, f: OrderFilter) -> tuple[list[Order], str | None]:
    column = getattr(Order, f.sort.value)
    stmt = select(Order).where(visible_to(actor))
    if f.status:
        stmt = stmt.where(Order.status.in_(f.status))
    if f.skill:
        stmt = stmt.where(Order.skill == f.skill)
    if f.currency:
        stmt = stmt.where(Order.currency == f.currency)
    if f.mode:
        stmt = stmt.where(Order.mode == f.mode)
    if f.mine:
        stmt = stmt.where(
            or_(Order.specialist_id == actor.user_id, Order.created_by == actor.user_id)
        )
    if f.cursor:
        value, last = decode_cursor(f.cursor, f.sort)
        if f.descending:
            stmt = stmt.where(or_(column < value, and_(column == value, Order.id < last)))
        else:
            stmt = stmt.where(or_(column > value, and_(column == value, Order.id > last)))
    ordering = (column.desc(), Order.id.desc()) if f.descending else (column.asc(), Order.id.asc())
    rows = list(session.scalars(stmt.order_by(*ordering).limit(f.limit + 1)))
    next_cursor = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        next_cursor = _encode(getattr(rows[-1], f.sort.value), rows[-1].id)
    return rows, next_cursor
