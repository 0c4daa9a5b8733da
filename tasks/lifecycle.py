"""Lifecycle tasks: the run opened, the person's turn awaited, each step attempted with its own
retries, backoff, jitter and timeout, compensation, the dead letter and the report.

Every decision and every result is in the saga log (quire/lifecycle/saga.py), committed as it
happens: these tasks hold nothing Prefect would have to remember for a resumed run, and a
replayed run skips what is done. Results are not persisted (NO_CACHE, persist_result=False):
the database is the record.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from pydantic import BaseModel

from quire.errors import NotFound
from quire.lifecycle import dead_letters, execution, report, runs, saga, steps
from quire.lifecycle.connectors.base import ConnectorFailure
from quire.lifecycle.models import LifecycleRun, RunStatus, StepStatus
from quire.lifecycle.playbooks import Playbook, Step
from quire.lifecycle.secrets import Keyring
from quire.settings import get_settings
from tasks.database import flow_database


class RunRef(BaseModel):
    """What the flow carries from task to task: ids only; the rest is in the database."""

    tenant_id: uuid.UUID
    run_id: uuid.UUID
    event_type: str
    person_key: str
    playbook: dict[str, Any]

    def frozen_playbook(self) -> Playbook:
        return Playbook.model_validate(self.playbook)


@lru_cache(maxsize=1)
def runtime() -> execution.Runtime:
    """One per worker process: the database, the settings, the keyring opening connections."""
    settings = get_settings()
    return execution.Runtime(flow_database(), settings, Keyring.from_settings(settings))


@task(name="Open the run", cache_policy=NO_CACHE, persist_result=False)
def open_run(tenant_id: uuid.UUID, event_id: uuid.UUID) -> RunRef | None:
    """The event's run and its saga log, created once (a second flow run finds the first's).
    None when no playbook handles the event's type (it is done, with nothing to do)."""
    with flow_database().session(tenant_id, write=True) as session:
        try:
            run = runs.open_run(session, event_id)
        except NotFound as exc:
            if exc.code != "no_playbook":
                raise
            runs.nothing_to_do(session, event_id)
            return None
        return RunRef(
            tenant_id=tenant_id,
            run_id=run.id,
            event_type=run.event_type,
            person_key=run.person_key,
            playbook=run.playbook,
        )


@task(name="Wait for the person's earlier events", cache_policy=NO_CACHE, persist_result=False)
def wait_for_turn(ref: RunRef, poll_seconds: float = 1.0, patience_seconds: float = 3600) -> None:
    """One person, one run at a time, in the order things happened: wait while any earlier
    event of the same person is not done."""
    deadline = time.monotonic() + patience_seconds
    while True:
        with flow_database().session(ref.tenant_id) as session:
            waiting = runs.earlier_events_pending(session, session.get(LifecycleRun, ref.run_id))
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting} earlier event(s) of this person are still not done")
        time.sleep(poll_seconds)


@task(name="Begin the run", cache_policy=NO_CACHE, persist_result=False)
def begin(ref: RunRef) -> bool:
    from prefect.runtime import flow_run

    flow_run_id = flow_run.get_id()
    with flow_database().session(ref.tenant_id, write=True) as session:
        return runs.begin(session, ref.run_id, uuid.UUID(flow_run_id) if flow_run_id else None)


def _retry_only_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a transient failure (a 5xx, a timeout); a permanent one, or an open breaker, fails
    the step at once."""
    error = state.data
    if isinstance(error, ConnectorFailure):
        return error.retryable
    return isinstance(error, TimeoutError)


@task(cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=_retry_only_transient)
def run_step(ref: RunRef, step: Step) -> dict[str, Any]:
    """One step: each attempt goes through execution.attempt_step (the saga log, the breaker,
    the connector); a failed attempt's error is recorded before Prefect decides on a retry."""
    rt = runtime()
    try:
        return asdict(execution.attempt_step(rt, ref.tenant_id, ref.run_id, step))
    except Exception as exc:
        execution.record_attempt_error(rt, ref.tenant_id, ref.run_id, step.id, str(exc))
        raise


def step_task(step: Step) -> Task[..., dict[str, Any]]:
    """`run_step` with this step's own retry policy and timeout (from the playbook). The
    task's timeout bounds one attempt; the connector keeps to the step's own budget inside."""
    return run_step.with_options(
        name=f"{step.id} ({step.kind})",
        retries=step.retry.attempts,
        retry_delay_seconds=step.retry.delays() or 0,
        retry_jitter_factor=step.retry.jitter or None,
        timeout_seconds=step.timeout_seconds * 2 + 5,
    )


class Settled(BaseModel):
    failed: list[str] = []  # out of retries, the run stops: compensate
    parked: list[str] = []  # out of retries, the run goes on past them


@task(name="Settle the steps' outcomes", cache_policy=NO_CACHE, persist_result=False)
def settle_outcomes(ref: RunRef, unfinished: list[str]) -> Settled:
    """Steps whose retries ran out are failed, or parked where the playbook carries on past
    them (`Playbook.continues_past`); steps that never ran because a step they need failed are
    skipped, saying so."""
    playbook = ref.frozen_playbook()
    settled = Settled()
    with flow_database().session(ref.tenant_id, write=True) as session:
        rows = saga.steps_of(session, ref.run_id)
        for step_id in unfinished:
            row = rows[step_id]
            if row.status != StepStatus.RUNNING:  # never attempted: blocked below
                continue
            step = playbook.step(step_id)
            parked = playbook.continues_past(step)
            saga.failed_for_good(session, row, row.error or "failed", parked=parked)
            undo = steps.undo_after_failure(
                step.kind, execution.idempotency_key(ref.run_id, step_id)
            )
            compensation = step.compensation()
            if undo is not None and compensation is not None and not parked:
                saga.maybe_acted(session, row, undo, compensation.kind)
            (settled.parked if parked else settled.failed).append(step_id)
        waiting = [s for s, r in rows.items() if r.status == StepStatus.PENDING]
        saga.blocked(session, ref.run_id, waiting, "a step it needs failed")
    return settled


