"""Marketplace housekeeping the system does on its own, across every tenant.

The maintenance flow calls these hourly: give back claims whose deadline passed without a
submission, expire open orders nobody took in time, and report how the marketplace stands.

They follow the same rules as `service`: every change is one conditional UPDATE whose WHERE
carries the state machine's source states, and each changed order gets its event (the same types
as `service.EVENT_TYPES`) in the same transaction. The differences are that the actor is the
system (`actor_id` is None, `actor` is "system") and that each call changes a whole batch with
one set-based statement. They run on a session that names no tenant, so every statement opts out
of tenant scoping with `ALL_TENANTS` on purpose, and each event names its order's own tenant.

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
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import Session

from quire.db import utcnow
from quire.events import outbox
from quire.events.models import Event
from quire.orders.models import Bid, BidStatus, Order, Submission
from quire.orders.service import EVENT_TYPES
from quire.orders.snapshot import snapshot
from quire.orders.state import TRANSITIONS, Action, OrderStatus
from quire.people.models import Tenant
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
    outbox.append(
        session.connection(),
        row.tenant_id,
        EVENT_TYPES[action],
        aggregate_type="order",
        aggregate_id=row.id,
        payload={
            "order": snapshot(row),
            "actor_id": None,
            "actor": SYSTEM_ACTOR,
            "reason": DEADLINE_PASSED,
            **extra,
        },
    )


# --- statistics ----------------------------------------------------------------------------


def marketplace_statistics(session: Session, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """How the marketplace stands, for the hourly log line and the maintenance artifact.

    JSON-ready: orders per status overall and per tenant (by slug; every status present, zeros
    included, so tables line up), and the outbox backlog: how many events wait for the relay and
    how old the oldest is. A growing backlog is the first sign the relay (or Prefect) is down.
    """
    now = now or utcnow()
    by_tenant: dict[str, dict[str, int]] = {}
    overall = _zero_counts()
    for slug, status, count in session.execute(
        select(Tenant.slug, Order.status, func.count())
        .join(Tenant, Tenant.id == Order.tenant_id)
        .group_by(Tenant.slug, Order.status)
        .order_by(Tenant.slug)
        .execution_options(**ALL_TENANTS)
    ):
        by_tenant.setdefault(slug, _zero_counts())[status] = count
        overall[status] = overall.get(status, 0) + count
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "orders": overall,
        "orders_by_tenant": by_tenant,
        "outbox": _outbox_backlog(session, now),
    }


def _zero_counts() -> dict[str, int]:
    return {status.value: 0 for status in OrderStatus}


def _outbox_backlog(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Both queries read only the `ix_events_unrelayed` partial index's rows."""
    unrelayed = Event.relayed_at.is_(None)
    waiting = session.scalar(
        select(func.count()).select_from(Event).where(unrelayed).execution_options(**ALL_TENANTS)
    )
    oldest = session.scalar(
        select(Event.created_at)
        .where(unrelayed)
        .order_by(Event.id)
        .limit(1)
        .execution_options(**ALL_TENANTS)
    )
    age = None if oldest is None else max(0.0, round((now - oldest).total_seconds(), 3))
    return {"unrelayed": waiting or 0, "oldest_unrelayed_age_seconds": age}


def statistics_line(stats: Mapping[str, Any]) -> str:
    """One log line: non-zero order counts overall, then the outbox backlog."""
    counts = " ".join(f"{status}={n}" for status, n in stats["orders"].items() if n) or "none"
    outbox_ = stats["outbox"]
    age = outbox_["oldest_unrelayed_age_seconds"]
    oldest = "" if age is None else f" (oldest {age:.0f}s)"
    return f"orders: {counts}; outbox: {outbox_['unrelayed']} unrelayed{oldest}"


def statistics_markdown(stats: Mapping[str, Any]) -> str:
    """A markdown table per tenant and status (for a Prefect markdown artifact)."""
    statuses = [status for status, n in stats["orders"].items() if n] or ["open"]
    header = "| tenant | " + " | ".join(statuses) + " |"
    rule = "|---" * (len(statuses) + 1) + "|"
    rows = [
        f"| {slug} | " + " | ".join(str(counts.get(s, 0)) for s in statuses) + " |"
        for slug, counts in stats["orders_by_tenant"].items()
    ]
    total = "| **all** | " + " | ".join(str(stats["orders"][s]) for s in statuses) + " |"
    backlog = stats["outbox"]
    age = backlog["oldest_unrelayed_age_seconds"]
    return "\n".join(
        [
            f"## Marketplace at {stats['generated_at']}",
            "",
            header,
            rule,
            *rows,
            total,
            "",
            f"Outbox: **{backlog['unrelayed']}** events waiting for the relay"
            + ("" if age is None else f", the oldest for {age:.0f} s"),
            "",
        ]
    )
