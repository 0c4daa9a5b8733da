"""Closed periods: once a month is closed nothing dated in it is added — not by posting (a clear
409 before any entry is written) and not by raw SQL (the database refuses) — until an admin
reopens it with a reason. Closures are history: never deleted, reopened once. On both engines.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ledger import chart, periods
from ledger.models import ClosedPeriod, Entry, Transfer
from ledger.posting import Leg, TransferSpec, post, post_batch
from quire.audit.models import AuditEntry
from quire.errors import Conflict, Invalid, NotFound
from quire.people.actor import Actor
from tests.ledger.support import K, balances_by_id, count_rows

NOVEMBER = (
    dt.datetime(2026, 10, 31, 23, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 30, 23, tzinfo=dt.UTC),
)
IN_NOVEMBER = dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC)
IN_DECEMBER = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)


def spec(accounts: dict[str, uuid.UUID], key: str, at: dt.datetime) -> TransferSpec:
    return TransferSpec(
        kind="earnings",
        idempotency_key=key,
        legs=[Leg.debit(accounts["receivable"], 500), Leg.credit(accounts["bank"], 500)],
        effective_at=at,
    )


@pytest.fixture
def accounts(database, tenant) -> dict[str, uuid.UUID]:
    with database.session(tenant, write=True) as s:
        return {
            "receivable": chart.account(s, K.CLIENT_RECEIVABLE, "EUR").id,
            "bank": chart.account(s, K.BANK, "EUR").id,
        }


@pytest.fixture
def closed_november(database, tenant, accounts) -> ClosedPeriod:
    with database.session(tenant, write=True) as s:
        post(s, spec(accounts, "before-the-close", IN_NOVEMBER))
        return periods.close(s, None, "2026-11", *NOVEMBER)


def entry_row(tenant: uuid.UUID, transfer_id: uuid.UUID, account: uuid.UUID, amount: int, at):
    return {
        "tenant_id": tenant,
        "transfer_id": transfer_id,
        "account_id": account,
        "currency": "EUR",
        "amount": amount,
        "effective_at": at,
        "created_at": at,
    }


def test_posting_into_a_closed_period_is_a_clear_409_and_writes_nothing(
    database, tenant, accounts, closed_november
):
    before = (count_rows(database, tenant), balances_by_id(database, tenant))
    with database.session(tenant, write=True) as s, pytest.raises(periods.PeriodClosed) as refused:
        post_batch(s, [spec(accounts, "late", IN_NOVEMBER), spec(accounts, "now", IN_DECEMBER)])
    assert refused.value.code == "period_closed"
    assert "2026-11 is closed" in str(refused.value)
    assert isinstance(refused.value, Conflict)
    assert (count_rows(database, tenant), balances_by_id(database, tenant)) == before


def test_a_period_boundary_is_exact_and_later_periods_stay_open(
    database, tenant, accounts, closed_november
):
    starts, ends = NOVEMBER
    with database.session(tenant, write=True) as s:
        post(s, spec(accounts, "at-the-end", ends))  # [starts, ends): the end is December's
        post(s, spec(accounts, "just-before", starts - dt.timedelta(microseconds=1)))
    with database.session(tenant, write=True) as s, pytest.raises(periods.PeriodClosed):
        post(s, spec(accounts, "at-the-start", starts))


def test_a_replay_of_a_transfer_posted_before_the_close_still_answers(
    database, tenant, accounts, closed_november
):
    with database.session(tenant, write=True) as s:
        replayed = post(s, spec(accounts, "before-the-close", IN_NOVEMBER))
    assert replayed.idempotency_key == "before-the-close"


def test_the_database_refuses_raw_entries_dated_in_a_closed_period(
    database, tenant, accounts, closed_november
):
    """Whatever bypasses ledger.posting meets the trigger."""
    transfer_id = uuid.uuid4()
    forged = {
        "id": transfer_id,
        "tenant_id": tenant,
        "kind": "forged",
        "reference": "",
        "idempotency_key": f"forged-{transfer_id}",
        "fingerprint": "0" * 64,
        "effective_at": IN_NOVEMBER,
        "created_at": IN_NOVEMBER,
        "metadata": {},
    }
    entries = [
        entry_row(tenant, transfer_id, accounts["receivable"], 700, IN_NOVEMBER),
        entry_row(tenant, transfer_id, accounts["bank"], -700, IN_NOVEMBER),
    ]
    with database.engine.connect() as c:
        c.execute(insert(Transfer.__table__).values(forged))
        with pytest.raises(IntegrityError, match="closed"):
            c.execute(insert(Entry.__table__), entries)
        c.rollback()
    with database.session(tenant) as s:
        assert s.get(Transfer, transfer_id) is None


def test_another_tenants_close_does_not_touch_this_tenant(
    database, tenant, accounts, closed_november
):
    from tests.ledger.support import new_tenant

    other = new_tenant(database)
    with database.session(other, write=True) as s:
        other_accounts = {
            "receivable": chart.account(s, K.CLIENT_RECEIVABLE, "EUR").id,
            "bank": chart.account(s, K.BANK, "EUR").id,
        }
        post(s, spec(other_accounts, "theirs", IN_NOVEMBER))
        assert periods.closure_of(s, "2026-11") is None


def test_reopening_needs_a_reason_then_posting_works_and_both_are_audited(
    database, tenant, accounts, closed_november
):
    admin = Actor(uuid.uuid4(), tenant, frozenset({"admin"}))
    with database.session(tenant, write=True) as s, pytest.raises(Invalid):
        periods.reopen(s, admin, "2026-11", "  ")
    with database.session(tenant, write=True) as s:
        reopened = periods.reopen(s, None, "2026-11", "a late supplier invoice")
        assert reopened.reopen_reason == "a late supplier invoice"
    with database.session(tenant, write=True) as s:
        post(s, spec(accounts, "after-the-reopen", IN_NOVEMBER))
        again = periods.close(s, None, "2026-11", *NOVEMBER)  # closed again: a new closure
    with database.session(tenant) as s:
        history = periods.closures(s, include_reopened=True)
        assert [c.id for c in history if c.reopened_at is None] == [again.id]
        assert len(history) == 2
        actions = s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.object_type == "ledger_period")
            .order_by(AuditEntry.id)
        ).all()
    assert actions == ["ledger_period.closed", "ledger_period.reopened", "ledger_period.closed"]


def test_closing_twice_or_reopening_an_open_period_is_refused(database, tenant, closed_november):
    with database.session(tenant, write=True) as s, pytest.raises(Conflict) as twice:
        periods.close(s, None, "2026-11", *NOVEMBER)
    assert twice.value.code == "period_closed_already"
    with database.session(tenant, write=True) as s, pytest.raises(NotFound):
        periods.reopen(s, None, "2026-10", "never closed")


@pytest.mark.parametrize("period", ["2026-13", "26-11", "2026-1", "", "2026-11\x00"])
def test_a_malformed_period_is_refused(database, tenant, period):
    with database.session(tenant, write=True) as s, pytest.raises(Invalid):
        periods.close(s, None, period, *NOVEMBER)


@pytest.mark.parametrize(
    "change",
    [
        {"ends_at": dt.datetime(2026, 12, 31, tzinfo=dt.UTC)},
        {"period": "2026-10"},
        {"closed_by": None, "closed_at": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)},
    ],
    ids=["stretch-the-range", "rename", "rewrite-who-closed"],
)
def test_a_closure_cannot_be_edited_or_deleted_by_raw_sql(database, closed_november, change):
    table = ClosedPeriod.__table__
    with pytest.raises(IntegrityError, match="history"), database.engine.begin() as c:
        c.execute(update(table).where(table.c.id == closed_november.id).values(**change))
    with pytest.raises(IntegrityError, match="history"), database.engine.begin() as c:
        c.execute(delete(table).where(table.c.id == closed_november.id))


def test_a_reopen_happens_once(database, tenant, closed_november):
    table = ClosedPeriod.__table__
    with database.session(tenant, write=True) as s:
        periods.reopen(s, None, "2026-11", "first")
    with pytest.raises(IntegrityError, match="history"), database.engine.begin() as c:
        c.execute(
            update(table).where(table.c.id == closed_november.id).values(reopen_reason="second")
        )


@pytest.mark.postgres
def test_postgres_refuses_to_truncate_the_closures(pg_database):
    from sqlalchemy import text

    with pytest.raises(IntegrityError, match="TRUNCATE"), pg_database.engine.begin() as c:
        c.execute(text("TRUNCATE ledger_closed_periods"))
