"""Corrections after posting: reversal transfers, never edits.

- One line (e.g. the bank returned the payment): its transfers are reversed, so the amount is
  back in the specialist's payable — and the next period's run pays it again; the specialist's
  payslip gets a new version saying so.
- A whole posted run the bank has not paid: every posted line reversed, the files marked void
  (the bank must not execute them), the run `reversed` (which frees the period for a new attempt).

Each is idempotent: reversing what is already reversed answers with the same state.
"""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.posting import reverse_many
from quire.audit.service import record
from quire.db import utcnow
from quire.errors import Conflict, NotFound
from quire.payroll import payslips
from quire.payroll.files import void_files
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.payroll.runs import get_run
from quire.people.actor import Actor


def get_line(session: Session, run_id: uuid.UUID, line_id: int) -> PayrollLine:
    line = session.scalar(
        select(PayrollLine).where(PayrollLine.run_id == run_id, PayrollLine.id == line_id)
    )
    if line is None:
        raise NotFound(f"run {run_id} has no line {line_id}", code="payroll_line_not_found")
    return line


def reverse_line(
    session: Session, actor: Actor, run_id: uuid.UUID, line_id: int, reason: str
) -> PayrollLine:
    run = get_run(session, run_id, for_update=True)
    line = get_line(session, run_id, line_id)
    if line.status == LineStatus.REVERSED:
        return line
    if run.status != RunStatus.POSTED or line.status != LineStatus.POSTED:
        raise Conflict(
            f"line {line_id} is {line.status} in a {run.status} run: only posted lines of a "
            "posted run are reversed here",
            code="payroll_line_not_reversible",
        )
    _reverse(session, run, [line], reason)
    session.flush()
    # That specialist's payslip gets a new version (not issued yet: its first version will say).
    with contextlib.suppress(NotFound):
        payslips.reissue_for_line(session, run, line)
    record(
        session,
        actor,
        "payroll_line.reversed",
        "payroll_run",
        run.id,
        before={"line": line_id, "status": LineStatus.POSTED},
        after={"line": line_id, "status": LineStatus.REVERSED, "reason": reason},
    )
    return line


def reverse_run(session: Session, actor: Actor, run_id: uuid.UUID, reason: str) -> PayrollRun:
    run = get_run(session, run_id, for_update=True)
    if run.status == RunStatus.REVERSED:
        return run
    if run.status != RunStatus.POSTED:
        raise Conflict(
            f"payroll run {run_id} is {run.status}: only a posted run the bank has not paid "
            "is reversed as a whole",
            code="payroll_run_not_reversible",
        )
    lines = session.scalars(
        select(PayrollLine).where(PayrollLine.run_id == run.id).order_by(PayrollLine.id)
    ).all()
    if any(line.status == LineStatus.PAID for line in lines):
        raise Conflict(
            "some of this run's lines are paid already: reverse the others line by line",
            code="payroll_run_partly_paid",
        )
    posted = [line for line in lines if line.status == LineStatus.POSTED]
    _reverse(session, run, posted, reason)
    reversed_lines = len(posted)
    session.flush()
    restated = payslips.reissue_for_run(session, run)
    voided = void_files(session, run.id)
    run.status = RunStatus.REVERSED
    run.failure_reason = f"reversed: {reason}"
    run.updated_at = utcnow()
    record(
        session,
        actor,
        "payroll_run.reversed",
        "payroll_run",
        run.id,
        before={"status": RunStatus.POSTED},
        after={
            "status": RunStatus.REVERSED,
            "reason": reason,
            "lines_reversed": reversed_lines,
            "files_voided": voided,
            "payslips_restated": restated,
        },
    )
    return run


def _reverse(session: Session, run: PayrollRun, lines: list[PayrollLine], reason: str) -> None:
    """Mirror every transfer of `lines` in one ledger batch (each line's FX leg into clearing
    and its leg out of the payable alike); the lines become `reversed`."""
    reversals = reverse_many(
        session,
        [uuid.UUID(t) for line in lines for t in reversed(line.transfer_ids)],
        reason=f"payroll {run.period}: {reason}",
    )
    now, at = utcnow(), 0
    for line in lines:
        count = len(line.transfer_ids)
        line.status = LineStatus.REVERSED
        line.reversal_ids = [str(t.id) for t in reversals[at : at + count]]
        line.updated_at = now
        at += count
