"""The domain half of the outbox relay: read what waits, mark what was handed on.

The Prefect half (flows/tasks) reads a batch with `pending`, hands each event to Prefect (an
`order.submitted` starts a QA run whose idempotency key derives from the event id) and then calls
`mark_relayed`, all in one transaction. Delivery is at-least-once: if the hand-off or the commit
fails, the events stay unrelayed and go again next time, and the consumer's idempotency key makes
the repeat harmless. Nothing is ever skipped, because nothing is marked before it was handed on.

Both functions act across all tenants (the relay is a system job, its session names no tenant).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from quire.events.models import Event
from quire.tenancy import ALL_TENANTS

DEFAULT_BATCH = 100


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event waiting for the relay: what a consumer needs, detached from any session."""

    id: int
    tenant_id: uuid.UUID
    type: str
    aggregate_id: uuid.UUID
    payload: dict[str, Any]
    created_at: dt.datetime

    @property
    def idempotency_key(self) -> str:
        """Stable per event, so relaying the same event twice starts one flow run, not two.

        The tenant's id is part of it: event ids are a local sequence, which starts again if
        Quire's database is recreated while Prefect's (which remembers the keys) is kept.
        """
        return f"quire-event-{self.tenant_id}-{self.id}"


def pending(
    session: Session, limit: int = DEFAULT_BATCH, *, lock: bool = False
) -> list[PendingEvent]:
    """Up to `limit` unrelayed events, oldest (lowest id, i.e. stream order) first.

    The WHERE and ORDER BY match the `ix_events_unrelayed` partial index (id WHERE relayed_at
    IS NULL), so the read costs the backlog, not the table.

    `lock=True`: on PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED` until the caller's
    transaction ends, so concurrent relays take disjoint batches instead of relaying the same
    events twice; a crashed relay's locks vanish with its connection and its batch goes again.
    SQLite has no row locks (the clause is not rendered) and needs none: its write transactions
    (`Database.session(write=True)`) already run one at a time.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    stmt = (
        select(
            Event.id,
            Event.tenant_id,
            Event.type,
            Event.aggregate_id,
            Event.payload,
            Event.created_at,
        )
        .where(Event.relayed_at.is_(None))
        .order_by(Event.id)
        .limit(limit)
        .execution_options(**ALL_TENANTS)
    )
    if lock:
        stmt = stmt.with_for_update(skip_locked=True)
    return [PendingEvent(*row) for row in session.execute(stmt)]


def mark_relayed(session: Session, ids: Iterable[int], now: dt.datetime) -> int:
    """Record that these events were handed on; returns how many were newly marked.

    Idempotent: an event already marked keeps its first `relayed_at` and is not counted, so a
    relay that retries after an ambiguous failure does no harm.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    result = session.execute(
        update(Event)
        .where(Event.id.in_(wanted), Event.relayed_at.is_(None))
        .values(relayed_at=now)
        .execution_options(synchronize_session=False, **ALL_TENANTS)
    )
    return result.rowcount
