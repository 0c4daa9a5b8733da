"""Marketplace housekeeping the system does on its own, across every tenant.

The maintenance flow calls these hourly: give back claims whose deadline passed without a
submission and expire open orders nobody took in time (`statistics` then reports how the
marketplace stands).

They follow the same rules as `service`: every change is one conditional UPDATE whose WHERE
carries the state machine's source states, and each changed order gets its event (built by
`events`, like every other change's) in the same transaction. The differences are that the actor
is the system (`actor_id` is None, `actor` is "system") and that each call changes a whole batch
with one set-based statement. They run on a session that names no tenant, so every statement
opts out of tenant scoping with `ALL_TENANTS` on purpose, and each event names its order's own
tenant.

Races are decided by the database, never by a read-then-write here. The batch is picked with
`FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite ignores it; its write lock serialises anyway), so
an order a specialist is submitting right now is skipped, not waited for, and the UPDATE checks
the status (and, for releases, that no submission exists) again. Whoever commits first wins:
a submission that lands first keeps the order; a release that lands first makes the late
submission fail cleanly with `IllegalTransition`. An order skipped this time is caught next time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Row,
    Table,
    TableClause,
    exists,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import Session

from quire.orders import events
from quire.orders.models import Bid, BidStatus, Order, Submission
from quire.orders.state import TRANSITIONS, Action, OrderStatus
from quire.tenancy import ALL_TENANTS

DEFAULT_BATCH = 1000
SYSTEM_ACTOR = "system"
DEADLINE_PASSED = "deadline_passed"

orders: Table = Order.__table__  # type: ignore[assignment]
submissions: Table = Submission.__table__  # type: ignore[assignment]
bids: Table = Bid.__table__  # type: ignore[assignment]

Guard = Callable[[TableClause], ColumnElement[bool]]


def _no_submission(table: TableClause) -> ColumnElement[bool]:
    """The order has never been handed in (the guard a release must not cross)."""
    return ~exists().where(submissions.c.order_id == table.c.id)


def release_overdue_claims(
    session: Session, now: dt.datetime, *, limit: int = DEFAULT_BATCH
) -> list[uuid.UUID]:
    """Reopen up to `limit` claimed or awarded orders whose deadline passed with no submission.

    The holder is cleared (as `service.release` does) and each order gets `order.released` with
    `reason: "deadline_passed"` and `released_specialist_id`, so the specialist's tools can tell
    them why they lost it. Returns the released orders' ids; a full batch (`len == limit`) means
    more may be waiting, so the caller commits and calls again.
    """
    released = _sweep(
        session,
        Action.RELEASE,
        now,
        limit,
        guards=(_no_submission,),
        values={"specialist_id": None, "claimed_at": None},
    )
    for row in released:
        _emit(session, row, Action.RELEASE, released_specialist_id=row.previous_specialist_id)
    return [row.id for row in released]


def expire_stale_orders(
    session: Session, now: dt.datetime, *, limit: int = DEFAULT_BATCH
) -> list[uuid.UUID]:
    """Expire up to `limit` open orders whose deadline passed, with `order.expired` each.

    Run it after `release_overdue_claims`: a released order is open and past its deadline, so
    it expires in the same maintenance run. Active bids on an expired order lose, as they do when
    an order is cancelled. Returns the expired orders' ids (a full batch: call again).
    """
    expired = _sweep(session, Action.EXPIRE, now, limit)
    for row in expired:
        _emit(session, row, Action.EXPIRE)
    ids = [row.id for row in expired]
    if ids:
        session.execute(
            update(bids)
            .where(bids.c.order_id.in_(ids), bids.c.status == BidStatus.ACTIVE.value)
            .values(status=BidStatus.LOST.value)
            .execution_options(**ALL_TENANTS)
        )
    return ids


def _due(action: Action, now: dt.datetime, limit: int, guards: tuple[Guard, ...]) -> CTE:
    """The batch: oldest deadlines first, rows locked (PostgreSQL) and others' locks skipped.

    A CTE because PostgreSQL never inlines one with a locking clause: the batch is picked once,
    however the planner joins it to the UPDATE.
    """
    candidate = orders.alias("candidate")
    return (
        select(candidate.c.id, candidate.c.specialist_id)
        .where(*_still_due(candidate, action, now, guards))
        .order_by(candidate.c.deadline, candidate.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )


def _still_due(
    table: TableClause, action: Action, now: dt.datetime, guards: tuple[Guard, ...]
) -> list[ColumnElement[bool]]:
    """Past its deadline and in a state `action` may leave (the state machine's source states).

    "Past" includes the deadline instant itself, matching `claims`, which refuses a claim then.
    """
    allowed = sorted(status.value for status in TRANSITIONS[action][0])
    return [
        table.c.status.in_(allowed),
        table.c.deadline <= now,
        *(guard(table) for guard in guards),
    ]


def _sweep(
    session: Session,
    action: Action,
    now: dt.datetime,
    limit: int,
    *,
    guards: tuple[Guard, ...] = (),
    values: Mapping[str, Any] | None = None,
) -> list[Row[Any]]:
    """Apply `action` to one batch with a single UPDATE ... RETURNING, conditions re-checked."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    to: OrderStatus = TRANSITIONS[action][1]
    due = _due(action, now, limit, guards)
    stmt = (
        update(orders)
        .where(orders.c.id == due.c.id, *_still_due(orders, action, now, guards))
        .values(status=to.value, version=orders.c.version + 1, updated_at=now, **(values or {}))
        .returning(*orders.c, _previous_specialist(session, due).label("previous_specialist_id"))
        .execution_options(**ALL_TENANTS)
    )
    return list(session.execute(stmt))


def _previous_specialist(session: Session, due: CTE) -> ColumnElement[Any]:
    """The holder before the UPDATE cleared it, as the batch saw (and, on PostgreSQL, locked) it.

    SQLite's RETURNING may not name a table of the FROM clause, but a subquery there may read it;
    spelled out because SQLAlchemy writes SQLite's RETURNING columns unqualified, which would make
    `due.id = orders.id` read `id = id` inside the subquery.
    """
    if session.connection().dialect.name == "sqlite":
        return literal_column(
            f"(SELECT {due.name}.specialist_id FROM {due.name} "
            f"WHERE {due.name}.id = {orders.name}.id)",
            type_=orders.c.specialist_id.type,
        )
    return due.c.specialist_id


def _emit(session: Session, row: Row[Any], action: Action, **extra: Any) -> None:
    """The order's event, in its own tenant, with the system as the actor."""
    events.append(
        session.connection(),
        events.EVENT_TYPES[action],
        row,
        None,
        actor=SYSTEM_ACTOR,
        reason=DEADLINE_PASSED,
        **extra,
    )
