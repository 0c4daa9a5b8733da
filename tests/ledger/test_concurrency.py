"""Concurrency on PostgreSQL: many writers, each unit of work its own committed transaction, on a
few hot accounts, with payouts racing the no-negative rule.

The promise (ledger/posting.py): accounts are locked in one global order, so concurrent batches
queue instead of deadlocking; balances are maintained under those locks, so no update is lost;
an idempotency key resolves concurrent replays to one transfer. Callers see a transfer posted or
refused for a business reason (InsufficientFunds), never a database error.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, text

from ledger import business, chart, fx
from ledger.models import Account, Transfer
from ledger.posting import InsufficientFunds, Leg, TransferSpec, post_batch
from quire.db import Database, utcnow
from tests.ledger.support import K, audit, new_tenant

pytestmark = pytest.mark.postgres

THREADS = 16
UNITS_PER_THREAD = 16  # each a transaction; about a third are batches of 2-4 transfers
SPECIALISTS = [uuid.UUID(int=n) for n in (1, 2, 3)]
FEE_BPS = 1000

Key = tuple[str, uuid.UUID | None]  # (kind, owner); everything is in USD


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url, pool_size=40, max_overflow=0)
    yield database
    database.dispose()


@dataclass
class Tally:
    """What one writer saw succeed, and every refusal and failure it met."""

    deltas: Counter[Key] = field(default_factory=Counter)
    transfers: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)


def describe(error: Exception) -> str:
    """The error, where the database was when it happened, and the statement (shortened)."""
    lines = str(error).splitlines()
    where = [line.strip() for line in lines if line.startswith(("CONTEXT", "[SQL"))]
    return " | ".join([f"{type(error).__name__}: {lines[0]}", *(w[:120] for w in where)])


def run_writers(writers: int, work: Callable[[int], None]) -> None:
    start = threading.Barrier(writers)

    def go(n: int) -> None:
        start.wait()
        work(n)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer is stuck"


def earnings_legs(specialist: uuid.UUID, gross: int) -> Counter[Key]:
    fee = business.platform_fee(gross, FEE_BPS)
    return Counter(
        {
            (str(K.CLIENT_RECEIVABLE), None): gross,
            (str(K.SPECIALIST_PAYABLE), specialist): -(gross - fee),
            (str(K.PLATFORM_REVENUE), None): -fee,
        }
    )


def payout_legs(specialist: uuid.UUID, amount: int) -> Counter[Key]:
    return Counter(
        {(str(K.SPECIALIST_PAYABLE), specialist): amount, (str(K.PAYOUT_CLEARING), None): -amount}
    )


def writer(db: Database, tenant: uuid.UUID, n: int, tally: Tally) -> None:
    """A mix of earnings, payouts that may overdraw, fines, and batches mixing them all."""
    rng = random.Random(n)
    for unit in range(UNITS_PER_THREAD):
        expected: Counter[Key] = Counter()
        choice = rng.random()
        try:
            with db.session(tenant, write=True) as s:
                if choice < 0.35:
                    specialist, gross = rng.choice(SPECIALISTS), rng.randint(100, 5_000)
                    business.post_earnings(
                        s,
                        order_id=uuid.uuid4(),
                        specialist_id=specialist,
                        gross_minor=gross,
                        currency="USD",
                        fee_bps=FEE_BPS,
                    )
                    expected, posted = earnings_legs(specialist, gross), 1
                elif choice < 0.6:
                    specialist, amount = rng.choice(SPECIALISTS), rng.randint(100, 6_000)
                    business.initiate_payout(
                        s,
                        payout_id=f"{n}-{unit}",
                        specialist_id=specialist,
                        amount_minor=amount,
                        currency="USD",
                    )
                    expected, posted = payout_legs(specialist, amount), 1
                elif choice < 0.67:
                    specialist, amount = rng.choice(SPECIALISTS), rng.randint(1, 500)
                    business.post_late_fine(
                        s,
                        order_id=uuid.uuid4(),
                        specialist_id=specialist,
                        amount_minor=amount,
                        currency="USD",
                    )
                    expected = Counter(
                        {
                            (str(K.SPECIALIST_PAYABLE), specialist): amount,
                            (str(K.FINES_INCOME), None): -amount,
                        }
                    )
                    posted = 1
                else:
                    expected, posted = post_mixed_batch(s, rng, f"{n}-{unit}")
        except InsufficientFunds:
            tally.refused += 1
            continue
        except Exception as error:  # anything else reaching a caller is a failure of the ledger
            tally.failures.append(describe(error))
            return  # a broken writer stops: a deadlock costs a second each
        tally.deltas.update(expected)
        tally.transfers += posted


def post_mixed_batch(s, rng: random.Random, prefix: str) -> tuple[Counter[Key], int]:
    accounts = {
        (str(K.SPECIALIST_PAYABLE), who): chart.account(s, K.SPECIALIST_PAYABLE, "USD", who)
        for who in SPECIALISTS
    }
    for kind in (K.CLIENT_RECEIVABLE, K.PLATFORM_REVENUE, K.PAYOUT_CLEARING):
        accounts[(str(kind), None)] = chart.account(s, kind, "USD")
    specs, expected = [], Counter()
    for i in range(rng.randint(2, 4)):
        who = rng.choice(SPECIALISTS)
        legs = (
            earnings_legs(who, rng.randint(100, 3_000))
            if rng.random() < 0.6
            else payout_legs(who, rng.randint(100, 3_000))
        )
        specs.append(
            TransferSpec(
                kind="batch",
                idempotency_key=f"batch:{prefix}:{i}",
                legs=[Leg(accounts[k].id, amount) for k, amount in legs.items() if amount],
            )
        )
        expected.update(legs)
    rng.shuffle(specs)
    post_batch(s, specs)
    return expected, len(specs)


def stored_balances(db: Database, tenant: uuid.UUID) -> dict[Key, int]:
    with db.session(tenant) as s:
        rows = s.execute(select(Account.kind, Account.owner_id, Account.balance))
        return {(kind, owner): balance for kind, owner, balance in rows}


def test_concurrent_writers_lose_no_update_meet_no_deadlock_and_keep_the_invariants(db):
    """16 writers x 16 transactions on 7 hot accounts: 3 payables, the receivable, revenue,
    clearing and fines income. (Their concurrent creation is the next test's subject.)"""
    tenant = new_tenant(db)
    with db.session(tenant, write=True) as s:
        for who in SPECIALISTS:
            chart.account(s, K.SPECIALIST_PAYABLE, "USD", who)
        for kind in (K.CLIENT_RECEIVABLE, K.PLATFORM_REVENUE, K.PAYOUT_CLEARING, K.FINES_INCOME):
            chart.account(s, kind, "USD")
    tallies = [Tally() for _ in range(THREADS)]
    run_writers(THREADS, lambda n: writer(db, tenant, n, tallies[n]))

    failures = [failure for tally in tallies for failure in tally.failures]
    assert failures == [], f"{len(failures)} writers failed, first: {failures[0]}"
    expected: Counter[Key] = Counter()
    for tally in tallies:
        expected.update(tally.deltas)
    stored = stored_balances(db, tenant)
    assert {k: v for k, v in stored.items() if v} == {k: v for k, v in expected.items() if v}
    with db.session(tenant) as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == sum(
            t.transfers for t in tallies
        )
    assert sum(t.refused for t in tallies) > 0, "no payout ever raced the no-negative rule"
    audit(db, tenant)


def test_accounts_created_on_first_use_by_concurrent_writers_never_deadlock(db, monkeypatch):
    """`chart.account` is get-or-create and race-safe: two conversions in opposite directions
    (USD->JPY and JPY->USD) that each create both FX liquidity accounts on first use, in opposite
    orders, must both succeed. The interleaving is forced: each worker pauses after its first
    liquidity account until the other has created its own."""
    tenant = new_tenant(db)
    funded = {SPECIALISTS[0]: "USD", SPECIALISTS[1]: "JPY"}
    for who, currency in funded.items():
        with db.session(tenant, write=True) as s:
            business.post_earnings(
                s, order_id=uuid.uuid4(), specialist_id=who, gross_minor=10_000, currency=currency
            )
            chart.account(s, K.SPECIALIST_PAYABLE, "JPY" if currency == "USD" else "USD", who)

    create = chart.account
    both_created_one = threading.Barrier(2)
    paused = threading.local()

    def account_then_pause(session, kind, currency, owner_id=None):
        found = create(session, kind, currency, owner_id)
        if kind == K.FX_LIQUIDITY and not getattr(paused, "done", False):
            paused.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                both_created_one.wait(timeout=10)
        return found

    monkeypatch.setattr(chart, "account", account_then_pause)
    failures: list[str] = []

    def convert(n: int) -> None:
        who = SPECIALISTS[n]
        source = funded[who]
        target = "JPY" if source == "USD" else "USD"
        try:
            with db.session(tenant, write=True) as s:
                fx.convert(
                    s,
                    key=f"fx:{n}",
                    source_account=create(s, K.SPECIALIST_PAYABLE, source, who),
                    target_account=create(s, K.SPECIALIST_PAYABLE, target, who),
                    amounts=[5_000],
                    rate=Decimal("150") if source == "USD" else Decimal("0.0067"),
                    rate_source="test",
                )
        except Exception as error:
            failures.append(describe(error))

    run_writers(2, convert)
    assert failures == [], failures[0]
    with db.session(tenant) as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 2 + 4
    audit(db, tenant)


def test_concurrent_replays_of_one_key_post_exactly_one_transfer(db):
    tenant = new_tenant(db)
    order = uuid.uuid4()
    seen: list[uuid.UUID] = []
    failures: list[str] = []

    def replay(n: int) -> None:
        try:
            with db.session(tenant, write=True) as s:
                transfer = business.post_earnings(
                    s,
                    order_id=order,
                    specialist_id=SPECIALISTS[0],
                    gross_minor=10_000,
                    currency="USD",
                    fee_bps=FEE_BPS,
                )
                seen.append(transfer.id)
        except Exception as error:
            failures.append(describe(error))

    run_writers(THREADS, replay)
    assert failures == []
    assert len(seen) == THREADS
    assert len(set(seen)) == 1
    with db.session(tenant, write=True) as s:
        payable = chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALISTS[0])
        assert payable.balance == -9_000
    audit(db, tenant)


