"""The demo's bank answers payroll's payout files with a camt.053 statement that Quire imports
and reconciles like any bank's: every payout confirmed, the one it returned reversed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from deployments import demo_bank
from ledger.models import AccountKind
from quire.payroll.files import files_of
from quire.payroll.models import LineStatus, PayrollLine, PayrollProfile
from quire.reconciliation import service
from quire.reconciliation.statements import parse_statements
from tests.quire.payroll.test_runs import finance
from tests.quire.reconciliation.payroll_cast import balance, posted_run, reconcile

BOOKED_ON = dt.date(2026, 12, 3)


def bank_answer(pw, run_id, tmp_path, *, returned_index: int = 0):
    with pw.database.session(pw.tenant_id) as session:
        paths = [tmp_path / f.path for f in files_of(session, run_id) if f.path.endswith(".xml")]
    transfers = demo_bank.transfers_in(paths)
    returned = transfers[returned_index].end_to_end_id
    return (
        transfers,
        returned,
        demo_bank.statement_for(transfers, returned=returned, booked_on=BOOKED_ON),
    )


def test_the_statement_books_every_transfer_of_the_files_and_its_balances_add_up(
    database, tmp_path
):
    pw, run_id = posted_run(database, tmp_path)
    transfers, returned, content = bank_answer(pw, run_id, tmp_path)

    statements = parse_statements(content)  # strict: balances, decimals, schema
    with database.session(pw.tenant_id) as session:
        posted = session.scalars(
            select(PayrollLine).where(
                PayrollLine.run_id == run_id, PayrollLine.status == LineStatus.POSTED
            )
        ).all()
        debtor = session.scalar(select(PayrollProfile.debtor_iban))
    assert {t.end_to_end_id for t in transfers} == {line.end_to_end_id for line in posted}
    assert {s.currency for s in statements} == {line.payout_currency for line in posted}
    assert {s.account_iban for s in statements} == {debtor}
    lines = [line for s in statements for line in s.lines]
    assert len(lines) == len(transfers) + 1
    [back] = [line for line in lines if line.is_return]
    assert back.end_to_end_id == returned
    assert back.return_info.reason_code == "AC04"


def test_quire_imports_it_and_reconciles_every_payout_reversing_the_returned_one(
    database, tmp_path
):
    pw, run_id = posted_run(database, tmp_path)
    transfers, returned, content = bank_answer(pw, run_id, tmp_path)
    with database.session(pw.tenant_id, write=True) as session:
        stored = [s.id for s in service.import_statements(session, finance(pw), "b.xml", content)]

    summaries = [reconcile(pw, statement).summary for statement in stored]

    assert sum(s["returned"] for s in summaries) == 1
    assert sum(s["settled"] for s in summaries) == len(transfers) - 1
    assert sum(s["exceptions_raised"] for s in summaries) == 0
    with database.session(pw.tenant_id) as session:
        status = dict(
            session.execute(
                select(PayrollLine.end_to_end_id, PayrollLine.status).where(
                    PayrollLine.run_id == run_id, PayrollLine.end_to_end_id.is_not(None)
                )
            ).all()
        )
    assert status.pop(returned) == LineStatus.REVERSED
    assert set(status.values()) == {LineStatus.PAID}
    for currency in {t.currency for t in transfers}:
        assert balance(pw, AccountKind.PAYOUT_CLEARING, currency) == 0
