"""Closing a period: only after a clean reconciliation of it, with nothing in the exception
queue; then the ledger refuses entries dated in it; reopening needs an admin and a reason."""

from __future__ import annotations

import pytest

from ledger import chart
from ledger.models import AccountKind
from ledger.periods import PeriodClosed
from ledger.posting import Leg, TransferSpec, post
from quire.errors import Conflict, Forbidden
from quire.reconciliation import service
from tests.quire.payroll.test_runs import finance
from tests.quire.reconciliation.payroll_cast import (
    lines_of,
    paid_by_id,
    posted_run,
    reconcile,
    statement,
)


@pytest.fixture
def posted(database, tmp_path):
    return posted_run(database, tmp_path)


def admin(pw):
    return pw.world.admin.actor


def test_a_clean_reconciliation_lets_finance_close_the_period_and_the_ledger_holds_it(posted):
    pw, run_id = posted
    done = reconcile(pw, statement(pw, *(paid_by_id(x) for x in lines_of(pw, run_id).values())))
    with pw.database.session(pw.tenant_id, write=True) as session:
        closure = service.close_period(session, finance(pw), done.period)
        starts_at = closure.starts_at
    with pw.database.session(pw.tenant_id, write=True) as session:
        bank = chart.account(session, AccountKind.BANK, "EUR").id
        fees = chart.account(session, AccountKind.BANK_FEES, "EUR").id
        late_fee = TransferSpec(
            kind="bank_fee",
            idempotency_key="late-fee",
            legs=[Leg.debit(fees, 100), Leg.credit(bank, 100)],
            effective_at=starts_at,
        )
        with pytest.raises(PeriodClosed):
            post(session, late_fee)
    with pw.database.session(pw.tenant_id, write=True) as session, pytest.raises(Forbidden):
        service.reopen_period(session, finance(pw), done.period, "a late fee")
    with pw.database.session(pw.tenant_id, write=True) as session:
        reopened = service.reopen_period(session, admin(pw), done.period, "a late fee")
        assert reopened.reopened_by == admin(pw).user_id


def test_a_period_with_exceptions_or_no_reconciliation_is_not_closed(posted):
    pw, run_id = posted
    with pw.database.session(pw.tenant_id, write=True) as session, pytest.raises(Conflict) as none:
        service.close_period(session, finance(pw), "2026-11")
    assert none.value.code == "period_not_reconciled"
    lines = lines_of(pw, run_id)
    done = reconcile(
        pw, statement(pw, *(paid_by_id(x) for x in lines.values()), {"amount_minor": 1_234})
    )
    with pw.database.session(pw.tenant_id, write=True) as session, pytest.raises(Conflict) as dirty:
        service.close_period(session, finance(pw), done.period)
    assert dirty.value.code == "period_not_reconciled"
