"""One reconciliation of a stored statement: match, settle, return, raise exceptions — one
transaction, so a statement is reconciled entirely or not at all.

    the statement's bank lines without a live match + the tenant's posted payout lines
    -> the rules (`matching.propose`)
    -> matched payouts settled in one ledger batch (payout clearing -> bank), their lines and
       (when nothing of it is left to confirm) their runs `paid`
    -> returned payments: the payout line reversed (payable again next period)
    -> what no rule explains: an open exception in finance's queue (a bank line nothing
       explains; a payout due by the statement's closing date that no bank line confirms)

Re-running over the same statement changes nothing: matched lines are not looked at again, the
settlements are idempotent by payout line, and an item has at most one open exception. The
invariant suites run after this commits (Great Expectations sees committed rows only).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ledger import business
from quire.audit.service import record
from quire.db import utcnow
from quire.errors import NotFound
from quire.payroll import corrections
from quire.payroll.models import (
    FileStatus,
    LineStatus,
    PayrollFile,
    PayrollLine,
    PayrollRun,
    RunStatus,
)
from quire.payroll.payout_details import SEPA_COUNTRIES
from quire.payroll.payout_files import FORMAT_ISO20022, FORMAT_SEPA
from quire.people.actor import Actor
from quire.reconciliation import matching
from quire.reconciliation.matching import BANK_COLUMNS, PAYOUT_COLUMNS, MatchSettings, Proposal
from quire.reconciliation.models import (
    BankLine,
    BankMatch,
    BankStatement,
    ExceptionSide,
    ExceptionStatus,
    MatchRule,
    Reconciliation,
    ReconciliationException,
    ReconciliationStatus,
    bank_line_reference,
)
from quire.tenancy import tenant_of

SETTLING = (MatchRule.END_TO_END, MatchRule.AMOUNT_DATE_NAME, MatchRule.FILE_TOTAL)
CHUNK = 10_000  # ids per statement


def reconcile_statement(
    session: Session,
    actor: Actor | None,
    statement_id: uuid.UUID,
    settings: MatchSettings,
    *,
    flow_run_id: uuid.UUID | None = None,
) -> Reconciliation:
    statement = session.get(BankStatement, statement_id)
    if statement is None:
        raise NotFound(f"no bank statement {statement_id}", code="bank_statement_not_found")
    run = Reconciliation(
        tenant_id=tenant_of(session),
        statement_id=statement.id,
        period=statement.closing_date.strftime("%Y-%m"),
        status=ReconciliationStatus.RUNNING,
        flow_run_id=flow_run_id,
        started_by=actor.user_id if actor and not actor.is_system else None,
        started_at=utcnow(),
    )
    session.add(run)
    session.flush()
    bank, payouts = bank_frame(session, statement.id), payout_frame(session)
    proposal = matching.propose(bank, payouts, settings)
    payouts = payouts.set_index("payroll_line_id")
    settled = _settle(session, run, statement, proposal, payouts)
    returned = _return(session, proposal)
    matched_lines = {i for m in proposal.matches for i in m.payroll_line_ids}
    mark_runs_paid(session, set(payouts.loc[list(matched_lines), "run_id"]), utcnow())
    amounts = bank.set_index("bank_line_id")[["amount_minor", "currency"]]
    raised = _raise_exceptions(session, run, statement, proposal, settings, amounts)
    open_exceptions = _open_exceptions(session)
    run.summary = {
        "bank_lines": statement.line_count,
        "matched": len(proposal.matches),
        "by_rule": proposal.by_rule(),
        "settled": settled,
        "returned": returned,
        "exceptions_raised": raised,
        "exceptions_open": open_exceptions,
    }
    run.status = ReconciliationStatus.EXCEPTIONS if open_exceptions else ReconciliationStatus.CLEAN
    run.finished_at = utcnow()
    record(
        session,
        actor,
        "reconciliation.completed",
        "reconciliation",
        run.id,
        after={"statement": statement.statement_id, "status": run.status, **run.summary},
    )
    return run


def bank_frame(session: Session, statement_id: uuid.UUID) -> pd.DataFrame:
    """The statement's lines that no live match explains yet."""
    live = select(BankMatch.bank_line_id).where(BankMatch.undone.is_(False))
    rows = session.execute(
        select(
            BankLine.id,
            BankLine.amount_minor,
            BankLine.currency,
            BankLine.value_date,
            BankLine.end_to_end_id,
            BankLine.counterparty_name,
            BankLine.returned,
        )
        .where(BankLine.statement_id == statement_id, BankLine.id.not_in(live))
        .order_by(BankLine.position)
    ).all()
    frame = pd.DataFrame(rows, columns=BANK_COLUMNS)
    frame["returned"] = frame["returned"].astype(bool)
    return frame


