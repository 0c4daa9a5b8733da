"""Reconciliation tests' shared cast: a posted payroll with its files, statements stored as the
import would store them, and a reconcile call (the sample statement files are in support.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from sqlalchemy import func, select

from ledger import chart
from ledger.models import AccountKind
from quire.db import Database
from quire.payroll import files
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun
from quire.reconciliation.matching import MatchSettings
from quire.reconciliation.models import BankLine, BankStatement, Reconciliation
from quire.reconciliation.runs import reconcile_statement
from tests.quire.payroll.support import PayrollWorld, build_payroll_world
from tests.quire.payroll.test_runs import approve_and_post, open_and_compute


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
    """Store a statement as the import would (the bank's lines, in order)."""
    with pw.database.session(pw.tenant_id, write=True) as session:
        payout_date = session.scalar(select(func.max(PayrollRun.payout_date)))
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
