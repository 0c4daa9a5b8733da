"""Marketplace rules in the domain layer, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select, update

from quire.db import Database, utcnow
from quire.errors import Conflict, Forbidden, NotFound
from quire.events.models import Event
from quire.orders import claims
from quire.orders import service as orders
from quire.orders.models import Order
from quire.orders.schemas import BidDraft, OrderDraft, SubmissionDraft
from quire.orders.state import IllegalTransition, OrderStatus
from quire.tenancy import ALL_TENANTS, TenantScopeMissing
from tests.support.world import World, build_world


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, "acme", specialists=3)


def draft(**overrides) -> OrderDraft:
    values = {
        "title": "Whitepaper edit",
        "brief": "Tighten the prose.",
        "fee_minor": 12_000,
        "currency": "EUR",
        "deadline": utcnow() + dt.timedelta(days=2),
        "publish": True,
    }
    values.update(overrides)
    return OrderDraft(**values)


def new_order(database: Database, world: World, **overrides) -> uuid.UUID:
    with database.session(world.tenant_id, write=True) as s:
        return orders.create_order(s, world.manager.actor, draft(**overrides)).id


def events_of(database: Database, world: World, order_id: uuid.UUID) -> list[str]:
    with database.session(world.tenant_id) as s:
        return list(
            s.scalars(select(Event.type).where(Event.aggregate_id == order_id).order_by(Event.id))
        )


def load(database: Database, world: World, order_id: uuid.UUID) -> Order:
    with database.session(world.tenant_id) as s:
        return s.get_one(Order, order_id)


def test_each_change_writes_its_event_in_the_same_transaction(database, acme):
    order_id = new_order(database, acme)
    with database.session(acme.tenant_id, write=True) as s:
        claims.claim(s.connection(), acme.specialist.actor, order_id)
        orders.submit(s, acme.specialist.actor, order_id, SubmissionDraft(content="done"))
    assert events_of(database, acme, order_id) == [
        "order.created",
        "order.published",
        "order.claimed",
        "order.submitted",
    ]


def test_a_failed_unit_of_work_leaves_neither_change_nor_event(database, acme):
    order_id = new_order(database, acme)

    def claim_then_crash() -> None:
        with database.session(acme.tenant_id, write=True) as s:
            claims.claim(s.connection(), acme.specialist.actor, order_id)
            raise RuntimeError("crash after the claim, before commit")

    with pytest.raises(RuntimeError):
        claim_then_crash()
    assert load(database, acme, order_id).status == OrderStatus.OPEN
    assert "order.claimed" not in events_of(database, acme, order_id)


def test_an_illegal_transition_changes_nothing(database, acme):
    order_id = new_order(database, acme, publish=False)
    before = load(database, acme, order_id)
    with pytest.raises(IllegalTransition), database.session(acme.tenant_id, write=True) as s:
        orders.release(s, acme.manager.actor, order_id)
    with pytest.raises(NotFound), database.session(acme.tenant_id, write=True) as s:
        # a draft is invisible to specialists, so they cannot learn it exists
        claims.claim(s.connection(), acme.specialist.actor, order_id)
    after = load(database, acme, order_id)
    assert (after.status, after.version) == (before.status, before.version)
    assert events_of(database, acme, order_id) == ["order.created"]


def test_the_loser_of_a_claim_learns_it_was_taken(database, acme):
    order_id = new_order(database, acme)
    with database.session(acme.tenant_id, write=True) as s:
        claims.claim(s.connection(), acme.specialist.actor, order_id)
    with (
        pytest.raises(IllegalTransition) as lost,
        database.session(acme.tenant_id, write=True) as s,
    ):
        claims.claim(s.connection(), acme.specialist1.actor, order_id)
    assert lost.value.status == OrderStatus.CLAIMED


def test_only_the_holder_submits_and_submissions_are_numbered(database, acme):
    order_id = new_order(database, acme, qa={"review_stages": 1})
    with database.session(acme.tenant_id, write=True) as s:
        claims.claim(s.connection(), acme.specialist.actor, order_id)
    with pytest.raises(Forbidden), database.session(acme.tenant_id, write=True) as s:
        orders.submit(s, acme.specialist1.actor, order_id, SubmissionDraft(content="mine?"))
    with database.session(acme.tenant_id, write=True) as s:
        first = orders.submit(s, acme.specialist.actor, order_id, SubmissionDraft(content="v1"))
        s.execute(update(Order).where(Order.id == order_id).values(status=OrderStatus.REWORK))
        second = orders.submit(s, acme.specialist.actor, order_id, SubmissionDraft(content="v2"))
    assert (first.number, second.number) == (1, 2)
    assert first.content_hash != second.content_hash


def test_claiming_after_the_deadline_is_refused(database, acme):
    order_id = new_order(database, acme)
    with database.session(acme.tenant_id, write=True) as s:
        s.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(deadline=utcnow() - dt.timedelta(minutes=1))
        )
    with pytest.raises(Conflict) as refused, database.session(acme.tenant_id, write=True) as s:
        claims.claim(s.connection(), acme.specialist.actor, order_id)
    assert refused.value.code == "deadline_passed"


def test_release_reopens_the_order_for_everyone(database, acme):
    order_id = new_order(database, acme)
    with database.session(acme.tenant_id, write=True) as s:
        claims.claim(s.connection(), acme.specialist.actor, order_id)
    with pytest.raises(Forbidden), database.session(acme.tenant_id, write=True) as s:
        orders.release(s, acme.specialist1.actor, order_id)
    with database.session(acme.tenant_id, write=True) as s:
        released = orders.release(s, acme.specialist.actor, order_id)
        assert (released.status, released.specialist_id) == (OrderStatus.OPEN, None)
        claims.claim(s.connection(), acme.specialist1.actor, order_id)


def test_bidding_awards_one_bid_at_its_price_and_the_rest_lose(database, acme):
    order_id = new_order(database, acme, mode="bidding")
    with database.session(acme.tenant_id, write=True) as s, pytest.raises(Conflict):
        claims.claim(s.connection(), acme.specialist.actor, order_id)
    with database.session(acme.tenant_id, write=True) as s:
        low = orders.place_bid(s, acme.specialist.actor, order_id, BidDraft(amount_minor=9_000))
        high = orders.place_bid(s, acme.specialist1.actor, order_id, BidDraft(amount_minor=11_000))
        with pytest.raises(Conflict):
            orders.place_bid(s, acme.specialist.actor, order_id, BidDraft(amount_minor=8_000))
    with database.session(acme.tenant_id, write=True) as s:
        order = orders.award_bid(s, acme.manager.actor, order_id, low.id)
    assert (order.status, order.specialist_id, order.fee_minor) == (
        OrderStatus.AWARDED,
        acme.specialist.id,
        9_000,
    )
    with database.session(acme.tenant_id) as s:
        statuses = {b.id: b.status for b in orders.list_bids(s, acme.manager.actor, order_id)}
    assert statuses == {low.id: "awarded", high.id: "lost"}


def test_a_withdrawn_bid_cannot_be_awarded(database, acme):
    order_id = new_order(database, acme, mode="bidding")
    with database.session(acme.tenant_id, write=True) as s:
        bid = orders.place_bid(s, acme.specialist.actor, order_id, BidDraft(amount_minor=5_000))
        orders.withdraw_bid(s, acme.specialist.actor, order_id, bid.id)
    with pytest.raises(Conflict), database.session(acme.tenant_id, write=True) as s:
        orders.award_bid(s, acme.manager.actor, order_id, bid.id)
    assert load(database, acme, order_id).status == OrderStatus.OPEN


def test_tenant_scope_is_applied_to_every_query(database, acme):
    other = build_world(database, "globex")
    order_id = new_order(database, acme)
    with database.session(other.tenant_id) as s:
        assert s.get(Order, order_id) is None
        assert s.scalar(select(func.count()).select_from(Order)) == 0
        touched = s.execute(update(Order).where(Order.id == order_id).values(title="hijacked"))
        assert touched.rowcount == 0
    with database.session(None) as s:
        with pytest.raises(TenantScopeMissing):
            s.scalar(select(Order))
        assert (
            s.scalar(select(func.count()).select_from(Order).execution_options(**ALL_TENANTS)) == 1
        )


@pytest.mark.postgres
def test_exactly_one_of_32_concurrent_claimants_wins(pg_url):
    """32 specialists on 32 separate, committed connections race for each of 20 orders."""
    database = Database(pg_url, pool_size=40, max_overflow=0)
    world = build_world(database, "race", specialists=32)
    specialists = [p for name, p in world.people.items() if name.startswith("specialist")]
    order_ids = [new_order(database, world) for _ in range(20)]
    barrier = threading.Barrier(len(specialists))
    wins: Counter[uuid.UUID] = Counter()
    losses: Counter[str] = Counter()
    lock = threading.Lock()

    def race(person) -> None:
        for order_id in order_ids:
            barrier.wait()
            try:
                with database.session(world.tenant_id, write=True) as s:
                    claims.claim(s.connection(), person.actor, order_id)
                with lock:
                    wins[order_id] += 1
            except Conflict as lost:
                with lock:
                    losses[lost.code] += 1

    threads = [threading.Thread(target=race, args=(p,)) for p in specialists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(not t.is_alive() for t in threads)
    assert wins == dict.fromkeys(order_ids, 1)
    assert losses == {"illegal_transition": 31 * len(order_ids)}
    with database.session(world.tenant_id) as s:
        claimed = list(s.scalars(select(Order).where(Order.id.in_(order_ids))))
        claim_events = Counter(
            s.scalars(select(Event.aggregate_id).where(Event.type == "order.claimed"))
        )
    assert {o.status for o in claimed} == {OrderStatus.CLAIMED}
    assert all(o.specialist_id is not None and o.version == 3 for o in claimed)
    assert claim_events == dict.fromkeys(order_ids, 1)
    database.dispose()
