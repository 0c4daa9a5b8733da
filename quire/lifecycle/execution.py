"""Carrying out one attempt at one step, and one compensation, with the saga log kept.

Plain Python: the Prefect tasks in `tasks/lifecycle.py` call these and add what Prefect is
for (retries with backoff and jitter, timeouts, concurrency, the UI). One attempt:

1. the provider's circuit breaker admits the call or refuses it at once (`BreakerOpen`),
   before anything is loaded or rendered;
2. a step the saga log says is done (succeeded, or skipped) is not done again: its recorded
   output is returned (a resumed or replayed run picks up where it stopped);
3. its `when` is evaluated against the run's context; false: skipped;
4. its parameters are rendered from the context (the event, the person, the tenant and the
   outputs of the steps it follows);
5. its connection is found (none for an optional provider: skipped);
6. the attempt is counted, committed before the call;
7. the connector is called with the step's idempotency key (`<run id>:<step id>`, the same on
   every attempt and every replay);
8. the outcome goes into the saga log (output, undo) and the breaker hears of it.

A compensation calls the step's compensating kind with the undo the step recorded. It is not
refused by an open breaker: undoing is the one call that must be made; what its retries could
not undo, the maintenance flow tries again later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from quire.db import Database
from quire.lifecycle import breaker, saga, steps, templating
from quire.lifecycle.connectors.base import (
    ConnectorFailure,
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
    TransientFailure,
)
from quire.lifecycle.models import LifecycleEvent, LifecycleRun, SagaStep, StepStatus
from quire.lifecycle.playbooks import Playbook, Step
from quire.lifecycle.secrets import Keyring
from quire.people.models import Tenant
from quire.settings import Settings


@dataclass(frozen=True)
class Runtime:
    database: Database
    settings: Settings
    keyring: Keyring

    @property
    def breaker_policy(self) -> breaker.BreakerPolicy:
        return breaker.BreakerPolicy(
            threshold=self.settings.breaker_threshold,
            open_seconds=self.settings.breaker_open_seconds,
        )


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to (the step's status and output as the saga log has them)."""

    step_id: str
    status: StepStatus
    output: dict[str, Any]


def idempotency_key(run_id: uuid.UUID, step_id: str) -> str:
    return f"{run_id}:{step_id}"


