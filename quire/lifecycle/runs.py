"""A lifecycle run: one event's playbook carried out, and the order of one person's runs.

A run is created once per event (a unique constraint: a second flow run for the same event
finds the first's run and carries on from its saga log). It freezes the playbook as it was
then, so an admin's later PUT does not change a run in flight.

One person, one run at a time, in the order things happened: a run may begin only when every
earlier event of the same person (by `occurred_at`, then id) is done. Events are stored when HR
sends them, before any run exists, so a later event cannot overtake an earlier one that is still
waiting for its flow run to start. Moving the run to running is a conditional UPDATE, so two
flow runs of one event never both begin it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from quire.db import utcnow
from quire.errors import NotFound
from quire.lifecycle.models import (
    FINISHED,
    EventStatus,
    LifecycleEvent,
    LifecycleRun,
    Playbook,
    RunStatus,
    SagaStep,
    StepStatus,
)


def playbook_in_force(session: Session, event_type: str) -> tuple[int, dict[str, Any]]:
    """The tenant's latest playbook for `event_type`, or the shipped one (version 0)."""
    row = session.scalar(
        select(Playbook)
        .where(Playbook.event_type == event_type)
        .order_by(Playbook.version.desc())
        .limit(1)
    )
    if row is not None:
        return row.version, row.definition
    from quire.lifecycle.shipped import shipped_playbook

    # NotFound (code no_playbook) for an event type Quire ships none for: nothing to do
    return 0, shipped_playbook(event_type).model_dump(mode="json")


def open_run(session: Session, event_id: uuid.UUID) -> LifecycleRun:
    """The event's run, created with its saga log (one pending row per step) the first time."""
    run = session.scalar(select(LifecycleRun).where(LifecycleRun.event_id == event_id))
    if run is not None:
        return run
    event = session.get(LifecycleEvent, event_id)
    if event is None:
        raise NotFound(f"no lifecycle event {event_id}", code="event_not_found")
    version, definition = playbook_in_force(session, event.event_type)
    run = LifecycleRun(
        tenant_id=event.tenant_id,
        event_id=event.id,
        event_type=event.event_type,
        person_key=event.person_key,
        occurred_at=event.occurred_at,
        playbook_version=version,
        playbook=definition,
        status=RunStatus.PENDING,
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
            for step in definition["steps"]:
                session.add(
                    SagaStep(
                        tenant_id=event.tenant_id,
                        run_id=run.id,
                        step_id=step["id"],
                        kind=step["kind"],
                        position=0,
                        status=StepStatus.PENDING,
                    )
                )
            session.flush()
    except IntegrityError:  # another flow run of this event created it first
        run = session.scalars(select(LifecycleRun).where(LifecycleRun.event_id == event_id)).one()
    return run


def nothing_to_do(session: Session, event_id: uuid.UUID) -> None:
    """An event no playbook handles (the tenant has none for its type, nor does Quire): done."""
    session.execute(
        update(LifecycleEvent)
        .where(LifecycleEvent.id == event_id)
        .values(status=EventStatus.DONE)
        .execution_options(synchronize_session=False)
    )


def earlier_events_pending(session: Session, run: LifecycleRun) -> int:
    """How many of the person's earlier events are not done yet (this run waits for them).
    An exit scheduled for a later day does not hold up what happens before it."""
    me = session.get(LifecycleEvent, run.event_id)
    assert me is not None
    earlier = or_(
        LifecycleEvent.occurred_at < me.occurred_at,
        and_(LifecycleEvent.occurred_at == me.occurred_at, LifecycleEvent.id < me.id),
    )
    return int(
        session.scalar(
            select(func.count()).where(
                LifecycleEvent.person_key == me.person_key,
                LifecycleEvent.status.not_in([EventStatus.DONE, EventStatus.SCHEDULED]),
                earlier,
            )
        )
        or 0
    )


def begin(session: Session, run_id: uuid.UUID, flow_run_id: uuid.UUID | None) -> bool:
    """Move a pending run to running (or take over a running one after a crash: the flow run
    is new). False when the run is finished, or someone else began it in between."""
    now = utcnow()
    moved = session.execute(
        update(LifecycleRun)
        .where(
            LifecycleRun.id == run_id,
            LifecycleRun.status.in_([RunStatus.PENDING, RunStatus.RUNNING]),
        )
        .values(status=RunStatus.RUNNING, started_at=now, flow_run_id=flow_run_id)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        return False
    run = session.get(LifecycleRun, run_id)
    assert run is not None
    session.execute(
        update(LifecycleEvent)
        .where(LifecycleEvent.id == run.event_id)
        .values(status=EventStatus.STARTED)
        .execution_options(synchronize_session=False)
    )
    return True


def finish(
    session: Session, run_id: uuid.UUID, status: RunStatus, error: str | None = None
) -> None:
    """A run reached an end: its event is done, so the person's next event may begin."""
    if status not in FINISHED:
        raise ValueError(f"{status} is not an end state")
    run = session.get(LifecycleRun, run_id)
    if run is None:
        raise NotFound(f"no lifecycle run {run_id}", code="run_not_found")
    run.status = status
    run.error = error
    run.finished_at = utcnow()
    session.execute(
        update(LifecycleEvent)
        .where(LifecycleEvent.id == run.event_id)
        .values(status=EventStatus.DONE)
        .execution_options(synchronize_session=False)
    )


def set_status(session: Session, run_id: uuid.UUID, status: RunStatus) -> None:
    session.execute(
        update(LifecycleRun)
        .where(LifecycleRun.id == run_id)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )


def has_unfinished_steps(session: Session, run_id: uuid.UUID) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    SagaStep.run_id == run_id,
                    SagaStep.status.in_([StepStatus.PENDING, StepStatus.RUNNING]),
                )
            )
        )
    )
