"""Money in, on SQLite and PostgreSQL: a client's credit naming an order or an invoice settles
that client receivable (bank <- client receivable), exactly or partly, credits taken in statement
order; a credit beyond what is owed, in another currency, or naming what the tenant's
receivables do not know is an exception saying which, and nothing is posted for it; doing it
again changes nothing."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from ledger.balances import trial_balance
from ledger.models import AccountKind, Invoice, InvoiceStatus, Transfer
from quire.reconciliation.models import (
    BankLine,
    BankMatch,
    MatchRule,
    ReconciliationException,
    ReconciliationStatus,
    bank_line_reference,
)
from tests.quire.reconciliation.payroll_cast import (
    accepted_order,
    balance,
    clients_world,
    issued_invoice,
    receipt,
    receivable,
    reconcile,
    statement,
)


@pytest.fixture
def clients(database):
    return clients_world(database)


def exceptions(pw) -> dict[int, str]:
    """The open exceptions' reasons, by the amount of their bank line."""
    with pw.database.session(pw.tenant_id) as session:
        return {
            e.amount_minor: e.reason
            for e in session.scalars(select(ReconciliationException)).all()
            if e.status == "open"
        }


def receipts_posted(pw) -> int:
    with pw.database.session(pw.tenant_id) as session:
        return session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.kind == "client_receipt")
        )


def test_a_credit_of_exactly_what_an_order_owes_settles_its_receivable(clients):
    order = accepted_order(clients, 50_000)
    assert receivable(clients) == 50_000
    stmt = statement(clients, receipt(50_000, f"ORDER {order}"))
    outcome = reconcile(clients, stmt)
    assert outcome.status == ReconciliationStatus.CLEAN
    assert outcome.summary["by_rule"] == {"client_reference": 1}
    assert outcome.summary["received"] == {"count": 1, "by_currency": {"EUR": 50_000}}
    assert receivable(clients) == 0
    assert balance(clients, AccountKind.BANK, "EUR") == 50_000  # money in: a bank debit
    with clients.database.session(clients.tenant_id) as session:
        (match,) = session.scalars(select(BankMatch)).all()
        assert (match.rule, match.reference, match.amount_minor) == (
            MatchRule.CLIENT_REFERENCE,
            f"order:{order}",
            50_000,
        )
        (transfer,) = session.scalars(select(Transfer).where(Transfer.kind == "client_receipt"))
        assert [str(transfer.id)] == match.transfer_ids
        assert transfer.reference == bank_line_reference(match.bank_line_id)
        assert all(v == 0 for v in trial_balance(session).values())


def test_a_client_owners_receivable_is_the_one_settled(clients):
    client = clients.world.people["manager"].id  # any owner id: the receivable is per client
    order = accepted_order(clients, 12_000, client_id=client)
    reconcile(clients, statement(clients, receipt(12_000, f"order:{order}")))
    assert receivable(clients, client_id=client) == 0


@pytest.mark.parametrize(
    "says",
    ["ORDER {order}", "order:{order}", "{order}", "Payment {hex} thank you", "ord. {upper}"],
)
def test_the_order_may_be_named_many_ways(clients, says):
    order = accepted_order(clients, 7_500)
    text = says.format(order=order, hex=order.hex, upper=str(order).upper())
    reconcile(clients, statement(clients, receipt(7_500, text)))
    assert receivable(clients) == 0


def test_the_reference_may_be_in_the_customer_reference_or_the_raw_reference(clients):
    first, second = accepted_order(clients, 1_000), accepted_order(clients, 2_000)
    stmt = statement(
        clients,
        {"amount_minor": 1_000, "customer_reference": str(first)},
        {"amount_minor": 2_000, "raw_reference": f"/ROC/ORDER {second}"},
    )
    assert reconcile(clients, stmt).summary["received"]["count"] == 2
    assert receivable(clients) == 0


def test_a_partial_payment_leaves_the_rest_outstanding_and_a_later_statement_finishes_it(clients):
    order = accepted_order(clients, 50_000)
    reconcile(clients, statement(clients, receipt(20_000, f"ORDER {order}")))
    assert receivable(clients) == 30_000
    later = statement(clients, receipt(30_000, f"ORDER {order}"), statement_id="STMT-2")
    outcome = reconcile(clients, later)
    assert outcome.status == ReconciliationStatus.CLEAN
    assert receivable(clients) == 0
    assert balance(clients, AccountKind.BANK, "EUR") == 50_000


