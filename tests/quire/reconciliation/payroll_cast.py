"""Reconciliation tests' shared cast: a posted payroll with its files, a tenant whose clients owe
for accepted orders and issued invoices, statements stored as the import would store them, and a
reconcile call (the sample statement files are in support.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from sqlalchemy import func, select

from ledger import business, chart, invoices
from ledger.models import AccountKind
from ledger.schemas import InvoiceDraft, InvoiceLine
from quire.db import Database
from quire.payroll import files
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun
from quire.reconciliation.matching import MatchSettings
from quire.reconciliation.models import BankLine, BankStatement, Reconciliation
from quire.reconciliation.runs import reconcile_statement
from tests.quire.payroll.support import PayrollWorld, build_payroll_world
from tests.quire.payroll.test_runs import approve_and_post, open_and_compute
from tests.support.world import build_world


def posted_run(database: Database, tmp_path: Path) -> tuple[PayrollWorld, uuid.UUID]:
    """The standard payroll world's run, posted, its payout files written."""
    pw = build_payroll_world(database, f"r{uuid.uuid4().hex[:8]}")
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with database.session(pw.tenant_id, write=True) as session:
        files.write_files(session, session.get(PayrollRun, run_id), tmp_path)
    return pw, run_id


def lines_of(pw: PayrollWorld, run_id: uuid.UUID) -> dict[str, PayrollLine]:
    """The posted lines by payee name and currency, e.g. 'ana/EUR', 'ken/JPY'."""
    with pw.database.session(pw.tenant_id) as session:
        lines = session.scalars(
            select(PayrollLine).where(
                PayrollLine.run_id == run_id, PayrollLine.status == LineStatus.POSTED
            )
        ).all()
        names = {pw.id(name): name for name in ("ana", "ken", "fatima")}
        return {f"{names[line.specialist_id]}/{line.source_currency}": line for line in lines}


def statement(pw, *lines: dict, statement_id: str = "STMT-1", closes_after: int = 1) -> uuid.UUID:
    """Store a statement as the import would (the bank's lines, in order), dated the payroll's
    payout date (today without a payroll)."""
    with pw.database.session(pw.tenant_id, write=True) as session:
        payout_date = session.scalar(select(func.max(PayrollRun.payout_date))) or dt.date.today()
        stored = BankStatement(
            tenant_id=pw.tenant_id,
            statement_id=statement_id,
            account="DE89370400440532013000",
            currency="EUR",
            format="camt.053.001.08",
            file_name=f"{statement_id}.xml",
            sha256=uuid.uuid4().hex * 2,
            opening_minor=0,
            opening_date=payout_date,
            closing_minor=sum(line["amount_minor"] for line in lines),
            closing_date=payout_date + dt.timedelta(days=closes_after),
            line_count=len(lines),
        )
        session.add(stored)
        session.flush()
        for position, line in enumerate(lines, 1):
            session.add(
                BankLine(
                    tenant_id=pw.tenant_id,
                    statement_id=stored.id,
                    position=position,
                    booking_date=payout_date,
                    value_date=payout_date,
                    **{"currency": "EUR", "returned": False, **line},
                )
            )
        return stored.id


def paid_by_id(line: PayrollLine, **extra) -> dict:
    return {
        "amount_minor": -int(line.payout_minor),
        "currency": line.payout_currency,
        "end_to_end_id": line.end_to_end_id,
        **extra,
    }


def reconcile(pw: PayrollWorld, statement_id: uuid.UUID) -> Reconciliation:
    with pw.database.session(pw.tenant_id, write=True) as session:
        return reconcile_statement(session, None, statement_id, MatchSettings())


def balance(pw, kind: AccountKind, currency: str) -> int:
    with pw.database.session(pw.tenant_id) as session:
        return chart.account(session, kind, currency).balance


def clients_world(database: Database) -> PayrollWorld:
    """A tenant with one specialist ('specialist') and no payroll: its clients owe for orders."""
    return PayrollWorld(build_world(database, f"m{uuid.uuid4().hex[:8]}", specialists=1), database)


def accepted_order(
    pw: PayrollWorld, gross_minor: int, currency: str = "EUR", client_id: uuid.UUID | None = None
) -> uuid.UUID:
    """An accepted order's earnings, as QA posts them: the client receivable owes its gross."""
    order_id = uuid.uuid4()
    with pw.database.session(pw.tenant_id, write=True) as session:
        business.post_earnings(
            session,
            order_id=order_id,
            specialist_id=pw.world.people["specialist"].id,
            gross_minor=gross_minor,
            currency=currency,
            fee_bps=1_000,
            client_id=client_id,
        )
    return order_id


def issued_invoice(pw: PayrollWorld, *amounts: int, currency: str = "EUR") -> uuid.UUID:
    """An invoice of the specialist's month, issued: clients owe its total."""
    with pw.database.session(pw.tenant_id, write=True) as session:
        draft = invoices.create_draft(
            session,
            pw.tenant_id,
            InvoiceDraft(
                specialist_id=pw.world.people["specialist"].id,
                period="2026-11",
                currency=currency,
                lines=[
                    InvoiceLine(description=f"work {i}", amount_minor=a)
                    for i, a in enumerate(amounts)
                ],
            ),
        )
        return invoices.issue(session, draft.id, draft.lock_version).id


def receipt(amount_minor: int, remittance: str, **extra) -> dict:
    """A client's credit as the bank shows it, its remittance naming what it pays."""
    return {
        "amount_minor": amount_minor,
        "remittance": remittance,
        "counterparty_name": "Acme Client GmbH",
        **extra,
    }


def receivable(pw, currency: str = "EUR", client_id: uuid.UUID | None = None) -> int:
    """What clients (or one client) owe, in `currency` (the receivable is debit-normal)."""
    with pw.database.session(pw.tenant_id) as session:
        return chart.account(session, AccountKind.CLIENT_RECEIVABLE, currency, client_id).balance
