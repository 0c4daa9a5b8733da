"""The database's own guards: whatever SQL reaches it, bypassing `ledger.posting`, the stored
ledger stays append-only and (on PostgreSQL) balanced at every commit.

Both databases refuse UPDATE and DELETE of transfers and entries, entries in a currency or tenant
other than their account's, zero entries, forbidden negative balances, edits of issued invoices,
edits of the commit-check journal, and any change but its balance to an account with entries.
PostgreSQL also refuses TRUNCATE, entries added after their transfer's transaction, forged
transaction ids, and — deferred to COMMIT — transfers that do not balance per currency or have
fewer than two entries, whatever a session does to get past that check (issue 8: its own rows in
the journal, early checks, savepoints, temporary tables, session_replication_role, one-statement
CTEs, COPY, MERGE). (SQLite has no deferred triggers: there the code is the only balance check.)
Last, the three bypasses a red-team review of migration 0005 found: a frozen account changed by a
concurrent REPEATABLE READ session, an entry in another tenant than its transfer's, and operators
planted in `public` that the guards' comparisons preferred to pg_catalog's.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, MetaData, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

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


def test_an_entry_on_another_tenants_account_is_refused(database, tenant, ledger):
    _, theirs = posted(database, new_tenant(database))
    with pytest.raises(IntegrityError, match="currency and tenant"):
        forge(database, tenant, (theirs["bank"], 5, "USD"), (theirs["revenue"], -5, "USD"))


# Every column but the balance: what the account's entries mean, and the rules they were kept by.
ACCOUNT_CHANGES = {
    "currency": lambda db: {"currency": "EUR"},
    "tenant": lambda db: {"tenant_id": new_tenant(db)},
    "owner": lambda db: {"owner_id": SPECIALIST, "owner_key": str(SPECIALIST)},
    "owner-type": lambda db: {"owner_type": "specialist"},
    "kind": lambda db: {"kind": K.FINES_INCOME.value},
    "normal-side": lambda db: {"normal_side": "credit"},
    "no-negative": lambda db: {"no_negative": True},
}


@pytest.mark.parametrize("change", ACCOUNT_CHANGES.values(), ids=ACCOUNT_CHANGES.keys())
def test_an_account_with_entries_keeps_its_currency_tenant_owner_and_rules(
    database, ledger, change
):
    _, accounts = ledger
    values = change(database)
    with (
        pytest.raises(IntegrityError, match="only its balance can change"),
        database.engine.begin() as c,
    ):
        c.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == accounts["receivable"]).values(values))


def test_an_account_without_entries_can_still_be_corrected(database, tenant):
    """Nothing has been booked under it yet: its definition is not yet anyone's record."""
    with database.session(tenant, write=True) as s:
        account = chart.account(s, K.BANK, "USD").id
    with database.engine.begin() as c:
        c.execute(
            update(ACCOUNTS)
            .where(ACCOUNTS.c.id == account)
            .values(currency="EUR", normal_side="credit", tenant_id=new_tenant(database))
        )
    with database.engine.connect() as c:
        row = c.execute(select(ACCOUNTS).where(ACCOUNTS.c.id == account)).one()
    assert (row.currency, row.normal_side, row.tenant_id) != ("USD", "debit", tenant)
    assert (row.currency, row.normal_side) == ("EUR", "credit")


def test_an_account_with_entries_still_moves_its_balance(database, tenant, ledger):
    """The freeze leaves `balance` to posting, which moves it with every transfer."""
    _, accounts = ledger
    with database.session(tenant, write=True) as s:
        post(
            s,
            TransferSpec(
                kind="earnings",
                idempotency_key="after-freeze",
                legs=[Leg.debit(accounts["receivable"], 1), Leg.credit(accounts["payable"], 1)],
            ),
        )
        s.execute(update(Account).where(Account.id == accounts["payable"]).values(balance=-1_000))
        s.rollback()  # (the `ledger` fixture wants the ledger unchanged)


def test_sqlite_refuses_to_edit_the_commit_check_journal(sqlite_database):
    """The journal is PostgreSQL's; SQLite refuses to edit it all the same."""
    journal = text("SELECT count(*) FROM ledger_commit_checks")
    with sqlite_database.engine.begin() as c:
        c.execute(text("INSERT INTO ledger_commit_checks (txid, passed) VALUES (1, 0)"))
        count = c.scalar(journal)
    for statement, refusal in [
        ("UPDATE ledger_commit_checks SET passed = 1", "UPDATE on ledger_commit_checks"),
        ("DELETE FROM ledger_commit_checks", "DELETE on ledger_commit_checks"),
    ]:
        with (
            pytest.raises(IntegrityError, match=refusal),
            sqlite_database.engine.begin() as c,
        ):
            c.execute(text(statement))
    with sqlite_database.engine.connect() as c:
        assert c.scalar(journal) == count


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


