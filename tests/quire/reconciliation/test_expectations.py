"""The ledger's invariants, proved by Great Expectations inside the database.

A clean ledger — earnings, a fine, a payroll run posted through the payroll domain, settled and
paid — passes every invariant, and so does one whose run a reconciled bank statement paid (a
returned payment, a match by hand with a fee, a write-off, a line left in the queue). The same
ledger corrupted to break exactly one invariant fails exactly that expectation and names the
offending rows. One tenant's corruption is never another tenant's failure. On SQLite and
PostgreSQL.

A corrupted ledger needs a corrupted database: the guards of the migrations (0002, 0005, 0012)
refuse every tampering below, so each tamper lifts the guard it needs inside its own transaction
(`guards_lifted`: PostgreSQL's `ALTER TABLE ... DISABLE TRIGGER`, as the superuser the tests run
as; SQLite's trigger dropped) and puts it back, exactly as it was, before committing.

GX's context and import cost seconds: the module shares one database per dialect (a tenant per
test) and one `LedgerSuites` (one GX context) per database.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from ledger import business, chart, periods
from ledger.models import Account, AccountKind, Entry, Transfer
from migrations.upgrade import upgrade
from quire.db import Database, utcnow
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.reconciliation import exceptions, expectations
from quire.reconciliation.expectations import (
    INVARIANTS,
    LedgerSuites,
    SuiteResult,
    check_by_sql,
    run_ledger_suites,
)
from quire.reconciliation.models import (
    BankLine,
    BankMatch,
    ExceptionSide,
    ExceptionStatus,
    MatchRule,
    ReconciliationException,
)
from tests.quire.payroll.support import build_payroll_world
from tests.quire.payroll.test_runs import approve_and_post, finance, open_and_compute
from tests.quire.reconciliation.payroll_cast import (
    lines_of,
    paid_by_id,
    posted_run,
    reconcile,
    statement,
)
from tests.support import postgres

K = AccountKind
ROOT = Path(__file__).resolve().parents[3]
KEYS = [invariant.key for invariant in INVARIANTS]


# --- databases and the GX context, one per dialect for the module ------------------------------


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('reconciliation') / 'quire.db'}")
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def pg_database(pg_admin_url: str, pg_template: str) -> Iterator[Database]:
    name = postgres.create_database(pg_admin_url, template=pg_template)
    db = Database(postgres.with_database(pg_admin_url, name))
    yield db
    db.dispose()
    postgres.drop_database(pg_admin_url, name)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database(request: pytest.FixtureRequest) -> Database:
    return request.getfixturevalue(
        "sqlite_database" if request.param == "sqlite" else "pg_database"
    )


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-docs")


@pytest.fixture(scope="module")
def suites(database: Database, docs: Path) -> Iterator[LedgerSuites]:
    with LedgerSuites(database, data_docs_dir=docs / database.url.get_backend_name()) as built:
        yield built


# --- a clean ledger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    database: Database
    tenant_id: uuid.UUID
    run_id: uuid.UUID

    def session(self) -> AbstractContextManager[Session]:
        return self.database.session(self.tenant_id, write=True)


def settle(ledger: Ledger, *, leave_unsettled: int = 0) -> None:
    """What reconciliation does once the bank has paid a run (quire/reconciliation/runs.py,
    without a statement to match): each posted line's payout leaves clearing for the bank in a
    settlement naming the run, the lines are paid, and so is the run. `leave_unsettled` lines
    stay in clearing."""
    with ledger.session() as session:
        lines = session.scalars(
            select(PayrollLine)
            .where(PayrollLine.run_id == ledger.run_id, PayrollLine.status == LineStatus.POSTED)
            .order_by(PayrollLine.id)
        ).all()
        settled = lines[leave_unsettled:]
        business.settle_payouts(
            session,
            [
                business.Settlement(
                    key=f"payroll-settle:{line.id}",
                    currency=line.payout_currency,
                    amount_minor=int(line.payout_minor or 0),
                    reference="bank:test",
                    metadata={
                        "payroll_run": str(ledger.run_id),
                        "end_to_end_id": line.end_to_end_id or "",
                    },
                )
                for line in settled
            ],
        )
        for line in settled:
            line.status = LineStatus.PAID
        session.execute(
            update(PayrollRun).where(PayrollRun.id == ledger.run_id).values(status=RunStatus.PAID)
        )


def clean_ledger(database: Database, *, paid: bool = True) -> Ledger:
    """A tenant's whole month: the payroll cast's earnings (ledger.business), a late fine, a
    payroll run computed, approved and posted by the payroll domain (lines in four currency
    pairs, FX legs among them), then settled and paid."""
    world = build_payroll_world(database, f"rec-{uuid.uuid4().hex[:12]}")
    with database.session(world.tenant_id, write=True) as session:
        business.post_late_fine(
            session,
            order_id=uuid.uuid4(),
            specialist_id=world.id("ana"),
            amount_minor=1_500,
            currency="EUR",
        )
    run_id = open_and_compute(world)
    approve_and_post(world, run_id)
    ledger = Ledger(database, world.tenant_id, run_id)
    if paid:
        settle(ledger)
    return ledger


FEE, WRITTEN_OFF, UNEXPLAINED = 200, 300, 9_999  # minor units (EUR)
LIMIT = Decimal("5")  # the write-off limit, major units


def reconciled_ledger(database: Database, tmp_path: Path) -> Ledger:
    """A payroll run posted, its payout files written, and a bank statement paying it
    reconciled, then worked by finance: ana's USD earnings and fatima's payouts paid by their
    end-to-end ids; ken's paid and returned (the pair matched by rule `return`, his line
    reversed, nothing posted to the bank); ana's EUR payout paid without its id and 2.00 over,
    matched by hand (the 2.00 to bank fees); a 3.00 account fee written off; a credit nothing
    explains, left open in the queue. The run is paid."""
    pw, run_id = posted_run(database, tmp_path)
    lines = lines_of(pw, run_id)
    ana, ken = lines["ana/EUR"], lines["ken/EUR"]
    by_id = [paid_by_id(line) for key, line in lines.items() if key not in ("ana/EUR", "ken/EUR")]
    back = paid_by_id(ken, amount_minor=int(ken.payout_minor), returned=True, return_reason="AC04")
    paid_over = -(int(ana.payout_minor) + FEE)
    stmt = statement(
        pw,
        *by_id,
        paid_by_id(ken),
        back,
        {"amount_minor": paid_over},
        {"amount_minor": -WRITTEN_OFF, "remittance": "account fee"},
        {"amount_minor": UNEXPLAINED, "remittance": "?"},
    )
    reconcile(pw, stmt)
    with database.session(pw.tenant_id, write=True) as session:
        queue = {
            e.amount_minor: e.id
            for e in session.scalars(
                select(ReconciliationException).where(
                    ReconciliationException.side == ExceptionSide.BANK
                )
            )
        }
        exceptions.match_by_hand(
            session, finance(pw), queue[paid_over], ana.id, "paid without its id", LIMIT
        )
        exceptions.write_off(session, finance(pw), queue[-WRITTEN_OFF], "account fee", LIMIT)
    return Ledger(database, pw.tenant_id, run_id)


def failed(result: SuiteResult) -> set[str]:
    return {outcome.key for outcome in result.failed}


def outcome(result: SuiteResult, key: str) -> dict:
    return next(o.to_json() for o in result.results if o.key == key)


def test_a_clean_ledger_passes_every_invariant(database: Database, suites: LedgerSuites) -> None:
    ledger = clean_ledger(database)

    result = suites.run(ledger.tenant_id, run_name="clean")

    assert result.success, result.to_json()
    assert [o.key for o in result.results] == KEYS
    assert all(o.count == 0 and o.offending == [] and o.error is None for o in result.results)
    assert result.data_docs_index is not None
    assert result.data_docs_index.exists()
    stored = json.loads(json.dumps(result.to_json()))
    assert stored["suite"] == "ledger-invariants@2"
    assert stored["failed"] == []
    assert stored["evaluated"] == len(KEYS)
    # The same checks as plain SQL agree: nothing offends.
    with database.engine.connect() as conn:
        assert check_by_sql(conn, ledger.tenant_id) == dict.fromkeys(KEYS, 0)


def test_a_reconciled_statement_worked_by_finance_passes_every_invariant(
    database: Database, suites: LedgerSuites, tmp_path: Path
) -> None:
    ledger = reconciled_ledger(database, tmp_path)
    with ledger.session() as session:
        rules = sorted(session.scalars(select(BankMatch.rule).where(~BankMatch.undone)))
        waiting = session.scalars(
            select(ReconciliationException.amount_minor).where(
                ReconciliationException.status == ExceptionStatus.OPEN
            )
        ).all()
        assert session.get(PayrollRun, ledger.run_id).status == RunStatus.PAID
    assert rules == sorted(
        [MatchRule.END_TO_END] * 2
        + [MatchRule.RETURN] * 2
        + [MatchRule.MANUAL, MatchRule.WRITE_OFF]
    )
    assert waiting == [UNEXPLAINED]

    result = suites.run(ledger.tenant_id, run_name="reconciled")

    assert result.success, result.to_json()
    with database.engine.connect() as conn:
        assert check_by_sql(conn, ledger.tenant_id) == dict.fromkeys(KEYS, 0)


# --- corrupting it: the guards lifted for one transaction --------------------------------------

_PG_ENABLE = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}


@contextmanager
def guards_lifted(session: Session, table: str, *names: str) -> Iterator[None]:
    """`table`'s triggers (all, or those named) off for the statements inside, in the session's
    transaction, and back as they were (ALWAYS stays ALWAYS) before it commits."""
    conn = session.connection()
    before = _triggers(session, table)
    chosen = {n: how for n, how in before.items() if (not names or n in names) and how != "D"}
    assert chosen, f"no trigger {names or ''} on {table}"
    postgres = conn.dialect.name == "postgresql"
    for name in chosen:
        if postgres:
            conn.exec_driver_sql(f'ALTER TABLE {table} DISABLE TRIGGER "{name}"')
        else:
            conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    yield
    for name, how in chosen.items():
        if postgres:
            conn.exec_driver_sql(f'ALTER TABLE {table} {_PG_ENABLE[how]} TRIGGER "{name}"')
        else:
            conn.exec_driver_sql(how)
    assert _triggers(session, table) == before


def _triggers(session: Session, table: str) -> dict[str, str]:
    """A table's triggers: how each is enabled (PostgreSQL), or its SQL (SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        query = (
            "SELECT tgname, tgenabled FROM pg_trigger "
            "WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal"
        )
    else:
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"
    return dict(session.execute(text(query), {"t": table}).tuples().all())


