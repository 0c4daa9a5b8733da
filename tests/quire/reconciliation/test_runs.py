"""Reconciling a stored statement against a posted payroll, on SQLite and PostgreSQL: what the
bank confirmed is settled (payout clearing -> bank) and paid, a returned payment is reversed and
payable again, what nothing explains waits in the exception queue, and doing it again changes
nothing."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from ledger import chart
from ledger.balances import trial_balance
from ledger.models import AccountKind, Transfer
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.reconciliation.models import (
    BankMatch,
    ExceptionSide,
    MatchRule,
    ReconciliationException,
    ReconciliationStatus,
    bank_line_reference,
)
from tests.quire.reconciliation.payroll_cast import (
    balance,
    lines_of,
    paid_by_id,
    posted_run,
    reconcile,
    statement,
)


@pytest.fixture
def posted(database, tmp_path):
    return posted_run(database, tmp_path)


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


def test_every_settlement_names_the_bank_line_that_confirmed_it(posted):
    """The statement invariant's contract: a transfer posted because of a bank line carries
    `bank_line_reference(line)`; one debit for a payout file settles each of its lines so."""
    pw, run_id = posted
    lines = lines_of(pw, run_id)
    ana = [lines["ana/EUR"], lines["ana/USD"]]  # both paid in EUR, in the SEPA file
    others = [paid_by_id(line) for key, line in lines.items() if not key.startswith("ana/")]
    batch = {"amount_minor": -sum(int(line.payout_minor) for line in ana), "currency": "EUR"}
    outcome = reconcile(pw, statement(pw, *others, batch))
    assert outcome.summary["by_rule"]["file_total"] == 1
    with pw.database.session(pw.tenant_id) as session:
        matches = session.scalars(select(BankMatch)).all()
        for match in matches:
            references = set(
                session.scalars(
                    select(Transfer.reference).where(
                        Transfer.id.in_([uuid.UUID(t) for t in match.transfer_ids])
                    )
                )
            )
            assert references == {bank_line_reference(match.bank_line_id)}
        (file_match,) = [m for m in matches if m.rule == MatchRule.FILE_TOTAL]
        assert len(file_match.transfer_ids) == 2
