"""A person joins, leaves or moves: their playbook, carried out step by step.

    open the event's run (its playbook frozen, one saga-log row per step)
    -> wait until the person's earlier events are done (one person, one run at a time)
    -> begin
    -> every step as a task, each as soon as the steps it needs are done (independent ones
       concurrently), with its own retries, backoff, jitter and timeout
    -> all done: completed
       a step failed for good:
         an exit (the playbook carries on past failures): the failure parked, the rest done,
           completed with failures, a dead letter for an admin
         otherwise: compensate (undo what succeeded, last first), a dead letter
    -> publish the report

The outbox relay starts one such flow run per event (idempotently, keyed by the event); an
admin's replay of a dead letter starts another for the same run, which skips what is done.
A cancelled flow run is compensated by the maintenance flow, from the saga log.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import allow_failure, flow, get_run_logger
from prefect.futures import PrefectFuture, wait
from pydantic import BaseModel

from quire.lifecycle.models import RunStatus
from quire.lifecycle.playbooks import topological_layers
from tasks import lifecycle
from tasks.tenants import tenant_id_of


class LifecycleOutcome(BaseModel):
    run_id: uuid.UUID | None = None
    status: str
    failed_steps: list[str] = []
    compensated: list[str] = []
    dead_letter: int | None = None


@flow(name="lifecycle", log_prints=True)
def lifecycle_flow(tenant: str, event_id: uuid.UUID) -> LifecycleOutcome:
    """Carry out one lifecycle event (`event_id`) of tenant `tenant` (its slug)."""
    ref = lifecycle.open_run(tenant_id_of(tenant), event_id)
    if ref is None:
        return LifecycleOutcome(status="no playbook for this event type: nothing to do")
    lifecycle.wait_for_turn(ref)
    if not lifecycle.begin(ref):
        return LifecycleOutcome(run_id=ref.run_id, status="already finished")

    settled = lifecycle.settle_outcomes(ref, carry_out(ref))

    outcome = LifecycleOutcome(run_id=ref.run_id, status=str(RunStatus.COMPLETED))
    if settled.failed:
        outcome.dead_letter = lifecycle.park(ref, settled.failed[0])  # with the step's error
        outcome.compensated = lifecycle.compensate(ref)
        status, why = RunStatus.DEAD_LETTERED, f"failed: {', '.join(settled.failed)}"
    elif settled.parked:
        outcome.dead_letter = lifecycle.park(ref, settled.parked[0])
        status, why = RunStatus.COMPLETED_WITH_FAILURES, f"parked: {', '.join(settled.parked)}"
    else:
        status, why = RunStatus.COMPLETED, None
    lifecycle.finish(ref, status, why)
    outcome.status = str(status)
    outcome.failed_steps = settled.failed + settled.parked
    lifecycle.publish_report(ref)
    get_run_logger().info("%s for %s: %s", ref.event_type, ref.person_key, outcome.status)
    return outcome


def carry_out(ref: lifecycle.RunRef) -> list[str]:
    """Submit every step, in dependency order, waiting for the futures of the steps it needs;
    wait for all. A step the playbook carries on past is waited for whatever its end
    (`allow_failure`); a failure of any other step keeps the steps that need it from starting.
    Returns the steps that did not complete."""
    playbook = ref.frozen_playbook()
    futures: dict[str, PrefectFuture[dict[str, Any]]] = {}
    for layer in topological_layers(playbook):
        for step in layer:
            needs = [
                allow_failure(futures[n])
                if playbook.continues_past(playbook.step(n))
                else futures[n]
                for n in step.needs
            ]
            futures[step.id] = lifecycle.step_task(step).submit(ref, step, wait_for=needs)
    wait(list(futures.values()))
    return [step_id for step_id, f in futures.items() if not f.state.is_completed()]
