"""Finance's exception queue: a bank debit matched by hand settles its payout (a small difference
to bank fees), a small unexplained line is written off, each with a reason, audited, and
nothing is written when a resolution is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from ledger import chart
from ledger.balances import trial_balance
from ledger.models import AccountKind
from quire.audit.models import AuditEntry
from quire.errors import Conflict, Invalid
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.reconciliation import exceptions
from quire.reconciliation.models import ExceptionStatus, ReconciliationException
from tests.quire.payroll.test_runs import finance
from tests.quire.reconciliation.payroll_cast import (
    lines_of,
    paid_by_id,
    posted_run,
    reconcile,
    statement,
)

LIMIT = Decimal("5")


@pytest.fixture
def posted(database, tmp_path):
    return posted_run(database, tmp_path)


def queue_after(pw, run_id, *extra: dict):
    """Reconcile a statement that confirms every payout but ana's EUR line by its id, plus
    `extra` bank lines; returns the open bank-side exceptions by amount."""
    lines = lines_of(pw, run_id)
    confirmed = [paid_by_id(line) for key, line in lines.items() if key != "ana/EUR"]
    reconcile(pw, statement(pw, *confirmed, *extra))
    with pw.database.session(pw.tenant_id) as session:
        found = session.scalars(
            select(ReconciliationException).where(ReconciliationException.side == "bank")
        ).all()
        return {e.amount_minor: e.id for e in found}, lines["ana/EUR"]


def bank_fees(pw, currency="EUR") -> int:
    with pw.database.session(pw.tenant_id) as session:
        return chart.account(session, AccountKind.BANK_FEES, currency).balance


def test_a_debit_matched_by_hand_settles_the_payout_and_pays_the_run(posted):
    pw, run_id = posted
    ana = lines_of(pw, run_id)["ana/EUR"]
    queue, ana = queue_after(pw, run_id, {"amount_minor": -int(ana.payout_minor)})
    with pw.database.session(pw.tenant_id, write=True) as session:
        match = exceptions.match_by_hand(
            session, finance(pw), queue[-int(ana.payout_minor)], ana.id, "paid without id", LIMIT
        )
        assert match.rule == "manual"
    with pw.database.session(pw.tenant_id) as session:
        assert session.get(PayrollLine, ana.id).status == LineStatus.PAID
        assert session.get(PayrollRun, run_id).status == RunStatus.PAID
        assert all(v == 0 for v in trial_balance(session).values())
        audited = session.scalar(
            select(AuditEntry).where(AuditEntry.action == "reconciliation.exception_matched")
        )
        assert audited.after["reason"] == "paid without id"
        assert audited.actor_id == finance(pw).user_id


def test_a_small_difference_goes_to_bank_fees_and_a_large_one_is_refused(posted):
    pw, run_id = posted
    ana = lines_of(pw, run_id)["ana/EUR"]
    payout = int(ana.payout_minor)
    queue, _ = queue_after(
        pw, run_id, {"amount_minor": -(payout + 200)}, {"amount_minor": -(payout + 600)}
    )
    with pw.database.session(pw.tenant_id, write=True) as session, pytest.raises(Invalid) as big:
        exceptions.match_by_hand(
            session, finance(pw), queue[-(payout + 600)], ana.id, "too much", LIMIT
        )
    assert big.value.code == "match_difference_too_large"
    assert bank_fees(pw) == 0
    with pw.database.session(pw.tenant_id, write=True) as session:
        exceptions.match_by_hand(session, finance(pw), queue[-(payout + 200)], ana.id, "fee", LIMIT)
    assert bank_fees(pw) == 200  # the bank kept 2.00
    with pw.database.session(pw.tenant_id) as session:
        assert all(v == 0 for v in trial_balance(session).values())


def test_a_small_unexplained_line_is_written_off_within_the_limit_only(posted):
    pw, run_id = posted
    queue, _ = queue_after(pw, run_id, {"amount_minor": -300}, {"amount_minor": -50_000})
    with pw.database.session(pw.tenant_id, write=True) as session, pytest.raises(Invalid):
        exceptions.write_off(session, finance(pw), queue[-50_000], "what is this", LIMIT)
    with pw.database.session(pw.tenant_id, write=True) as session:
        exceptions.write_off(session, finance(pw), queue[-300], "account fee", LIMIT)
    assert bank_fees(pw) == 300
    with pw.database.session(pw.tenant_id) as session:
        assert session.get(ReconciliationException, queue[-300]).status == (
            ExceptionStatus.WRITTEN_OFF
        )
    with pw.database.session(pw.tenant_id, write=True) as session, pytest.raises(Conflict):
        exceptions.write_off(session, finance(pw), queue[-300], "again", LIMIT)


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_resolution_needs_a_reason(posted, reason):
    pw, run_id = posted
    queue, _ = queue_after(pw, run_id, {"amount_minor": -300})
    with pw.database.session(pw.tenant_id, write=True) as session, pytest.raises(Invalid):
        exceptions.write_off(session, finance(pw), queue[-300], reason, LIMIT)
    with pw.database.session(pw.tenant_id) as session:
        assert not session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action.like("reconciliation.exception%"))
        )
