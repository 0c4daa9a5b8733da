"""The dead-letter queue: a run whose step ran out of retries, parked for an admin with the
step's error, inputs and attempts.

A parked run has already been compensated as far as it could be (or, for an exit that carries
on past failures, did everything else). Replaying it puts the run back to pending — the steps
that are done stay done, the rest run again — and the caller starts a new flow run for it.
One open dead letter per run (a partial unique index): a run is parked once until replayed.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.audit import service as audit
from quire.db import utcnow
from quire.errors import Conflict, NotFound
from quire.lifecycle import saga
from quire.lifecycle.models import (
    DeadLetter,
    DeadLetterStatus,
    EventStatus,
    LifecycleEvent,
    LifecycleRun,
    RunStatus,
    SagaStep,
)
from quire.people.actor import Actor
from quire.people.models import Role


def park(session: Session, run: LifecycleRun, step: SagaStep) -> DeadLetter:
    """Park `run` because of `step` (its error, inputs and attempts as the saga log has them)."""
    letter = session.scalar(
        select(DeadLetter).where(
            DeadLetter.run_id == run.id, DeadLetter.status == DeadLetterStatus.OPEN
        )
    )
    if letter is not None:
        return letter
    letter = DeadLetter(
        tenant_id=run.tenant_id,
        run_id=run.id,
        step_id=step.step_id,
        kind=step.kind,
        error=step.error or "failed",
        inputs=step.params,
        attempts=step.attempts,
        status=DeadLetterStatus.OPEN,
    )
    session.add(letter)
    session.flush()
    return letter


def list_open(
    session: Session, actor: Actor, *, after: int | None = None, limit: int = 50
) -> list[DeadLetter]:
    actor.require(Role.ADMIN)
    query = select(DeadLetter).where(DeadLetter.status == DeadLetterStatus.OPEN)
    if after is not None:
        query = query.where(DeadLetter.id > after)
    return list(session.scalars(query.order_by(DeadLetter.id).limit(limit)))


def replay(session: Session, actor: Actor, letter_id: int) -> LifecycleRun:
    """Close the dead letter and put its run back to pending; the caller starts a flow run."""
    actor.require(Role.ADMIN)
    letter = session.get(DeadLetter, letter_id, with_for_update=True)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id}", code="dead_letter_not_found")
    if letter.status != DeadLetterStatus.OPEN:
        raise Conflict(f"dead letter {letter_id} was replayed already", code="already_replayed")
    run = session.get(LifecycleRun, letter.run_id)
    assert run is not None
    letter.status = DeadLetterStatus.REPLAYED
    letter.replayed_by = None if actor.is_system else actor.user_id
    letter.replayed_at = utcnow()
    saga.reset_for_replay(session, run.id)
    run.status = RunStatus.PENDING
    run.finished_at = None
    run.error = None
    event = session.get(LifecycleEvent, run.event_id)
    assert event is not None
    event.status = EventStatus.RECEIVED
    audit.record(
        session,
        actor,
        "lifecycle.dead_letter_replayed",
        "lifecycle_run",
        run.id,
        before={"dead_letter": letter.id, "step": letter.step_id, "error": letter.error},
        after={"status": str(run.status)},
    )
    session.flush()
    return run


def reopen(session: Session, actor: Actor, letter_id: int, why: str) -> None:
    """A replay whose flow run could not be started (Prefect unreachable): the dead letter is
    open again and its run parked, so a later replay can start it."""
    actor.require(Role.ADMIN)
    letter = session.get(DeadLetter, letter_id, with_for_update=True)
    if letter is None or letter.status != DeadLetterStatus.REPLAYED:
        return
    run = session.get(LifecycleRun, letter.run_id)
    assert run is not None
    letter.status = DeadLetterStatus.OPEN
    letter.replayed_by = None
    letter.replayed_at = None
    run.status = RunStatus.DEAD_LETTERED
    run.error = why[:2_000]
    event = session.get(LifecycleEvent, run.event_id)
    assert event is not None
    event.status = EventStatus.DONE
    audit.record(
        session,
        actor,
        "lifecycle.dead_letter_reopened",
        "lifecycle_run",
        run.id,
        after={"dead_letter": letter.id, "why": why[:500]},
    )


def describe(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "run_id": str(letter.run_id),
        "step_id": letter.step_id,
        "kind": letter.kind,
        "error": letter.error,
        "inputs": letter.inputs,
        "attempts": letter.attempts,
        "status": str(letter.status),
        "created_at": letter.created_at.isoformat(),
    }


def replay_key(run_id: uuid.UUID, letter_id: int) -> str:
    """The idempotency key of the flow run a replay starts: one per dead letter."""
    return f"lifecycle-replay:{run_id}:{letter_id}"
