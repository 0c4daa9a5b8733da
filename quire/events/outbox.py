"""Append events in the caller's transaction, so an event exists exactly when its change does.

On PostgreSQL an AFTER INSERT trigger (see the migrations) sends `NOTIFY quire_events, '<id>'`,
delivered at commit, which wakes every API process's stream hub.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from quire.db import utcnow
from quire.events.models import Event
from quire.tenancy import tenant_of

NOTIFY_CHANNEL = "quire_events"


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        # Always to the microsecond, in UTC: one spelling whichever side (Python or SQL) wrote it.
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def record(
    session: Session,
    type: str,
    *,
    aggregate_type: str,
    aggregate_id: uuid.UUID,
    payload: Mapping[str, Any],
) -> Event:
    event = Event(
        tenant_id=tenant_of(session),
        type=type,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        payload=_jsonable(payload),
        created_at=utcnow(),
    )
    session.add(event)
    return event


_insert = insert(Event.__table__)


def append(
    conn: Connection,
    tenant_id: uuid.UUID,
    type: str,
    *,
    aggregate_type: str,
    aggregate_id: uuid.UUID,
    payload: Mapping[str, Any],
) -> None:
    """`record` for Core callers (the claim path): one INSERT on the caller's connection."""
    conn.execute(
        _insert,
        {
            "tenant_id": tenant_id,
            "type": type,
            "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id,
            "payload": _jsonable(payload),
            "created_at": utcnow(),
        },
    )