def payout_frame(session: Session) -> pd.DataFrame:
    """Every posted payout line the bank has not confirmed yet, with its run's payout date, its
    payee's name and the payout file it was written to."""
    payee = PayrollLine.payee
    rows = session.execute(
        select(
            PayrollLine.id,
            PayrollLine.run_id,
            PayrollLine.end_to_end_id,
            PayrollLine.payout_currency,
            PayrollLine.payout_minor,
            PayrollRun.payout_date,
            payee["creditor_name"].as_string(),
            payee["scheme"].as_string(),
            payee["country"].as_string(),
        )
        .join(PayrollRun, PayrollRun.id == PayrollLine.run_id)
        .where(PayrollLine.status == LineStatus.POSTED)
    ).all()
    frame = pd.DataFrame(
        rows,
        columns=[
            "payroll_line_id",
            "run_id",
            "end_to_end_id",
            "currency",
            "payout_minor",
            "payout_date",
            "creditor_name",
            "scheme",
            "country",
        ],
    )
    sepa = (
        (frame["currency"] == "EUR")
        & (frame["scheme"] == "iban")
        & frame["country"].isin(SEPA_COUNTRIES)
    )
    files = _files_by_run(session, set(frame["run_id"]))
    frame["file_id"] = [
        files.get((run_id, FORMAT_SEPA if is_sepa else FORMAT_ISO20022))
        for run_id, is_sepa in zip(frame["run_id"], sepa, strict=True)
    ]
    return frame[PAYOUT_COLUMNS]


def _files_by_run(session: Session, run_ids: set[uuid.UUID]) -> dict[tuple[uuid.UUID, str], Any]:
    if not run_ids:
        return {}
    rows = session.execute(
        select(PayrollFile.run_id, PayrollFile.format, PayrollFile.id).where(
            PayrollFile.run_id.in_(run_ids), PayrollFile.status == FileStatus.VALID
        )
    ).all()
    return {(run_id, fmt): file_id for run_id, fmt, file_id in rows}


def _settle(
    session: Session,
    run: Reconciliation,
    statement: BankStatement,
    proposal: Proposal,
    payouts: pd.DataFrame,
) -> int:
    """Settle every payout the bank confirmed (one ledger batch), record every match, and mark
    the lines paid. `payouts` is the payout frame the rules ran on, by payroll line id."""
    settling = [m for m in proposal.matches if m.rule in SETTLING]
    line_ids = [i for m in settling for i in m.payroll_line_ids]
    bank_line_of = {i: m.bank_line_id for m in settling for i in m.payroll_line_ids}
    transfers = business.settle_payouts(
        session,
        [
            business.Settlement(
                key=f"payroll-settle:{line_id}",
                currency=line.currency,
                amount_minor=int(line.payout_minor),
                reference=bank_line_reference(bank_line_of[line_id]),
                metadata={
                    "payroll_run": str(line.run_id),
                    "end_to_end_id": line.end_to_end_id or "",
                    "statement": statement.statement_id,
                },
            )
            for line_id, line in zip(
                line_ids, payouts.loc[line_ids].itertuples(index=False), strict=True
            )
        ],
    )
    transfer_of = {line_id: str(t.id) for line_id, t in zip(line_ids, transfers, strict=True)}
    rows = [
        {
            "tenant_id": run.tenant_id,
            "reconciliation_id": run.id,
            "bank_line_id": match.bank_line_id,
            "rule": match.rule.value,
            "payroll_line_id": match.payroll_line_ids[0]
            if len(match.payroll_line_ids) == 1
            else None,
            "payroll_file_id": match.payroll_file_id,
            "amount_minor": match.amount_minor,
            "transfer_ids": [transfer_of[i] for i in match.payroll_line_ids if i in transfer_of],
            "undone": False,
            "created_at": utcnow(),
        }
        for match in proposal.matches
    ]
    if rows:
        session.execute(insert(BankMatch.__table__), rows)
    if line_ids:
        now = utcnow()
        for chunk in chunks(line_ids):
            session.execute(
                update(PayrollLine)
                .where(PayrollLine.id.in_(chunk))
                .values(status=LineStatus.PAID, updated_at=now)
            )
        _resolve(session, payroll_line_ids=line_ids)
    _resolve(session, bank_line_ids=[m.bank_line_id for m in proposal.matches])
    return len(line_ids)


