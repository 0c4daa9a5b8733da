"""The marketplace's events: their types and payloads, written one way by every path.

Every order change appends an event in the same transaction (the outbox, `quire.events`). The
ORM path (`service`), the set-based sweeps (`maintenance`) and the Core claim path (`claims`)
all build it here: `record` for a Session, `append` for a Connection, and `claimed_payload_sql`
for the one PostgreSQL statement that claims and writes its event at once (the same payload, to
the character, built in SQL; a test compares the two).

An order event's payload is `{"order": <snapshot>, "actor_id": <user or null>, **details}`;
the snapshot carries enough for a live view to update without fetching the order.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Connection, String, cast, func, literal
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import KeyedColumnElement

from quire.db import UTCDateTime
from quire.events import outbox
from quire.orders.state import Action
from quire.people.actor import Actor

AGGREGATE = "order"

ORDER_CREATED = "order.created"
BID_PLACED = "bid.placed"
BID_WITHDRAWN = "bid.withdrawn"

EVENT_TYPES: dict[Action, str] = {
    Action.PUBLISH: "order.published",
    Action.CLAIM: "order.claimed",
    Action.AWARD: "order.awarded",
    Action.RELEASE: "order.released",
    Action.SUBMIT: "order.submitted",
    Action.START_REVIEW: "order.review_started",
    Action.ACCEPT: "order.accepted",
    Action.REQUEST_REWORK: "order.rework_requested",
    Action.CANCEL: "order.cancelled",
    Action.EXPIRE: "order.expired",
}
"""The event each state-machine action writes (`order.created` precedes the machine)."""

SNAPSHOT_FIELDS = (
    "id",
    "status",
    "version",
    "title",
    "mode",
    "skill",
    "fee_minor",
    "currency",
    "deadline",
    "specialist_id",
    "published_at",
)


def snapshot(order: Any) -> dict[str, Any]:
    """The order as its events carry it. Takes an ORM `Order` or a Core row alike."""
    return {name: getattr(order, name) for name in SNAPSHOT_FIELDS}


def payload(order: Any, by: Actor | None, **details: Any) -> dict[str, Any]:
    """An order event's payload; Quire's own processes (`by` None or the system) have no id."""
    actor_id = None if by is None or by.is_system else by.user_id
    return {"order": snapshot(order), "actor_id": actor_id, **details}


def record(session: Session, type: str, order: Any, by: Actor | None, **details: Any) -> None:
    """Append an order event in the session's transaction (and tenant)."""
    outbox.record(
        session,
        type,
        aggregate_type=AGGREGATE,
        aggregate_id=order.id,
        payload=payload(order, by, **details),
    )


def append(conn: Connection, type: str, order: Any, by: Actor | None, **details: Any) -> None:
    """`record` for Core callers: the event goes in the order row's own tenant."""
    outbox.append(
        conn,
        order.tenant_id,
        type,
        aggregate_type=AGGREGATE,
        aggregate_id=order.id,
        payload=payload(order, by, **details),
    )


def record_bid(session: Session, type: str, order_id: uuid.UUID, **details: Any) -> None:
    """Bid events belong to their order's stream; their payload names the order and the bid."""
    outbox.record(
        session,
        type,
        aggregate_type=AGGREGATE,
        aggregate_id=order_id,
        payload={"order_id": order_id, **details},
    )


# --- the same payload, built by PostgreSQL --------------------------------------------------

ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


def _json_value(column: KeyedColumnElement[Any]) -> ColumnElement[Any]:
    """A column as the JSON value `outbox` would write for it (same text, to the microsecond)."""
    if isinstance(column.type, UTCDateTime):
        return func.to_char(column.op("AT TIME ZONE")(literal("UTC", String())), ISO_UTC)
    if column.type.python_type is uuid.UUID:
        return cast(column, String)
    return column


def claimed_payload_sql(columns: Any, actor_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """`payload(order, by)` as a jsonb expression over the claimed row's `columns`."""
    return func.jsonb_build_object(
        "order",
        func.jsonb_build_object(
            *(x for name in SNAPSHOT_FIELDS for x in (name, _json_value(columns[name])))
        ),
        "actor_id",
        cast(actor_id, String),
    )
