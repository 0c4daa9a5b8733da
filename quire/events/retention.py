"""Event retention: the events table is the outbox and the live stream's replay log, not an
archive, so relayed events past the retention period are deleted in bounded batches.

An event the relay has not handed on yet is never deleted, however old: losing it would lose the
QA run (or whatever else) it should start. A stuck relay therefore shows up as a growing backlog
in the maintenance statistics, never as silently missing work.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, Table, delete, select
from sqlalchemy.orm import Session

from quire.events.models import Event
from quire.tenancy import ALL_TENANTS

DEFAULT_BATCH = 5000

events: Table = Event.__table__  # type: ignore[assignment]


def retention_cutoff(now: dt.datetime, retention_days: int) -> dt.datetime:
    """Events created before this instant are past retention (`event_retention_days`)."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    return now - dt.timedelta(days=retention_days)


def _prunable(older_than: dt.datetime) -> list[ColumnElement[bool]]:
    return [events.c.relayed_at.is_not(None), events.c.created_at < older_than]


def prune_events(session: Session, older_than: dt.datetime, limit: int = DEFAULT_BATCH) -> int:
    """Delete up to `limit` relayed events created before `older_than`, oldest first, across
    all tenants. Returns how many went; a full batch (`== limit`) means more may be waiting, so
    the caller commits and calls again (short transactions keep locks and WAL growth small).

    Ids are stream positions and are never reused after a prune (SQLite AUTOINCREMENT,
    PostgreSQL identity), so a live-stream client's Last-Event-ID stays meaningful.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    batch = (
        select(events.c.id)
        .where(*_prunable(older_than))
        .order_by(events.c.id)
        .limit(limit)
        .scalar_subquery()
    )
    # The conditions are repeated on the deleted row itself: the batch is never trusted alone.
    result = session.execute(
        delete(events)
        .where(events.c.id.in_(batch), *_prunable(older_than))
        .execution_options(**ALL_TENANTS)
    )
    return result.rowcount