# --- PostgreSQL: no session can switch the commit-time check off (issue 8) -------------------
#
# Each test is an attack by an ordinary connection (the app's role, every trigger on) that
# tries to commit an unbalanced transfer: it must fail, and leave nothing (`pg_ledger` checks
# the honest ledger is exactly as it was).

Steps = Callable[[Connection], object]


def refused_at_commit(db: Database, steps: Steps, refusal: str = "does not balance") -> None:
    """Run `steps` in one transaction: every statement is accepted, the COMMIT is refused."""
    with db.engine.connect() as c:
        transaction = c.begin()
        steps(c)
        with pytest.raises(IntegrityError, match=refusal):
            transaction.commit()


def sql(c: Connection, statement: str, **parameters: object) -> object:
    return c.execute(text(statement), parameters)


def skipping_refusals(c: Connection, statement: str, **parameters: object) -> None:
    """Run `statement` in a savepoint and go on if the database refuses it: the attacker keeps
    going whatever is refused."""
    try:
        with c.begin_nested():
            sql(c, statement, **parameters)
    except IntegrityError:
        pass


def unbalanced(tenant: uuid.UUID, accounts: dict[str, uuid.UUID]) -> Steps:
    """Insert a transfer with a single entry of 5 (raw SQL, two statements)."""

    def steps(c: Connection) -> None:
        transfer = transfer_row(tenant)
        c.execute(insert(TRANSFERS).values(transfer))
        c.execute(insert(ENTRIES).values(entry_row(tenant, transfer["id"], accounts["bank"], 5)))

    return steps


# One statement: a transfer and its entries, the entries given as (account, amount) pairs.
CTE_TRANSFER = """
WITH t AS (
    INSERT INTO ledger_transfers (id, tenant_id, kind, reference, idempotency_key, fingerprint,
                                  effective_at, created_at, metadata)
    VALUES (CAST(:id AS uuid), CAST(:tenant AS uuid), 'forged', '', :key, '', now(), now(), '{}')
    RETURNING id
)
INSERT INTO ledger_entries (tenant_id, transfer_id, account_id, currency, amount, effective_at,
                            created_at)
SELECT CAST(:tenant AS uuid), t.id, e.account_id, 'USD', e.amount, now(), now()
FROM t, unnest(CAST(:account_ids AS uuid[]), CAST(:amounts AS bigint[])) AS e(account_id, amount)
"""


def cte_transfer(c: Connection, tenant: uuid.UUID, *legs: tuple[uuid.UUID, int]) -> uuid.UUID:
    transfer_id = uuid.uuid4()
    sql(
        c,
        CTE_TRANSFER,
        id=str(transfer_id),
        tenant=str(tenant),
        key=f"cte-{transfer_id}",
        account_ids=[str(a) for a, _ in legs],
        amounts=[amount for _, amount in legs],
    )
    return transfer_id


def one_more_entry(c: Connection, tenant: uuid.UUID, transfer: uuid.UUID, account: uuid.UUID):
    c.execute(insert(ENTRIES).values(entry_row(tenant, transfer, account, 1)))


