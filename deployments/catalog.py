"""Every Quire deployment, declared once.

Two renderings follow from this catalog:

- `runner_deployments()`: what `quire worker` serves in the embedded mode;
- `prefect.yaml` (`deployments/prefect_yaml.py`, written by `quire deployments render`): what
  `prefect --no-prompt deploy --all` creates in server mode, on the `quire` work pool.

A new deployment (payroll, reconciliation) is one more `Deployment` here, then
`quire deployments render`; a test fails while the checked-in prefect.yaml is not the rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import Flow
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.lifecycle import lifecycle_flow
from flows.maintenance import marketplace_maintenance
from flows.notify_finance import notify_finance
from flows.outbox_relay import outbox_relay
from flows.payroll_run import payroll_run
from flows.qa_pipeline import qa_pipeline
from flows.reconcile_ledger import reconcile_ledger
from tasks.reconciliation import FAILED_EVENT

WORK_POOL = "quire"  # server mode: the pool `prefect deploy --all` targets and workers poll


@dataclass(frozen=True)
class Deployment:
    name: str
    flow: Flow[..., Any]
    entrypoint: str  # relative to the project root (where prefect.yaml is)
    description: str
    cron: str | None = None
    timezone: str = "UTC"
    concurrency_limit: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    # Runs are created with parameters validated against the flow's typed signature.
    enforce_parameter_schema: bool = True
    # Automations that run this deployment: Prefect deployment triggers (event, match, expect,
    # parameters templated from the event), the same in `serve` and in prefect.yaml.
    triggers: tuple[dict[str, Any], ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.flow.name}/{self.name}"


CATALOG: tuple[Deployment, ...] = (
    Deployment(
        name="qa-pipeline",
        flow=qa_pipeline,
        entrypoint="flows/qa_pipeline.py:qa_pipeline",
        description=(
            "QA of one submission: automated checks, human review stages (suspended until a "
            "reviewer decides), then acceptance and earnings. Started by the outbox relay for "
            "order.submitted."
        ),
        tags=("quire", "qa"),
    ),
    Deployment(
        name="outbox-relay",
        flow=outbox_relay,
        entrypoint="flows/outbox_relay.py:outbox_relay",
        description=("Hands unrelayed domain events to Prefect (order.submitted starts a QA run)."),
        cron="* * * * *",
        concurrency_limit=1,
        parameters={"max_batches": 50},
        tags=("quire", "relay"),
    ),
    Deployment(
        name="maintenance",
        flow=marketplace_maintenance,
        entrypoint="flows/maintenance.py:marketplace_maintenance",
        description=(
            "Hourly: releases overdue claims, expires stale orders, hands back work whose "
            "review timed out, fails payroll runs whose flow run was cancelled or timed out, "
            "prunes relayed events past retention, publishes marketplace statistics."
        ),
        cron="0 * * * *",
        concurrency_limit=1,
        tags=("quire", "maintenance"),
    ),
    Deployment(
        name="payroll-run",
        flow=payroll_run,
        entrypoint="flows/payroll_run.py:payroll_run",
        description=(
            "A tenant's monthly payroll: FX rates, lines computed set-based, a Great "
            "Expectations gate, a preview, four-eyes approval (paused, then suspended, until a "
            "finance user decides), one ledger batch, ISO 20022 payout files. The schedule (no "
            "tenant) starts one run per tenant with a payroll profile for the month just ended."
        ),
        # 06:00 on the 2nd, London time: the month has ended in every European tenant's zone.
        cron="0 6 2 * *",
        timezone="Europe/London",
        tags=("quire", "payroll"),
    ),
    Deployment(
        name="reconcile-ledger",
        flow=reconcile_ledger,
        entrypoint="flows/reconcile_ledger.py:reconcile_ledger",
        description=(
            "Matches the bank's statements with the payouts (end-to-end id, amount + date + "
            "name, one debit per payout file), settles what the bank paid, reverses returns, "
            "queues exceptions, then proves the ledger's invariants with Great Expectations "
            "inside the database. Emits quire.reconciliation.failed when finance is needed. "
            "The daily schedule (no tenant) reconciles every tenant with statements."
        ),
        cron="0 7 * * *",
        timezone="Europe/London",
        concurrency_limit=1,
        tags=("quire", "reconciliation"),
    ),
    Deployment(
        name="lifecycle",
        flow=lifecycle_flow,
        entrypoint="flows/lifecycle.py:lifecycle_flow",
        description=(
            "Carries out one person's lifecycle event (onboarding, exit, transfer) with the "
            "tenant's playbook: every step a task with its own retries, independent steps "
            "concurrently, one person's events in order, what succeeded undone in reverse "
            "when a step fails for good, the run parked as a dead letter. Started by the "
            "outbox relay for each event; replays of dead letters start it again."
        ),
        tags=("quire", "lifecycle"),
    ),
    Deployment(
        name="notify-finance",
        flow=notify_finance,
        entrypoint="flows/notify_finance.py:notify_finance",
        description=(
            "Mails the tenant's finance users over SMTP that a reconciliation needs them. Run "
            "by the automation on quire.reconciliation.failed."
        ),
        tags=("quire", "reconciliation"),
        triggers=(
            {
                "type": "event",
                "name": "finance on a failed reconciliation",
                "enabled": True,
                "match": {"prefect.resource.id": "quire.tenant.*"},
                "expect": [FAILED_EVENT],
                "posture": "Reactive",
                "threshold": 1,
                "within": 0,
                "parameters": {
                    "tenant": "{{ event.resource['quire.tenant'] }}",
                    "period": "{{ event.resource['quire.period'] }}",
                    "reason": "{{ event.payload.reason }}",
                    "reconciliation_id": "{{ event.payload.reconciliation_id }}",
                },
            },
        ),
    ),
)


def runner_deployments(*, schedules: bool = True) -> list[Any]:
    """The catalog as `RunnerDeployment`s for `serve` (`schedules=False`: on demand only)."""
    return [
        d.flow.to_deployment(
            name=d.name,
            description=d.description,
            schedules=[Cron(d.cron, timezone=d.timezone)] if schedules and d.cron else None,
            parameters=d.parameters,
            tags=list(d.tags),
            concurrency_limit=d.concurrency_limit,
            enforce_parameter_schema=d.enforce_parameter_schema,
            triggers=[DeploymentEventTrigger(**trigger) for trigger in d.triggers] or None,
        )
        for d in CATALOG
    ]
