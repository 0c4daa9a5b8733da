"""Maintenance tasks: each sweeps in committed batches until nothing is left to do.

A batch is one short transaction, so a sweep over a large backlog never holds locks for long and
a crash loses at most the batch in flight (the next hourly run picks the rest up).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from quire.db import utcnow
from quire.events import retention
from quire.lifecycle import maintenance as lifecycle_maintenance
from quire.orders import maintenance, report, statistics
from quire.payroll import runs as payroll_runs
from quire.qa import runs
from quire.qa import service as qa
from quire.settings import get_settings
from tasks import lifecycle
from tasks.database import flow_database

BATCH = 1000
# A payroll run opened this long ago without a flow run never will get one.
NEVER_STARTED = dt.timedelta(minutes=15)


def _sweep(step: Callable[[Session], int]) -> int:
    total = 0
    while True:
        with flow_database().session(write=True) as session:
            done = step(session)
        total += done
        if done < BATCH:
            return total


@task(name="Release claims past their deadline", retries=2, retry_delay_seconds=5)
def release_overdue_claims() -> int:
    now = utcnow()
    return _sweep(lambda s: len(maintenance.release_overdue_claims(s, now, limit=BATCH)))


@task(name="Expire stale orders", retries=2, retry_delay_seconds=5)
def expire_stale_orders() -> int:
    now = utcnow()
    return _sweep(lambda s: len(maintenance.expire_stale_orders(s, now, limit=BATCH)))


@task(name="Prune relayed events past retention", retries=2, retry_delay_seconds=5)
def prune_events() -> int:
    cutoff = retention.retention_cutoff(utcnow(), get_settings().event_retention_days)
    return _sweep(lambda s: retention.prune_events(s, cutoff, limit=BATCH))


@task(name="Hand back work whose review never came", retries=2, retry_delay_seconds=5)
def hand_back_unanswered_reviews() -> int:
    """A suspended QA run that times out is failed by Prefect's server, where no flow hook runs:
    without this its order would stay in review for good. The specialist gets it back and a
    resubmission starts a fresh run."""
    hours = get_settings().review_timeout_hours
    cutoff = utcnow() - dt.timedelta(hours=hours)
    database = flow_database()
    with database.session() as session:
        waiting = runs.unanswered_reviews(session, cutoff)
    handed_back = 0
    for tenant_id, submission_id in waiting:
        with database.session(tenant_id, write=True) as session:
            subject = qa.load_subject(session, submission_id)
            reason = f"no review decision within {hours:g} hours"
            handed_back += qa.give_back_after_failure(session, subject, reason)
    return handed_back


@task(name="Release payroll runs whose flow run ended", retries=2, retry_delay_seconds=5)
def release_abandoned_payroll_runs() -> int:
    """A payroll flow run cancelled, failed or timed out while suspended for approval ends on
    Prefect's server, where no flow hook runs: without this sweep its run would hold the period.
    The run fails (nothing was posted) and the period is free for a new attempt."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType

    database = flow_database()
    released = 0
    for tenant_id, run_id in payroll_runs.never_started(database, utcnow() - NEVER_STARTED):
        with database.session(tenant_id, write=True) as session:
            payroll_runs.fail(session, run_id, "its flow run was never created")
            released += 1
    waiting = payroll_runs.unfinished_runs(database)
    if not waiting:
        return released
    ended = (StateType.CANCELLED, StateType.FAILED, StateType.CRASHED)
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[f for *_, f in waiting]))
        )
    states = {f.id: f.state for f in flow_runs}
    for tenant_id, run_id, flow_run_id in waiting:
        state = states.get(flow_run_id)
        if state is None or state.type not in ended:
            continue
        reason = f"its flow run was {state.type.value.lower()}: {state.message or state.name}"
        with database.session(tenant_id, write=True) as session:
            failed = payroll_runs.fail(session, run_id, reason, flow_run_id=flow_run_id)
            released += failed.status == "failed"
    return released


@task(name="Release lifecycle events that came due", retries=2, retry_delay_seconds=5)
def release_due_lifecycle_events() -> int:
    """Exits dated in the future run on their day (UTC): their events go to the relay."""
    return lifecycle_maintenance.release_due_events(flow_database(), utcnow().date())


@task(name="Compensate lifecycle runs whose flow run ended", retries=2, retry_delay_seconds=5)
def compensate_abandoned_lifecycle_runs() -> int:
    """A lifecycle run whose flow run was cancelled through Prefect, or crashed (a worker
    killed, even mid-compensation), is compensated here from its saga log: its undos run in
    reverse order, each retried. A cancelled run ends cancelled; a crashed one is parked as a
    dead letter for an admin to replay. Undos of finished runs that failed every retry are
    tried again. Returns how many runs were closed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType

    database = flow_database()
    for tenant_id, run_id in lifecycle_maintenance.runs_left_to_undo(database):
        lifecycle.finish_compensations(tenant_id, run_id)
    in_flight = [r for r in lifecycle_maintenance.runs_in_flight(database) if r[2] is not None]
    if not in_flight:
        return 0
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[f for *_, f in in_flight]))
        )
    states = {f.id: f.state for f in flow_runs}
    ended = (StateType.CANCELLED, StateType.CANCELLING, StateType.FAILED, StateType.CRASHED)
    closed = 0
    for tenant_id, run_id, flow_run_id in in_flight:
        state = states.get(flow_run_id)
        if state is None or state.type not in ended:
            continue
        cancelled = state.type in (StateType.CANCELLED, StateType.CANCELLING)
        lifecycle.close_abandoned(tenant_id, run_id, cancelled=cancelled, why=state.name)
        closed += 1
    return closed


@task(name="Gather marketplace statistics")
def gather_statistics() -> dict[str, Any]:
    with flow_database().session() as session:
        return statistics.marketplace_statistics(session)


@task(name="Publish the statistics")
def publish_statistics(stats: dict[str, Any]) -> str:
    create_markdown_artifact(
        markdown=report.statistics_markdown(stats),
        key="marketplace-statistics",
        description="Orders by status and the outbox backlog, as of the last maintenance run",
    )
    return report.statistics_line(stats)
