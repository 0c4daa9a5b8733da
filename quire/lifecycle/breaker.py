"""One circuit breaker per provider and tenant, shared by every worker through one database row.

Why the database: lifecycle steps run in many flow runs, in many processes, often on several
workers. A breaker kept in memory would let each process learn of an outage on its own, one
timeout at a time. The row is the breaker: every decision is one conditional UPDATE, so two
workers never both take the half-open probe.

States (`models.BreakerState`):

- closed: calls go through; `failures` counts consecutive transient failures, and reaching
  `threshold` opens the breaker. A success resets the count.
- open: calls fail fast (`BreakerOpen`, not retried: retrying a provider known to be down only
  waits out the retries) until `open_until`.
- half-open: the first caller after `open_until` moves the row to half-open and is the probe:
  its success closes the breaker, its transient failure opens it for another period. Others
  fail fast meanwhile. A probe whose process died does not hold the breaker forever: a
  half-open row older than the open period admits a new probe.

Only transient failures count (a 5xx, a timeout): a 4xx says the request was wrong, not that
the provider is down. Each call here is its own short transaction, apart from the step's work.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from quire.db import Database, utcnow
from quire.lifecycle.connectors.base import Provider, TransientFailure
from quire.lifecycle.models import BreakerState, CircuitBreaker


class BreakerOpen(TransientFailure):
    """The provider's breaker is open: the call was not made. Not worth retrying now."""

    retryable = False


class Admission(StrEnum):
    CALL = "call"  # closed: go ahead
    PROBE = "probe"  # this caller is the half-open probe


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 5  # consecutive transient failures that open it
    open_seconds: float = 30.0  # how long it stays open before a probe


def _ensure_row(session: Session, tenant_id: uuid.UUID, provider: Provider) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(CircuitBreaker)
        .values(
            tenant_id=tenant_id,
            provider=str(provider),
            state=BreakerState.CLOSED,
            failures=0,
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "provider"])
    )


def admit(
    database: Database,
    tenant_id: uuid.UUID,
    provider: Provider,
    policy: BreakerPolicy,
    *,
    now: dt.datetime | None = None,
) -> Admission:
    """May a call to `provider` be made now? Raises `BreakerOpen` when not."""
    now = now or utcnow()
    with database.session(tenant_id, write=True) as session:
        row = session.scalar(select(CircuitBreaker).where(CircuitBreaker.provider == str(provider)))
        if row is None or row.state == BreakerState.CLOSED:
            return Admission.CALL
        stale_probe = now - dt.timedelta(seconds=policy.open_seconds)
        # The probe goes to whoever moves the row out of open (or out of a stale half-open).
        taken = session.execute(
            update(CircuitBreaker)
            .where(
                CircuitBreaker.id == row.id,
                or_(
                    and_(
                        CircuitBreaker.state == BreakerState.OPEN,
                        CircuitBreaker.open_until <= now,
                    ),
                    and_(
                        CircuitBreaker.state == BreakerState.HALF_OPEN,
                        CircuitBreaker.updated_at <= stale_probe,
                    ),
                ),
            )
            .values(state=BreakerState.HALF_OPEN, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:
            return Admission.PROBE
    until = row.open_until.isoformat() if row.open_until else "a probe answers"
    raise BreakerOpen(provider, f"circuit breaker open until {until}: not called")


def record_success(database: Database, tenant_id: uuid.UUID, provider: Provider) -> None:
    """A call went through: the breaker closes (a no-op when it already is, with no failures)."""
    with database.session(tenant_id, write=True) as session:
        session.execute(
            update(CircuitBreaker)
            .where(
                CircuitBreaker.provider == str(provider),
                or_(CircuitBreaker.state != BreakerState.CLOSED, CircuitBreaker.failures > 0),
            )
            .values(state=BreakerState.CLOSED, failures=0, open_until=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def record_failure(
    database: Database,
    tenant_id: uuid.UUID,
    provider: Provider,
    policy: BreakerPolicy,
    *,
    now: dt.datetime | None = None,
) -> BreakerState:
    """A transient failure: count it; open the breaker at the threshold, or when the probe
    failed. Returns the breaker's state after it."""
    now = now or utcnow()
    open_until = now + dt.timedelta(seconds=policy.open_seconds)
    with database.session(tenant_id, write=True) as session:
        _ensure_row(session, tenant_id, provider)
        where = CircuitBreaker.provider == str(provider)
        session.execute(
            update(CircuitBreaker)
            .where(where)
            .values(failures=CircuitBreaker.failures + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(CircuitBreaker)
            .where(
                where,
                or_(
                    CircuitBreaker.state == BreakerState.HALF_OPEN,
                    and_(
                        CircuitBreaker.state == BreakerState.CLOSED,
                        CircuitBreaker.failures >= policy.threshold,
                    ),
                ),
            )
            .values(state=BreakerState.OPEN, open_until=open_until)
            .execution_options(synchronize_session=False)
        )
        return BreakerState(session.scalar(select(CircuitBreaker.state).where(where)))


def state_of(database: Database, tenant_id: uuid.UUID, provider: Provider) -> BreakerState:
    with database.session(tenant_id) as session:
        state = session.scalar(
            select(CircuitBreaker.state).where(CircuitBreaker.provider == str(provider))
        )
    return BreakerState(state) if state else BreakerState.CLOSED