@pytest.mark.postgres
def test_postgres_refuses_the_bypass_of_issue_8_at_commit(pg_ledger):
    """The exact sequence of the issue: queue a check row for some txid, move it to this
    transaction's, then post an unbalanced transfer. Each step the database refuses is skipped
    (in a savepoint), and the unbalanced transfer still fails at COMMIT."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        skipping_refusals(c, "INSERT INTO ledger_commit_checks (txid, passed) VALUES (1, false)")
        skipping_refusals(c, "UPDATE ledger_commit_checks SET txid = txid_current()")
        unbalanced(tenant, accounts)(c)

    refused_at_commit(db, attack)


@pytest.mark.postgres
def test_postgres_refuses_a_commit_check_row_for_another_transaction(pg_ledger):
    """No transaction can pre-arm (and so silence) the check of another: a row committed for
    the txid a later transaction will get is refused."""
    db = pg_ledger[0]
    with (
        pytest.raises(IntegrityError, match="commit check must carry its own transaction id"),
        db.engine.begin() as c,
    ):
        sql(
            c,
            "INSERT INTO ledger_commit_checks (txid, passed) VALUES (txid_current() + 1, false)",
        )


@pytest.mark.postgres
@pytest.mark.parametrize("passed", [False, True], ids=["armed", "passed"])
def test_postgres_checks_at_commit_whatever_the_session_writes_to_the_journal_first(
    pg_ledger, passed
):
    """A row the session writes for its own transaction only ever adds a check: an armed one
    checks the whole transaction, a 'passed' one makes the next write arm a new check."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        sql(
            c,
            "INSERT INTO ledger_commit_checks (txid, passed) VALUES (txid_current(), :passed)",
            passed=passed,
        )
        unbalanced(tenant, accounts)(c)

    refused_at_commit(db, attack)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE ledger_commit_checks SET passed = true", "UPDATE on ledger_commit_checks"),
        ("DELETE FROM ledger_commit_checks", "DELETE on ledger_commit_checks"),
        ("TRUNCATE ledger_commit_checks", "TRUNCATE on ledger_commit_checks"),
    ],
    ids=["update", "delete", "truncate"],
)
def test_postgres_refuses_to_edit_the_commit_check_journal(pg_ledger, statement, refusal):
    """(A TRUNCATE in a transaction with a pending check is refused by PostgreSQL itself.)"""
    db = pg_ledger[0]
    count = "SELECT count(*) FROM ledger_commit_checks"
    with db.engine.connect() as c:
        journal = c.scalar(text(count))
    assert journal >= 2  # the honest posting's check, armed and passed
    with pytest.raises(IntegrityError, match=f"{refusal} is not allowed"), db.engine.begin() as c:
        sql(c, statement)
    with db.engine.connect() as c:
        assert c.scalar(text(count)) == journal


@pytest.mark.postgres
def test_postgres_checks_again_an_entry_added_after_an_early_check_passed(pg_ledger):
    """SET CONSTRAINTS ALL IMMEDIATE fires the pending check now; it passes (the transfer
    balances), the session goes back to deferred and adds an entry: that write arms a new
    check, which fails at COMMIT."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        transfer = cte_transfer(c, tenant, (accounts["bank"], 5), (accounts["revenue"], -5))
        sql(c, "SET CONSTRAINTS ALL IMMEDIATE")
        sql(c, "SET CONSTRAINTS ALL DEFERRED")
        one_more_entry(c, tenant, transfer, accounts["bank"])

    refused_at_commit(db, attack, "does not balance in USD \\(off by 1\\)")


@pytest.mark.postgres
def test_postgres_in_immediate_mode_checks_every_statement_that_writes(pg_ledger):
    """With the check immediate, a transfer and its balanced entries in one statement pass, and
    the next statement that unbalances it is refused on the spot."""
    db, tenant, _, accounts = pg_ledger
    with db.engine.connect() as c, c.begin():
        sql(c, "SET CONSTRAINTS ALL IMMEDIATE")
        transfer = cte_transfer(c, tenant, (accounts["bank"], 5), (accounts["revenue"], -5))
        with pytest.raises(IntegrityError, match="does not balance in USD \\(off by 1\\)"):
            one_more_entry(c, tenant, transfer, accounts["bank"])


@pytest.mark.postgres
def test_postgres_checks_at_commit_after_a_check_fired_early_on_a_session_row(pg_ledger):
    """The session arms a check itself and fires it while there is nothing to check, then
    posts, deferred: the posting arms a check of its own."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        sql(c, "INSERT INTO ledger_commit_checks (txid, passed) VALUES (txid_current(), false)")
        sql(c, "SET CONSTRAINTS ledger_balanced_at_commit IMMEDIATE")
        sql(c, "SET CONSTRAINTS ledger_balanced_at_commit DEFERRED")
        unbalanced(tenant, accounts)(c)

    refused_at_commit(db, attack)


