"""Marketplace maintenance: what the hourly flow does to orders, across every tenant, on SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from quire.db import Database, utcnow
from quire.events.models import Event
from quire.orders import claims, maintenance
from quire.orders import service as orders
from quire.orders.models import Bid, Order
from quire.orders.schemas import BidDraft, OrderDraft, SubmissionDraft
from quire.orders.state import IllegalTransition, OrderStatus
from tests.support.world import World, build_world

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, "acme")


@pytest.fixture
def globex(database: Database) -> World:
    return build_world(database, "globex")


def new_order(database: Database, world: World, **overrides: Any) -> uuid.UUID:
    values: dict[str, Any] = {
        "title": "Case study",
        "brief": "Two pages on a migration.",
        "fee_minor": 30_000,
        "currency": "EUR",
        "deadline": utcnow() + dt.timedelta(days=2),
        "publish": True,
    }
    values.update(overrides)
    with database.session(world.tenant_id, write=True) as s:
        return orders.create_order(s, world.manager.actor, OrderDraft(**values)).id


def claimed_order(database: Database, world: World, **overrides: Any) -> uuid.UUID:
    order_id = new_order(database, world, **overrides)
    with database.session(world.tenant_id, write=True) as s:
        claims.claim(s.connection(), world.specialist.actor, order_id)
    return order_id


def awarded_order(database: Database, world: World) -> uuid.UUID:
    order_id = new_order(database, world, mode="bidding")
    with database.session(world.tenant_id, write=True) as s:
        bid = orders.place_bid(s, world.specialist.actor, order_id, BidDraft(amount_minor=20_000))
        orders.award_bid(s, world.manager.actor, order_id, bid.id)
    return order_id


def submit(database: Database, world: World, order_id: uuid.UUID) -> None:
    with database.session(world.tenant_id, write=True) as s:
        orders.submit(s, world.specialist.actor, order_id, SubmissionDraft(content="the work"))


def make_overdue(database: Database, *order_ids: uuid.UUID, by: dt.timedelta = HOUR) -> None:
    """OrderDraft refuses past deadlines, so tests move the deadline back directly."""
    with database.session(None, write=True) as s:
        s.execute(
            update(Order)
            .where(Order.id.in_(order_ids))
            .values(deadline=utcnow() - by)
            .execution_options(all_tenants=True)
        )


def release(database: Database, **kwargs: Any) -> list[uuid.UUID]:
    """As the maintenance flow runs it: a write session that names no tenant."""
    with database.session(None, write=True) as s:
        return maintenance.release_overdue_claims(s, utcnow(), **kwargs)


def expire(database: Database, **kwargs: Any) -> list[uuid.UUID]:
    with database.session(None, write=True) as s:
        return maintenance.expire_stale_orders(s, utcnow(), **kwargs)


def load(database: Database, order_id: uuid.UUID) -> Order:
    with database.session(None) as s:
        return s.execute(
            select(Order).where(Order.id == order_id).execution_options(all_tenants=True)
        ).scalar_one()


def events(database: Database, order_id: uuid.UUID) -> list[Event]:
    with database.session(None) as s:
        return list(
            s.scalars(
                select(Event)
                .where(Event.aggregate_id == order_id)
                .order_by(Event.id)
                .execution_options(all_tenants=True)
            )
        )


def event_types(database: Database, order_id: uuid.UUID) -> list[str]:
    return [e.type for e in events(database, order_id)]


# --- releasing overdue claims --------------------------------------------------------------


def test_an_overdue_claim_without_a_submission_goes_back_to_the_marketplace(database, acme):
    order_id = claimed_order(database, acme)
    before = load(database, order_id)
    make_overdue(database, order_id)

    assert release(database) == [order_id]

    order = load(database, order_id)
    assert (order.status, order.specialist_id, order.claimed_at) == (OrderStatus.OPEN, None, None)
    assert order.version == before.version + 1
    released = events(database, order_id)[-1]
    assert released.type == "order.released"
    assert released.tenant_id == acme.tenant_id
    assert released.payload["reason"] == "deadline_passed"
    assert released.payload["actor_id"] is None
    assert released.payload["actor"] == "system"
    assert released.payload["released_specialist_id"] == str(acme.specialist.id)
    assert released.payload["order"]["status"] == "open"
    assert released.payload["order"]["specialist_id"] is None
    assert released.payload["order"]["version"] == order.version


def test_an_overdue_awarded_order_is_released_too(database, acme):
    order_id = awarded_order(database, acme)
    make_overdue(database, order_id)

    assert release(database) == [order_id]
    assert load(database, order_id).status == OrderStatus.OPEN
    assert event_types(database, order_id)[-1] == "order.released"


def test_submitted_work_is_never_released(database, acme):
    order_id = claimed_order(database, acme)
    submit(database, acme, order_id)
    make_overdue(database, order_id)

    assert release(database) == []
    assert load(database, order_id).status == OrderStatus.SUBMITTED
    assert event_types(database, order_id)[-1] == "order.submitted"


def test_an_order_with_a_submission_is_left_alone_even_if_its_status_says_claimed(database, acme):
    """The NOT EXISTS guard holds on its own, whatever the status column says."""
    order_id = claimed_order(database, acme)
    submit(database, acme, order_id)
    make_overdue(database, order_id)
    with database.session(acme.tenant_id, write=True) as s:
        s.execute(update(Order).where(Order.id == order_id).values(status=OrderStatus.CLAIMED))

    assert release(database) == []
    assert load(database, order_id).specialist_id == acme.specialist.id


def test_a_claim_whose_deadline_has_not_passed_is_left_alone(database, acme):
    order_id = claimed_order(database, acme)

    assert release(database) == []
    assert load(database, order_id).status == OrderStatus.CLAIMED
    assert "order.released" not in event_types(database, order_id)


def test_orders_that_are_not_held_are_not_released(database, acme):
    draft = new_order(database, acme, publish=False)
    open_ = new_order(database, acme)
    make_overdue(database, draft, open_)

    assert release(database) == []
    assert load(database, draft).status == OrderStatus.DRAFT
    assert load(database, open_).status == OrderStatus.OPEN


def test_every_tenant_is_swept_and_each_event_names_its_own_tenant(database, acme, globex):
    ours = claimed_order(database, acme)
    theirs = claimed_order(database, globex)
    make_overdue(database, ours, theirs)

    assert sorted(release(database)) == sorted([ours, theirs])
    assert events(database, ours)[-1].tenant_id == acme.tenant_id
    assert events(database, theirs)[-1].tenant_id == globex.tenant_id
    # and each tenant sees its own release through the ordinary, tenant-scoped session
    with database.session(globex.tenant_id) as s:
        seen = s.scalars(select(Event.aggregate_id).where(Event.type == "order.released"))
        assert list(seen) == [theirs]


def test_a_batch_is_bounded_and_the_most_overdue_go_first(database, acme):
    first, second, third = (claimed_order(database, acme) for _ in range(3))
    make_overdue(database, first, by=3 * HOUR)
    make_overdue(database, second, by=2 * HOUR)
    make_overdue(database, third, by=HOUR)

    assert set(release(database, limit=2)) == {first, second}
    assert release(database, limit=2) == [third]
    assert release(database, limit=2) == []


def test_running_again_changes_nothing_and_emits_nothing(database, acme):
    order_id = claimed_order(database, acme)
    make_overdue(database, order_id)
    assert release(database) == [order_id]
    count = len(events(database, order_id))

    assert release(database) == []
    assert len(events(database, order_id)) == count


def test_the_specialist_who_submits_after_the_release_loses_cleanly(database, acme):
    order_id = claimed_order(database, acme)
    make_overdue(database, order_id)
    release(database)

    with pytest.raises(IllegalTransition) as lost:
        submit(database, acme, order_id)
    assert lost.value.status == OrderStatus.OPEN


# --- expiring stale orders -----------------------------------------------------------------


def test_an_open_order_past_its_deadline_expires(database, acme):
    stale = new_order(database, acme)
    fresh = new_order(database, acme)
    make_overdue(database, stale)

    assert expire(database) == [stale]

    assert load(database, stale).status == OrderStatus.EXPIRED
    assert load(database, fresh).status == OrderStatus.OPEN
    expired = events(database, stale)[-1]
    assert (expired.type, expired.tenant_id) == ("order.expired", acme.tenant_id)
    assert expired.payload["actor_id"] is None
    assert expired.payload["reason"] == "deadline_passed"
    assert expired.payload["order"]["status"] == "expired"


def test_only_open_orders_expire(database, acme):
    draft = new_order(database, acme, publish=False)
    held = claimed_order(database, acme)
    make_overdue(database, draft, held)

    assert expire(database) == []
    assert load(database, draft).status == OrderStatus.DRAFT
    assert load(database, held).status == OrderStatus.CLAIMED


def test_release_then_expire_closes_an_abandoned_claim_in_one_run(database, acme, globex):
    """The maintenance flow's order: a released order is open and overdue, so it expires."""
    abandoned = claimed_order(database, acme)
    unclaimed = new_order(database, globex)
    delivered = claimed_order(database, acme)
    submit(database, acme, delivered)
    make_overdue(database, abandoned, unclaimed, delivered)

    assert release(database) == [abandoned]
    assert sorted(expire(database)) == sorted([abandoned, unclaimed])

    assert load(database, abandoned).status == OrderStatus.EXPIRED
    assert load(database, unclaimed).status == OrderStatus.EXPIRED
    assert load(database, delivered).status == OrderStatus.SUBMITTED
    assert event_types(database, abandoned)[-2:] == ["order.released", "order.expired"]
    assert events(database, unclaimed)[-1].tenant_id == globex.tenant_id