@task(name="Compensate", cache_policy=NO_CACHE, persist_result=False)
def compensate(ref: RunRef) -> list[str]:
    """Undo what succeeded, last first, each undo retried; what still cannot be undone is
    marked so the maintenance flow tries again. Returns the steps undone."""
    with flow_database().session(ref.tenant_id, write=True) as session:
        runs.set_status(session, ref.run_id, RunStatus.COMPENSATING)
        plan = [(row.id, row.step_id) for row in saga.to_undo(session, ref.run_id)]
    return compensate_plan(ref.tenant_id, plan)


def compensate_plan(tenant_id: uuid.UUID, plan: list[tuple[int, str]]) -> list[str]:
    """Each undo, last first, retried after the configured delays; one that still fails is
    marked (compensation_failed) and left to the maintenance flow, and the next is tried."""
    rt = runtime()
    logger = get_run_logger()
    delays = [0.0, *rt.settings.lifecycle_undo_retry_seconds]
    undone: list[str] = []
    for saga_step_id, step_id in plan:
        for attempt, delay in enumerate(delays, start=1):
            time.sleep(delay)
            try:
                execution.compensate_step(rt, tenant_id, saga_step_id)
            except Exception as exc:
                logger.warning("undoing %s: attempt %d failed: %s", step_id, attempt, exc)
                if attempt == len(delays):
                    execution.compensation_gave_up(rt, tenant_id, saga_step_id, str(exc))
                continue
            undone.append(step_id)
            break
    return undone


def finish_compensations(tenant_id: uuid.UUID, run_id: uuid.UUID) -> list[str]:
    """Undo what a finished run still has to undo (the maintenance flow's retry)."""
    with flow_database().session(tenant_id) as session:
        plan = [(row.id, row.step_id) for row in saga.to_undo(session, run_id)]
    return compensate_plan(tenant_id, plan)


@task(name="Park the run (dead letter)", cache_policy=NO_CACHE, persist_result=False)
def park(ref: RunRef, step_id: str) -> int:
    with flow_database().session(ref.tenant_id, write=True) as session:
        run = session.get(LifecycleRun, ref.run_id)
        letter = dead_letters.park(session, run, saga.step_of(session, ref.run_id, step_id))
        return letter.id


@task(name="Finish the run", cache_policy=NO_CACHE, persist_result=False)
def finish(ref: RunRef, status: RunStatus, error: str | None = None) -> None:
    with flow_database().session(ref.tenant_id, write=True) as session:
        runs.finish(session, ref.run_id, status, error)


@task(name="Publish the run's report", cache_policy=NO_CACHE, persist_result=False)
def publish_report(ref: RunRef) -> None:
    """The steps as a table (status, attempts, error), a summary, and the playbook it followed
    (its steps and waves, linking to the API's picture of its DAG), on the flow run."""
    with flow_database().session(ref.tenant_id) as session:
        run = session.get(LifecycleRun, ref.run_id)
        rows = sorted(
            saga.steps_of(session, ref.run_id).values(),
            key=lambda r: (r.position or 10**6, r.id),
        )
        table = [
            {
                "step": r.step_id,
                "kind": r.kind,
                "status": str(r.status),
                "attempts": r.attempts,
                "error": (r.error or "")[:200],
            }
            for r in rows
        ]
        status = str(run.status)
    key = f"lifecycle-{ref.run_id}"
    create_table_artifact(table=table, key=key, description=f"Lifecycle run {ref.run_id}")
    settings = get_settings()
    graph = (
        f"http://{settings.api_host}:{settings.api_port}"
        f"/lifecycle/playbooks/{ref.event_type}/graph.svg"
    )
    create_markdown_artifact(
        key=f"lifecycle-playbook-{ref.event_type.replace('.', '-')}",
        markdown=report.playbook_markdown(ref.frozen_playbook(), graph_url=graph),
        description=f"The {ref.event_type} playbook this run followed (its DAG: {graph})",
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=(
            f"# {ref.event_type} for {ref.person_key}: {status}\n\n"
            + "\n".join(f"- **{t['step']}** ({t['kind']}): {t['status']}" for t in table)
        ),
        description="Lifecycle run summary",
    )


def close_abandoned(tenant_id: uuid.UUID, run_id: uuid.UUID, *, cancelled: bool, why: str) -> None:
    """A run whose flow run is gone (cancelled, crashed): compensated from the saga log, then
    cancelled, or parked for an admin. Called by the maintenance flow."""
    with flow_database().session(tenant_id, write=True) as session:
        runs.set_status(session, run_id, RunStatus.COMPENSATING)
        plan = [(row.id, row.step_id) for row in saga.to_undo(session, run_id)]
    compensate_plan(tenant_id, plan)
    with flow_database().session(tenant_id, write=True) as session:
        if cancelled:
            runs.finish(session, run_id, RunStatus.CANCELLED, f"its flow run was {why.lower()}")
            return
        run = session.get(LifecycleRun, run_id)
        step = saga.interrupted_step(session, run_id)
        if step is not None:
            if step.status == StepStatus.RUNNING:
                saga.failed_for_good(session, step, step.error or f"flow run {why}", parked=False)
            dead_letters.park(session, run, step)
        runs.finish(session, run_id, RunStatus.DEAD_LETTERED, f"its flow run {why.lower()}")