@pytest.mark.postgres
def test_postgres_checks_at_commit_a_check_that_passed_in_a_rolled_back_savepoint(pg_ledger):
    """A check that fired and passed in a savepoint rolled back is pending again (the database
    un-fires it with the savepoint), so the entry added afterwards is still checked."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        transfer = cte_transfer(c, tenant, (accounts["bank"], 5), (accounts["revenue"], -5))
        savepoint = c.begin_nested()
        sql(c, "SET CONSTRAINTS ALL IMMEDIATE")
        savepoint.rollback()
        one_more_entry(c, tenant, transfer, accounts["bank"])

    refused_at_commit(db, attack, "does not balance in USD \\(off by 1\\)")


@pytest.mark.postgres
def test_postgres_checks_at_commit_a_transfer_posted_across_savepoints(pg_ledger):
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        transfer = transfer_row(tenant)
        with c.begin_nested():
            c.execute(insert(TRANSFERS).values(transfer))
        with c.begin_nested():
            c.execute(
                insert(ENTRIES).values(entry_row(tenant, transfer["id"], accounts["bank"], 5))
            )

    refused_at_commit(db, attack)


@pytest.mark.postgres
def test_postgres_checks_at_commit_an_unbalanced_transfer_inserted_in_one_statement(pg_ledger):
    db, tenant, _, accounts = pg_ledger
    refused_at_commit(
        db,
        lambda c: cte_transfer(c, tenant, (accounts["bank"], 5), (accounts["revenue"], -4)),
        "does not balance in USD \\(off by 1\\)",
    )


@pytest.mark.postgres
def test_postgres_checks_at_commit_an_entry_added_after_a_one_statement_transfer(pg_ledger):
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        transfer = cte_transfer(c, tenant, (accounts["bank"], 5), (accounts["revenue"], -5))
        one_more_entry(c, tenant, transfer, accounts["bank"])

    refused_at_commit(db, attack, "does not balance in USD \\(off by 1\\)")


@pytest.mark.postgres
def test_postgres_checks_entries_copied_in_at_commit(pg_ledger):
    """COPY fires the same guards as INSERT."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        transfer = transfer_row(tenant)
        c.execute(insert(TRANSFERS).values(transfer))
        cursor = c.connection.driver_connection.cursor()
        columns = "tenant_id, transfer_id, account_id, currency, amount, effective_at, created_at"
        with cursor.copy(f"COPY ledger_entries ({columns}) FROM STDIN") as copy:
            now = utcnow()
            copy.write_row((tenant, transfer["id"], accounts["bank"], "USD", 5, now, now))

    refused_at_commit(db, attack)


@pytest.mark.postgres
def test_postgres_checks_at_commit_whatever_session_replication_role_says(pg_ledger):
    """`replica` turns ordinary triggers off (for a superuser session); the ledger's fire
    ALWAYS."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        sql(c, "SELECT set_config('session_replication_role', 'replica', true)")
        unbalanced(tenant, accounts)(c)

    refused_at_commit(db, attack)


@pytest.mark.postgres
def test_postgres_guards_are_not_fooled_by_temporary_tables_shadowing_the_ledger(pg_ledger):
    """Temporary tables come first in an unpinned search_path: shadows of the journal, the
    transfers and the entries (claiming a balanced transaction) change nothing, as the guards
    name the ledger's own tables."""
    db, tenant, _, accounts = pg_ledger

    def attack(c: Connection) -> None:
        for table in ("ledger_commit_checks", "ledger_transfers", "ledger_entries"):
            sql(c, f"CREATE TEMP TABLE {table} (LIKE public.{table}) ON COMMIT DROP")
        sql(c, "INSERT INTO ledger_commit_checks (id, txid, passed) VALUES (1, 1, true)")
        transfer = transfer_row(tenant)
        c.execute(insert(TRANSFERS.to_metadata(MetaData(), schema="public")).values(transfer))
        c.execute(
            insert(ENTRIES.to_metadata(MetaData(), schema="public")).values(
                entry_row(tenant, transfer["id"], accounts["bank"], 5)
            )
        )

    refused_at_commit(db, attack)


@pytest.mark.postgres
def test_postgres_refuses_entries_on_an_old_transfer_whatever_a_temporary_table_claims(pg_ledger):
    db, tenant, old_transfer, accounts = pg_ledger
    with db.engine.connect() as c, c.begin():
        sql(c, "CREATE TEMP TABLE ledger_transfers (id uuid, txid bigint) ON COMMIT DROP")
        sql(
            c,
            "INSERT INTO ledger_transfers VALUES (CAST(:id AS uuid), txid_current())",
            id=str(old_transfer),
        )
        entries = [
            entry_row(tenant, old_transfer, accounts["bank"], 5),
            entry_row(tenant, old_transfer, accounts["revenue"], -5),
        ]
        with pytest.raises(IntegrityError, match="only be added together with their transfer"):
            c.execute(insert(ENTRIES.to_metadata(MetaData(), schema="public")), entries)


@pytest.mark.postgres
def test_postgres_posts_several_batches_in_one_transaction_with_one_check(pg_database):
    """Normal use, deferred: one armed check per transaction however many statements wrote,
    and one 'passed' row when it balanced."""
    tenant = new_tenant(pg_database)
    _, accounts = posted(pg_database, tenant)
    with pg_database.session(tenant, write=True) as s:
        for n in range(3):
            post(
                s,
                TransferSpec(
                    kind="earnings",
                    idempotency_key=f"batch-{n}",
                    legs=[Leg.debit(accounts["bank"], 5), Leg.credit(accounts["revenue"], 5)],
                ),
            )
        txid = s.scalar(text("SELECT txid_current()"))
    with pg_database.engine.connect() as c:
        journal = c.execute(
            text("SELECT passed FROM ledger_commit_checks WHERE txid = :txid ORDER BY id"),
            {"txid": txid},
        ).scalars()
        assert list(journal) == [False, True]


