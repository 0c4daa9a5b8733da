"""Reconciliation tasks: each one named step of the reconcile-ledger and notify-finance flows.

Matching commits before the suites run (Great Expectations reads through its own connections
and sees committed rows only). A failed suite or an open exception emits the Prefect event
`quire.reconciliation.failed`, on which prefect.yaml's automation runs notify-finance.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel

from quire import mail
from quire.correlation import correlated
from quire.people.actor import Actor
from quire.reconciliation import exceptions, report, runs, service
from quire.reconciliation.matching import MatchSettings
from quire.reconciliation.models import BankStatement, ExceptionStatus
from quire.settings import get_settings
from tasks.database import flow_database
from tasks.tenants import tenant_id_of, this_flow_run

FAILED_EVENT = "quire.reconciliation.failed"


class Outcome(BaseModel):
    """What the flow carries from step to step, and answers."""

    tenant_id: uuid.UUID
    tenant: str
    reconciliation_id: uuid.UUID
    period: str
    status: str
    statement: str
    open_exceptions: int
    suites_passed: bool | None = None
    data_docs_index: str | None = None
    alarm: str | None = None  # why quire.reconciliation.failed was emitted, if it was


@task(name="Import the statement file", cache_policy=NO_CACHE)
def import_statement_file(tenant: str, path: str) -> list[uuid.UUID]:
    """A camt.053 or MT940 file ops named in the deployment's form, stored once (as an upload
    would be; a file already imported answers what it stored)."""
    tenant_id = tenant_id_of(tenant)
    file = Path(path)
    with (
        correlated(this_flow_run()),
        flow_database().session(tenant_id, write=True) as session,
    ):
        stored = service.import_statements(
            session, Actor.system(tenant_id), file.name, file.read_bytes()
        )
        return [statement.id for statement in stored]


@task(name="Find the statements to reconcile", cache_policy=NO_CACHE)
def statements_to_reconcile(tenant: str, statement_id: uuid.UUID | None) -> list[uuid.UUID]:
    tenant_id = tenant_id_of(tenant)
    if statement_id is not None:
        return [statement_id]
    with flow_database().session(tenant_id) as session:
        return service.pending_statements(session)


@task(name="Match, settle and raise exceptions", cache_policy=NO_CACHE)
def match_statement(tenant: str, statement_id: uuid.UUID) -> Outcome:
    """One transaction: what the rules matched is settled, the rest is queued."""
    from prefect.runtime import flow_run

    settings = get_settings()
    tenant_id = tenant_id_of(tenant)
    flow_run_id = uuid.UUID(flow_run.get_id()) if flow_run.get_id() else None
    with (
        correlated(this_flow_run()),
        flow_database().session(tenant_id, write=True) as session,
    ):
        run = runs.reconcile_statement(
            session,
            Actor.system(tenant_id),
            statement_id,
            MatchSettings(
                window_days=settings.reconciliation_window_days,
                name_threshold=settings.reconciliation_name_threshold,
            ),
            flow_run_id=flow_run_id,
        )
        stored = session.get(BankStatement, statement_id)
        return Outcome(
            tenant_id=tenant_id,
            tenant=tenant,
            reconciliation_id=run.id,
            period=run.period or "",
            status=run.status,
            statement=stored.statement_id if stored else str(statement_id),
            open_exceptions=int(run.summary.get("exceptions_open", 0)),
        )


@task(name="Prove the ledger (Great Expectations)", cache_policy=NO_CACHE, persist_result=False)
def prove_ledger(outcome: Outcome) -> Outcome:
    """The invariant suites, inside the database, after the matching committed; Data Docs
    under the reports directory."""
    from quire.reconciliation.expectations import LedgerSuites  # GX loads only here

    settings = get_settings()
    docs = settings.reports_dir / "reconciliation" / str(outcome.reconciliation_id) / "data-docs"
    suites = LedgerSuites(flow_database(), data_docs_dir=docs)
    try:
        result = suites.run(outcome.tenant_id, run_name=f"reconciliation-{outcome.period}")
    finally:
        suites.close()
    with flow_database().session(outcome.tenant_id, write=True) as session:
        run = service.record_suites(session, outcome.reconciliation_id, result.to_json())
        status = run.status
    return outcome.model_copy(
        update={
            "status": status,
            "suites_passed": result.success,
            "data_docs_index": str(result.data_docs_index) if result.data_docs_index else None,
        }
    )


@task(name="Publish the reconciliation report", cache_policy=NO_CACHE)
def publish_report(outcome: Outcome) -> None:
    with flow_database().session(outcome.tenant_id) as session:
        run = service.get_reconciliation(session, outcome.reconciliation_id)
        markdown = report.summary_markdown(
            run,
            statement=outcome.statement,
            api_link=f"/reconciliations/{outcome.reconciliation_id}",
        )
        rows = report.exception_rows(
            exceptions.list_exceptions(session, status=ExceptionStatus.OPEN)
        )
    key = f"reconciliation-{outcome.tenant}-{outcome.period}".lower()
    create_markdown_artifact(markdown=markdown, key=key, description="Reconciliation summary")
    if rows:
        create_table_artifact(
            table=rows, key=f"{key}-exceptions", description="Open reconciliation exceptions"
        )


@task(name="Raise the alarm", cache_policy=NO_CACHE)
def announce_failure(outcome: Outcome) -> dict[str, Any] | None:
    """Emit quire.reconciliation.failed when a suite failed or exceptions wait; the
    automation declared in prefect.yaml runs notify-finance on it."""
    if outcome.suites_passed is not False and not outcome.open_exceptions:
        return None
    reason = (
        "a ledger invariant failed"
        if outcome.suites_passed is False
        else f"{outcome.open_exceptions} exception(s) wait in the queue"
    )
    event = emit_event(
        FAILED_EVENT,
        resource={
            "prefect.resource.id": f"quire.tenant.{outcome.tenant}.reconciliation.{outcome.period}",
            "quire.tenant": outcome.tenant,
            "quire.period": outcome.period,
        },
        payload={
            "reason": reason,
            "reconciliation_id": str(outcome.reconciliation_id),
            "status": outcome.status,
        },
    )
    return {"event": FAILED_EVENT, "id": str(event.id) if event else None, "reason": reason}


@task(
    name="Mail the tenant's finance users",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_jitter_factor=0.5,
)
def mail_finance(tenant: str, period: str, reason: str, reconciliation_id: str) -> list[str]:
    settings = get_settings()
    with flow_database().session(tenant_id_of(tenant)) as session:
        recipients = service.finance_emails(session)
    if not recipients:
        return []
    link = f"/reconciliations/{reconciliation_id}" if reconciliation_id else "/reconciliations"
    subject, body = report.alert_text(tenant, period, reason, link)
    mail.send(settings, recipients, subject, body)
    return recipients
