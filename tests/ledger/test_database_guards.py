"""The database's own guards: whatever SQL reaches it, bypassing `ledger.posting`, the stored
ledger stays append-only and (on PostgreSQL) balanced at every commit.

Both databases refuse UPDATE and DELETE of transfers and entries, entries in a currency other
than their account's, zero entries, forbidden negative balances and edits of issued invoices.
PostgreSQL also refuses TRUNCATE, entries added after their transfer's transaction, forged
transaction ids, and — deferred to COMMIT — transfers that do not balance per currency or have
fewer than two entries. (SQLite has no deferred triggers: there the code is the only check.)
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ledger import balances, chart, invoices
from ledger.models import Account, Entry, Invoice, Transfer
from ledger.posting import Leg, TransferSpec, post
from quire.db import Database, utcnow
from tests.ledger.support import K, audit, balances_by_id, count_rows, new_tenant
from tests.support.world import build_world

TRANSFERS, ENTRIES, ACCOUNTS, INVOICES = (
    Transfer.__table__,
    Entry.__table__,
    Account.__table__,
    Invoice.__table__,
)
SPECIALIST = uuid.UUID("00000000-0000-4000-8000-000000000002")


def posted(database: Database, tenant: uuid.UUID) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """One honest transfer (client owes 1,000; the specialist is owed it) and its accounts."""
    with database.session(tenant, write=True) as s:
        accounts = {
            "receivable": chart.account(s, K.CLIENT_RECEIVABLE, "USD").id,
            "payable": chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALIST).id,
            "bank": chart.account(s, K.BANK, "USD").id,
            "revenue": chart.account(s, K.PLATFORM_REVENUE, "USD").id,
            "yen": chart.account(s, K.BANK, "JPY").id,
        }
        transfer = post(
            s,
            TransferSpec(
                kind="earnings",
                idempotency_key="honest",
                legs=[
                    Leg.debit(accounts["receivable"], 1_000),
                    Leg.credit(accounts["payable"], 1_000),
                ],
            ),
        )
    return transfer.id, accounts


def transfer_row(tenant: uuid.UUID, **overrides: object) -> dict[str, object]:
    now = utcnow()
    row: dict[str, object] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant,
        "kind": "forged",
        "reference": "",
        "idempotency_key": f"forged-{uuid.uuid4()}",
        "fingerprint": "0" * 64,
        "effective_at": now,
        "created_at": now,
        "metadata": {},
    }
    row.update(overrides)
    return row


def entry_row(
    tenant: uuid.UUID, transfer_id: object, account_id: uuid.UUID, amount: int, currency="USD"
) -> dict[str, object]:
    now = utcnow()
    return {
        "tenant_id": tenant,
        "transfer_id": transfer_id,
        "account_id": account_id,
        "currency": currency,
        "amount": amount,
        "effective_at": now,
        "created_at": now,
    }


def forge(
    db: Database, tenant: uuid.UUID, *entries: tuple[uuid.UUID, int, str], then: str = ""
) -> None:
    """Insert a transfer and its `entries` with raw SQL in one transaction (then `then`), and
    commit: the statements reach the database without passing through `ledger.posting`."""
    with db.engine.begin() as c:
        transfer = transfer_row(tenant)
        c.execute(insert(TRANSFERS).values(transfer))
        if entries:
            c.execute(
                insert(ENTRIES),
                [entry_row(tenant, transfer["id"], a, amount, cur) for a, amount, cur in entries],
            )
        if then:
            c.execute(text(then))


@pytest.fixture
def ledger(database, tenant):
    transfer_id, accounts = posted(database, tenant)
    before = (count_rows(database, tenant), balances_by_id(database, tenant))
    yield transfer_id, accounts
    # whatever was attempted, the honest ledger is exactly as it was
    assert (count_rows(database, tenant), balances_by_id(database, tenant)) == before
    audit(database, tenant)


# --- both databases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        (
            lambda t: update(ENTRIES).where(ENTRIES.c.transfer_id == t).values(amount=1),
            "UPDATE on ledger_entries is not allowed",
        ),
        (
            lambda t: (
                update(ENTRIES).where(ENTRIES.c.transfer_id == t).values(amount=-ENTRIES.c.amount)
            ),
            "UPDATE on ledger_entries is not allowed",
        ),
        (
            lambda t: delete(ENTRIES).where(ENTRIES.c.transfer_id == t),
            "DELETE on ledger_entries is not allowed",
        ),
        (
            lambda t: update(TRANSFERS).where(TRANSFERS.c.id == t).values(kind="tampered"),
            "UPDATE on ledger_transfers is not allowed",
        ),
        (
            lambda t: delete(TRANSFERS).where(TRANSFERS.c.id == t),
            "DELETE on ledger_transfers is not allowed",
        ),
    ],
    ids=["edit-entry", "flip-entry-signs", "delete-entry", "edit-transfer", "delete-transfer"],
)
def test_raw_sql_cannot_edit_or_delete_posted_transfers_or_entries(
    database, ledger, statement, refusal
):
    transfer_id, _ = ledger
    with pytest.raises(IntegrityError, match=f"ledger: {refusal}"), database.engine.begin() as c:
        c.execute(statement(transfer_id))


def test_an_entry_in_another_currency_than_its_account_is_refused(database, tenant, ledger):
    _, accounts = ledger
    with pytest.raises(IntegrityError, match="must match its account"):
        forge(database, tenant, (accounts["bank"], 5, "JPY"), (accounts["yen"], -5, "JPY"))


def test_a_zero_entry_is_refused(database, tenant, ledger):
    _, accounts = ledger
    with pytest.raises(IntegrityError, match="amount_not_zero"):
        forge(database, tenant, (accounts["bank"], 0, "USD"), (accounts["revenue"], 0, "USD"))


def test_a_specialist_payable_cannot_be_pushed_below_zero_by_raw_sql(database, ledger):
    _, accounts = ledger
    with pytest.raises(IntegrityError, match="no_negative_balance"), database.engine.begin() as c:
        c.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == accounts["payable"]).values(balance=1))


@pytest.fixture
def issued_invoice(database):
    world = build_world(database, f"inv-{uuid.uuid4().hex[:12]}", specialists=1)
    with database.session(world.tenant_id, write=True) as s:
        draft = invoices.create_draft(
            s,
            world.tenant_id,
            invoices.InvoiceDraft(
                specialist_id=world.specialist.id,
                period="2026-01",
                currency="USD",
                lines=[invoices.InvoiceLine(description="Blog post", amount_minor=25_000)],
            ),
        )
        issued = invoices.issue(s, draft.id, draft.lock_version)
        return world.tenant_id, issued.id, issued.lock_version


@pytest.mark.parametrize(
    "change",
    [
        {"total_minor": 1},
        {"lines": [{"description": "Blog post", "amount_minor": 1, "order_id": None}]},
        {"currency": "EUR"},
        {"period": "2026-02"},
        {"version": 7},
    ],
    ids=["total", "lines", "currency", "period", "version"],
)
def test_raw_sql_cannot_edit_an_issued_invoice(database, issued_invoice, change):
    _, invoice_id, _ = issued_invoice
    with pytest.raises(IntegrityError, match="cannot change"), database.engine.begin() as c:
        c.execute(update(INVOICES).where(INVOICES.c.id == invoice_id).values(**change))
    with database.engine.connect() as c:
        total = c.scalar(select(INVOICES.c.total_minor).where(INVOICES.c.id == invoice_id))
    assert total == 25_000


def test_no_invoice_is_ever_deleted(database, issued_invoice):
    _, invoice_id, _ = issued_invoice
    with pytest.raises(IntegrityError, match="never deleted"), database.engine.begin() as c:
        c.execute(delete(INVOICES).where(INVOICES.c.id == invoice_id))


def test_an_issued_invoice_still_moves_on_to_paid_and_the_code_refuses_edits(
    database, issued_invoice
):
    """The guard freezes content, not the lifecycle."""
    tenant, invoice_id, lock_version = issued_invoice
    with database.session(tenant, write=True) as s:
        with pytest.raises(invoices.Conflict) as refused:
            invoices.update_draft(
                s, invoice_id, lock_version, [invoices.InvoiceLine(description="x", amount_minor=1)]
            )
        assert refused.value.code == "invoice_not_draft"
        paid = invoices.mark_paid(s, invoice_id, lock_version)
    assert paid.status == "paid"


# --- PostgreSQL: the deferred balance check and the transaction guard -------------------------


@pytest.fixture
def pg_ledger(pg_database):
    tenant = new_tenant(pg_database)
    transfer_id, accounts = posted(pg_database, tenant)
    before = (count_rows(pg_database, tenant), balances_by_id(pg_database, tenant))
    yield pg_database, tenant, transfer_id, accounts
    assert (count_rows(pg_database, tenant), balances_by_id(pg_database, tenant)) == before
    audit(pg_database, tenant)


@pytest.mark.postgres
def test_postgres_refuses_a_transfer_with_a_single_entry_at_commit(pg_ledger):
    db, tenant, _, accounts = pg_ledger
    committing = db.engine.connect()
    transaction = committing.begin()
    transfer = transfer_row(tenant)
    committing.execute(insert(TRANSFERS).values(transfer))
    committing.execute(
        insert(ENTRIES).values(entry_row(tenant, transfer["id"], accounts["bank"], 5))
    )
    # each statement is accepted: the check waits for COMMIT, when the transfer is complete
    with pytest.raises(IntegrityError, match="does not balance in USD \\(off by 5\\)"):
        transaction.commit()
    committing.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("entries", "refusal"),
    [
        ([], "fewer than two entries"),
        ([("bank", 5, "USD"), ("revenue", -4, "USD")], "does not balance in USD \\(off by 1\\)"),
        ([("bank", 5, "USD"), ("yen", -5, "JPY")], "does not balance in (USD|JPY)"),
    ],
    ids=["no-entries", "off-by-one", "balanced-only-across-currencies"],
)
def test_postgres_refuses_unbalanced_or_incomplete_transfers_at_commit(pg_ledger, entries, refusal):
    db, tenant, _, accounts = pg_ledger
    with pytest.raises(IntegrityError, match=refusal):
        forge(db, tenant, *((accounts[name], amount, cur) for name, amount, cur in entries))


@pytest.mark.postgres
def test_postgres_checks_at_commit_even_if_the_pending_check_row_is_deleted(pg_ledger):
    db, tenant, _, accounts = pg_ledger
    with pytest.raises(IntegrityError, match="does not balance"):
        forge(db, tenant, (accounts["bank"], 5, "USD"), then="DELETE FROM ledger_commit_checks")


@pytest.mark.postgres
def test_postgres_refuses_entries_added_to_an_existing_transfer_even_balanced_ones(pg_ledger):
    db, tenant, transfer_id, accounts = pg_ledger
    with (
        pytest.raises(IntegrityError, match="only be added together with their transfer"),
        db.engine.begin() as c,
    ):
        c.execute(
            insert(ENTRIES),
            [
                entry_row(tenant, transfer_id, accounts["bank"], 500),
                entry_row(tenant, transfer_id, accounts["revenue"], -500),
            ],
        )


@pytest.mark.postgres
def test_postgres_refuses_a_transfer_that_claims_another_transaction(pg_ledger):
    db, tenant, _, _ = pg_ledger
    with pytest.raises(IntegrityError, match="its own transaction id"), db.engine.begin() as c:
        c.execute(insert(TRANSFERS).values(transfer_row(tenant, txid=1)))


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["ledger_entries", "ledger_transfers"])
def test_postgres_refuses_truncate(pg_ledger, table):
    db = pg_ledger[0]
    with pytest.raises(IntegrityError, match=f"TRUNCATE on {table}"), db.engine.begin() as c:
        c.execute(text(f"TRUNCATE {table} CASCADE"))


@pytest.mark.postgres
def test_postgres_refuses_an_entry_on_another_tenants_account(pg_ledger):
    db, tenant, _, _ = pg_ledger
    _, theirs = posted(db, new_tenant(db))
    with pytest.raises(IntegrityError, match="currency and tenant"):
        forge(db, tenant, (theirs["bank"], 5, "USD"), (theirs["revenue"], -5, "USD"))


@pytest.mark.postgres
def test_postgres_accepts_a_balanced_forgery_but_it_shows_up_as_drift(pg_database):
    """The guards keep every transfer balanced; they do not maintain account balances. A raw
    insert that balances is accepted, and `drifted_accounts` is what notices it."""
    tenant = new_tenant(pg_database)
    _, accounts = posted(pg_database, tenant)
    forge(pg_database, tenant, (accounts["bank"], 5, "USD"), (accounts["revenue"], -5, "USD"))
    with pg_database.session(tenant) as s:
        assert sorted(balances.drifted_accounts(s)) == sorted(
            [accounts["bank"], accounts["revenue"]]
        )
        assert balances.trial_balance(s) == {"USD": 0, "JPY": 0}


# --- PostgreSQL: the set-based guards see every row of a statement and a transaction ----------


def commit_raw(db: Database, *steps: tuple[object, object]) -> None:
    """Execute (statement, parameters) steps with raw SQL in one transaction, and commit."""
    with db.engine.begin() as c:
        for statement, parameters in steps:
            c.execute(statement, parameters)


def balanced_pairs(
    tenant: uuid.UUID, transfers: list[dict[str, object]], accounts: dict[str, uuid.UUID]
) -> list[dict[str, object]]:
    """Two entries per transfer, bank 5 / revenue -5."""
    return [
        entry
        for transfer in transfers
        for entry in (
            entry_row(tenant, transfer["id"], accounts["bank"], 5),
            entry_row(tenant, transfer["id"], accounts["revenue"], -5),
        )
    ]


@pytest.mark.postgres
def test_postgres_finds_the_one_unbalanced_transfer_among_many_at_commit(pg_ledger):
    db, tenant, _, accounts = pg_ledger
    transfers = [transfer_row(tenant) for _ in range(50)]
    entries = balanced_pairs(tenant, transfers, accounts)
    entries[2 * 37]["amount"] = 6  # transfer 37: bank 6, revenue -5
    refusal = f"transfer {transfers[37]['id']} does not balance in USD \\(off by 1\\)"
    with pytest.raises(IntegrityError, match=refusal):
        commit_raw(db, (insert(TRANSFERS), transfers), (insert(ENTRIES), entries))


@pytest.mark.postgres
def test_postgres_finds_the_one_transfer_without_entries_among_many_at_commit(pg_ledger):
    db, tenant, _, accounts = pg_ledger
    transfers = [transfer_row(tenant) for _ in range(50)]
    empty = transfer_row(tenant)
    entries = balanced_pairs(tenant, transfers, accounts)
    with pytest.raises(IntegrityError, match=f"transfer {empty['id']} has fewer than two entries"):
        commit_raw(db, (insert(TRANSFERS), [*transfers, empty]), (insert(ENTRIES), entries))


@pytest.mark.postgres
def test_postgres_refuses_a_statement_mixing_new_entries_with_one_for_an_old_transfer(pg_ledger):
    """The insert guard looks at every transfer a statement names, not only the first."""
    db, tenant, old_transfer, accounts = pg_ledger
    transfers = [transfer_row(tenant) for _ in range(20)]
    entries = balanced_pairs(tenant, transfers, accounts)
    entries.insert(13, entry_row(tenant, old_transfer, accounts["bank"], 5))
    entries.insert(29, entry_row(tenant, old_transfer, accounts["revenue"], -5))
    with pytest.raises(IntegrityError, match="only be added together with their transfer"):
        commit_raw(db, (insert(TRANSFERS), transfers), (insert(ENTRIES), entries))


@pytest.mark.postgres
def test_postgres_refuses_one_entry_in_the_wrong_currency_among_many_on_its_account(pg_ledger):
    db, tenant, _, accounts = pg_ledger
    transfers = [transfer_row(tenant) for _ in range(20)]
    entries = balanced_pairs(tenant, transfers, accounts)
    entries[2 * 11]["currency"] = "JPY"
    with pytest.raises(IntegrityError, match="must match its account"):
        commit_raw(db, (insert(TRANSFERS), transfers), (insert(ENTRIES), entries))


@pytest.mark.postgres
def test_postgres_checks_a_transfer_whose_entries_arrive_in_several_statements_as_a_whole(
    pg_database,
):
    """The balance check waits for COMMIT: entries may arrive in several statements of their
    transfer's transaction, and only the sum at COMMIT counts."""
    tenant = new_tenant(pg_database)
    _, accounts = posted(pg_database, tenant)
    before = count_rows(pg_database, tenant)

    def in_two_statements(revenue: int) -> None:
        transfer = transfer_row(tenant)
        commit_raw(
            pg_database,
            (insert(TRANSFERS), transfer),
            (insert(ENTRIES), entry_row(tenant, transfer["id"], accounts["bank"], 5)),
            (insert(ENTRIES), entry_row(tenant, transfer["id"], accounts["revenue"], revenue)),
        )

    with pytest.raises(IntegrityError, match="does not balance in USD \\(off by 1\\)"):
        in_two_statements(-4)
    assert count_rows(pg_database, tenant) == before
    in_two_statements(-5)
    assert count_rows(pg_database, tenant) == (before[0] + 1, before[1] + 2)