@pytest.mark.postgres
def test_postgres_an_account_change_waits_for_entries_still_being_posted_to_it(pg_database):
    """An entry not yet committed is invisible to the freeze; but the transaction posting an
    account's first entries holds the account's row (it flags it), so the change waits (here:
    gives up, with a lock timeout), and once that one has committed, the account is frozen."""
    tenant = new_tenant(pg_database)
    _, accounts = posted(pg_database, tenant)  # bank and revenue have no entries yet
    change = update(ACCOUNTS).where(ACCOUNTS.c.id == accounts["bank"]).values(currency="EUR")
    with pg_database.engine.connect() as posting:
        transaction = posting.begin()
        transfer = transfer_row(tenant)
        posting.execute(insert(TRANSFERS).values(transfer))
        posting.execute(insert(ENTRIES), balanced_pairs(tenant, [transfer], accounts))
        with pg_database.engine.connect() as admin, admin.begin():
            sql(admin, "SET LOCAL lock_timeout = '200ms'")
            with pytest.raises(OperationalError, match="lock timeout"):
                admin.execute(change)
        transaction.commit()
    with (
        pytest.raises(IntegrityError, match="only its balance can change"),
        pg_database.engine.begin() as c,
    ):
        c.execute(change)


MERGE_ENTRIES = """
MERGE INTO ledger_entries e
USING unnest(CAST(:account_ids AS uuid[]), CAST(:amounts AS bigint[])) AS n(account_id, amount)
ON false
WHEN NOT MATCHED THEN
    INSERT (tenant_id, transfer_id, account_id, currency, amount, effective_at, created_at)
    VALUES (CAST(:tenant AS uuid), CAST(:transfer AS uuid), n.account_id, 'USD', n.amount,
            now(), now())
"""


@pytest.mark.postgres
def test_postgres_guards_entries_merged_in(pg_ledger):
    """MERGE fires the same guards as INSERT: entries for an old transfer are refused, and an
    unbalanced transfer of this transaction fails at COMMIT."""
    db, tenant, old_transfer, accounts = pg_ledger

    def merge(c: Connection, transfer: object, *legs: tuple[uuid.UUID, int]) -> None:
        sql(
            c,
            MERGE_ENTRIES,
            tenant=str(tenant),
            transfer=str(transfer),
            account_ids=[str(a) for a, _ in legs],
            amounts=[amount for _, amount in legs],
        )

    with (
        db.engine.connect() as c,
        c.begin(),
        pytest.raises(IntegrityError, match="only be added together with their transfer"),
    ):
        merge(c, old_transfer, (accounts["bank"], 5), (accounts["revenue"], -5))

    def attack(c: Connection) -> None:
        transfer = transfer_row(tenant)
        c.execute(insert(TRANSFERS).values(transfer))
        merge(c, transfer["id"], (accounts["bank"], 5))

    refused_at_commit(db, attack)


# --- Red-team review of 0005: three bypasses from an ordinary session -------------------------
#
# B1: a frozen account changed by a concurrent REPEATABLE READ / SERIALIZABLE session (its
# snapshot predated entries committed while it waited). B2: a transfer with entries in another
# tenant. B3: an operator of `public` preferred over pg_catalog's by a guard's comparison.


def fresh_account_posting(db: Database, tenant: uuid.UUID, accounts: dict[str, uuid.UUID]):
    """A connection with an open transaction that has inserted (raw SQL, the account rows left
    alone) a balanced transfer on `bank` and `revenue`, accounts without entries until now."""
    c = db.engine.connect()
    transaction = c.begin()
    transfer = transfer_row(tenant)
    c.execute(insert(TRANSFERS).values(transfer))
    c.execute(insert(ENTRIES), balanced_pairs(tenant, [transfer], accounts))
    return c, transaction


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Run `work` in a thread; what it raised ends up in the list."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # handed to the test
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def wait_until_blocked(db: Database, pid: list[int]) -> None:
    """Until the backend `pid[0]` (once known) waits for a lock another backend holds."""
    deadline = time.monotonic() + 10
    with db.engine.connect() as c:
        while time.monotonic() < deadline:
            if pid and c.scalar(
                text("SELECT cardinality(pg_blocking_pids(:pid)) > 0"), {"pid": pid[0]}
            ):
                return
            c.rollback()
            time.sleep(0.02)
    raise AssertionError("the session never blocked")


