"""One reconciliation of a stored statement: match, settle, return, receive, raise exceptions —
one transaction, so a statement is reconciled entirely or not at all.

    the statement's bank lines without a live match + the tenant's posted payout lines + the
    paid lines its returns name + the receivables its credits name
    -> the rules (`matching.propose`)
    -> matched payouts settled in one ledger batch (payout clearing -> bank), their lines and
       (when nothing of it is left to confirm) their runs `paid`
    -> returned payments: the payout line reversed (payable again next period); a line an
       earlier statement settled first gets its money back (bank -> payout clearing) and goes
       back to posted (its run too), then is reversed, and its run is paid again
    -> money in: clients' credits received in one ledger batch (client receivable -> bank), an
       invoice received in full marked paid
    -> what no rule explains: an open exception in finance's queue (a bank line nothing
       explains; a payout due by the statement's closing date that no bank line confirms)

Every transfer posted because of a bank line carries `bank_line_reference(line)`: the statement
invariant finds a statement's bank movements in the ledger by it. Re-running over the same
statement changes nothing: matched lines are not looked at again, the settlements, returns and
receipts are idempotent (by payout line; by bank line), and an item has at most one open
exception. The invariant suites run after this commits (Great Expectations sees committed rows
only).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from ledger import business
from ledger.invoices import STATEMENT_KIND, statement_header
from ledger.models import Account, AccountKind, Entry, Invoice, InvoiceStatus, Transfer
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
from quire.reconciliation.matching import (
    BANK_COLUMNS,
    PAYOUT_COLUMNS,
    RECEIVABLE_COLUMNS,
    SETTLED_COLUMNS,
    Match,
    MatchSettings,
    Proposal,
)
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
# A payout line as the frames hold it (matching.SETTLED_COLUMNS, then the payout frame's rest).
_LINE_COLUMNS = (
    PayrollLine.id,
    PayrollLine.run_id,
    PayrollLine.end_to_end_id,
    PayrollLine.payout_currency,
    PayrollLine.payout_minor,
)


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
    settled_lines, receivables = settled_frame(session, bank), receivable_frame(session, bank)
    proposal = matching.propose(
        bank, payouts, settings, settled=settled_lines, receivables=receivables
    )
    payouts = payouts.set_index("payroll_line_id")
    transfers = _settle(session, statement, proposal, payouts)
    transfers |= _return_settled(session, statement, proposal, settled_lines)
    transfers |= _receive(session, statement, proposal, receivables)
    _record_matches(session, run, proposal, transfers)
    returned = _return(session, proposal)
    run_of = pd.concat([payouts["run_id"], settled_lines.set_index("payroll_line_id")["run_id"]])
    matched_lines = {i for m in proposal.matches for i in m.payroll_line_ids}
    mark_runs_paid(session, set(run_of.loc[list(matched_lines)]), utcnow())
    amounts = bank.set_index("bank_line_id")[["amount_minor", "currency"]]
    raised = _raise_exceptions(session, run, statement, proposal, settings, amounts)
    open_exceptions = _open_exceptions(session)
    run.summary = {
        "bank_lines": statement.line_count,
        "matched": len(proposal.matches),
        "by_rule": proposal.by_rule(),
        "settled": sum(len(m.payroll_line_ids) for m in proposal.matches if m.rule in SETTLING),
        "returned": returned,
        "returned_after_settlement": sum(1 for m in proposal.matches if m.after_settlement),
        "received": _received_summary(proposal, amounts),
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
    """The statement's lines that no live match explains yet, in statement order."""
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
            BankLine.remittance,
            BankLine.customer_reference,
            BankLine.raw_reference,
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
            *_LINE_COLUMNS,
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
    session: Session, statement: BankStatement, proposal: Proposal, payouts: pd.DataFrame
) -> dict[int, list[str]]:
    """Settle every payout the bank confirmed (one ledger batch, each transfer naming the bank
    line that confirmed it) and mark the lines paid. `payouts` is the payout frame the rules ran
    on, by payroll line id. Returns the transfers posted, by bank line."""
    settling = [m for m in proposal.matches if m.rule in SETTLING]
    line_ids = [i for m in settling for i in m.payroll_line_ids]
    bank_line_of = {i: m.bank_line_id for m in settling for i in m.payroll_line_ids}
    transfers = business.settle_payouts(
        session,
        [
            _line_settlement(f"payroll-settle:{line_id}", line, bank_line_of[line_id], statement)
            for line_id, line in zip(
                line_ids, payouts.loc[line_ids].itertuples(index=False), strict=True
            )
        ],
    )
    posted: dict[int, list[str]] = {}
    for line_id, transfer in zip(line_ids, transfers, strict=True):
        posted.setdefault(bank_line_of[line_id], []).append(str(transfer.id))
    if line_ids:
        now = utcnow()
        for chunk in chunks(line_ids):
            session.execute(
                update(PayrollLine)
                .where(PayrollLine.id.in_(chunk))
                .values(status=LineStatus.PAID, updated_at=now)
            )
        _resolve(session, payroll_line_ids=line_ids)
    return posted


