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

import uuid
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    bindparam,
    exists,
    insert,
    literal,
    select,
    true,
    update,
)

from quire.db import utcnow
from quire.errors import Conflict, NotFound
from quire.events.models import Event
from quire.orders import events, policy
from quire.orders.models import Order, OrderMode
from quire.orders.state import TRANSITIONS, Action, IllegalTransition
from quire.people.actor import Actor
from quire.people.models import Role

orders = Order.__table__
CLAIM_FROM, CLAIM_TO = TRANSITIONS[Action.CLAIM]
CLAIMED = events.EVENT_TYPES[Action.CLAIM]

_the_order = (orders.c.id == bindparam("b_order_id")) & (
    orders.c.tenant_id == bindparam("b_tenant_id")
)

# What a claim needs, each condition once: the UPDATE requires them all, and a loser's row
# carries each as a column, so the refusal reads what the database decided instead of restating it.
_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "claimable_state": orders.c.status.in_(sorted(status.value for status in CLAIM_FROM)),
    "first_come": orders.c.mode == OrderMode.CLAIM.value,
    "before_deadline": orders.c.deadline > bindparam("b_now"),
}

_claim = (
    update(orders)
    .where(_the_order, *_CONDITIONS.values())
    .values(
        status=CLAIM_TO.value,
        specialist_id=bindparam("b_actor_id"),
        claimed_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        version=orders.c.version + 1,
    )
    .returning(*orders.c)
)


def _facts(staff: bool) -> list[ColumnElement[Any]]:
    """The order's claim conditions and whether the claimant may be told about it at all."""
    known = policy.known_clause(staff, bindparam("b_actor_id"))
    return [known.label("known"), *(c.label(name) for name, c in _CONDITIONS.items())]


def _as_won() -> list[ColumnElement[Any]]:
    return [true().label(name) for name in ("known", *_CONDITIONS)]


@cache
def _statements(staff: bool) -> tuple[Select[Any], Select[Any]]:
    """(this order as it stands, with its facts; PostgreSQL's claim-or-explain statement).

    Two variants, by whether the claimant is also staff (who may be told about any order).

    PostgreSQL: one statement claims, writes the `order.claimed` event and, when the UPDATE
    matched nothing, returns the order as this statement saw it. Data-modifying CTEs run exactly
    once whether or not the outer query reads them, so the event exists exactly when the claim
    does.
    """
    current = select(*orders.c, *_facts(staff)).where(_the_order)
    claimed = _claim.cte("claimed")
    event = (
        insert(Event.__table__)
        .from_select(
            ["tenant_id", "type", "aggregate_type", "aggregate_id", "payload", "created_at"],
            select(
                claimed.c.tenant_id,
                literal(CLAIMED),
                literal(events.AGGREGATE),
                claimed.c.id,
                events.claimed_payload_sql(claimed.c, bindparam("b_actor_id")),
                bindparam("b_now"),
            ),
        )
        .cte("event")
    )
    claim_or_explain = (
        select(true().label("won"), *claimed.c, *_as_won())
        .union_all(
            select(literal(False).label("won"), *orders.c, *_facts(staff)).where(
                _the_order, ~exists(select(claimed.c.id))
            )
        )
        .add_cte(event)
    )
    return current, claim_or_explain


def claim(conn: Connection, actor: Actor, order_id: uuid.UUID) -> Row[Any]:
    """Take an open first-come order for `actor`, or raise why not. Returns the claimed row.

    The caller owns the transaction, and the `order.claimed` event is written in it. On
    PostgreSQL the claim is a single statement, atomic even on an autocommit connection (which
    saves the API two round trips, BEGIN and COMMIT, per attempt); SQLite needs a transaction.
    """
    actor.require(Role.SPECIALIST)
    params = {
        "b_order_id": order_id,
        "b_tenant_id": actor.tenant_id,
        "b_actor_id": actor.user_id,
        "b_now": utcnow(),
    }
    current, claim_or_explain = _statements(actor.is_staff)
    if conn.dialect.name == "postgresql":
        row = conn.execute(claim_or_explain, params).first()
        if row is not None and row.won:
            return row
        if row is not None and _claimable(row):
            # Our snapshot predates a concurrent winner's commit: read what it committed.
            row = conn.execute(current, params).first()
    else:
        won = conn.execute(_claim, params).first()
        if won is not None:
            events.append(conn, CLAIMED, won, actor)
            return won
        row = conn.execute(current, params).first()
    raise _why_not(order_id, row)


def _claimable(row: Row[Any]) -> bool:
    return all(getattr(row, name) for name in _CONDITIONS)


def _why_not(order_id: uuid.UUID, row: Row[Any] | None) -> Exception:
    """Say why a claim failed, telling a specialist no more than they may know (drafts: 404)."""
    if row is None or not row.known:
        return NotFound(f"order {order_id} not found", code="order_not_found")
    if not row.claimable_state:
        return IllegalTransition(Action.CLAIM, row.status)
    if not row.first_come:
        return Conflict(
            "this order takes bids; it cannot be claimed", code="order_requires_bidding"
        )
    if not row.before_deadline:
        return Conflict("the order's deadline has passed", code="deadline_passed")
    return Conflict("the order changed while claiming it; try again", code="conflict")