def account_row(db: Database, account: uuid.UUID):
    with db.engine.connect() as c:
        return c.execute(select(ACCOUNTS).where(ACCOUNTS.c.id == account)).one()


ISOLATION_LEVELS = {
    "read-committed": ("READ COMMITTED", IntegrityError, "only its balance can change"),
    "repeatable-read": ("REPEATABLE READ", OperationalError, "could not serialize"),
    "serializable": ("SERIALIZABLE", OperationalError, "could not serialize"),
}


@pytest.mark.postgres
@pytest.mark.parametrize("level", ISOLATION_LEVELS.values(), ids=ISOLATION_LEVELS.keys())
def test_postgres_a_change_that_waited_for_an_accounts_first_entries_is_refused(pg_database, level):
    """B1: the change blocks on the account's first entries (flagging the account is an UPDATE
    of its row); once they commit, READ COMMITTED sees the flag and is refused, REPEATABLE READ
    and SERIALIZABLE fail to serialize: never a EUR account holding a USD entry."""
    isolation, error, refusal = level
    tenant = new_tenant(pg_database)
    _, accounts = posted(pg_database, tenant)
    posting, transaction = fresh_account_posting(pg_database, tenant, accounts)
    pid: list[int] = []

    def change() -> None:
        with pg_database.engine.connect().execution_options(isolation_level=isolation) as c:
            pid.append(c.connection.driver_connection.info.backend_pid)
            with c.begin():
                c.execute(
                    update(ACCOUNTS).where(ACCOUNTS.c.id == accounts["bank"]).values(currency="EUR")
                )

    try:
        thread, raised = in_thread(change)
        wait_until_blocked(pg_database, pid)
        transaction.commit()
    finally:
        posting.close()
    thread.join(10)
    assert len(raised) == 1, raised
    assert isinstance(raised[0], error), raised
    assert refusal in str(raised[0])
    row = account_row(pg_database, accounts["bank"])
    assert (row.currency, row.has_entries) == ("USD", True)


FROZEN_CHANGES = {
    "currency": {"currency": "EUR"},
    "kind": {"kind": K.FINES_INCOME.value},
    "owner-key": {"owner_key": str(SPECIALIST)},
    "unflag": {"has_entries": False},
}


@pytest.mark.postgres
@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
@pytest.mark.parametrize("values", FROZEN_CHANGES.values(), ids=FROZEN_CHANGES.keys())
def test_postgres_a_change_from_a_snapshot_older_than_an_accounts_first_entries_fails(
    pg_database, isolation, values
):
    """B1, the variant: the session takes its snapshot, entries on the account are posted and
    committed meanwhile, then the session changes a frozen column: it cannot serialize."""
    tenant = new_tenant(pg_database)
    _, accounts = posted(pg_database, tenant)
    with pg_database.engine.connect().execution_options(isolation_level=isolation) as admin:
        admin.begin()
        sql(admin, "SELECT 1")  # the snapshot
        posting, transaction = fresh_account_posting(pg_database, tenant, accounts)
        transaction.commit()
        posting.close()
        with pytest.raises(OperationalError, match="could not serialize"):
            admin.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == accounts["bank"]).values(values))
        admin.rollback()
    row = account_row(pg_database, accounts["bank"])
    assert (row.currency, row.kind, row.owner_key, row.has_entries) == (
        "USD",
        K.BANK.value,
        "platform",
        True,
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("isolation", "error", "refusal"),
    [
        ("READ COMMITTED", IntegrityError, "must match its account"),
        ("REPEATABLE READ", OperationalError, "could not serialize"),
    ],
    ids=["read-committed", "repeatable-read"],
)
def test_postgres_first_entries_that_waited_for_a_change_of_their_account_see_it(
    pg_database, isolation, error, refusal
):
    """B1, the other way round: the account's currency is changed (not committed yet) and USD
    entries are posted on it. The entries wait for the change (the account is locked before its
    currency is looked at) and are refused once it commits."""
    tenant = new_tenant(pg_database)
    _, accounts = posted(pg_database, tenant)
    change = update(ACCOUNTS).where(ACCOUNTS.c.id == accounts["bank"]).values(currency="EUR")
    pid: list[int] = []

    def posting() -> None:
        with pg_database.engine.connect().execution_options(isolation_level=isolation) as c:
            pid.append(c.connection.driver_connection.info.backend_pid)
            with c.begin():
                transfer = transfer_row(tenant)
                c.execute(insert(TRANSFERS).values(transfer))
                c.execute(insert(ENTRIES), balanced_pairs(tenant, [transfer], accounts))

    with pg_database.engine.connect() as admin:
        admin.begin()
        admin.execute(change)
        thread, raised = in_thread(posting)
        try:
            wait_until_blocked(pg_database, pid)
        finally:
            admin.commit()
    thread.join(10)
    assert len(raised) == 1, raised
    assert isinstance(raised[0], error), raised
    assert refusal in str(raised[0])
    row = account_row(pg_database, accounts["bank"])
    assert (row.currency, row.has_entries) == ("EUR", False)


