"""Every Quire deployment, as Python: what `quire worker` serves in the embedded mode.

`prefect.yaml` declares the same deployments for `prefect deploy --all` (server mode, work pool
`quire`); a test checks that both say the same thing (names, entrypoints, schedules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import Flow
from prefect.schedules import Cron

from flows.maintenance import marketplace_maintenance
from flows.outbox_relay import outbox_relay
from flows.qa_pipeline import qa_pipeline


@dataclass(frozen=True)
class Deployment:
    name: str
    flow: Flow[..., Any]
    entrypoint: str
    description: str
    cron: str | None = None
    timezone: str = "UTC"
    concurrency_limit: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.flow.name}/{self.name}"


CATALOG: tuple[Deployment, ...] = (
    Deployment(
        name="qa-pipeline",
        flow=qa_pipeline,
        entrypoint="flows/qa_pipeline.py:qa_pipeline",
        description="QA of one submission, from automated checks to a verdict.",
        tags=("quire", "qa"),
    ),
    Deployment(
        name="outbox-relay",
        flow=outbox_relay,
        entrypoint="flows/outbox_relay.py:outbox_relay",
        description="Hands unrelayed domain events to Prefect.",
        cron="* * * * *",
        concurrency_limit=1,
        parameters={"max_batches": 50},
        tags=("quire", "relay"),
    ),
    Deployment(
        name="maintenance",
        flow=marketplace_maintenance,
        entrypoint="flows/maintenance.py:marketplace_maintenance",
        description="Hourly marketplace maintenance.",
        cron="0 * * * *",
        concurrency_limit=1,
        tags=("quire", "maintenance"),
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
            enforce_parameter_schema=True,
        )
        for d in CATALOG
    ]