def _line_settlement(
    key: str, line: Any, bank_line_id: int, statement: BankStatement
) -> business.Settlement:
    """A payout line's money between payout clearing and the bank (its settlement, or its
    return), naming the bank line that moved it. `line`: a row of a payout or settled frame."""
    return business.Settlement(
        key=key,
        currency=line.currency,
        amount_minor=int(line.payout_minor),
        reference=bank_line_reference(bank_line_id),
        metadata={
            "payroll_run": str(line.run_id),
            "end_to_end_id": line.end_to_end_id or "",
            "statement": statement.statement_id,
        },
    )


def _record_matches(
    session: Session,
    run: Reconciliation,
    proposal: Proposal,
    transfers: dict[int, list[str]],
) -> None:
    """One BankMatch per matched bank line, with the transfers posted because of it; the open
    exceptions of those lines are resolved."""
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
            "reference": match.reference,
            "amount_minor": match.amount_minor,
            "transfer_ids": transfers.get(match.bank_line_id, []),
            "undone": False,
            "created_at": utcnow(),
        }
        for match in proposal.matches
    ]
    if rows:
        session.execute(insert(BankMatch.__table__), rows)
    _resolve(session, bank_line_ids=[m.bank_line_id for m in proposal.matches])


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
    payment happens a few times a month, not per line of a payroll). A line an earlier
    statement had settled is posted again by now (`_return_settled`)."""
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


def settled_frame(session: Session, bank: pd.DataFrame) -> pd.DataFrame:
    """The paid payout lines the statement's returned payments name by end-to-end id (a return
    after settlement): a query per 10,000 ids, not one per line."""
    returned = bank[bank["returned"] & bank["end_to_end_id"].notna()]
    names = sorted(set(returned["end_to_end_id"]))
    rows = [
        row
        for chunk in chunks(names)
        for row in session.execute(
            select(*_LINE_COLUMNS).where(
                PayrollLine.status == LineStatus.PAID, PayrollLine.end_to_end_id.in_(chunk)
            )
        )
    ]
    return pd.DataFrame(rows, columns=SETTLED_COLUMNS)


def _return_settled(
    session: Session, statement: BankStatement, proposal: Proposal, settled: pd.DataFrame
) -> dict[int, list[str]]:
    """A paid payout came back: its money re-enters the bank (bank -> payout clearing, one
    batch, idempotent by line, naming the return's bank line), and the line — and its run, if
    the bank had paid all of it — is posted again, for `_return` to reverse and
    `mark_runs_paid` to pay again. Returns the transfers posted, by bank line."""
    bank_line_of = {
        m.payroll_line_ids[0]: m.bank_line_id for m in proposal.matches if m.after_settlement
    }
    if not bank_line_of:
        return {}
    lines = settled[settled["payroll_line_id"].isin(bank_line_of)]
    transfers = business.return_payouts(
        session,
        [
            _line_settlement(
                f"payroll-return:{line.payroll_line_id}",
                line,
                bank_line_of[line.payroll_line_id],
                statement,
            )
            for line in lines.itertuples(index=False)
        ],
    )
    line_ids = [int(i) for i in lines["payroll_line_id"]]
    run_ids = set(lines["run_id"])
    now = utcnow()
    session.execute(
        update(PayrollLine)
        .where(PayrollLine.id.in_(line_ids), PayrollLine.status == LineStatus.PAID)
        .values(status=LineStatus.POSTED, updated_at=now)
    )
    session.execute(
        update(PayrollRun)
        .where(PayrollRun.id.in_(run_ids), PayrollRun.status == RunStatus.PAID)
        .values(status=RunStatus.POSTED, updated_at=now)
    )
    return {
        bank_line_of[line_id]: [str(transfer.id)]
        for line_id, transfer in zip(line_ids, transfers, strict=True)
    }


def receivable_frame(session: Session, bank: pd.DataFrame) -> pd.DataFrame:
    """What clients owe on every order or invoice the statement's credits name (columns
    `matching.RECEIVABLE_COLUMNS`): for an order, what its transfers (its earnings, less any
    reversal) put on a client receivable; for an issued invoice (not a payroll statement), its
    total; less, for both, what live matches already received for it. Queries a chunk of named
    ids at a time, never one per line; what nothing in the tenant's ledger knows is absent."""
    credits = bank[(bank["amount_minor"] > 0) & ~bank["returned"]]
    targets = sorted(set(matching.named_references(credits)["target_id"]))
    frames = [
        frame
        for chunk in chunks(targets)
        for frame in (_order_receivables(session, chunk), _invoice_receivables(session, chunk))
    ]
    if not frames:
        return pd.DataFrame(columns=RECEIVABLE_COLUMNS)
    owed = pd.concat(frames, ignore_index=True)
    received = _received(session, list(owed["reference"]))
    owed["received_minor"] = owed["reference"].map(received).fillna(0).astype("int64")
    return owed[RECEIVABLE_COLUMNS]


