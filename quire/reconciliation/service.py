"""Reconciliation's operations for the API and the flows, each on a tenant-scoped session."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import periods as ledger_periods
from ledger.models import ClosedPeriod
from quire.audit.service import record
from quire.db import Database
from quire.errors import Conflict, NotFound
from quire.payroll import periods
from quire.payroll.models import PayrollProfile
from quire.people.actor import Actor
from quire.people.models import Role, Tenant, User
from quire.reconciliation.models import (
    BankStatement,
    ExceptionStatus,
    Reconciliation,
    ReconciliationException,
    ReconciliationStatus,
)
from quire.tenancy import ALL_TENANTS


def get_reconciliation(session: Session, reconciliation_id: uuid.UUID) -> Reconciliation:
    found = session.get(Reconciliation, reconciliation_id)
    if found is None:
        raise NotFound(
            f"reconciliation {reconciliation_id} not found", code="reconciliation_not_found"
        )
    return found


def pending_statements(session: Session) -> list[uuid.UUID]:
    """Statements no reconciliation has looked at yet, oldest first."""
    done = select(Reconciliation.statement_id).where(Reconciliation.statement_id.is_not(None))
    return list(
        session.scalars(
            select(BankStatement.id)
            .where(BankStatement.id.not_in(done))
            .order_by(BankStatement.closing_date, BankStatement.uploaded_at)
        )
    )


def record_suites(
    session: Session, reconciliation_id: uuid.UUID, suites: Mapping[str, Any]
) -> Reconciliation:
    """Keep the invariant suites' outcome; a failed suite fails the reconciliation."""
    run = get_reconciliation(session, reconciliation_id)
    run.suites = dict(suites)
    if not suites.get("success"):
        run.status = ReconciliationStatus.FAILED
        record(
            session,
            None,
            "reconciliation.failed",
            "reconciliation",
            run.id,
            after={"failed": list(suites.get("failed", []))},
        )
    return run


def finance_emails(session: Session) -> list[str]:
    """Whom an alert goes to: the tenant's active finance users."""
    users = session.scalars(select(User).where(User.is_active.is_(True))).all()
    return sorted(u.email for u in users if u.has_any_role(Role.FINANCE))


def tenants_with_statements(database: Database) -> list[tuple[uuid.UUID, str]]:
    """Every tenant that has uploaded a statement (the daily schedule's round)."""
    with database.session() as session:
        rows = session.execute(
            select(Tenant.id, Tenant.slug)
            .where(Tenant.id.in_(select(BankStatement.tenant_id).distinct()))
            .order_by(Tenant.slug)
            .execution_options(**ALL_TENANTS)
        ).all()
    return [(row.id, row.slug) for row in rows]


def close_period(session: Session, actor: Actor, period: str) -> ClosedPeriod:
    """Close `period` (finance) once its reconciliation is clean: the latest reconciliation
    over it passed every suite and nothing waits in the exception queue. The period's bounds
    are the tenant's months (its payroll profile's time zone, else UTC); from then on the
    database refuses entries dated in it."""
    periods.parse(period)
    latest = session.scalar(
        select(Reconciliation)
        .where(Reconciliation.period == period)
        .order_by(Reconciliation.started_at.desc())
        .limit(1)
    )
    if latest is None or latest.status != ReconciliationStatus.CLEAN:
        raise Conflict(
            f"period {period} has no clean reconciliation"
            + (f" (the latest is {latest.status})" if latest else "")
            + ": reconcile it first",
            code="period_not_reconciled",
        )
    waiting = session.scalar(
        select(ReconciliationException.id)
        .where(ReconciliationException.status == ExceptionStatus.OPEN)
        .limit(1)
    )
    if waiting is not None:
        raise Conflict(
            "exceptions wait in the queue: resolve them before closing",
            code="period_has_exceptions",
        )
    profile = session.scalar(select(PayrollProfile))
    zone_name = profile.time_zone if profile else "UTC"
    starts_at = periods.cutoff(_month_before(period), zone_name)
    ends_at = periods.cutoff(period, zone_name)
    return ledger_periods.close(session, actor, period, starts_at, ends_at)


def reopen_period(session: Session, actor: Actor, period: str, reason: str) -> ClosedPeriod:
    """Reopen a closed period (an admin, with a reason; audited by the ledger)."""
    actor.require(Role.ADMIN)
    return ledger_periods.reopen(session, actor, period, reason)


def _month_before(period: str) -> str:
    year, month = periods.parse(period)
    return f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"
