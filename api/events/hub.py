"""Per-process fan-out of the event table to live subscribers.

One reader per process, not one per client: the hub follows the table in id order and hands each
event to the subscribers of its tenant. On PostgreSQL a LISTEN connection wakes it (the insert
trigger NOTIFYs the id at commit), so an event written by any API process reaches clients of every
process; a slow poll is the safety net, and the only mechanism on SQLite.

Ids come from a sequence, and concurrent transactions can commit out of id order. The hub therefore
advances only over contiguous ids; a hole is waited for until the transaction that took the id
can no longer commit (see `_hole_settled`), then skipped as a rollback. Subscribers get a bounded
queue; one that lets it fill is cut off rather than allowed to grow memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.orm import load_only

from quire.db import Database
from quire.events.models import Event
from quire.events.outbox import NOTIFY_CHANNEL
from quire.orders.policy import may_see_event
from quire.people.actor import Actor
from quire.tenancy import ALL_TENANTS

log = logging.getLogger("quire.api.events")

BATCH = 500
REPLAY_PAGE = 1000


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: int
    tenant_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    data: str  # serialized once, shared by every subscriber

    @classmethod
    def from_row(cls, row: Event) -> LiveEvent:
        body = {
            "id": row.id,
            "type": row.type,
            "aggregate_type": row.aggregate_type,
            "aggregate_id": str(row.aggregate_id),
            "created_at": row.created_at.isoformat(),
            "payload": row.payload,
        }
        return cls(row.id, row.tenant_id, row.type, row.payload, json.dumps(body))


@dataclass(eq=False)
class Subscription:
    actor: Actor
    queue: asyncio.Queue[LiveEvent]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: LiveEvent) -> bool:
        if self.overflowed.is_set() or not may_see_event(self.actor, event.type, event.payload):
            return False
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.overflowed.set()
            return False

    async def next(self, wait: float) -> LiveEvent | None:
        """The next event, or None after `wait` seconds with nothing new. Raises when cut off."""
        if self.overflowed.is_set():
            raise SlowConsumer
        getter = asyncio.ensure_future(self.queue.get())
        cut = asyncio.ensure_future(self.overflowed.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, cut}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            cut.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if cut in done:
            raise SlowConsumer
        return None


class SlowConsumer(Exception):
    """The subscriber's buffer filled up; it is disconnected and may reconnect with its last id."""


class EventHub:
    def __init__(
        self,
        database: Database,
        *,
        queue_size: int = 1000,
        poll_seconds: float = 1.0,
        gap_timeout: float = 2.0,
        max_gap_wait: float = 60.0,
        on_drop: Any = None,
        on_deliver: Any = None,
    ) -> None:
        self.database = database
        self.queue_size = queue_size
        self.poll_seconds = poll_seconds
        self.gap_timeout = gap_timeout
        self.max_gap_wait = max_gap_wait
        self._gap_suspects: set[int] | None = None
        self._gap_cleared = False
        self.position = 0  # highest event id handed out; every id at or below is settled
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}
        self._wake = asyncio.Event()
        self._gap_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._on_drop = on_drop
        self._on_deliver = on_deliver

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        async with self.database.async_session() as session:
            latest = await session.scalar(
                select(func.max(Event.id)).execution_options(**ALL_TENANTS)
            )
        self.position = latest or 0
        self._tasks.append(asyncio.create_task(self._follow(), name="event-hub-follow"))
        if self.database.is_postgres:
            self._tasks.append(asyncio.create_task(self._listen(), name="event-hub-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def poke(self) -> None:
        """Look for new events now (called after a local commit, and by NOTIFY)."""
        self._wake.set()

    # -- subscribers --------------------------------------------------------------------------

    def subscribe(self, actor: Actor) -> Subscription:
        sub = Subscription(actor, asyncio.Queue(maxsize=self.queue_size))
        self._subscribers.setdefault(actor.tenant_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.actor.tenant_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.actor.tenant_id]

    async def replay(self, actor: Actor, after: int, until: int) -> AsyncIterator[LiveEvent]:
        """Events of the actor's tenant with after < id <= until, oldest first, read in pages so
        a long backlog costs bounded memory."""
        while after < until:
            async with self.database.async_session(actor.tenant_id) as session:
                rows = list(
                    await session.scalars(
                        select(Event)
                        .where(Event.id > after, Event.id <= until)
                        .order_by(Event.id)
                        .limit(REPLAY_PAGE)
                    )
                )
            if not rows:
                return
            for row in rows:
                event = LiveEvent.from_row(row)
                if may_see_event(actor, event.type, event.payload):
                    yield event
            after = rows[-1].id

    # -- following the table ------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            timeout = self.poll_seconds if self._gap_since is None else 0.05
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation
            # that stop() sends if a wake-up lands at the same moment, hanging shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self._advance():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event hub could not read events; retrying")
                await asyncio.sleep(1)

    async def _advance(self) -> bool:
        """Deliver the next contiguous run of events. True if a full batch came (read again)."""
        query = select(Event).where(Event.id > self.position).order_by(Event.id).limit(BATCH)
        if not self._subscribers:
            # Nobody to deliver to: follow the ids only (no payloads read or encoded).
            query = query.options(load_only(Event.id))
        async with self.database.async_session() as session:
            rows = list(await session.scalars(query.execution_options(**ALL_TENANTS)))
        for row in rows:
            if row.id != self.position + 1 and not await self._hole_settled():
                return False  # an earlier transaction may still commit; look again shortly
            self._gap_since = None
            if self._subscribers:
                self._deliver(LiveEvent.from_row(row))
            self.position = row.id
        return len(rows) == BATCH

    async def _hole_settled(self) -> bool:
        """May we move past a missing id? Only once its transaction can no longer commit.

        On PostgreSQL, when we first see the hole we note the transactions then running in this
        database: the one that took the missing id is among them (or already rolled back). Once
        none of them is running, we read once more; if the id is still missing, it rolled back.
        A long backstop bounds the wait. On SQLite writers commit one at a time in id order, so
        a hole only ever means a rollback, and a short grace period is enough.
        """
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
            self._gap_suspects = await self._running_xids() if self.database.is_postgres else None
            self._gap_cleared = False
        waited = now - self._gap_since
        if self._gap_suspects is None:
            return waited >= self.gap_timeout
        if self._gap_cleared or waited >= self.max_gap_wait:
            return True
        if not self._gap_suspects & await self._running_xids():
            self._gap_cleared = True  # settled now; skip only after one more read of the table
        return False

    async def _running_xids(self) -> set[int]:
        query = text(
            "SELECT l.transactionid::text::bigint FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted "
            "AND a.datname = current_database()"
        )
        async with self.database.async_engine.connect() as conn:
            return {int(x) for x in (await conn.execute(query)).scalars()}

    def _deliver(self, event: LiveEvent) -> None:
        for sub in list(self._subscribers.get(event.tenant_id, ())):
            was_cut = sub.overflowed.is_set()
            if sub.offer(event) and self._on_deliver:
                self._on_deliver()
            if not was_cut and sub.overflowed.is_set():
                log.warning(
                    "disconnecting a slow stream consumer",
                    extra={"user_id": str(sub.actor.user_id)},
                )
                self.unsubscribe(sub)
                if self._on_drop:
                    self._on_drop()

    async def _listen(self) -> None:
        """Hold a LISTEN connection; reconnect with backoff if it drops."""
        dsn = self.database.url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    delay = 0.5
                    self.poke()  # catch up on anything committed while we were away
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
