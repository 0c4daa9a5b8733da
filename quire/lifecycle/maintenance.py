"""Lifecycle's sweeps, run by the maintenance flow across tenants.

- Exits dated in the future wait as `scheduled` events; on their day they are released to the
  relay (`lifecycle.event_received`), which starts their runs.
- An undo that failed every retry (the provider was down) is tried again.
- A run whose flow run ended without finishing it (cancelled through Prefect, crashed, a
  worker killed mid-compensation) is found here and compensated from its saga log: nothing a
  dead process knew is needed.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from quire.db import Database
from quire.lifecycle import events
from quire.lifecycle.models import (
    EventStatus,
    LifecycleEvent,
    LifecycleRun,
    RunStatus,
    SagaStep,
    StepStatus,
)
from quire.tenancy import ALL_TENANTS

IN_FLIGHT = (RunStatus.RUNNING, RunStatus.COMPENSATING)


def release_due_events(database: Database, today: dt.date) -> int:
    """Scheduled events whose day has come go to the relay. Returns how many."""
    released = 0
    with database.session() as session:
        due = session.execute(
            select(LifecycleEvent.tenant_id, LifecycleEvent.id)
            .where(
                LifecycleEvent.status == EventStatus.SCHEDULED,
                LifecycleEvent.effective_on <= today,
            )
            .execution_options(**ALL_TENANTS)
        ).all()
    for tenant_id, event_id in due:
        with database.session(tenant_id, write=True) as session:
            if _release(session, event_id):
                released += 1
    return released


def _release(session: Session, event_id: uuid.UUID) -> bool:
    event = session.get(LifecycleEvent, event_id, with_for_update=True)
    if event is None or event.status != EventStatus.SCHEDULED:
        return False  # released by a concurrent sweep
    event.status = EventStatus.RECEIVED
    events.record_received(session, event.id, event.event_type)
    return True


def runs_in_flight(database: Database) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]]:
    """(tenant id, run id, flow run id) of every run running or compensating, across tenants:
    maintenance asks Prefect whether their flow runs are still alive."""
    with database.session() as session:
        return [
            (tenant_id, run_id, flow_run_id)
            for tenant_id, run_id, flow_run_id in session.execute(
                select(LifecycleRun.tenant_id, LifecycleRun.id, LifecycleRun.flow_run_id)
                .where(LifecycleRun.status.in_(IN_FLIGHT))
                .execution_options(**ALL_TENANTS)
            )
        ]


def runs_left_to_undo(database: Database) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant id, run id) of finished runs (dead-lettered, cancelled) with an undo that failed
    every retry: maintenance tries again, until the provider takes it."""
    with database.session() as session:
        return [
            (tenant_id, run_id)
            for tenant_id, run_id in session.execute(
                select(LifecycleRun.tenant_id, LifecycleRun.id)
                .where(
                    LifecycleRun.status.in_([RunStatus.DEAD_LETTERED, RunStatus.CANCELLED]),
                    exists().where(
                        SagaStep.run_id == LifecycleRun.id,
                        SagaStep.status == StepStatus.COMPENSATION_FAILED,
                    ),
                )
                .execution_options(**ALL_TENANTS)
            )
        ]
