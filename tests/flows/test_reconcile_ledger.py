"""The reconcile-ledger and notify-finance flows on a real Prefect API: a statement that pays
the payroll is matched and settled and the ledger's invariants pass (Data Docs written); one
that leaves an exception raises quire.reconciliation.failed; notify-finance mails the tenant's
finance users over SMTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from deployments.local_smtp import LocalMailbox
from flows.notify_finance import notify_finance
from flows.reconcile_ledger import reconcile_ledger
from quire.payroll.models import PayrollRun, RunStatus
from quire.reconciliation.models import Reconciliation, ReconciliationStatus
from quire.settings import get_settings
from tests.quire.reconciliation.payroll_cast import lines_of, paid_by_id, posted_run, statement


@pytest.fixture
def posted(prefect_api, flow_env, tmp_path):
    return posted_run(flow_env, tmp_path)


def artifact_keys(flow_run_id) -> set[str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in found if a.key}


def test_a_statement_that_pays_the_payroll_settles_it_and_proves_the_ledger(posted, flow_env):
    pw, run_id = posted
    statement(pw, *(paid_by_id(line) for line in lines_of(pw, run_id).values()))
    state = reconcile_ledger(tenant=pw.world.slug, return_state=True)
    outcome = state.result()
    [done] = outcome.reconciliations
    with flow_env.session(pw.tenant_id) as session:
        suites = session.get(Reconciliation, done.reconciliation_id).suites
    assert suites["failed"] == []
    assert done.status == ReconciliationStatus.CLEAN
    assert done.suites_passed is True
    assert done.alarm is None
    assert Path(done.data_docs_index).is_file()
    with flow_env.session(pw.tenant_id) as session:
        assert session.get(PayrollRun, run_id).status == RunStatus.PAID
    keys = artifact_keys(state.state_details.flow_run_id)
    assert f"reconciliation-{pw.world.slug}-{done.period}".lower() in keys
    # A second run finds nothing new to reconcile.
    assert reconcile_ledger(tenant=pw.world.slug).reconciliations == []


def test_an_exception_raises_the_alarm_and_lists_it(posted):
    pw, run_id = posted
    lines = lines_of(pw, run_id)
    statement(pw, *(paid_by_id(line) for line in lines.values()), {"amount_minor": 4_200})
    state = reconcile_ledger(tenant=pw.world.slug, return_state=True)
    [done] = state.result().reconciliations
    assert done.status == ReconciliationStatus.EXCEPTIONS
    assert done.suites_passed is True
    assert done.alarm == "1 exception(s) wait in the queue"
    keys = artifact_keys(state.state_details.flow_run_id)
    assert f"reconciliation-{pw.world.slug}-{done.period}-exceptions".lower() in keys


def test_notify_finance_mails_the_tenants_finance_users(posted, monkeypatch):
    pw, _ = posted
    with LocalMailbox() as mailbox:
        monkeypatch.setenv("QUIRE_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("QUIRE_SMTP_PORT", str(mailbox.port))
        get_settings.cache_clear()
        try:
            sent = notify_finance(
                tenant=pw.world.slug, period="2026-11", reason="1 exception(s) wait"
            )
        finally:
            get_settings.cache_clear()
        [message] = mailbox.messages
    assert sorted(sent) == sorted(message["To"].split(", "))
    assert f"finance2@{pw.world.slug}.test" in sent
    assert "reconciliation 2026-11" in message["Subject"]
    assert "1 exception(s) wait" in message.get_payload()


def test_ops_name_a_statement_file_in_the_form_and_it_is_imported_then_reconciled(posted, flow_env):
    from sqlalchemy import update

    from quire.payroll.models import PayrollProfile
    from tests.quire.reconciliation.statement_samples import DATA

    pw, _ = posted
    with flow_env.session(pw.tenant_id, write=True) as session:
        session.execute(update(PayrollProfile).values(debtor_iban="DE89370400440532013000"))
    path = DATA / "camt053_v02_returned_payout.xml"
    [done] = reconcile_ledger(tenant=pw.world.slug, statement_path=str(path)).reconciliations
    assert done.statement == "STMT-V02-2026-12-01"
    assert done.open_exceptions >= 1  # its lines pay nothing of this world's payroll
    again = reconcile_ledger(tenant=pw.world.slug, statement_path=str(path)).reconciliations
    assert [o.statement for o in again] == ["STMT-V02-2026-12-01"]  # the same statement
