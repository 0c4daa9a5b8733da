"""What `post_batch` hands back, and batches that mix new keys with replays. Every test runs on
SQLite and PostgreSQL.

New transfers are returned as built from the values inserted (not read back): these tests hold
them to exactly what a read of the stored rows gives, column by column."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import inspect, select

from ledger import chart
from ledger.models import Transfer
from ledger.posting import Leg, TransferSpec, post, post_batch
from quire.errors import Invalid
from tests.ledger.support import K, audit, balances_by_id, count_rows

COLUMNS = [attribute.key for attribute in inspect(Transfer).column_attrs]


def spec(key: str, *legs: Leg, **fields: Any) -> TransferSpec:
    return TransferSpec(kind="adjustment", idempotency_key=key, legs=list(legs), **fields)


@pytest.fixture
def accounts(database, tenant) -> dict[str, uuid.UUID]:
    with database.session(tenant, write=True) as s:
        return {
            "bank": chart.account(s, K.BANK, "USD").id,
            "revenue": chart.account(s, K.PLATFORM_REVENUE, "USD").id,
        }


def columns(transfer: Transfer) -> dict[str, Any]:
    return {name: getattr(transfer, name) for name in COLUMNS}


def stored(database, tenant) -> dict[uuid.UUID, dict[str, Any]]:
    with database.session(tenant) as s:
        return {t.id: columns(t) for t in s.scalars(select(Transfer))}


def test_new_transfers_are_returned_exactly_as_stored(database, tenant, accounts):
    tokyo = dt.timezone(dt.timedelta(hours=9))
    specs = [
        spec(
            "tokyo",
            Leg.debit(accounts["bank"], 10),
            Leg.credit(accounts["revenue"], 10),
            reference="given in Tokyo time",
            effective_at=dt.datetime(2026, 3, 1, 9, 30, tzinfo=tokyo),
            metadata={"tags": ("a", "b"), "nested": {"z": 1, "a": [1.5, None]}, "n": 7},
        ),
        spec("now", Leg.debit(accounts["bank"], 3), Leg.credit(accounts["revenue"], 3)),
    ]
    with database.session(tenant, write=True) as s:
        returned = post_batch(s, specs)
    rows = stored(database, tenant)
    assert [columns(t) for t in returned] == [rows[t.id] for t in returned]
    tokyo_transfer = returned[0]
    assert tokyo_transfer.effective_at == dt.datetime(2026, 3, 1, 0, 30, tzinfo=dt.UTC)
    assert tokyo_transfer.effective_at.utcoffset() == dt.timedelta(0)
    assert tokyo_transfer.meta == {"tags": ["a", "b"], "nested": {"z": 1, "a": [1.5, None]}, "n": 7}
    assert returned[1].effective_at == returned[1].created_at
    assert len({t.txid for t in returned}) == 1  # one transaction (None on SQLite)


def test_the_caller_keeps_its_metadata_and_the_transfer_its_own(database, tenant, accounts):
    metadata = {"note": "before"}
    with database.session(tenant, write=True) as s:
        transfer = post(
            s,
            spec(
                "m",
                Leg.debit(accounts["bank"], 1),
                Leg.credit(accounts["revenue"], 1),
                metadata=metadata,
            ),
        )
    metadata["note"] = "after"
    assert transfer.meta == {"note": "before"}


def test_a_batch_mixing_replays_and_new_keys_posts_only_the_new_ones(database, tenant, accounts):
    def transfer(key: str, amount: int) -> TransferSpec:
        bank, revenue = accounts["bank"], accounts["revenue"]
        return spec(key, Leg.debit(bank, amount), Leg.credit(revenue, amount))

    old = [transfer(f"old-{i}", 100 + i) for i in range(3)]
    new = [transfer(f"new-{i}", 10 + i) for i in range(2)]
    with database.session(tenant, write=True) as s:
        first = post_batch(s, old)
    with database.session(tenant, write=True) as s:
        again = post_batch(s, [old[1], new[0], old[0], new[1], new[0]])
    assert [again[0].id, again[2].id] == [first[1].id, first[0].id]
    assert again[1].id == again[4].id
    assert len({t.id for t in again}) == 4
    rows = stored(database, tenant)
    assert [columns(t) for t in again] == [rows[t.id] for t in again]
    assert count_rows(database, tenant) == (5, 10)
    assert balances_by_id(database, tenant)[accounts["bank"]] == 100 + 101 + 102 + 10 + 11
    audit(database, tenant)


def test_a_replay_of_a_whole_batch_writes_nothing_and_returns_the_originals(
    database, tenant, accounts
):
    specs = [
        spec(f"k-{i}", Leg.debit(accounts["bank"], i + 1), Leg.credit(accounts["revenue"], i + 1))
        for i in range(30)
    ]
    with database.session(tenant, write=True) as s:
        first = post_batch(s, specs)
    before = (count_rows(database, tenant), balances_by_id(database, tenant))
    with database.session(tenant, write=True) as s:
        again = post_batch(s, specs[::-1])
    assert [t.id for t in again] == [t.id for t in first[::-1]]
    assert (count_rows(database, tenant), balances_by_id(database, tenant)) == before


def test_a_naive_effective_time_is_refused(database, tenant, accounts):
    """A time without a timezone is ambiguous: refused, not guessed."""
    naive = dt.datetime(2026, 1, 1, 12, 0)
    with pytest.raises(Invalid) as refused, database.session(tenant, write=True) as s:
        post(
            s,
            spec(
                "naive",
                Leg.debit(accounts["bank"], 1),
                Leg.credit(accounts["revenue"], 1),
                effective_at=naive,
            ),
        )
    assert refused.value.code == "invalid_effective_at"
    assert count_rows(database, tenant) == (0, 0)
