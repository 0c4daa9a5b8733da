"""Claiming a first-come order: the marketplace's hottest write, in as few round trips as it takes.

A claim race has one winner and many losers, so both answers have to be cheap. On PostgreSQL one
statement decides and explains: a CTE runs the conditional UPDATE and, when it matched nothing,
the same statement returns the order as it stood, so a loser learns why (taken, not open, a bidding
order, past its deadline, or invisible: 404) without a second query. Only when that snapshot still
shows the order claimable (the winner committed after our statement began) do we look once more.
On SQLite the write lock already serialises claims, so the UPDATE and the explaining SELECT are
simply two statements.

This works on a SQLAlchemy Core `Connection`, not an ORM `Session`: the API's claim path never
builds an identity map or a unit of work. Core statements bypass the ORM's tenant hook, so each
statement here names the tenant itself (`tenant_id = :tenant_id`); the API's cross-tenant tests
cover this endpoint like every other.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    String,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)

from quire.db import UTCDateTime, utcnow
from quire.errors import Conflict, NotFound
from quire.events import outbox
from quire.events.models import Event
from quire.orders.models import Order, OrderMode
from quire.orders.snapshot import SNAPSHOT_FIELDS, snapshot
from quire.orders.state import TRANSITIONS, Action, IllegalTransition, OrderStatus
from quire.people.actor import Actor
from quire.people.models import Role

orders = Order.__table__
_TO = TRANSITIONS[Action.CLAIM][1]
CLAIMED_EVENT = "order.claimed"

_the_order = (orders.c.id == bindparam("b_order_id")) & (
    orders.c.tenant_id == bindparam("b_tenant_id")
)

_claim = (
    update(orders)
    .where(
        _the_order,
        orders.c.status == OrderStatus.OPEN.value,
        orders.c.mode == OrderMode.CLAIM.value,
        orders.c.deadline > bindparam("b_now"),
    )
    .values(
        status=_TO.value,
        specialist_id=bindparam("b_actor_id"),
        claimed_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        version=orders.c.version + 1,
    )
    .returning(*orders.c)
)

_current = select(*orders.c).where(_the_order)


ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


def _json_value(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A column as the JSON value `outbox` would write for it (same text, to the microsecond)."""
    if isinstance(column.type, UTCDateTime):
        return func.to_char(column.op("AT TIME ZONE")(literal("UTC", String())), ISO_UTC)
    if column.type.python_type is uuid.UUID:
        return cast(column, String)
    return column


# PostgreSQL: one statement claims, writes the `order.claimed` event, and, when the UPDATE
# matched nothing, returns the order as this statement saw it. Data-modifying CTEs run exactly
# once whether or not the outer query reads them, so the event exists exactly when the claim does.
_claimed = _claim.cte("claimed")
_event = (
    insert(Event.__table__)
    .from_select(
        ["tenant_id", "type", "aggregate_type", "aggregate_id", "payload", "created_at"],
        select(
            _claimed.c.tenant_id,
            literal(CLAIMED_EVENT),
            literal("order"),
            _claimed.c.id,
            func.jsonb_build_object(
                "order",
                func.jsonb_build_object(
                    *(x for name in SNAPSHOT_FIELDS for x in (name, _json_value(_claimed.c[name])))
                ),
                "actor_id",
                cast(bindparam("b_actor_id"), String),
            ),
            bindparam("b_now"),
        ),
    )
    .cte("event")
)
_claim_or_explain = (
    select(true().label("won"), *_claimed.c)
    .union_all(
        select(literal(False).label("won"), *orders.c).where(
            _the_order, ~exists(select(_claimed.c.id))
        )
    )
    .add_cte(_event)
)


def claim(conn: Connection, actor: Actor, order_id: uuid.UUID) -> Row[Any]:
    """Take an open first-come order for `actor`, or raise why not. Returns the claimed row.

    The caller owns the transaction, and the `order.claimed` event is written in it. On
    PostgreSQL the claim is a single statement, atomic even on an autocommit connection (which
    saves the API two round trips, BEGIN and COMMIT, per attempt); SQLite needs a transaction.
    """
    actor.require(Role.SPECIALIST)
    now = utcnow()
    params = {
        "b_order_id": order_id,
        "b_tenant_id": actor.tenant_id,
        "b_actor_id": actor.user_id,
        "b_now": now,
    }
    won, row = _attempt(conn, params)
    if won:
        assert row is not None
        return row
    if row is not None and _claimable(row, now):
        # Our snapshot predates a concurrent winner's commit: read what it committed.
        row = conn.execute(_current, params).first()
    raise _why_not(actor, order_id, row, now)


def _attempt(conn: Connection, params: dict[str, Any]) -> tuple[bool, Row[Any] | None]:
    if conn.dialect.name == "postgresql":
        row = conn.execute(_claim_or_explain, params).first()
        if row is None:
            return False, None
        return bool(row.won), row
    row = conn.execute(_claim, params).first()
    if row is None:
        return False, conn.execute(_current, params).first()
    outbox.append(
        conn,
        row.tenant_id,
        CLAIMED_EVENT,
        aggregate_type="order",
        aggregate_id=row.id,
        payload={"order": snapshot(row), "actor_id": params["b_actor_id"]},
    )
    return True, row


def _claimable(row: Row[Any], now: dt.datetime) -> bool:
    return row.status == OrderStatus.OPEN and row.mode == OrderMode.CLAIM and row.deadline > now


def _why_not(
    actor: Actor, order_id: uuid.UUID, row: Row[Any] | None, now: dt.datetime
) -> Exception:
    """Say why a claim failed, telling a specialist no more than they may know (drafts: 404)."""
    if row is None or (row.published_at is None and row.specialist_id != actor.user_id):
        return NotFound(f"order {order_id} not found", code="order_not_found")
    if row.status != OrderStatus.OPEN:
        return IllegalTransition(Action.CLAIM, row.status)
    if row.mode != OrderMode.CLAIM:
        return Conflict(
            "this order takes bids; it cannot be claimed", code="order_requires_bidding"
        )
    if row.deadline <= now:
        return Conflict("the order's deadline has passed", code="deadline_passed")
    return Conflict("the order changed while claiming it; try again", code="conflict")
