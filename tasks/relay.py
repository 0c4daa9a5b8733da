"""Outbox relay tasks: hand unrelayed events to Prefect, then mark them relayed.

Delivery is at-least-once with an idempotent consumer: each flow run is created with an
idempotency key derived from the event id, so if we crash (or Prefect is unreachable) between
starting a run and marking the event, the next pass asks again and Prefect answers with the run it
already has. Events are marked only after their run exists, so nothing is lost while Prefect is
down: they simply wait. No database lock is held while talking to Prefect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from prefect import get_run_logger, task
from prefect.deployments import run_deployment
from prefect.exceptions import MissingContextError
from sqlalchemy import select

from quire.db import utcnow
from quire.events import relay
from quire.events.relay import PendingEvent
from quire.lifecycle import events as lifecycle_events
from quire.orders import events
from quire.orders.state import Action
from quire.people.models import Tenant
from quire.settings import get_settings
from tasks.database import flow_database


def start_qa_run(event: PendingEvent) -> uuid.UUID:
    """`order.submitted` -> one QA pipeline run for that submission."""
    submission = event.payload.get("submission") or {}
    flow_run = run_deployment(
        get_settings().qa_deployment,
        parameters={
            "request": {
                "tenant_id": str(event.tenant_id),
                "submission_id": str(submission["id"]),
                "event_id": event.id,
            }
        },
        idempotency_key=event.idempotency_key,
        timeout=0,  # start it, don't wait for it
        as_subflow=False,
        tags=["quire", "qa"],
    )
    return flow_run.id


def start_lifecycle_run(event: PendingEvent) -> uuid.UUID:
    """`lifecycle.event_received` -> one lifecycle run for that person's event."""
    with flow_database().session() as session:
        slug = session.scalar(select(Tenant.slug).where(Tenant.id == event.tenant_id))
    flow_run = run_deployment(
        get_settings().lifecycle_deployment,
        parameters={"tenant": slug, "event_id": str(event.payload["lifecycle_event"]["id"])},
        idempotency_key=event.idempotency_key,
        timeout=0,
        as_subflow=False,
        tags=["quire", "lifecycle"],
    )
    return flow_run.id


# Event type -> what starts for it. Other events are marked relayed with nothing to do.
CONSUMERS: dict[str, Callable[[PendingEvent], uuid.UUID]] = {
    events.EVENT_TYPES[Action.SUBMIT]: start_qa_run,
    lifecycle_events.EVENT_RECEIVED: start_lifecycle_run,
}


@task(name="Read unrelayed events")
def read_pending(limit: int) -> list[PendingEvent]:
    with flow_database().session() as session:
        return relay.pending(session, limit)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a run (tests, scripts)
        return logging.getLogger("quire.relay")


class PrefectUnreachable(RuntimeError):
    """Starting flow runs failed for every event tried: Prefect itself is the problem."""


@task(name="Start flow runs for events", retries=2, retry_delay_seconds=[2, 10])
def deliver(events: list[PendingEvent]) -> dict[int, str]:
    """Start each event's flow run and mark the events handled.

    One event that cannot be delivered (a malformed payload, a refused parameter) is logged and
    left waiting; it does not hold up the others. If none could be delivered, Prefect is likely
    unreachable: the task fails (and retries) with everything still waiting.
    """
    logger = _logger()
    started: dict[int, str] = {}
    handled: list[int] = []
    failures: dict[int, str] = {}
    for event in events:
        consumer = CONSUMERS.get(event.type)
        try:
            if consumer is not None:
                started[event.id] = str(consumer(event))
        except Exception as exc:
            failures[event.id] = f"{type(exc).__name__}: {exc}"
            logger.error("event %s (%s) not delivered: %s", event.id, event.type, exc)
            continue
        handled.append(event.id)
    if handled:
        with flow_database().session(write=True) as session:
            relay.mark_relayed(session, handled, utcnow())
    if failures and not started:
        raise PrefectUnreachable(
            f"no flow run could be started ({len(failures)} event(s) waiting): "
            + next(iter(failures.values()))
        )
    return started
