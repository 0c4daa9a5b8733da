"""The saga log: per step of a run, its attempts, what it did and how to undo it.

Each write here is its own short transaction, committed before the run moves on: a step's
`undo` is durable the moment the step has succeeded, so compensating a run needs only these
rows — whichever process, on whichever worker, picks the run up after a crash.

Compensation undoes the steps that succeeded, in the reverse of the order they finished
(`position`), each with its compensating kind and its recorded undo. A step that succeeded with
nothing to undo (a sent mail) is left as it is.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from quire.audit import service as audit
from quire.db import utcnow
from quire.lifecycle.connectors.base import StepOutcome
from quire.lifecycle.models import SagaStep, StepStatus

DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})


def audited(session: Session, step: SagaStep, what: str) -> None:
    """Every step's end (done, failed, parked, undone) in the audit log too, by Quire itself:
    the saga log says how, the audit log says that it happened, with the rest of the tenant's
    history."""
    audit.record(
        session,
        None,
        f"lifecycle.step_{what}",
        "lifecycle_run",
        step.run_id,
        after={
            "step": step.step_id,
            "kind": step.kind,
            "status": str(step.status),
            "attempts": step.attempts,
            "error": (step.error or "")[:500] or None,
        },
    )


ERROR_MAX = 2_000  # characters of an error kept (the rest is in the flow run's logs)


def steps_of(session: Session, run_id: uuid.UUID) -> dict[str, SagaStep]:
    return {
        s.step_id: s for s in session.scalars(select(SagaStep).where(SagaStep.run_id == run_id))
    }


def step_of(session: Session, run_id: uuid.UUID, step_id: str) -> SagaStep:
    return session.scalars(
        select(SagaStep).where(SagaStep.run_id == run_id, SagaStep.step_id == step_id)
    ).one()


def attempt_started(session: Session, step: SagaStep, params: dict[str, Any]) -> int:
    """One more attempt: counted before the call, so a crash mid-call still counts it."""
    step.status = StepStatus.RUNNING
    step.attempts += 1
    step.params = params
    step.started_at = step.started_at or utcnow()
    session.flush()
    return step.attempts


def succeeded(
    session: Session, step: SagaStep, outcome: StepOutcome, compensation_kind: str | None
) -> None:
    """The step did its work: output and undo recorded, its place in the undo order taken."""
    last = session.scalar(
        select(func.coalesce(func.max(SagaStep.position), 0)).where(SagaStep.run_id == step.run_id)
    )
    step.status = StepStatus.SUCCEEDED
    step.output = outcome.output
    step.undo = outcome.undo
    step.compensation_kind = compensation_kind if outcome.undo is not None else None
    step.position = int(last or 0) + 1
    step.error = None
    step.finished_at = utcnow()
    audited(session, step, "succeeded")


def skipped(session: Session, step: SagaStep, why: str) -> None:
    step.status = StepStatus.SKIPPED
    step.output = {"skipped": why}
    step.finished_at = utcnow()


def attempt_failed(step: SagaStep, error: str) -> None:
    """An attempt failed; the step stays running until its retries are out."""
    step.error = error[:ERROR_MAX]


def failed_for_good(session: Session, step: SagaStep, error: str, *, parked: bool) -> None:
    """Out of retries: failed (the run compensates) or parked (an exit carries on)."""
    step.status = StepStatus.PARKED if parked else StepStatus.FAILED
    step.error = error[:ERROR_MAX]
    step.finished_at = utcnow()
    audited(session, step, "parked" if parked else "failed")


def maybe_acted(
    session: Session, step: SagaStep, undo: dict[str, Any], compensation_kind: str
) -> None:
    """A step that failed for good may have acted (an answer lost): its undo goes in the log
    so compensation looks for what it may have done, and undoes that too."""
    last = session.scalar(
        select(func.coalesce(func.max(SagaStep.position), 0)).where(SagaStep.run_id == step.run_id)
    )
    step.undo = undo
    step.compensation_kind = compensation_kind
    step.position = int(last or 0) + 1


def blocked(session: Session, run_id: uuid.UUID, step_ids: list[str], why: str) -> None:
    """Steps that will not run because a step they need failed."""
    if not step_ids:
        return
    session.execute(
        update(SagaStep)
        .where(
            SagaStep.run_id == run_id,
            SagaStep.step_id.in_(step_ids),
            SagaStep.status == StepStatus.PENDING,
        )
        .values(status=StepStatus.SKIPPED, output={"skipped": why}, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def to_undo(session: Session, run_id: uuid.UUID) -> list[SagaStep]:
    """What compensation still has to undo, last finished first: what succeeded, and a failed
    step that may have acted (`maybe_acted`)."""
    return list(
        session.scalars(
            select(SagaStep)
            .where(
                SagaStep.run_id == run_id,
                SagaStep.status.in_(
                    [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.COMPENSATION_FAILED]
                ),
                SagaStep.compensation_kind.is_not(None),
            )
            .order_by(SagaStep.position.desc())
        )
    )


def compensated(step: SagaStep) -> None:
    step.status = StepStatus.COMPENSATED
    step.compensated_at = utcnow()
    step.error = None


def compensation_attempted(step: SagaStep) -> None:
    step.compensation_attempts += 1


def compensation_failed(step: SagaStep, error: str) -> None:
    """The undo failed every retry (the maintenance flow tries again). The step's own error,
    if any, is kept in front of the undo's."""
    step.status = StepStatus.COMPENSATION_FAILED
    own = (step.error or "").split(" | undo: ")[0]
    step.error = (f"{own} | undo: {error}" if own else f"undo: {error}")[:ERROR_MAX]


def reset_for_replay(session: Session, run_id: uuid.UUID) -> int:
    """Before a dead letter's replay: every step that is not done (failed, parked, compensated,
    blocked by a failure) goes back to pending, its attempts kept for the record. Returns how
    many."""
    reset = session.execute(
        update(SagaStep)
        .where(
            SagaStep.run_id == run_id,
            ~SagaStep.status.in_([StepStatus.SUCCEEDED]),
            # a step skipped by its `when` stays skipped: the event has not changed
            ~(
                (SagaStep.status == StepStatus.SKIPPED)
                & SagaStep.output["skipped"].as_string().startswith("when ")
            ),
        )
        .values(status=StepStatus.PENDING, finished_at=None, compensated_at=None, error=None)
        .execution_options(synchronize_session=False)
    )
    return reset.rowcount


def interrupted_step(session: Session, run_id: uuid.UUID) -> SagaStep | None:
    """The step a dead flow run was in (running), else the one that failed, else None."""
    for status in (StepStatus.RUNNING, StepStatus.FAILED, StepStatus.COMPENSATION_FAILED):
        row = session.scalar(
            select(SagaStep)
            .where(SagaStep.run_id == run_id, SagaStep.status == status)
            .order_by(SagaStep.id)
            .limit(1)
        )
        if row is not None:
            return row
    return None
