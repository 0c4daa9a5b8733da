"""Payroll tasks: each one named step of the run, over the domain (quire.payroll).

The day's FX rates are cached by Prefect (key: provider + date) and the download retries with
exponential backoff and jitter while the provider is down; a refusal (4xx, a malformed file) is
not retried. Every other step is idempotent through the database, so a resumed or re-run flow run
goes on from where the run is: a step already done answers with what it did.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import Task, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from quire.correlation import correlated
from quire.db import utcnow
from quire.payroll import approvals, files, fx_rates, lines, payslips, periods, report, runs
from quire.payroll.approvals import ApprovalData
from quire.payroll.errors import RatesUnavailable
from quire.payroll.models import PayrollRun
from quire.people.actor import Actor
from quire.people.models import User
from quire.settings import get_settings
from tasks.database import flow_database
from tasks.tenants import tenant_id_of, this_flow_run

RATES_CACHE_FOR = dt.timedelta(days=2)
# Every step but the rates download reads and writes the database, which is where a run's state
# lives: none of them may answer a resumed or re-run flow run from Prefect's cache (a cached
# "Open the payroll run" would report the run as it was before the suspension).


class RunRef(BaseModel):
    """What the flow carries from step to step: which run, and where it stands."""

    tenant_id: uuid.UUID
    run_id: uuid.UUID
    period: str
    attempt: int
    status: str
    dry_run: bool
    has_lines: bool
    started_by: uuid.UUID | None = None

    @classmethod
    def of(cls, run: PayrollRun, has_lines: bool) -> RunRef:
        return cls(
            tenant_id=run.tenant_id,
            run_id=run.id,
            period=run.period,
            attempt=run.attempt,
            status=run.status,
            dry_run=run.dry_run,
            has_lines=has_lines,
            started_by=run.started_by,
        )


class GateOutcome(BaseModel):
    success: bool
    failed: list[str]
    data_docs_index: str | None
    seconds: float


@task(name="Open the payroll run", cache_policy=NO_CACHE)
def open_run(
    tenant: str,
    period: str,
    payout_date: dt.date | None,
    dry_run: bool,
    run_id: uuid.UUID | None,
    flow_run_id: uuid.UUID | None,
) -> RunRef:
    """The run the API opened (`run_id`), the one this flow run opened before (a re-run), or a
    new attempt for the period (a start from the Prefect UI or the schedule)."""
    tenant_id = tenant_id_of(tenant)
    with correlated(this_flow_run()), flow_database().session(tenant_id, write=True) as session:
        if not period and run_id is None:  # the UI's form left it empty: the month just ended
            zone = periods.zone(runs.profile(session).time_zone)
            period = periods.previous(dt.datetime.now(zone).date())
        if run_id is not None:
            run = runs.get_run(session, run_id)
            if flow_run_id is not None:
                run = runs.attach_flow_run(session, run_id, flow_run_id)
        else:
            found = runs.find_by_flow_run(session, flow_run_id) if flow_run_id else None
            run = found or runs.open_run(
                session,
                None,
                period=period,
                payout_date=payout_date,
                dry_run=dry_run,
                flow_run_id=flow_run_id,
            )
        return RunRef.of(run, runs.has_lines(session, run.id))


def show_progress(run: RunRef, percent: float, artifact_id: uuid.UUID | None = None) -> uuid.UUID:
    """The run's progress in the Prefect UI (not a task: an artifact of the flow run itself)."""
    if artifact_id is None:
        return create_progress_artifact(
            progress=percent,
            key=f"payroll-{run.period}-a{run.attempt}-progress",
            description=f"Payroll {run.period} attempt {run.attempt}: how far it got",
        )
    update_progress_artifact(artifact_id, progress=percent)
    return artifact_id


def only_when_unavailable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a provider that is down or slow; one that refuses would refuse again."""
    try:
        state.result()
    except Exception as exc:  # the only question is whether to retry
        return fx_rates.is_retryable(exc)
    return False


def only_operational(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry posting after a dropped connection or a serialization failure, not after a refusal
    (a payable too small, a run not approved): that would be refused again."""
    try:
        state.result()
    except OperationalError:
        return True
    except Exception:  # the only question is whether to retry
        return False
    return False


