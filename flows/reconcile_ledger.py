"""Reconcile the ledger: the bank's statements matched, the ledger's invariants proved.

    import the statement file ops named, or find the statements to reconcile (the one given,
      else every one not reconciled yet)
    -> for each: match, settle and raise exceptions (one transaction, committed)
    -> prove the ledger (Great Expectations suites inside the database, Data Docs)
    -> publish the report (summary, open exceptions)
    -> a suite failed or exceptions wait? emit quire.reconciliation.failed
       (the automation in prefect.yaml runs notify-finance on it)

Finance uploads statements through `POST /bank-statements`; ops may give a file's path, or a
stored statement's id, in this deployment's form. The daily schedule names no tenant and
reconciles every tenant that has statements.
"""

from __future__ import annotations

import uuid

from prefect import flow, get_run_logger
from pydantic import BaseModel

from quire.reconciliation import service
from tasks import reconciliation
from tasks.database import flow_database


class ReconcileOutcome(BaseModel):
    tenants: list[str] = []
    reconciliations: list[reconciliation.Outcome] = []


@flow(name="reconcile-ledger", log_prints=True)
def reconcile_ledger(
    tenant: str = "", statement_path: str = "", statement_id: uuid.UUID | None = None
) -> ReconcileOutcome:
    """Reconcile one tenant's statements (`tenant` slug), or every tenant's (no tenant).
    `statement_path`: a camt.053 or MT940 file to import first; its statements are the ones
    reconciled then."""
    if statement_path and not tenant:
        raise ValueError("a statement file belongs to a tenant: name the tenant")
    tenants = (
        [tenant]
        if tenant
        else [slug for _, slug in service.tenants_with_statements(flow_database())]
    )
    done: list[reconciliation.Outcome] = []
    for slug in tenants:
        statements = (
            reconciliation.import_statement_file(slug, statement_path)
            if statement_path
            else reconciliation.statements_to_reconcile(slug, statement_id)
        )
        for statement in statements:
            done.append(reconcile_one(slug, statement))
    return ReconcileOutcome(tenants=tenants, reconciliations=done)


def reconcile_one(tenant: str, statement: uuid.UUID) -> reconciliation.Outcome:
    """One statement: match and settle (committed), prove the ledger, report, raise the alarm."""
    outcome = reconciliation.match_statement(tenant, statement)
    outcome = reconciliation.prove_ledger(outcome)
    reconciliation.publish_report(outcome)
    alarm = reconciliation.announce_failure(outcome)
    if alarm:
        get_run_logger().warning(
            "reconciliation %s: %s", outcome.reconciliation_id, alarm["reason"]
        )
        outcome = outcome.model_copy(update={"alarm": alarm["reason"]})
    return outcome
