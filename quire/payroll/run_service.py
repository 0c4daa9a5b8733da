"""Payroll run operations callers use (the API, the CLI), each one unit of work; finance only,
except where a specialist reads their own."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.errors import Conflict, Forbidden, Invalid
from quire.payroll import approvals, corrections, files, runs
from quire.payroll.models import PayrollFile, PayrollLine, PayrollRun
from quire.payroll.run_schemas import ApprovalIn, RunStart
from quire.people.actor import Actor
from quire.people.models import Role, Tenant

MAX_PAGE = 500


def _finance(actor: Actor) -> None:
    actor.require(Role.FINANCE)


def start_run(session: Session, actor: Actor, body: RunStart) -> tuple[PayrollRun, str]:
    """Open a new attempt for the period; with the tenant's slug, which the flow run is given."""
    _finance(actor)
    run = runs.open_run(
        session, actor, period=body.period, payout_date=body.payout_date, dry_run=body.dry_run
    )
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == actor.tenant_id))
    return run, str(slug)


def attach_flow_run(
    session: Session, actor: Actor, run_id: uuid.UUID, flow_run_id: uuid.UUID
) -> PayrollRun:
    _finance(actor)
    return runs.attach_flow_run(session, run_id, flow_run_id)


def fail_to_start(session: Session, actor: Actor, run_id: uuid.UUID, reason: str) -> PayrollRun:
    """The workflow engine could not start the run: fail it, so the period is free again."""
    _finance(actor)
    return runs.fail(session, run_id, f"could not be started: {reason}")


def idempotency_key(run: PayrollRun) -> str:
    """Prefect's key for the run's flow run: (tenant, period, attempt). Keys are permanent per
    flow, so a new attempt (after a rejection or failure) gets a new key."""
    return f"payroll:{run.tenant_id}:{run.period}:{run.attempt}"


def list_runs(
    session: Session,
    actor: Actor,
    period: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[PayrollRun]:
    _finance(actor)
    statement = select(PayrollRun).order_by(PayrollRun.period.desc(), PayrollRun.attempt.desc())
    if period is not None:
        statement = statement.where(PayrollRun.period == period)
    if status is not None:
        statement = statement.where(PayrollRun.status == status)
    return list(session.scalars(statement.limit(min(limit, MAX_PAGE))))


def read_run(
    session: Session, actor: Actor, run_id: uuid.UUID
) -> tuple[PayrollRun, list[PayrollFile]]:
    _finance(actor)
    run = runs.get_run(session, run_id)
    return run, files.files_of(session, run_id)


def list_lines(
    session: Session,
    actor: Actor,
    run_id: uuid.UUID,
    status: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> tuple[list[PayrollLine], int | None]:
    """A page of the run's lines in id order (keyset: `after` = the last id seen)."""
    _finance(actor)
    runs.get_run(session, run_id)
    statement = select(PayrollLine).where(PayrollLine.run_id == run_id).order_by(PayrollLine.id)
    if status is not None:
        statement = statement.where(PayrollLine.status == status)
    if after is not None:
        statement = statement.where(PayrollLine.id > after)
    page = list(session.scalars(statement.limit(min(limit, MAX_PAGE) + 1)))
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].id if more and page else None)


def open_approval(
    session: Session, actor: Actor, run_id: uuid.UUID, body: ApprovalIn
) -> tuple[uuid.UUID, dict[str, str]]:
    """Refuse up front what the flow would refuse; else the flow run to resume and its input."""
    _finance(actor)
    run = runs.get_run(session, run_id)
    data = approvals.ApprovalData(
        decision=body.decision, comment=body.comment, approver=str(actor.user_id)
    )
    refused = approvals.refusal(run, actor, data)
    if refused is not None:
        kind = {"four_eyes": Forbidden, "not_finance": Forbidden, "comment_required": Invalid}
        raise kind.get(refused.code, Conflict)(refused.message, code=refused.code)
    if run.flow_run_id is None:
        raise Conflict(
            f"run {run_id} has no flow run to resume", code="payroll_not_awaiting_approval"
        )
    return run.flow_run_id, data.model_dump(mode="json")


def reverse_line(
    session: Session, actor: Actor, run_id: uuid.UUID, line_id: int, reason: str
) -> PayrollLine:
    _finance(actor)
    return corrections.reverse_line(session, actor, run_id, line_id, reason)


def reverse_run(session: Session, actor: Actor, run_id: uuid.UUID, reason: str) -> PayrollRun:
    _finance(actor)
    return corrections.reverse_run(session, actor, run_id, reason)


def read_file(
    session: Session, actor: Actor, run_id: uuid.UUID, name: str, reports_dir: Path
) -> tuple[PayrollFile, bytes]:
    _finance(actor)
    runs.get_run(session, run_id)
    return files.read_file(session, run_id, name, reports_dir)
