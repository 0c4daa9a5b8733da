"""Lifecycle's outbox events: a stored event waits for its flow run.

`lifecycle.event_received` is appended in the transaction that stores a lifecycle event (a
webhook delivery, an admin's event, a scheduled exit that came due); the outbox relay starts one
`lifecycle` flow run for it, keyed by the outbox event, so relaying it twice starts one run.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from quire.events import outbox

AGGREGATE = "lifecycle_event"
EVENT_RECEIVED = "lifecycle.event_received"


def record_received(session: Session, event_id: uuid.UUID, event_type: str) -> None:
    outbox.record(
        session,
        EVENT_RECEIVED,
        aggregate_type=AGGREGATE,
        aggregate_id=event_id,
        payload={"lifecycle_event": {"id": event_id, "type": event_type}},
    )