def chunks(ids: list[int], size: int = CHUNK) -> Iterable[list[int]]:
    """`ids` a statement's worth at a time: drivers cap the parameters of one statement
    (PostgreSQL 65,535; SQLite 32,766), and a statement of 100,000 lines is ordinary."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def mark_runs_paid(session: Session, run_ids: set[uuid.UUID], now: dt.datetime) -> None:
    """A posted run is paid once none of its lines waits for the bank any more (each is paid,
    or was returned and reversed)."""
    if not run_ids:
        return
    waiting = select(PayrollLine.run_id).where(
        PayrollLine.run_id.in_(run_ids), PayrollLine.status == LineStatus.POSTED
    )
    session.execute(
        update(PayrollRun)
        .where(
            PayrollRun.id.in_(run_ids),
            PayrollRun.status == RunStatus.POSTED,
            PayrollRun.id.not_in(waiting),
        )
        .values(status=RunStatus.PAID, updated_at=now)
    )


def _return(session: Session, proposal: Proposal) -> int:
    """The bank sent these payments back: each line is reversed and payable again (a returned
    payment happens a few times a month, not per line of a payroll)."""
    returned = sorted(
        {m.payroll_line_ids[0] for m in proposal.matches if m.rule == MatchRule.RETURN}
    )
    system = Actor.system(tenant_of(session))
    for line_id in returned:
        line = session.get(PayrollLine, line_id)
        if line is not None and line.status == LineStatus.POSTED:
            corrections.reverse_line(
                session, system, line.run_id, line.id, "returned by the bank (reconciliation)"
            )
    return len(returned)


def _raise_exceptions(
    session: Session,
    run: Reconciliation,
    statement: BankStatement,
    proposal: Proposal,
    settings: MatchSettings,
    amounts: pd.DataFrame,
) -> int:
    """An open exception for each bank line no rule explained, and for each payout due by the
    statement's closing date (less the window) that no bank line has confirmed. `amounts`: the
    bank frame's amount and currency by bank line id."""
    already = _open_items(session)
    now = utcnow()
    rows = [
        {
            "tenant_id": run.tenant_id,
            "reconciliation_id": run.id,
            "side": ExceptionSide.BANK.value,
            "bank_line_id": item.bank_line_id,
            "payroll_line_id": None,
            "reason": item.reason,
            "amount_minor": int(amounts.at[item.bank_line_id, "amount_minor"]),
            "currency": str(amounts.at[item.bank_line_id, "currency"]),
            "status": ExceptionStatus.OPEN.value,
            "created_at": now,
        }
        for item in proposal.unmatched
        if ("bank", item.bank_line_id) not in already
    ]
    due_by = statement.closing_date - dt.timedelta(days=settings.window_days)
    overdue = session.execute(
        select(PayrollLine.id, PayrollLine.payout_minor, PayrollLine.payout_currency)
        .join(PayrollRun, PayrollRun.id == PayrollLine.run_id)
        .where(PayrollLine.status == LineStatus.POSTED, PayrollRun.payout_date <= due_by)
    ).all()
    rows += [
        {
            "tenant_id": run.tenant_id,
            "reconciliation_id": run.id,
            "side": ExceptionSide.LEDGER.value,
            "bank_line_id": None,
            "payroll_line_id": line.id,
            "reason": f"no bank line confirms this payout, due by {due_by.isoformat()}",
            "amount_minor": -int(line.payout_minor),
            "currency": line.payout_currency,
            "status": ExceptionStatus.OPEN.value,
            "created_at": now,
        }
        for line in overdue
        if ("ledger", line.id) not in already
    ]
    if rows:
        session.execute(insert(ReconciliationException.__table__), rows)
    return len(rows)


def _open_items(session: Session) -> set[tuple[str, int]]:
    rows = session.execute(
        select(ReconciliationException.bank_line_id, ReconciliationException.payroll_line_id).where(
            ReconciliationException.status == ExceptionStatus.OPEN
        )
    ).all()
    return {("bank", b) for b, _ in rows if b is not None} | {
        ("ledger", p) for _, p in rows if p is not None
    }


def _open_exceptions(session: Session) -> int:
    return len(_open_items(session))


def _resolve(
    session: Session,
    *,
    bank_line_ids: Iterable[int] = (),
    payroll_line_ids: Iterable[int] = (),
) -> None:
    """Open exceptions of items a later statement explained are resolved."""
    now = utcnow()
    for column, ids in (
        (ReconciliationException.bank_line_id, list(bank_line_ids)),
        (ReconciliationException.payroll_line_id, list(payroll_line_ids)),
    ):
        for chunk in chunks(ids):
            session.execute(
                update(ReconciliationException)
                .where(column.in_(chunk), ReconciliationException.status == ExceptionStatus.OPEN)
                .values(
                    status=ExceptionStatus.RESOLVED,
                    resolution="matched by a later reconciliation",
                    resolved_at=now,
                )
            )
