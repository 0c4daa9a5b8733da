"""Lifecycle's operations for the API and the command line: playbooks (read, replace), runs
(read, with their saga log), dead letters (list, replay). Each is one unit of work on a
tenant-scoped session; an admin's role is required for all of them.

A PUT of a playbook validates it whole (every problem with its path, `PlaybookInvalid`, 422)
and stores it as the next version; the one in force is the highest. A tenant that never stored
one runs Quire's shipped playbook (version 0).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quire.audit import service as audit
from quire.errors import NotFound
from quire.lifecycle import dead_letters, runs
from quire.lifecycle.models import EVENT_TYPES, LifecycleRun, Playbook, SagaStep
from quire.lifecycle.playbooks import Playbook as PlaybookModel
from quire.lifecycle.playbooks import validate_playbook
from quire.lifecycle.schemas import PlaybookOut, RunOut, StepOut
from quire.people.actor import Actor
from quire.people.models import Role

MAX_PAGE = 200


def _event_type(event_type: str) -> str:
    if event_type not in EVENT_TYPES:
        raise NotFound(f"no event type {event_type!r}", code="unknown_event_type")
    return event_type


def playbook_in_force(session: Session, actor: Actor, event_type: str) -> PlaybookOut:
    actor.require(Role.ADMIN)
    version, definition = runs.playbook_in_force(session, _event_type(event_type))
    return PlaybookOut(
        event_type=event_type,
        version=version,
        source="shipped" if version == 0 else "tenant",
        playbook=definition,
    )


def playbook_model(session: Session, actor: Actor, event_type: str) -> PlaybookModel:
    """The playbook in force, validated (for its picture)."""
    return PlaybookModel.model_validate(playbook_in_force(session, actor, event_type).playbook)


def put_playbook(session: Session, actor: Actor, event_type: str, data: Any) -> PlaybookOut:
    """Validate `data` whole and store it as the next version; audited."""
    actor.require(Role.ADMIN)
    playbook = validate_playbook(data, event_type=_event_type(event_type))
    definition = playbook.model_dump(mode="json")
    latest = session.scalar(
        select(func.max(Playbook.version)).where(Playbook.event_type == event_type)
    )
    row = Playbook(
        tenant_id=actor.tenant_id,
        event_type=event_type,
        version=int(latest or 0) + 1,
        definition=definition,
        created_by=None if actor.is_system else actor.user_id,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "playbook.stored",
        "playbook",
        row.id,
        after={
            "event_type": event_type,
            "version": row.version,
            "steps": [s.id for s in playbook.steps],
        },
    )
    return PlaybookOut(
        event_type=event_type, version=row.version, source="tenant", playbook=definition
    )


def _run_out(session: Session, run: LifecycleRun) -> RunOut:
    steps = session.scalars(
        select(SagaStep).where(SagaStep.run_id == run.id).order_by(SagaStep.id)
    ).all()
    out = RunOut.model_validate(run)
    out.steps = [StepOut.model_validate(s) for s in steps]
    return out


def get_run(session: Session, actor: Actor, run_id: uuid.UUID) -> RunOut:
    actor.require(Role.ADMIN)
    run = session.get(LifecycleRun, run_id)
    if run is None:
        raise NotFound(f"no lifecycle run {run_id}", code="run_not_found")
    return _run_out(session, run)


def list_runs(session: Session, actor: Actor, limit: int = 50) -> list[RunOut]:
    actor.require(Role.ADMIN)
    rows = session.scalars(
        select(LifecycleRun).order_by(LifecycleRun.created_at.desc()).limit(min(limit, MAX_PAGE))
    ).all()
    return [_run_out(session, r) for r in rows]


def run_of_event(session: Session, event_id: uuid.UUID) -> LifecycleRun | None:
    return session.scalar(select(LifecycleRun).where(LifecycleRun.event_id == event_id))


def replay_dead_letter(session: Session, actor: Actor, letter_id: int) -> LifecycleRun:
    """Close the dead letter, put its run back to pending (the caller starts its flow run)."""
    return dead_letters.replay(session, actor, letter_id)
