"""The Core claim path (what the API runs): same rules and same events as every other change."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from quire.db import Database
from quire.events.models import Event
from quire.events.outbox import _jsonable
from quire.orders import claims
from quire.orders.events import snapshot
from quire.orders.models import Order
from quire.orders.state import IllegalTransition, OrderStatus
from tests.quire.orders.test_service import new_order
from tests.support.world import World, build_world


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, "acme", specialists=2)


def test_the_claimed_event_reads_exactly_as_python_would_have_written_it(database, acme):
    """On PostgreSQL the event is built in SQL; its payload must not differ by a character."""
    order_id = new_order(database, acme)
    specialist = acme.specialist.actor
    with database.engine.begin() as conn:
        claims.claim(conn, specialist, order_id)
    with database.session(acme.tenant_id) as s:
        order = s.get_one(Order, order_id)
        event = s.scalars(select(Event).where(Event.type == "order.claimed")).one()
    assert event.aggregate_id == order_id
    assert event.payload == _jsonable({"order": snapshot(order), "actor_id": specialist.user_id})
    assert event.payload["order"]["status"] == OrderStatus.CLAIMED


@pytest.mark.postgres
def test_a_single_statement_claim_is_atomic_without_a_transaction(pg_url):
    """The API runs PostgreSQL claims in autocommit: claim and event still land together."""
    database = Database(pg_url)
    acme = build_world(database, "acme", specialists=1)
    order_id = new_order(database, acme)
    autocommit = database.engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        row = claims.claim(conn, acme.specialist.actor, order_id)
    assert row.status == OrderStatus.CLAIMED
    with database.session(acme.tenant_id) as s:
        types = s.scalars(select(Event.type).where(Event.aggregate_id == order_id)).all()
    assert types.count("order.claimed") == 1
    database.dispose()


@pytest.mark.postgres
def test_a_loser_that_waited_on_the_winner_is_told_the_order_is_claimed(pg_url):
    """The loser's statement starts while the winner holds the row; it must not answer 'open'."""
    database = Database(pg_url)
    world = build_world(database, "race", specialists=2)
    order_id = new_order(database, world)
    winner, loser = world.specialist.actor, world.specialist1.actor
    outcome: list[BaseException] = []

    def lose() -> None:
        try:
            with database.engine.begin() as conn:
                claims.claim(conn, loser, order_id)
        except BaseException as exc:
            outcome.append(exc)

    autocommit = database.engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as observer, database.engine.begin() as conn:
        claims.claim(conn, winner, order_id)
        thread = threading.Thread(target=lose)
        thread.start()
        # Wait until the loser's statement is blocked on our row lock, then commit.
        for _ in range(200):
            waiting = observer.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
            if waiting:
                break
            time.sleep(0.02)
        assert waiting, "the second claim never blocked on the first"
    thread.join(30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], IllegalTransition)
    assert outcome[0].status == OrderStatus.CLAIMED
    database.dispose()