def waiting_on_locks(db: Database) -> int:
    with db.engine.connect() as c:
        return c.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def test_batches_replaying_the_same_keys_in_opposite_orders_do_not_deadlock(db):
    """Two workers replay the same three events in opposite orders (a retried job). Made
    deterministic: a third transaction holds the middle key until both workers are queued behind
    it, so each has already inserted its first key when it lets go. Both must end with the same
    three transfers, each posted once."""
    tenant = new_tenant(db)
    with db.session(tenant, write=True) as s:
        receivable = chart.account(s, K.CLIENT_RECEIVABLE, "USD").id
        revenue = chart.account(s, K.PLATFORM_REVENUE, "USD").id
    specs = [
        TransferSpec(
            kind="event",
            idempotency_key=f"event:{i}",
            legs=[Leg.debit(receivable, 10 + i), Leg.credit(revenue, 10 + i)],
        )
        for i in (1, 2, 3)
    ]
    blocker = db.engine.connect()
    holding = blocker.begin()
    now = utcnow()
    blocker.execute(
        insert(Transfer.__table__).values(
            id=uuid.uuid4(),
            tenant_id=tenant,
            kind="event",
            reference="",
            idempotency_key="event:2",
            fingerprint="0" * 64,
            effective_at=now,
            created_at=now,
            metadata={},
        )
    )
    results: dict[int, list[uuid.UUID]] = {}
    failures: list[str] = []

    def replay(n: int) -> None:
        try:
            with db.session(tenant, write=True) as s:
                batch = specs if n == 0 else specs[::-1]
                posted = {t.idempotency_key: t.id for t in post_batch(s, batch)}
                results[n] = [posted[spec.idempotency_key] for spec in specs]
        except Exception as error:
            failures.append(describe(error))

    workers = [threading.Thread(target=replay, args=(n,)) for n in (0, 1)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 20
    while waiting_on_locks(db) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    holding.rollback()
    blocker.close()
    for worker in workers:
        worker.join(timeout=60)

    assert failures == []
    assert results[0] == results[1]
    with db.session(tenant) as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 3
    audit(db, tenant)