def _order_receivables(session: Session, target_ids: list[str]) -> pd.DataFrame:
    """Per named order, the receivable its transfers (`order:<uuid>`) moved: earnings debit
    it, a reversal of them credits it back."""
    rows = session.execute(
        select(Transfer.reference, Entry.currency, Account.owner_id, func.sum(Entry.amount))
        .join(Entry, Entry.transfer_id == Transfer.id)
        .join(Account, Account.id == Entry.account_id)
        .where(
            Account.kind == AccountKind.CLIENT_RECEIVABLE,
            Transfer.reference.in_([f"order:{t}" for t in target_ids]),
        )
        .group_by(Transfer.reference, Entry.currency, Account.owner_id)
    ).all()
    return pd.DataFrame(
        [
            {
                "reference": reference,
                "kind": "order",
                "target_id": reference.removeprefix("order:"),
                "currency": currency,
                "client_id": owner_id,
                "owed_minor": int(owed),
                "refusal": None if owed > 0 else "nothing is receivable on it any more",
            }
            for reference, currency, owner_id, owed in rows
        ],
        columns=[c for c in RECEIVABLE_COLUMNS if c != "received_minor"],
    )


def _invoice_receivables(session: Session, target_ids: list[str]) -> pd.DataFrame:
    """Per named invoice of the tenant (never a payroll statement: it bills nobody), its
    total, owed by the tenant's clients at large in its currency; a draft or void one refuses
    money, and a paid one has nothing outstanding."""
    ids = [uuid.UUID(target) for target in target_ids]
    header = statement_header()
    rows = session.execute(
        select(Invoice.id, Invoice.status, Invoice.currency, Invoice.total_minor).where(
            Invoice.id.in_(ids), or_(header.is_(None), header != STATEMENT_KIND)
        )
    ).all()
    refusals = {
        InvoiceStatus.DRAFT: "the invoice is a draft, not issued yet",
        InvoiceStatus.VOID: "the invoice is void",
        InvoiceStatus.PAID: "the invoice is paid already",
    }
    return pd.DataFrame(
        [
            {
                "reference": f"invoice:{invoice_id}",
                "kind": "invoice",
                "target_id": str(invoice_id),
                "currency": currency,
                "client_id": None,
                "owed_minor": int(total),
                "refusal": refusals.get(InvoiceStatus(status)),
            }
            for invoice_id, status, currency, total in rows
        ],
        columns=[c for c in RECEIVABLE_COLUMNS if c != "received_minor"],
    )