def test_two_partial_payments_on_one_statement_are_taken_in_order(clients):
    order = accepted_order(clients, 50_000)
    stmt = statement(
        clients, receipt(20_000, f"ORDER {order}"), receipt(30_000, f"ORDER {order} rest")
    )
    outcome = reconcile(clients, stmt)
    assert outcome.summary["received"] == {"count": 2, "by_currency": {"EUR": 50_000}}
    assert receivable(clients) == 0


def test_a_credit_beyond_what_is_owed_is_an_exception_and_posts_nothing(clients):
    order = accepted_order(clients, 50_000)
    outcome = reconcile(clients, statement(clients, receipt(50_001, f"ORDER {order}")))
    assert outcome.status == ReconciliationStatus.EXCEPTIONS
    assert "overpayment" in exceptions(clients)[50_001]
    assert receivable(clients) == 50_000
    assert receipts_posted(clients) == 0


def test_on_one_statement_the_credit_that_goes_beyond_the_rest_is_the_exception(clients):
    order = accepted_order(clients, 50_000)
    stmt = statement(
        clients, receipt(40_000, f"ORDER {order}"), receipt(40_000, f"ORDER {order} again")
    )
    outcome = reconcile(clients, stmt)
    assert outcome.summary["received"] == {"count": 1, "by_currency": {"EUR": 40_000}}
    assert receivable(clients) == 10_000
    assert "still owes (10000 EUR of 50000)" in exceptions(clients)[40_000]


def test_a_credit_in_another_currency_is_an_exception(clients):
    order = accepted_order(clients, 50_000, currency="EUR")
    reconcile(clients, statement(clients, receipt(50_000, f"ORDER {order}", currency="USD")))
    assert "receivable in EUR" in exceptions(clients)[50_000]
    assert receipts_posted(clients) == 0


def test_an_unknown_order_or_another_tenants_order_is_an_exception(clients, database):
    elsewhere = clients_world(database)
    theirs = accepted_order(elsewhere, 9_000)
    unknown = uuid.uuid4()
    stmt = statement(clients, receipt(9_000, f"ORDER {theirs}"), receipt(8_000, f"order:{unknown}"))
    reconcile(clients, stmt)
    reasons = exceptions(clients)
    assert (
        f"naming order {theirs}, which this tenant's client receivables do not know"
        in (reasons[9_000])
    )
    assert str(unknown) in reasons[8_000]
    assert receipts_posted(clients) == 0
    assert receivable(elsewhere) == 9_000  # the other tenant's client still owes it


def test_a_credit_naming_nothing_stays_a_plain_exception(clients):
    reconcile(clients, statement(clients, receipt(4_200, "thanks for the good work")))
    assert exceptions(clients)[4_200] == (
        "a credit no rule matched (money in naming no order or invoice)"
    )


def test_reconciling_again_changes_nothing(clients):
    order = accepted_order(clients, 50_000)
    stmt = statement(
        clients, receipt(20_000, f"ORDER {order}"), receipt(90_000, f"ORDER {order} too much")
    )
    reconcile(clients, stmt)
    again = reconcile(clients, stmt)
    assert again.summary["matched"] == 0
    assert again.summary["received"] == {"count": 0, "by_currency": {}}
    assert receivable(clients) == 30_000
    assert receipts_posted(clients) == 1
    with clients.database.session(clients.tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(ReconciliationException)) == 1


def test_an_invoice_received_in_full_is_paid(clients):
    accepted_order(clients, 30_000)  # what the invoice bills put it on the receivable
    invoice = issued_invoice(clients, 10_000, 20_000)
    first = statement(clients, receipt(10_000, f"INVOICE {invoice}"))
    reconcile(clients, first)
    with clients.database.session(clients.tenant_id) as session:
        assert session.get(Invoice, invoice).status == InvoiceStatus.ISSUED  # partly received
    reconcile(clients, statement(clients, receipt(20_000, f"INV-{invoice}"), statement_id="S2"))
    with clients.database.session(clients.tenant_id) as session:
        paid = session.get(Invoice, invoice)
        assert (paid.status, paid.paid_at is not None) == (InvoiceStatus.PAID, True)
        assert session.scalar(select(func.count()).select_from(BankLine)) == 2
    assert receivable(clients) == 0
    reconcile(clients, statement(clients, receipt(5_000, str(invoice)), statement_id="S3"))
    assert "the invoice is paid already" in exceptions(clients)[5_000]
