"""Closed accounting periods: once finance closes a month, nothing dated in it changes.

A closure covers an instant range [starts_at, ends_at) of one tenant, fixed when it is closed
(the caller turns `YYYY-MM` into instants in the tenant's time zone, so the ledger and its
triggers deal in instants only). While it is not reopened, posting refuses a transfer dated in
it with a clear `PeriodClosed` (409) before its entries are written, and the database refuses
the entries whatever else tries (migration 0012; ledger/README.md, invariant 8). Reopening
needs a reason; it stamps the closure once, and closing the month again is a new closure: the
table is the history of every close and reopen, and each one is in the audit log.

Corrections after a close are made in an open period (a reversal is dated when it is posted),
so a closed month's figures stay what finance closed them at.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.models import ClosedPeriod
from quire.audit.service import record
from quire.db import utcnow
from quire.errors import Conflict, Invalid, NotFound
from quire.people.actor import Actor
from quire.tenancy import tenant_of

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
REASON_MAX = 500


class PeriodClosed(Conflict):
    """A transfer dated in a closed period: post it in an open one (or reopen the period)."""


def closures(session: Session, *, include_reopened: bool = False) -> list[ClosedPeriod]:
    """The tenant's closures, newest first (only the ones in force unless asked)."""
    query = select(ClosedPeriod).order_by(ClosedPeriod.starts_at.desc(), ClosedPeriod.id.desc())
    if not include_reopened:
        query = query.where(ClosedPeriod.reopened_at.is_(None))
    return list(session.scalars(query))


def closure_of(session: Session, period: str) -> ClosedPeriod | None:
    """The closure of `period` in force, if it is closed."""
    return session.scalar(
        select(ClosedPeriod).where(
            ClosedPeriod.period == _period(period), ClosedPeriod.reopened_at.is_(None)
        )
    )


def refuse_closed(session: Session, moments: Iterable[dt.datetime]) -> None:
    """Raise `PeriodClosed` if one of `moments` (the effective dates of a batch) falls in a
    closed period: one small query per batch, however large the batch."""
    moments = list(moments)
    if not moments:
        return
    earliest, latest = min(moments), max(moments)
    candidates = session.scalars(
        select(ClosedPeriod).where(
            ClosedPeriod.reopened_at.is_(None),
            ClosedPeriod.starts_at <= latest,
            ClosedPeriod.ends_at > earliest,
        )
    ).all()
    for closure in candidates:
        if any(closure.starts_at <= moment < closure.ends_at for moment in moments):
            raise PeriodClosed(
                f"period {closure.period} is closed: a transfer dated in it cannot be posted; "
                "post the correction in an open period, or reopen the period",
                code="period_closed",
                period=closure.period,
            )


def close(
    session: Session,
    actor: Actor | None,
    period: str,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
) -> ClosedPeriod:
    """Close `period` ([starts_at, ends_at)). Whoever calls this has checked that the period
    may be closed (reconciliation: a clean run over it); the ledger only makes it stick.

    On PostgreSQL the close first takes a SHARE lock on the entries: it waits for transactions
    that are adding entries to finish, and holds new ones off until it commits, so none can slip
    an entry into the month between the check of its trigger and this commit."""
    period = _period(period)
    if not starts_at < ends_at:
        raise Invalid("a period's start must come before its end", code="invalid_period")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE ledger_entries IN SHARE MODE"))
    if closure_of(session, period) is not None:
        raise Conflict(f"period {period} is closed already", code="period_closed_already")
    closure = ClosedPeriod(
        tenant_id=tenant_of(session),
        period=period,
        starts_at=starts_at,
        ends_at=ends_at,
        closed_at=utcnow(),
        closed_by=actor.user_id if actor else None,
    )
    session.add(closure)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # a concurrent close of the same period won
        raise Conflict(f"period {period} is closed already", code="period_closed_already") from None
    record(
        session,
        actor,
        "ledger_period.closed",
        "ledger_period",
        period,
        after={"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()},
    )
    return closure


def reopen(session: Session, actor: Actor | None, period: str, reason: str) -> ClosedPeriod:
    """Reopen a closed period, with why (who may is the caller's policy: an admin)."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("reopening a period needs a reason", code="reason_required")
    if len(reason) > REASON_MAX:
        raise Invalid(f"the reason is longer than {REASON_MAX} characters", code="too_long")
    closure = closure_of(session, period)
    if closure is None:
        raise NotFound(f"period {period} is not closed", code="period_not_closed")
    closure.reopened_at = utcnow()
    closure.reopened_by = actor.user_id if actor else None
    closure.reopen_reason = reason
    record(
        session,
        actor,
        "ledger_period.reopened",
        "ledger_period",
        closure.period,
        before={"closed_at": closure.closed_at.isoformat()},
        after={"reason": reason},
    )
    return closure


def _period(period: str) -> str:
    if not isinstance(period, str) or not PERIOD.match(period):
        raise Invalid(f"a period is YYYY-MM, not {period!r}", code="invalid_period")
    return period
