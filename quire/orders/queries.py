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
from quire.orders.models import Order
from quire.orders.service import visible_to
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


def _decode(cursor: str, sort: SortKey) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, order_id = json.loads(base64.urlsafe_b64decode(padded))
        value = int(value) if sort is SortKey.FEE else dt.datetime.fromisoformat(value)
        return value, str(order_id)
    except (ValueError, TypeError, json.JSONDecodeError):
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
        value, last_id = _decode(f.cursor, f.sort)
        last = uuid.UUID(last_id)
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