def test_sqlite_a_change_from_a_snapshot_older_than_an_accounts_first_entries_fails(
    sqlite_database,
):
    """B1 on SQLite: one writer at a time, and a transaction whose snapshot is older than the
    last commit cannot write at all (SQLITE_BUSY_SNAPSHOT); a fresh one sees the flag."""
    db = sqlite_database
    tenant = new_tenant(db)
    _, accounts = posted(db, tenant)
    change = update(ACCOUNTS).where(ACCOUNTS.c.id == accounts["bank"]).values(currency="EUR")
    with db.engine.connect() as admin:
        admin.begin()
        admin.execute(select(ACCOUNTS.c.currency).where(ACCOUNTS.c.id == accounts["bank"]))
        posting, transaction = fresh_account_posting(db, tenant, accounts)
        transaction.commit()
        posting.close()
        with pytest.raises(OperationalError, match="locked"):
            admin.execute(change)
        admin.rollback()
    with pytest.raises(IntegrityError, match="only its balance can change"), db.engine.begin() as c:
        c.execute(change)
    assert account_row(db, accounts["bank"]).has_entries


def test_raw_entries_flag_their_accounts_and_a_flag_is_never_reset(database):
    """The flag comes from the database, whoever inserts the entries, and stays."""
    tenant = new_tenant(database)
    _, accounts = posted(database, tenant)
    assert not account_row(database, accounts["bank"]).has_entries
    forge(database, tenant, (accounts["bank"], 5, "USD"), (accounts["revenue"], -5, "USD"))
    assert account_row(database, accounts["bank"]).has_entries
    assert account_row(database, accounts["revenue"]).has_entries
    assert not account_row(database, accounts["yen"]).has_entries
    with (
        pytest.raises(IntegrityError, match="only its balance can change"),
        database.engine.begin() as c,
    ):
        c.execute(
            update(ACCOUNTS)
            .where(ACCOUNTS.c.id == accounts["bank"])
            .values(has_entries=False, currency="EUR")
        )


def cross_tenant_legs(database: Database, tenant: uuid.UUID, accounts: dict[str, uuid.UUID]):
    """+5 on one of `tenant`'s accounts, -5 on another tenant's (each entry in its account's
    tenant): balanced overall, off by 5 in each tenant."""
    other = new_tenant(database)
    theirs = posted(database, other)[1]
    return lambda transfer: [
        entry_row(tenant, transfer, accounts["bank"], 5),
        entry_row(other, transfer, theirs["bank"], -5),
    ]


def test_an_entry_in_another_tenant_than_its_transfer_is_refused(database, tenant, ledger):
    """B2: a T1 transfer with +5 on a T1 account and -5 on a T2 account."""
    _, accounts = ledger
    legs = cross_tenant_legs(database, tenant, accounts)
    transfer = transfer_row(tenant)
    with pytest.raises(IntegrityError, match="must be in its transfer's tenant"):
        commit_raw(database, (insert(TRANSFERS), transfer), (insert(ENTRIES), legs(transfer["id"])))


@pytest.mark.postgres
def test_postgres_refuses_one_entry_of_another_tenant_among_many(pg_ledger):
    """B2 in one statement among many honest entries (the guard looks at every pair)."""
    db, tenant, _, accounts = pg_ledger
    transfers = [transfer_row(tenant) for _ in range(20)]
    entries = balanced_pairs(tenant, transfers, accounts)
    entries[2 * 7 : 2 * 7 + 2] = cross_tenant_legs(db, tenant, accounts)(transfers[7]["id"])
    with pytest.raises(IntegrityError, match="must be in its transfer's tenant"):
        commit_raw(db, (insert(TRANSFERS), transfers), (insert(ENTRIES), entries))


# Each: the operator (and its function) a role with CREATE on `public` adds in its transaction.
HIJACKS = {
    "numeric-eq-integer": (
        "numeric, integer",
        "=",
        "true",
    ),
    "varchar-ne-varchar": (
        "character varying, character varying",
        "<>",
        "false",
    ),
}


def hijack(c: Connection, arguments: str, operator: str, result: str) -> None:
    left, right = (a.strip() for a in arguments.split(","))
    sql(
        c,
        f"CREATE FUNCTION public.rt_hijack({arguments}) RETURNS boolean LANGUAGE sql IMMUTABLE"
        f" AS 'SELECT {result}'",
    )
    sql(
        c,
        f"CREATE OPERATOR public.{operator} (LEFTARG = {left}, RIGHTARG = {right},"
        " FUNCTION = public.rt_hijack)",
    )


