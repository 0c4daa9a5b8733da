"""Reconciliation's operations for the API and the flows, each on a tenant-scoped session."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ledger import periods as ledger_periods
from ledger.models import ClosedPeriod
from quire.audit.service import record
from quire.db import Database, utcnow
from quire.errors import Conflict, Invalid, NotFound
from quire.payroll import periods
from quire.payroll.models import PayrollProfile
from quire.people.actor import Actor
from quire.people.models import Role, Tenant, User
from quire.reconciliation import exceptions
from quire.reconciliation.bank_lines import BankLine as ParsedLine
from quire.reconciliation.bank_lines import Statement
from quire.reconciliation.models import BankLine as BankLineRow
from quire.reconciliation.models import (
    BankMatch,
    BankStatement,
    ExceptionStatus,
    Reconciliation,
    ReconciliationException,
    ReconciliationStatus,
)
from quire.reconciliation.statements import parse_statements
from quire.tenancy import ALL_TENANTS, tenant_of


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
    actor.require(Role.FINANCE)
    return _close_period(session, actor, period)


def _close_period(session: Session, actor: Actor, period: str) -> ClosedPeriod:
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


MAX_STATEMENT_BYTES = 20 * 1024 * 1024


def import_statements(
    session: Session, actor: Actor, file_name: str, content: bytes
) -> list[BankStatement]:
    """Store the statements of one uploaded file (finance), once.

    The same bytes again return the statements stored from them; a statement already stored
    from another file (same account and statement id) is returned, not stored twice. A file
    that does not parse, does not balance, or is for an account that is not the tenant's
    payroll account is refused whole (422) and nothing is stored. Finance uploads; Quire itself
    (the reconcile-ledger flow, given a file's path by ops) imports too."""
    if not actor.is_system:
        actor.require(Role.FINANCE)
    if len(content) > MAX_STATEMENT_BYTES:
        raise Invalid(
            f"the file is larger than {MAX_STATEMENT_BYTES // (1024 * 1024)} MiB",
            code="statement_too_large",
        )
    digest = hashlib.sha256(content).hexdigest()
    stored = list(
        session.scalars(
            select(BankStatement).where(BankStatement.sha256 == digest).order_by(BankStatement.id)
        )
    )
    if stored:
        return stored
    parsed = parse_statements(content)
    profile = session.scalar(select(PayrollProfile))
    ours = {profile.debtor_iban.replace(" ", "").upper()} if profile else set()
    for index, statement in enumerate(parsed):
        account = (statement.account_iban or statement.account_id or "").replace(" ", "").upper()
        if account not in ours:
            raise Invalid(
                f"statement {statement.statement_id} is for account {account or '(none)'}, which "
                "is not this tenant's payroll account",
                code="statement_wrong_account",
                errors=[
                    {
                        "loc": ["body", "file", index, "account"],
                        "msg": "not the tenant's account",
                        "type": "statement_wrong_account",
                    }
                ],
            )
    result = []
    for statement in parsed:
        account = (statement.account_iban or statement.account_id or "").replace(" ", "").upper()
        existing = session.scalar(
            select(BankStatement).where(
                BankStatement.account == account,
                BankStatement.statement_id == statement.statement_id[:35],
            )
        )
        result.append(existing or _store(session, actor, file_name, digest, account, statement))
    return result


def _store(
    session: Session,
    actor: Actor,
    file_name: str,
    digest: str,
    account: str,
    statement: Statement,
) -> BankStatement:
    """One statement and its booked lines (a pending or zero entry moves no money)."""
    lines = [line for line in statement.lines if line.booked and line.amount_minor]
    row = BankStatement(
        tenant_id=tenant_of(session),
        statement_id=statement.statement_id[:35],
        account=account,
        currency=statement.currency,
        format=statement.format,
        file_name=file_name[:200] or "statement",
        sha256=digest,
        opening_minor=statement.opening_balance.amount_minor,
        opening_date=statement.opening_balance.date,
        closing_minor=statement.closing_balance.amount_minor,
        closing_date=statement.closing_balance.date,
        created_by_bank_at=statement.created_at,
        line_count=len(lines),
        uploaded_by=None if actor.is_system else actor.user_id,
        uploaded_at=utcnow(),
    )
    session.add(row)
    session.flush()
    if lines:
        session.execute(
            insert(BankLineRow.__table__),
            [_line_row(row, position, line) for position, line in enumerate(lines, 1)],
        )
    record(
        session,
        actor,
        "bank_statement.imported",
        "bank_statement",
        row.id,
        after={
            "statement": row.statement_id,
            "account": row.account,
            "lines": row.line_count,
            "sha256": digest,
        },
    )
    return row


def _line_row(statement: BankStatement, position: int, line: ParsedLine) -> dict[str, Any]:
    booked = line.booking_date or line.value_date or statement.closing_date
    return {
        "tenant_id": statement.tenant_id,
        "statement_id": statement.id,
        "position": position,
        "booking_date": booked,
        "value_date": line.value_date or booked,
        "amount_minor": line.signed_amount_minor,
        "currency": line.currency,
        "end_to_end_id": _cut(line.end_to_end_id, 35),
        "bank_reference": _cut(line.account_servicer_reference, 64),
        "customer_reference": _cut(line.customer_reference, 64),
        "counterparty_name": _cut(line.counterparty_name, 140),
        "counterparty_account": _cut(line.counterparty_account, 64),
        "remittance": line.remittance_information,
        "transaction_code": _cut(line.bank_code.text, 64),
        "returned": line.is_return or line.is_reversal,
        "return_reason": _cut(line.return_info.reason_code, 64),
        "raw_reference": _cut(line.entry_reference, 140),
    }


def _cut(value: str | None, length: int) -> str | None:
    return value[:length] if value else None


MAX_PAGE = 200


def list_reconciliations(session: Session, actor: Actor, limit: int) -> list[Reconciliation]:
    actor.require(Role.FINANCE)
    return list(
        session.scalars(
            select(Reconciliation).order_by(Reconciliation.started_at.desc()).limit(limit)
        )
    )


def read_reconciliation(
    session: Session, actor: Actor, reconciliation_id: uuid.UUID
) -> Reconciliation:
    actor.require(Role.FINANCE)
    return get_reconciliation(session, reconciliation_id)


def list_exceptions(
    session: Session, actor: Actor, reconciliation_id: uuid.UUID, status: str | None
) -> list[ReconciliationException]:
    """The queue of one reconciliation (its exceptions, open or resolved)."""
    read_reconciliation(session, actor, reconciliation_id)
    return exceptions.list_exceptions(session, reconciliation_id, status=status)


def _exception_of(
    session: Session, reconciliation_id: uuid.UUID, exception_id: int
) -> ReconciliationException:
    found = session.get(ReconciliationException, exception_id)
    if found is None or found.reconciliation_id != reconciliation_id:
        raise NotFound(
            f"reconciliation {reconciliation_id} has no exception {exception_id}",
            code="exception_not_found",
        )
    return found


def match_exception(
    session: Session,
    actor: Actor,
    reconciliation_id: uuid.UUID,
    exception_id: int,
    payroll_line_id: int,
    reason: str,
    limit: Decimal,
) -> BankMatch:
    actor.require(Role.FINANCE)
    _exception_of(session, reconciliation_id, exception_id)
    return exceptions.match_by_hand(session, actor, exception_id, payroll_line_id, reason, limit)


def write_off_exception(
    session: Session,
    actor: Actor,
    reconciliation_id: uuid.UUID,
    exception_id: int,
    reason: str,
    limit: Decimal,
) -> BankMatch:
    actor.require(Role.FINANCE)
    _exception_of(session, reconciliation_id, exception_id)
    return exceptions.write_off(session, actor, exception_id, reason, limit)
