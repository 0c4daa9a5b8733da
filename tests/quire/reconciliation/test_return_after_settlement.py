"""A payment the bank returns after an earlier statement settled it, on SQLite and PostgreSQL:
the money comes back into the bank (bank <- payout clearing), the paid line is reversed and
payable again, clearing is empty, the run is paid again, and doing it again changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ledger import chart
from ledger.balances import trial_balance
from ledger.models import AccountKind, Transfer
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.reconciliation.models import (
    BankMatch,
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
def paid(database, tmp_path):
    """The standard run, every line settled by a first statement: the run is paid."""
    pw, run_id = posted_run(database, tmp_path)
    lines = lines_of(pw, run_id)
    reconcile(pw, statement(pw, *(paid_by_id(line) for line in lines.values())))
    with pw.database.session(pw.tenant_id) as session:
        assert session.get(PayrollRun, run_id).status == RunStatus.PAID
    return pw, run_id, lines


def returned(line: PayrollLine, **extra) -> dict:
    """The bank gives `line`'s payment back (e.g. the account was closed)."""
    return paid_by_id(
        line, **{"amount_minor": int(line.payout_minor), "returned": True, **extra}
    ) | {"return_reason": "AC04"}


def bank_moves(pw, currency: str) -> int:
    return balance(pw, AccountKind.BANK, currency)


def test_a_return_after_settlement_reverses_the_paid_line_which_is_payable_again(paid):
    pw, run_id, lines = paid
    ana = lines["ana/EUR"]
    bank_before = bank_moves(pw, "EUR")
    outcome = reconcile(pw, statement(pw, returned(ana), statement_id="STMT-2"))
    assert outcome.status == ReconciliationStatus.CLEAN
    assert outcome.summary["by_rule"] == {"return": 1}
    assert (outcome.summary["returned"], outcome.summary["returned_after_settlement"]) == (1, 1)
    assert bank_moves(pw, "EUR") == bank_before + int(ana.payout_minor)  # the money is back
    assert balance(pw, AccountKind.PAYOUT_CLEARING, "EUR") == 0
    with pw.database.session(pw.tenant_id) as session:
        assert session.get(PayrollLine, ana.id).status == LineStatus.REVERSED
        assert session.get(PayrollRun, run_id).status == RunStatus.PAID  # paid again
        payable = chart.account(session, AccountKind.SPECIALIST_PAYABLE, "EUR", pw.id("ana"))
        assert -payable.balance == ana.payable_minor  # owed again, next period
        assert all(v == 0 for v in trial_balance(session).values())
        (match,) = session.scalars(select(BankMatch).where(BankMatch.rule == MatchRule.RETURN))
        assert (match.payroll_line_id, match.amount_minor) == (ana.id, int(ana.payout_minor))
        (back,) = session.scalars(select(Transfer).where(Transfer.kind == "payout_return"))
        assert match.transfer_ids == [str(back.id)]
        assert back.reference == bank_line_reference(match.bank_line_id)


def test_a_return_in_another_payout_currency_comes_back_in_that_currency(paid):
    pw, _, lines = paid
    ken = lines["ken/EUR"]  # earned in EUR, paid in JPY
    jpy_before = bank_moves(pw, "JPY")
    reconcile(pw, statement(pw, returned(ken), statement_id="STMT-2"))
    assert bank_moves(pw, "JPY") == jpy_before + int(ken.payout_minor)
    assert balance(pw, AccountKind.PAYOUT_CLEARING, "JPY") == 0
    with pw.database.session(pw.tenant_id) as session:
        payable = chart.account(session, AccountKind.SPECIALIST_PAYABLE, "EUR", pw.id("ken"))
        assert -payable.balance == ken.payable_minor


def test_reconciling_the_return_again_changes_nothing(paid):
    pw, _, lines = paid
    stmt = statement(pw, returned(lines["ana/EUR"]), statement_id="STMT-2")
    reconcile(pw, stmt)
    with pw.database.session(pw.tenant_id) as session:
        before = (trial_balance(session), session.scalar(select(func.count(BankMatch.id))))
    again = reconcile(pw, stmt)
    assert (again.summary["matched"], again.summary["returned"]) == (0, 0)
    with pw.database.session(pw.tenant_id) as session:
        after = (trial_balance(session), session.scalar(select(func.count(BankMatch.id))))
    assert after == before


def test_a_return_of_another_amount_than_was_paid_is_an_exception(paid):
    pw, run_id, lines = paid
    ana = lines["ana/EUR"]
    bank_before = bank_moves(pw, "EUR")
    short = returned(ana, amount_minor=int(ana.payout_minor) - 250)
    outcome = reconcile(pw, statement(pw, short, statement_id="STMT-2"))
    assert outcome.status == ReconciliationStatus.EXCEPTIONS
    with pw.database.session(pw.tenant_id) as session:
        (exception,) = session.scalars(select(ReconciliationException)).all()
        assert "paid already, but the bank gave back" in exception.reason
        assert session.get(PayrollLine, ana.id).status == LineStatus.PAID
        assert session.get(PayrollRun, run_id).status == RunStatus.PAID
    assert bank_moves(pw, "EUR") == bank_before