def unhijack(c: Connection, arguments: str, operator: str) -> None:
    left, right = (a.strip() for a in arguments.split(","))
    sql(c, f"DROP OPERATOR public.{operator} ({left}, {right})")
    sql(c, f"DROP FUNCTION public.rt_hijack({arguments})")


@pytest.mark.postgres
def test_postgres_balance_check_ignores_an_equality_operator_planted_in_public(pg_ledger):
    """B3: `public.=(numeric, integer)` saying every sum equals 0, an unbalanced transfer, the
    check fired early, the operator dropped again: refused when the check fires."""
    db, tenant, _, accounts = pg_ledger
    with db.engine.connect() as c, c.begin():
        hijack(c, *HIJACKS["numeric-eq-integer"])
        unbalanced(tenant, accounts)(c)
        with pytest.raises(IntegrityError, match="does not balance in USD \\(off by 5\\)"):
            sql(c, "SET CONSTRAINTS ALL IMMEDIATE")

    def attack(c: Connection) -> None:  # and with the operator still there at COMMIT
        hijack(c, *HIJACKS["numeric-eq-integer"])
        unbalanced(tenant, accounts)(c)

    refused_at_commit(db, attack)


@pytest.mark.postgres
def test_postgres_currency_guard_ignores_an_inequality_operator_planted_in_public(pg_ledger):
    """B3: `public.<>(varchar, varchar)` saying no two currencies differ; a JPY entry on a USD
    account is refused all the same."""
    db, tenant, _, accounts = pg_ledger
    arguments, operator, result = HIJACKS["varchar-ne-varchar"]
    with db.engine.connect() as c, c.begin():
        hijack(c, arguments, operator, result)
        transfer = transfer_row(tenant)
        c.execute(insert(TRANSFERS).values(transfer))
        with pytest.raises(IntegrityError, match="must match its account"):
            c.execute(
                insert(ENTRIES),
                [
                    entry_row(tenant, transfer["id"], accounts["bank"], 5, "JPY"),
                    entry_row(tenant, transfer["id"], accounts["yen"], -5, "JPY"),
                ],
            )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("arguments", "operator", "search_path", "change"),
    [
        ("character varying, character varying", "<>", None, {"currency": "EUR"}),
        ("bigint, bigint", "<>", "public, pg_catalog", {"total_minor": 1}),
    ],
    ids=["varchar", "bigint-with-public-first"],
)
def test_postgres_invoice_guard_ignores_operators_planted_in_public(
    pg_database, arguments, operator, search_path, change
):
    """B3 on 0002's invoice guard (replaced by 0005): an operator of `public` saying nothing
    differs, even with `public` put before pg_catalog in the session's search_path."""
    world = build_world(pg_database, f"inv-{uuid.uuid4().hex[:12]}", specialists=1)
    with pg_database.session(world.tenant_id, write=True) as s:
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
        invoice_id = invoices.issue(s, draft.id, draft.lock_version).id
    with pg_database.engine.connect() as c, c.begin():
        hijack(c, arguments, operator, "false")
        if search_path:
            sql(c, f"SET LOCAL search_path = {search_path}")
        with pytest.raises(IntegrityError, match="cannot change"):
            c.execute(update(INVOICES).where(INVOICES.c.id == invoice_id).values(**change))


@pytest.mark.postgres
def test_postgres_every_ledger_function_searches_pg_catalog_only(pg_database):
    """B3 at the root: no guard function searches a schema a session can create objects in."""
    with pg_database.engine.connect() as c:
        functions = dict(
            c.execute(
                text(
                    "SELECT p.proname, p.proconfig FROM pg_proc p"
                    " WHERE p.proname LIKE 'ledger\\_%' AND p.pronamespace = ("
                    "   SELECT relnamespace FROM pg_class"
                    "   WHERE oid = 'ledger_transfers'::regclass)"
                )
            ).all()
        )
    assert set(functions) == {
        "ledger_refuse_change",
        "ledger_arm_commit_check",
        "ledger_transfers_inserted",
        "ledger_entries_inserted",
        "ledger_commit_check_inserted",
        "ledger_check_at_commit",
        "ledger_account_frozen",
        "ledger_invoice_frozen",
        "ledger_entries_in_open_period",
        "ledger_closed_period_changed",
        "ledger_closed_periods_no_truncate",
    }
    assert all(c == ["search_path=pg_catalog, pg_temp"] for c in functions.values()), functions