def test_active_bids_on_an_expired_order_lose(database, acme):
    order_id = new_order(database, acme, mode="bidding")
    with database.session(acme.tenant_id, write=True) as s:
        orders.place_bid(s, acme.specialist.actor, order_id, BidDraft(amount_minor=9_000))
        withdrawn = orders.place_bid(
            s, acme.specialist1.actor, order_id, BidDraft(amount_minor=8_000)
        )
        orders.withdraw_bid(s, acme.specialist1.actor, order_id, withdrawn.id)
    make_overdue(database, order_id)

    assert expire(database) == [order_id]

    with database.session(acme.tenant_id) as s:
        statuses = sorted(s.scalars(select(Bid.status).where(Bid.order_id == order_id)))
    assert statuses == ["lost", "withdrawn"]


def test_a_limit_below_one_is_refused(database):
    with pytest.raises(ValueError, match="limit"):
        release(database, limit=0)


# --- races (PostgreSQL: real row locks between real connections) ----------------------------


@pytest.mark.postgres
def test_a_submission_in_flight_is_skipped_not_waited_for_and_then_wins(pg_url):
    database = Database(pg_url)
    world = build_world(database, "inflight")
    order_id = claimed_order(database, world)
    make_overdue(database, order_id)
    try:
        with database.session(world.tenant_id, write=True) as specialist:
            orders.submit(
                specialist, world.specialist.actor, order_id, SubmissionDraft(content="just now")
            )
            # The submit's UPDATE holds the row: maintenance skips it instead of blocking.
            assert release(database) == []
        assert release(database) == []
        assert load(database, order_id).status == OrderStatus.SUBMITTED
        assert "order.released" not in event_types(database, order_id)
    finally:
        database.dispose()


@pytest.mark.postgres
def test_a_submission_racing_a_release_in_flight_waits_and_loses_cleanly(pg_url):
    database = Database(pg_url)
    world = build_world(database, "racing")
    order_id = claimed_order(database, world)
    make_overdue(database, order_id)
    outcome: list[BaseException | None] = []
    started = threading.Event()

    def specialist_submits() -> None:
        started.set()
        try:
            submit(database, world, order_id)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    try:
        with database.session(None, write=True) as s:
            assert maintenance.release_overdue_claims(s, utcnow()) == [order_id]
            thread = threading.Thread(target=specialist_submits)
            thread.start()
            started.wait(5)
            thread.join(0.5)  # the submit is now blocked on our row lock
            assert thread.is_alive()
        thread.join(30)
        assert len(outcome) == 1
        assert isinstance(outcome[0], IllegalTransition)
        assert load(database, order_id).status == OrderStatus.OPEN
        assert "order.submitted" not in event_types(database, order_id)
    finally:
        database.dispose()