def _received(session: Session, references: list[str]) -> dict[str, int]:
    """What live money-in matches already received, by the order or invoice they name."""
    received: dict[str, int] = {}
    for chunk in chunks(references):
        for reference, amount in session.execute(
            select(BankMatch.reference, func.sum(BankMatch.amount_minor))
            .where(
                BankMatch.rule == MatchRule.CLIENT_REFERENCE,
                BankMatch.undone.is_(False),
                BankMatch.reference.in_(chunk),
            )
            .group_by(BankMatch.reference)
        ):
            received[reference] = int(amount)
    return received


def _receive(
    session: Session, statement: BankStatement, proposal: Proposal, receivables: pd.DataFrame
) -> dict[int, list[str]]:
    """Post every client's credit the rules matched (one ledger batch: client receivable ->
    bank, idempotent by bank line, naming it) and mark the invoices now received in full paid.
    Returns the transfers posted, by bank line."""
    matches = [m for m in proposal.matches if m.rule == MatchRule.CLIENT_REFERENCE]
    if not matches:
        return {}
    owed = receivables.set_index("reference")
    transfers = business.receive_client_payments(
        session,
        [
            business.ClientReceipt(
                key=f"client-receipt:{m.bank_line_id}",
                currency=str(owed.at[m.reference, "currency"]),
                amount_minor=m.amount_minor,
                client_id=_client_of(owed.at[m.reference, "client_id"]),
                reference=bank_line_reference(m.bank_line_id),
                metadata={
                    str(owed.at[m.reference, "kind"]): str(owed.at[m.reference, "target_id"]),
                    "statement": statement.statement_id,
                },
            )
            for m in matches
        ],
    )
    _mark_invoices_paid(session, matches, owed)
    return {m.bank_line_id: [str(t.id)] for m, t in zip(matches, transfers, strict=True)}


def _client_of(owner: Any) -> uuid.UUID | None:
    """A receivable account's owner as the frame holds it (None or NaN: the clients at large)."""
    return owner if isinstance(owner, uuid.UUID) else None


def _mark_invoices_paid(session: Session, matches: list[Match], owed: pd.DataFrame) -> None:
    """An issued invoice whose receipts now cover its total is paid (its lock version moves, so
    an editor holding the issued version loses)."""
    taken = pd.Series([m.amount_minor for m in matches], index=[m.reference for m in matches])
    taken = taken.groupby(level=0).sum()
    invoices = owed.loc[taken.index]
    invoices = invoices[invoices["kind"] == "invoice"]
    paid = invoices[
        invoices["received_minor"] + taken.loc[invoices.index] >= invoices["owed_minor"]
    ]
    ids = [uuid.UUID(t) for t in paid["target_id"]]
    if ids:
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(ids), Invoice.status == InvoiceStatus.ISSUED)
            .values(
                status=InvoiceStatus.PAID, paid_at=utcnow(), lock_version=Invoice.lock_version + 1
            )
        )


def _received_summary(proposal: Proposal, amounts: pd.DataFrame) -> dict[str, Any]:
    """Money in this run received: how many credits, and how much per currency."""
    by_currency: dict[str, int] = {}
    count = 0
    for match in proposal.matches:
        if match.rule == MatchRule.CLIENT_REFERENCE:
            currency = str(amounts.at[match.bank_line_id, "currency"])
            by_currency[currency] = by_currency.get(currency, 0) + match.amount_minor
            count += 1
    return {"count": count, "by_currency": by_currency}


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