def by_provider_and_day(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return fx_rates.cache_key(get_settings(), parameters["day"])


@task(
    name="Fetch the day's FX reference rates",
    cache_key_fn=by_provider_and_day,
    cache_expiration=RATES_CACHE_FOR,
    retries=4,
    retry_jitter_factor=0.5,
    retry_condition_fn=only_when_unavailable,
)
def fetch_rates(day: dt.date) -> dict[str, Any]:
    settings = get_settings()
    return fx_rates.fetch_rates(
        settings.fx_rates_url, timeout=settings.fx_timeout_seconds
    ).to_json()


@task(name="Read the fallback FX rates file", cache_policy=NO_CACHE)
def fallback_rates() -> dict[str, Any]:
    path = get_settings().fx_rates_fallback_file
    if not path:
        raise RatesUnavailable(
            "the FX rates provider is unavailable and no fallback file is configured "
            "(QUIRE_FX_RATES_FILE)"
        )
    return fx_rates.load_rates_file(Path(path)).to_json()


@task(name="Fix the run's FX rates", cache_policy=NO_CACHE)
def fix_rates(run: RunRef, rates: dict[str, Any]) -> dict[str, Any]:
    """The first rates a run is given are the ones it keeps: a re-run converts with them."""
    with flow_database().session(run.tenant_id, write=True) as session:
        return runs.fix_rates(session, run.run_id, rates)


@task(name="Compute the lines", cache_policy=NO_CACHE, persist_result=False)
def compute_lines(run: RunRef) -> pd.DataFrame:
    """One SQL aggregate of the payables at the cutoff, converted and withheld set-based."""
    settings = get_settings()
    with flow_database().session(run.tenant_id) as session:
        stored = runs.get_run(session, run.run_id)
        table = fx_rates.RateTable.from_json(stored.fx_rates or {})
        profile = runs.profile(session)
        return lines.compute(
            session,
            run_id=stored.id,
            period=stored.period,
            attempt=stored.attempt,
            cutoff=stored.cutoff_at,
            as_of=stored.created_at,
            cooling_days=settings.payout_details_cooling_days,
            minimums=profile.minimum_payouts or {},
            rate=table.rate,
            rate_source=table.source_label,
        )


@task(name="Validate the lines (Great Expectations)", cache_policy=NO_CACHE, persist_result=False)
def validate_lines(run: RunRef, frame: pd.DataFrame) -> dict[str, Any]:
    """The gate: nothing is posted unless every expectation holds. Data Docs are written under
    the reports directory whatever the outcome."""
    from quire.payroll import expectations  # Great Expectations loads only where the gate runs

    settings = get_settings()
    with flow_database().session(run.tenant_id) as session:
        stored = runs.get_run(session, run.run_id)
        previous = runs.previous_rates(session, stored)
        gate = expectations.GateInput(
            lines=frame,
            selected_totals=lines.selected_totals(session, stored.cutoff_at),
            provider_per_eur=fx_rates.RateTable.from_json(stored.fx_rates or {}).per_eur,
            previous_per_eur=(
                {currency: Decimal(rate) for currency, rate in previous.items()}
                if previous
                else None
            ),
            held_specialists=lines.held_specialists(
                session, stored.created_at, settings.payout_details_cooling_days
            ),
            provider_tolerance=settings.fx_provider_tolerance,
            previous_tolerance=settings.fx_previous_run_tolerance,
        )
    docs = settings.reports_dir / files.run_directory(stored) / "data-docs"
    result = expectations.run_gate(
        gate, data_docs_dir=docs, run_name=f"{run.period}-a{run.attempt}"
    )
    return result.to_json()


@task(name="Keep the lines with the run", cache_policy=NO_CACHE)
def keep_lines(run: RunRef, frame: pd.DataFrame, gate: dict[str, Any]) -> RunRef:
    with flow_database().session(run.tenant_id, write=True) as session:
        stored = runs.get_run(session, run.run_id)
        runs.store_lines(session, stored, frame)
        stored = runs.record_gate(session, run.run_id, gate)
        return RunRef.of(stored, True)


@task(name="Publish the gate's failures", cache_policy=NO_CACHE)
def publish_gate_failure(run: RunRef, gate: dict[str, Any]) -> None:
    with flow_database().session(run.tenant_id) as session:
        stored = runs.get_run(session, run.run_id)
        markdown = report.gate_failure_markdown(stored, gate)
    create_markdown_artifact(
        markdown=markdown,
        key=f"payroll-{run.period}-a{run.attempt}-gate",
        description=f"Payroll {run.period}: failed expectations and their offending rows",
    )


@task(name="Publish the preview", cache_policy=NO_CACHE)
def publish_preview(run: RunRef) -> str:
    """A table (per specialist: payable, rate, payout, holds and why) and a summary."""
    with flow_database().session(run.tenant_id) as session:
        stored = runs.get_run(session, run.run_id)
        frame = runs.lines_frame(session, run.run_id)
        names = dict(
            (str(user_id), name)
            for user_id, name in session.execute(select(User.id, User.display_name))
        )
        markdown = report.summary_markdown(stored, frame, api_link=f"/payroll-runs/{run.run_id}")
    key = f"payroll-{run.period}-a{run.attempt}"
    create_table_artifact(
        table=report.preview_rows(frame, names),
        key=f"{key}-lines",
        description=f"Payroll {run.period} attempt {run.attempt}: the lines",
    )
    create_markdown_artifact(
        markdown=markdown, key=f"{key}-summary", description=f"Payroll {run.period}: summary"
    )
    return markdown


@task(name="Wait for approval: ask", cache_policy=NO_CACHE)
def mark_awaiting_approval(run: RunRef) -> RunRef:
    with flow_database().session(run.tenant_id, write=True) as session:
        return RunRef.of(runs.await_approval(session, run.run_id), True)


@task(name="Check the approver", cache_policy=NO_CACHE)
def vet_approval(run: RunRef, decision: ApprovalData) -> str | None:
    with flow_database().session(run.tenant_id) as session:
        stored = runs.get_run(session, run.run_id)
        return approvals.refusal(
            stored, approvals.approver_of(session, decision.approver), decision
        )


@task(name="Record the decision", cache_policy=NO_CACHE)
def record_decision(run: RunRef, decision: ApprovalData) -> RunRef:
    with (
        correlated(this_flow_run()),
        flow_database().session(run.tenant_id, write=True) as session,
    ):
        approver = approvals.approver_of(session, decision.approver)
        actor = Actor(approver.id, run.tenant_id, frozenset(approver.roles)) if approver else None
        stored = runs.decide(
            session,
            run.run_id,
            actor,
            approve=decision.decision == approvals.ApprovalChoice.APPROVE,
            comment=decision.comment,
        )
        return RunRef.of(stored, True)


@task(
    name="Post the payouts (one ledger batch)",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=only_operational,
)
def post_run(run: RunRef) -> RunRef:
    cooling_days = get_settings().payout_details_cooling_days
    with flow_database().session(run.tenant_id, write=True) as session:
        posted = runs.post(session, run.run_id, as_of=utcnow(), cooling_days=cooling_days)
        return RunRef.of(posted, True)


@task(name="Write the payout files", cache_policy=NO_CACHE)
def write_payout_files(run: RunRef) -> list[str]:
    reports_dir = get_settings().reports_dir
    with flow_database().session(run.tenant_id, write=True) as session:
        stored = runs.get_run(session, run.run_id)
        written = files.write_files(session, stored, reports_dir)
        listing = [
            (f.name, f.format, f.line_count, f.sha256, str(reports_dir / f.path)) for f in written
        ]
    create_markdown_artifact(
        markdown="\n".join(
            [
                f"# Payroll {run.period}: files for the bank",
                "",
                "| file | format | payments | sha256 |",
                "|---|---|---:|---|",
                *(
                    f"| `{name}` | {fmt} | {count} | `{digest[:16]}…` |"
                    for name, fmt, count, digest, _ in listing
                ),
                "",
                f"Download: `GET /payroll-runs/{run.run_id}/files/<name>`",
            ]
        ),
        key=f"payroll-{run.period}-a{run.attempt}-files",
        description=f"Payroll {run.period}: payout files",
    )
    return [path for *_, path in listing]


@task(name="Issue the payslips", cache_policy=NO_CACHE)
def issue_payslips(run: RunRef) -> int:
    """One statement per paid specialist (a self-billing invoice version), set-based."""
    with flow_database().session(run.tenant_id, write=True) as session:
        return payslips.issue_for_run(session, runs.get_run(session, run.run_id))


def release_after_failure(
    tenant: str, run_id: str | uuid.UUID | None, flow_run_id: uuid.UUID, reason: str
) -> None:
    """Called by the flow's failure, crash and cancellation hooks (not a task: it runs after the
    flow run ended). A run that had posted nothing fails and frees its period."""
    tenant_id = tenant_id_of(tenant)
    with flow_database().session(tenant_id, write=True) as session:
        found = (
            runs.get_run(session, uuid.UUID(str(run_id)))
            if run_id
            else runs.find_by_flow_run(session, flow_run_id)
        )
        if found is not None:
            runs.fail(session, found.id, reason, flow_run_id=flow_run_id)


@task(name="Start each tenant's payroll", cache_policy=NO_CACHE)
def start_every_tenant(period: str | None) -> list[str]:
    """The monthly schedule: one run per tenant with a payroll profile, for the month just ended
    in its time zone (or `period`), unless that month is paid or in progress already."""
    from prefect.deployments import run_deployment

    started = []
    for tenant_id, slug, time_zone in runs.tenants_with_profiles(flow_database()):
        month = period or periods.previous(dt.datetime.now(periods.zone(time_zone)).date())
        with flow_database().session(tenant_id) as session:
            attempt = runs.next_attempt(session, month)
        if attempt is None:
            continue
        run_deployment(
            get_settings().payroll_deployment,
            parameters={"tenant": slug, "period": month},
            # Not the API's key for this attempt: a start through the API must never be handed
            # the schedule's flow run (which opens its own run).
            idempotency_key=f"payroll-schedule:{tenant_id}:{month}:{attempt}",
            timeout=0,
            as_subflow=False,
            tags=["quire", "payroll"],
        )
        started.append(f"{slug} {month}")
    return started