def run_context(session: Any, run: LifecycleRun) -> dict[str, Any]:
    """What a step's templates and conditions may read (templating.py's context): `event`,
    `person`, `tenant` and `steps` (each finished step's output, by id; `{}` for the others)."""
    event = session.get(LifecycleEvent, run.event_id)
    tenant = session.get(Tenant, run.tenant_id)
    data = dict((event.payload or {}).get("data") or {})
    rows = session.scalars(select(SagaStep).where(SagaStep.run_id == run.id)).all()
    return templating.template_context(
        event={
            "id": str(event.id),
            "type": event.event_type,
            "occurred_at": event.occurred_at.isoformat(),
            "effective_on": event.effective_on.isoformat() if event.effective_on else None,
            "data": data,
        },
        person=dict(data.get("person") or {}),
        tenant={"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name},
        steps={r.step_id: r.output for r in rows if r.status == StepStatus.SUCCEEDED},
        step_ids=[r.step_id for r in rows],
    )


def frozen_step(run: LifecycleRun, step_id: str) -> Step:
    """A step of the playbook the run froze when it began."""
    return Playbook.model_validate(run.playbook).step(step_id)


def attempt_step(rt: Runtime, tenant_id: uuid.UUID, run_id: uuid.UUID, step: Step) -> Attempt:
    """One attempt at `step` (a step of the run's frozen playbook). Raises ConnectorFailure;
    the caller records the error (`record_attempt_error`) in a transaction of its own."""
    step_id = step.id
    binding = steps.binding(step.kind)
    missing: steps.NotConfigured | None = None
    if binding.provider in steps.REMOTE:
        # First: an open breaker fails the step before anything is loaded or rendered.
        breaker.admit(rt.database, tenant_id, binding.provider, rt.breaker_policy)
    with rt.database.session(tenant_id, write=True) as session:
        run = session.get(LifecycleRun, run_id)
        row = saga.step_of(session, run_id, step_id)
        if row.status in saga.DONE:
            return Attempt(step_id, StepStatus(row.status), dict(row.output or {}))
        context = run_context(session, run)
        condition = step.when
        if condition:
            try:
                wanted = templating.evaluate_condition(condition, context)
            except Exception as exc:  # a condition that cannot be evaluated for this event
                raise PermanentFailure(binding.provider, f"`when` failed: {exc}") from exc
            if not wanted:
                saga.skipped(session, row, f"when {condition!r} is false")
                return Attempt(step_id, StepStatus.SKIPPED, dict(row.output or {}))
        try:
            params = templating.render_params(step.params, context)
        except Exception as exc:
            raise PermanentFailure(binding.provider, f"its parameters: {exc}") from exc
        try:
            connection = steps.connection_for(
                binding.provider, session, rt.database, rt.settings, rt.keyring
            )
        except steps.NotConfigured as exc:
            if steps.skippable(step.kind):
                saga.skipped(session, row, f"no {binding.provider} connection")
                return Attempt(step_id, StepStatus.SKIPPED, dict(row.output or {}))
            missing = exc
        saga.attempt_started(session, row, params)
    if missing is not None:
        raise missing
    call = StepCall(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key(run_id, step_id),
        params=params,
        timeout_seconds=step.timeout_seconds,
    )
    outcome = _call(rt, binding, connection, call)
    compensation = step.compensation()
    with rt.database.session(tenant_id, write=True) as session:
        row = saga.step_of(session, run_id, step_id)
        saga.succeeded(session, row, outcome, compensation.kind if compensation else None)
        return Attempt(step_id, StepStatus.SUCCEEDED, dict(outcome.output))


def record_attempt_error(
    rt: Runtime, tenant_id: uuid.UUID, run_id: uuid.UUID, step_id: str, error: str
) -> None:
    """An attempt failed. One that failed before its call (a parameter that does not render,
    a missing connection) is counted here: the step was attempted."""
    with rt.database.session(tenant_id, write=True) as session:
        row = saga.step_of(session, run_id, step_id)
        if row.status == StepStatus.PENDING:
            saga.attempt_started(session, row, row.params or {})
        saga.attempt_failed(row, error)


def _call(rt: Runtime, binding: steps.Binding, connection: Any, call: StepCall) -> StepOutcome:
    """The connector call, and what the provider's breaker hears of it."""
    remote = binding.provider in steps.REMOTE
    try:
        outcome = binding.load()(connection, call)
    except TransientFailure:
        if remote:
            breaker.record_failure(rt.database, call.tenant_id, binding.provider, rt.breaker_policy)
        raise
    except ConnectorFailure:
        raise
    except Exception as exc:  # a connector bug: not worth retrying, but said plainly
        raise PermanentFailure(binding.provider, f"{type(exc).__name__}: {exc}") from exc
    if remote:
        breaker.record_success(rt.database, call.tenant_id, binding.provider)
    return outcome


def compensate_step(rt: Runtime, tenant_id: uuid.UUID, saga_step_id: int) -> bool:
    """Undo one succeeded step (its compensating kind, with its recorded undo). True when it
    is undone (now, or before). Raises ConnectorFailure for the task's retries."""
    with rt.database.session(tenant_id, write=True) as session:
        row = session.get(SagaStep, saga_step_id)
        if row is None or row.status == StepStatus.COMPENSATED:
            return True
        kind = row.compensation_kind
        if kind is None:
            return True
        saga.compensation_attempted(row)
        run_id, step_id, undo = row.run_id, row.step_id, dict(row.undo or {})
        run = session.get(LifecycleRun, run_id)
        compensation = frozen_step(run, step_id).compensation()
        params = dict(undo)
        if compensation is not None and compensation.params:
            # a playbook's own undo parameters, which may read what the step recorded
            context = {**run_context(session, run), templating.UNDO_KEY: undo}
            params.update(templating.render_params(compensation.params, context))
        binding = steps.binding(kind)
        connection = steps.connection_for(
            binding.provider, session, rt.database, rt.settings, rt.keyring
        )
    call = StepCall(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key(run_id, f"{step_id}:undo"),
        params=params,
        timeout_seconds=30.0,
    )
    _call(rt, binding, connection, call)
    with rt.database.session(tenant_id, write=True) as session:
        row = session.get(SagaStep, saga_step_id)
        saga.compensated(row)
        saga.audited(session, row, "compensated")
    return True


def compensation_gave_up(rt: Runtime, tenant_id: uuid.UUID, saga_step_id: int, error: str) -> None:
    with rt.database.session(tenant_id, write=True) as session:
        saga.compensation_failed(session.get(SagaStep, saga_step_id), error)


__all__ = [
    "Attempt",
    "Provider",
    "Runtime",
    "attempt_step",
    "compensate_step",
    "compensation_gave_up",
    "idempotency_key",
    "record_attempt_error",
    "run_context",
]