def entries_of(session: Session, kind: str, *, currency: str = "EUR") -> list[Entry]:
    """The tenant's entries on accounts of one kind, oldest first."""
    return list(
        session.scalars(
            select(Entry)
            .join(Account, Account.id == Entry.account_id)
            .where(Account.kind == kind, Account.currency == currency)
            .order_by(Entry.id)
        )
    )


def add_to_balance(session: Session, account_id: uuid.UUID, delta: int) -> None:
    session.execute(
        update(Account).where(Account.id == account_id).values(balance=Account.balance + delta)
    )


Tamper = Callable[[Ledger, pytest.MonkeyPatch], Iterator[set[str]]]


def nudge_two_entries(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Two earnings' receivable debits changed by one cent, one up and one down: the account
    still sums to its balance, but neither transfer balances any more."""
    with ledger.session() as session:
        first, second = entries_of(session, K.CLIENT_RECEIVABLE)[:2]
        with guards_lifted(session, "ledger_entries"):
            session.execute(
                update(Entry).where(Entry.id == first.id).values(amount=first.amount + 1)
            )
            session.execute(
                update(Entry).where(Entry.id == second.id).values(amount=second.amount - 1)
            )
    yield {str(first.transfer_id), str(second.transfer_id)}


def move_entry_to_another_currency(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The fine's income entry moved to a USD account, both balances kept equal to their
    entries: every transfer still balances in its entries' currency, every account matches its
    entries, but EUR and USD balances no longer add up to zero."""
    with ledger.session() as session:
        income = entries_of(session, K.FINES_INCOME)[0]
        eur_id, amount = income.account_id, income.amount
        usd = chart.account(session, K.FINES_INCOME, "USD")
        with guards_lifted(session, "ledger_entries"):
            session.execute(update(Entry).where(Entry.id == income.id).values(account_id=usd.id))
        add_to_balance(session, eur_id, -amount)
        add_to_balance(session, usd.id, amount)
    yield {"EUR", "USD"}


def update_two_balances(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """A raw UPDATE of two balances, 5.00 EUR moved from revenue into the receivable: the trial
    balance still holds, but neither account is the sum of its entries."""
    with ledger.session() as session:
        receivable = chart.account(session, K.CLIENT_RECEIVABLE, "EUR")
        income = chart.account(session, K.FINES_INCOME, "EUR")
        add_to_balance(session, receivable.id, 500)
        add_to_balance(session, income.id, -500)
    yield {str(receivable.id), str(income.id)}


def overdraw_a_payable(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """A specialist's payable freed of its never-negative flag (a frozen column), then a payout
    of more than is owed posted normally: balanced, consistent, and owing less than nothing."""
    with ledger.session() as session:
        held = session.scalar(
            select(PayrollLine)
            .where(PayrollLine.status == LineStatus.WITHHELD)
            .order_by(PayrollLine.id)
        )
        payable = chart.account(session, K.SPECIALIST_PAYABLE, "EUR", held.specialist_id)
        with guards_lifted(session, "ledger_accounts"):
            session.execute(
                update(Account).where(Account.id == payable.id).values(no_negative=False)
            )
        business.initiate_payout(
            session,
            payout_id=f"over-{uuid.uuid4()}",
            specialist_id=held.specialist_id,
            amount_minor=-payable.balance + 100,
            currency="EUR",
        )
    yield {str(payable.id)}


def reuse_an_idempotency_key(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The fine's transfer given an earnings' idempotency key, the unique constraint dropped
    for it (SQLite cannot drop one: the table is rebuilt without it); restored afterwards."""
    with ledger.session() as session:
        fine = session.scalar(select(Transfer).where(Transfer.kind == "late_fine"))
        earnings = session.scalar(
            select(Transfer).where(Transfer.kind == "earnings").order_by(Transfer.id)
        )
    with key_constraint_dropped(ledger.database):
        rekey(ledger, fine.id, earnings.idempotency_key)
        yield {earnings.idempotency_key}
        rekey(ledger, fine.id, fine.idempotency_key)


def rekey(ledger: Ledger, transfer_id: uuid.UUID, key: str) -> None:
    with ledger.session() as session, guards_lifted(session, "ledger_transfers"):
        session.execute(
            update(Transfer).where(Transfer.id == transfer_id).values(idempotency_key=key)
        )


@contextmanager
def key_constraint_dropped(database: Database) -> Iterator[None]:
    """The transfers' UNIQUE (tenant_id, idempotency_key) gone, then back."""
    if database.is_postgres:
        name = "uq_ledger_transfers_tenant_id_idempotency_key"
        with database.session(write=True) as session:
            session.execute(text(f"ALTER TABLE ledger_transfers DROP CONSTRAINT {name}"))
        yield
        with database.session(write=True) as session:
            session.execute(
                text(
                    f"ALTER TABLE ledger_transfers ADD CONSTRAINT {name} "
                    "UNIQUE (tenant_id, idempotency_key)"
                )
            )
        return
    original = _rebuild_sqlite_table(database, "ledger_transfers", _without_key)
    yield
    _rebuild_sqlite_table(database, "ledger_transfers", lambda _: original)


def _without_key(create_sql: str) -> str:
    clause = ", \n\tCONSTRAINT uq_ledger_transfers_tenant_id_idempotency_key UNIQUE "
    clause += "(tenant_id, idempotency_key)"
    assert clause in create_sql, create_sql
    return create_sql.replace(clause, "")


def _rebuild_sqlite_table(database: Database, table: str, edit: Callable[[str], str]) -> str:
    """SQLite's way to change a table's constraints: a new table, the rows copied, the old one
    dropped, the new one renamed, its indexes and triggers made again. Returns the old SQL."""
    conn = sqlite3.connect(database.url.database, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA legacy_alter_table = ON")  # other tables' triggers name it
        conn.execute("BEGIN IMMEDIATE")
        (create_sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        dependents = conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL",
            (table,),
        ).fetchall()
        rebuilt = edit(create_sql).replace(f"CREATE TABLE {table}", f"CREATE TABLE {table}_new", 1)
        conn.execute(rebuilt)
        conn.execute(f"INSERT INTO {table}_new SELECT * FROM {table}")
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
        for (sql,) in dependents:
            conn.execute(sql)
        conn.execute("COMMIT")
        return create_sql
    finally:
        conn.close()


def post_into_a_closed_period(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> Iterator[set[str]]:
    """The month so far closed, then an order's earnings posted into it by a writer that skipped
    both guards (posting's check and the database trigger). The entries written before the
    close are the month's own: only the new ones offend."""
    with ledger.session() as session:
        earliest = session.scalar(select(Entry.effective_at).order_by(Entry.effective_at))
        periods.close(
            session,
            None,
            "2099-01",
            earliest - dt.timedelta(seconds=1),
            utcnow() + dt.timedelta(hours=1),
        )
    monkeypatch.setattr(periods, "refuse_closed", lambda *_args, **_kwargs: None)
    with ledger.session() as session:
        specialist = session.scalar(select(PayrollLine.specialist_id))
        with guards_lifted(session, "ledger_entries", "ledger_entries_open_period"):
            late = business.post_earnings(
                session,
                order_id=uuid.uuid4(),
                specialist_id=specialist,
                gross_minor=2_000,
                currency="EUR",
            )
    yield {str(late.id)}


def lose_line_transfers(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """One paid line's transfers forgotten (an empty list), another's pointing at a transfer
    that does not exist."""
    with ledger.session() as session:
        emptied, dangling = session.scalars(
            select(PayrollLine)
            .where(PayrollLine.status == LineStatus.PAID)
            .order_by(PayrollLine.id)
            .limit(2)
        ).all()
        emptied.transfer_ids = []
        dangling.transfer_ids = [str(uuid.uuid4()), *dangling.transfer_ids[1:]]
    yield {str(emptied.id), str(dangling.id)}


def pay_a_run_with_money_in_clearing(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Marked paid though one line's payout was never settled: it is still in clearing."""
    settle(ledger, leave_unsettled=1)
    yield {str(ledger.run_id)}


def the_manual_match_fee(ledger: Ledger) -> tuple[BankLine, list[Entry]]:
    """The bank line ana's EUR payout was matched to by hand, and the entries of the fee posted
    with that match."""
    with ledger.session() as session:
        match = session.scalar(select(BankMatch).where(BankMatch.rule == MatchRule.MANUAL))
        fee = session.scalars(
            select(Entry)
            .join(Transfer, Transfer.id == Entry.transfer_id)
            .where(
                Transfer.kind == "bank_fee",
                Transfer.id.in_([uuid.UUID(t) for t in match.transfer_ids]),
            )
        ).all()
        return session.get(BankLine, match.bank_line_id), list(fee)


def lower_a_settlements_bank_move(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The fee of ana's match by hand (posted with its settlement) 0.50 lower on both its legs,
    the bank's and the fees', and both balances following: the transfer balances and every
    account is the sum of its entries, but the ledger now says the bank moved 0.50 less for
    that line than the statement does."""
    line, fee = the_manual_match_fee(ledger)
    with ledger.session() as session:
        with guards_lifted(session, "ledger_entries"):
            for entry in fee:
                smaller = entry.amount - 50 if entry.amount > 0 else entry.amount + 50
                session.execute(update(Entry).where(Entry.id == entry.id).values(amount=smaller))
        for entry in fee:
            add_to_balance(session, entry.account_id, -50 if entry.amount > 0 else 50)
    yield {str(line.statement_id)}


def undo_a_match_leaving_its_transfer(ledger: Ledger, _: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """A payout's match by end-to-end id undone, its bank line back in the queue (an open
    exception) as an undone match leaves it, but its settlement never reversed: the ledger's
    bank account moved for a line the statement no longer counts as matched."""
    with ledger.session() as session:
        match = session.scalar(
            select(BankMatch)
            .where(BankMatch.rule == MatchRule.END_TO_END)
            .order_by(BankMatch.id)
            .limit(1)
        )
        match.undone = True
        line = session.get(BankLine, match.bank_line_id)
        session.add(
            ReconciliationException(
                tenant_id=ledger.tenant_id,
                reconciliation_id=match.reconciliation_id,
                side=ExceptionSide.BANK,
                bank_line_id=line.id,
                reason="match undone",
                amount_minor=line.amount_minor,
                currency=line.currency,
                status=ExceptionStatus.OPEN,
            )
        )
    yield {str(line.statement_id)}


def the_open_bank_exception(session: Session) -> ReconciliationException:
    return session.scalars(
        select(ReconciliationException).where(
            ReconciliationException.side == ExceptionSide.BANK,
            ReconciliationException.status == ExceptionStatus.OPEN,
        )
    ).one()


def delete_an_unmatched_lines_exception(
    ledger: Ledger, _: pytest.MonkeyPatch
) -> Iterator[set[str]]:
    """The unexplained credit's open exception deleted: nothing explains the line, and nobody
    is asked to."""
    with ledger.session() as session:
        waiting = the_open_bank_exception(session)
        session.delete(waiting)
    yield {str(waiting.bank_line_id)}


def resolve_an_unmatched_lines_exception(
    ledger: Ledger, _: pytest.MonkeyPatch
) -> Iterator[set[str]]:
    """The unexplained credit's exception marked resolved, though no match explains the line."""
    with ledger.session() as session:
        waiting = the_open_bank_exception(session)
        waiting.status = ExceptionStatus.RESOLVED
        waiting.resolution = "resolved without a match"
    yield {str(waiting.bank_line_id)}


Build = Callable[[Database, Path], Ledger]


def paid(database: Database, _: Path) -> Ledger:
    return clean_ledger(database)


def unpaid(database: Database, _: Path) -> Ledger:
    return clean_ledger(database, paid=False)


TAMPERS: dict[str, tuple[Tamper, str, Build]] = {
    # invariant key: (the corruption, the column naming the offending rows, the clean ledger)
    "transfers_balanced": (nudge_two_entries, "transfer_id", paid),
    "trial_balance_zero": (move_entry_to_another_currency, "currency", paid),
    "balances_match_entries": (update_two_balances, "account_id", paid),
    "no_negative_payable": (overdraw_a_payable, "account_id", paid),
    "unique_idempotency_keys": (reuse_an_idempotency_key, "idempotency_key", paid),
    "no_entry_in_closed_period": (post_into_a_closed_period, "transfer_id", paid),
    "posted_lines_have_transfers": (lose_line_transfers, "line_id", paid),
    "paid_runs_clearing_empty": (pay_a_run_with_money_in_clearing, "run_id", unpaid),
    "statement_moves_matched": (lower_a_settlements_bank_move, "statement_id", reconciled_ledger),
    "unmatched_lines_open": (
        delete_an_unmatched_lines_exception,
        "bank_line_id",
        reconciled_ledger,
    ),
}

# More ways to break one invariant, each breaking only that one: (invariant key, as above).
MORE_TAMPERS: dict[str, tuple[str, Tamper, str, Build]] = {
    "match-undone": (
        "statement_moves_matched",
        undo_a_match_leaving_its_transfer,
        "statement_id",
        reconciled_ledger,
    ),
    "exception-resolved": (
        "unmatched_lines_open",
        resolve_an_unmatched_lines_exception,
        "bank_line_id",
        reconciled_ledger,
    ),
}


@pytest.mark.parametrize("key", KEYS)
def test_a_ledger_corrupted_one_way_fails_exactly_that_invariant(
    database: Database,
    suites: LedgerSuites,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    key: str,
) -> None:
    fails_exactly(database, suites, monkeypatch, tmp_path, key, *TAMPERS[key])


@pytest.mark.parametrize("case", list(MORE_TAMPERS))
def test_a_statement_invariant_broken_another_way_fails_alone(
    database: Database,
    suites: LedgerSuites,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case: str,
) -> None:
    fails_exactly(database, suites, monkeypatch, tmp_path, *MORE_TAMPERS[case])


def fails_exactly(
    database: Database,
    suites: LedgerSuites,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    key: str,
    tamper: Tamper,
    column: str,
    build: Build,
) -> None:
    """Corrupt a clean ledger with `tamper`: the suites and the plain SQL find `key` broken,
    and only it, by the rows `tamper` names (in `column`)."""
    ledger = build(database, tmp_path)
    corruption = contextmanager(tamper)(ledger, monkeypatch)

    with corruption as offenders:
        result = suites.run(ledger.tenant_id, run_name=f"tampered-{key}")
        with database.engine.connect() as conn:
            by_sql = check_by_sql(conn, ledger.tenant_id)

    assert failed(result) == {key}, json.dumps([o.to_json() for o in result.failed])
    broken = outcome(result, key)
    assert broken["error"] is None
    assert {str(row[column]) for row in broken["offending"]} == offenders
    assert broken["count"] == len(broken["offending"]) == by_sql[key]
    assert {k for k, n in by_sql.items() if n} == {key}


def test_one_tenants_corruption_is_not_anothers(
    database: Database, suites: LedgerSuites, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, corrupted = clean_ledger(database), clean_ledger(database)
    with contextmanager(update_two_balances)(corrupted, monkeypatch):
        pass

    assert suites.run(clean.tenant_id, run_name="neighbour").success
    assert failed(suites.run(corrupted.tenant_id, run_name="corrupted")) == {
        "balances_match_entries"
    }


def test_one_call_validates_with_a_context_of_its_own(database: Database, tmp_path: Path) -> None:
    ledger = clean_ledger(database)
    docs = tmp_path / "docs"

    result = run_ledger_suites(database.url, ledger.tenant_id, docs, "one-off")

    assert result.success
    assert result.run_name == "one-off"
    assert result.data_docs_index == docs / "index.html"
    assert "ledger-invariants-v2-transfers_balanced" in result.data_docs_index.read_text()


def test_importing_the_module_does_not_load_great_expectations() -> None:
    probe = (
        "import sys, quire.reconciliation.expectations; print('great_expectations' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_an_invariant_whose_query_cannot_run_fails_and_says_why(
    database: Database, suites: LedgerSuites, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = clean_ledger(database)
    written = expectations.invariant_queries

    def one_broken(dialect_name: str, tenant_id: uuid.UUID) -> dict[str, str]:
        return {**written(dialect_name, tenant_id), "trial_balance_zero": "SELECT * FROM nowhere"}

    monkeypatch.setattr(expectations, "invariant_queries", one_broken)
    result = suites.run(ledger.tenant_id, run_name="broken-query")

    assert failed(result) == {"trial_balance_zero"}
    assert "nowhere" in outcome(result, "trial_balance_zero")["error"]
