"""The outbox relay's domain half: what waits, in what order, and marking it handed on."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import event, select

from quire.db import Database, utcnow
from quire.events import relay
from quire.events.models import Event
from quire.events.relay import PendingEvent
from quire.tenancy import ALL_TENANTS
from tests.quire.events.helpers import append
from tests.support.world import build_world


def pending(database: Database, limit: int = 100) -> list[PendingEvent]:
    with database.session(None) as s:
        return relay.pending(s, limit)


def mark(database: Database, ids, now: dt.datetime | None = None) -> int:
    with database.session(None, write=True) as s:
        return relay.mark_relayed(s, ids, now or utcnow())


def test_pending_events_come_oldest_first_from_every_tenant(database, acme, globex):
    a1 = append(database, acme)
    g1 = append(database, globex)
    a2 = append(database, acme, type="order.published")

    waiting = pending(database)

    assert [e.id for e in waiting] == a1 + g1 + a2
    assert [e.tenant_id for e in waiting] == [acme.tenant_id, globex.tenant_id, acme.tenant_id]
    assert [e.type for e in waiting] == ["order.submitted", "order.submitted", "order.published"]
    first = waiting[0]
    assert first.payload == {"n": 0}
    assert first.created_at.tzinfo is not None
    assert first.idempotency_key == f"quire-event-{first.tenant_id}-{first.id}"


def test_a_pending_event_is_a_frozen_value(database, acme):
    append(database, acme)
    (event,) = pending(database)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.type = "something.else"  # type: ignore[misc]


def test_the_batch_is_bounded_by_limit(database, acme):
    ids = append(database, acme, 5)
    assert [e.id for e in pending(database, limit=2)] == ids[:2]
    with pytest.raises(ValueError, match="limit"):
        pending(database, limit=0)


def test_relayed_events_are_no_longer_pending(database, acme):
    ids = append(database, acme, 3)

    assert mark(database, ids[:2]) == 2

    assert [e.id for e in pending(database)] == ids[2:]


def test_marking_is_idempotent_and_keeps_the_first_relay_time(database, acme):
    ids = append(database, acme, 2)
    first = utcnow()

    assert mark(database, ids, first) == 2
    assert mark(database, ids, first + dt.timedelta(minutes=1)) == 0
    assert mark(database, [ids[0], ids[0]]) == 0
    assert mark(database, []) == 0

    with database.session(None) as s:
        stamps = s.scalars(select(Event.relayed_at).execution_options(**ALL_TENANTS)).all()
    assert stamps == [first, first]


def test_an_unmarked_batch_is_offered_again(database, acme):
    """At-least-once: a relay that fails before marking (or before commit) loses nothing."""
    ids = append(database, acme, 2)

    def relay_then_fail() -> None:
        with database.session(None, write=True) as s:
            batch = relay.pending(s, 10, lock=True)
            relay.mark_relayed(s, [e.id for e in batch], utcnow())
            raise RuntimeError("Prefect unreachable: the transaction rolls back")

    with pytest.raises(RuntimeError):
        relay_then_fail()
    assert [e.id for e in pending(database)] == ids


def test_the_relay_needs_no_tenant_and_reads_no_tenant_scope(database, acme):
    """A tenant-scoped session does not narrow the relay: it is a system job on purpose."""
    ids = append(database, acme)
    other = build_world(database, "initech", specialists=0)
    with database.session(other.tenant_id) as s:
        assert [e.id for e in relay.pending(s, 10)] == ids


def test_the_pending_query_reads_the_unrelayed_partial_index(database, acme):
    """The backlog is read through `ix_events_unrelayed`, not by scanning the whole table."""
    append(database, acme, 3)
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM events" in statement:
            seen.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        pending(database)
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    ((statement, parameters),) = seen
    with database.engine.connect() as conn:
        if database.is_postgres:
            conn.exec_driver_sql("SET enable_seqscan = off")  # tiny table: make the choice show
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        plan = " ".join(map(str, conn.exec_driver_sql(explain + statement, parameters)))
    assert "ix_events_unrelayed" in plan


@pytest.mark.postgres
def test_concurrent_relays_take_disjoint_batches(pg_url):
    """Two relays at once on PostgreSQL: SKIP LOCKED hands each different events, none twice."""
    database = Database(pg_url)
    world = build_world(database, "relays", specialists=0)
    ids = append(database, world, 10)
    try:
        with (
            database.session(None, write=True) as first,
            database.session(None, write=True) as second,
        ):
            mine = relay.pending(first, 4, lock=True)
            theirs = relay.pending(second, 4, lock=True)
            unlocked = relay.pending(second, 100)  # a plain read is not blocked, sees them all

            assert [e.id for e in mine] == ids[:4]
            assert [e.id for e in theirs] == ids[4:8]
            assert [e.id for e in unlocked] == ids

            assert relay.mark_relayed(first, [e.id for e in mine], utcnow()) == 4
            assert relay.mark_relayed(second, [e.id for e in theirs], utcnow()) == 4
        assert [e.id for e in pending(database)] == ids[8:]
    finally:
        database.dispose()


@pytest.mark.postgres
def test_a_crashed_relays_batch_goes_to_the_next_relay(pg_url):
    database = Database(pg_url)
    world = build_world(database, "crash", specialists=0)
    ids = append(database, world, 3)
    try:
        crashed = database.session(None, write=True)
        session = crashed.__enter__()
        assert [e.id for e in relay.pending(session, 10, lock=True)] == ids
        with database.session(None, write=True) as other:
            assert relay.pending(other, 10, lock=True) == []
        crashed.__exit__(RuntimeError, RuntimeError("worker died"), None)  # rolls back
        with database.session(None, write=True) as other:
            assert [e.id for e in relay.pending(other, 10, lock=True)] == ids
    finally:
        database.dispose()
