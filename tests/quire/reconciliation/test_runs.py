"""Reconciling a stored statement against a posted payroll, on SQLite and PostgreSQL: what the
bank confirmed is settled (payout clearing -> bank) and paid, a returned payment is reversed and
payable again, what nothing explains waits in the exception queue, and doing it again changes
nothing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from ledger import chart
from ledger.balances import trial_balance
from ledger.models import AccountKind
from quire.payroll import files
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.reconciliation.matching import MatchSettings
from quire.reconciliation.models import (
    BankLine,
    BankMatch,
    BankStatement,
    ExceptionSide,
    ReconciliationException,
    ReconciliationStatus,
)
from quire.reconciliation.runs import reconcile_statement
from tests.quire.payroll.support import build_payroll_world
from tests.quire.payroll.test_runs import approve_and_post, open_and_compute


@pytest.fixture
def posted(database, tmp_path):
    pw = build_payroll_world(database, f"r{uuid.uuid4().hex[:8]}")
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with database.session(pw.tenant_id, write=True) as session:
        files.write_files(session, session.get(PayrollRun, run_id), tmp_path)
    return pw, run_id


def lines_of(pw, run_id) -> dict[str, PayrollLine]:
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


def reconcile(pw, statement_id):
    with pw.database.session(pw.tenant_id, write=True) as session:
        return reconcile_statement(session, None, statement_id, MatchSettings())


def balance(pw, kind: AccountKind, currency: str) -> int:
    with pw.database.session(pw.tenant_id) as session:
        return chart.account(session, kind, currency).balance


def test_every_payout_the_bank_confirms_is_settled_and_the_run_is_paid(posted):
    pw, run_id = posted
    lines = lines_of(pw, run_id)
    stmt = statement(pw, *(paid_by_id(line) for line in lines.values()))
    outcome = reconcile(pw, stmt)
    assert outcome.status == ReconciliationStatus.CLEAN
    assert outcome.summary["settled"] == len(lines)
    assert outcome.summary["by_rule"] == {"end_to_end": len(lines)}
    with pw.database.session(pw.tenant_id) as session:
        assert session.get(PayrollRun, run_id).status == RunStatus.PAID
        assert all(v == 0 for v in trial_balance(session).values())
    for currency in {line.payout_currency for line in lines.values()}:
        assert balance(pw, AccountKind.PAYOUT_CLEARING, currency) == 0
        paid = sum(int(x.payout_minor) for x in lines.values() if x.payout_currency == currency)
        assert balance(pw, AccountKind.BANK, currency) == -paid  # money left the bank


def test_reconciling_the_same_statement_again_changes_nothing(posted):
    pw, run_id = posted
    stmt = statement(pw, *(paid_by_id(line) for line in lines_of(pw, run_id).values()))
    reconcile(pw, stmt)
    with pw.database.session(pw.tenant_id) as session:
        before = (
            trial_balance(session),
            session.scalar(select(func.count()).select_from(BankMatch)),
        )
    again = reconcile(pw, stmt)
    assert again.summary["matched"] == 0
    assert again.summary["settled"] == 0
    with pw.database.session(pw.tenant_id) as session:
        after = (
            trial_balance(session),
            session.scalar(select(func.count()).select_from(BankMatch)),
        )
    assert after == before


def test_a_returned_payment_reverses_its_line_which_is_payable_again(posted):
    pw, run_id = posted
    lines = lines_of(pw, run_id)
    ken = lines["ken/EUR"]
    others = [paid_by_id(line) for key, line in lines.items() if key != "ken/EUR"]
    stmt = statement(
        pw,
        *others,
        paid_by_id(ken),
        paid_by_id(ken, amount_minor=int(ken.payout_minor), returned=True, return_reason="AC04"),
    )
    outcome = reconcile(pw, stmt)
    assert outcome.summary["returned"] == 1
    with pw.database.session(pw.tenant_id) as session:
        assert session.get(PayrollLine, ken.id).status == LineStatus.REVERSED
        assert session.get(PayrollRun, run_id).status == RunStatus.PAID  # the rest is paid
        payable = chart.account(session, AccountKind.SPECIALIST_PAYABLE, "EUR", pw.id("ken"))
        assert -payable.balance == ken.payable_minor  # owed again, next period
        assert all(v == 0 for v in trial_balance(session).values())


def test_what_no_rule_explains_waits_as_an_exception_on_either_side(posted):
    pw, run_id = posted
    lines = lines_of(pw, run_id)
    confirmed = [paid_by_id(line) for key, line in lines.items() if key != "ana/EUR"]
    # A statement closing well after the payout date: ana's payout should be on it by now.
    stmt = statement(pw, *confirmed, {"amount_minor": 9_999, "remittance": "?"}, closes_after=10)
    outcome = reconcile(pw, stmt)
    assert outcome.status == ReconciliationStatus.EXCEPTIONS
    with pw.database.session(pw.tenant_id) as session:
        queue = session.scalars(select(ReconciliationException)).all()
        sides = sorted((e.side, e.amount_minor) for e in queue)
        assert session.get(PayrollRun, run_id).status == RunStatus.POSTED  # ana's waits
    assert sides == sorted(
        [(ExceptionSide.BANK, 9_999), (ExceptionSide.LEDGER, -int(lines["ana/EUR"].payout_minor))]
    )
    reconcile(pw, stmt)  # again: no second exception for the same items
    with pw.database.session(pw.tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(ReconciliationException)) == 2
