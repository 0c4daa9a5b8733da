"""The payroll flow on a real Prefect API, started and approved through the HTTP API, executed by
the served deployment in a worker subprocess, against a fake ECB on a real socket.

    POST /payroll-runs -> the run computes, validates and previews, then waits (paused in its
    process, suspended once the hold is over)
    -> the starter's approval is refused (four eyes) -> a second finance user approves
    -> one ledger batch posted -> the bank's files written and downloadable
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from sqlalchemy import func, select

from ledger.balances import trial_balance
from ledger.fx import convert_minor
from ledger.models import Transfer
from quire.audit.models import AuditEntry
from quire.payroll.fx_rates import RateTable
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.payroll.payout_files import validate
from tests.flows.conftest import bearer, wait_until
from tests.flows.scenario import flow_run_state
from tests.quire.payroll.support import IBANS, build_payroll_world, this_period
from tests.support.world import Person

RUN_TIMEOUT = 240


@pytest.fixture
def payroll_world(flow_env):
    return build_payroll_world(flow_env, f"p{uuid.uuid4().hex[:8]}")


def second_finance(pw) -> Person:
    from quire.people.models import User

    with pw.database.session(pw.tenant_id) as session:
        user = session.scalar(select(User).where(User.email == f"finance2@{pw.world.slug}.test"))
        return Person(user.id, user.email, list(user.roles), pw.tenant_id, pw.world.slug)


def start(api, person: Person, **body) -> httpx.Response:
    return httpx.post(
        f"{api.base_url}/payroll-runs",
        json={"period": this_period(), **body},
        headers=bearer(person),
        timeout=60,
    )


def started(api, person: Person, **body) -> dict:
    """The 202 answer's body of a start that must succeed (the answer itself when it did not)."""
    response = start(api, person, **body)
    assert response.status_code == 202, response.text
    return response.json()


def decide(api, person: Person, run_id: str, decision: str, comment: str = "") -> httpx.Response:
    return httpx.post(
        f"{api.base_url}/payroll-runs/{run_id}/approval",
        json={"decision": decision, "comment": comment},
        headers=bearer(person),
        timeout=60,
    )


def run_status(pw, run_id: str) -> str:
    with pw.database.session(pw.tenant_id) as session:
        return session.scalar(select(PayrollRun.status).where(PayrollRun.id == uuid.UUID(run_id)))


def waiting_for_approval(pw, run_id: str) -> bool:
    if run_status(pw, run_id) != RunStatus.AWAITING_APPROVAL:
        return False
    with pw.database.session(pw.tenant_id) as session:
        flow_run_id = session.scalar(
            select(PayrollRun.flow_run_id).where(PayrollRun.id == uuid.UUID(run_id))
        )
    return flow_run_state(flow_run_id) == StateType.PAUSED


def flow_run_of(pw, run_id: str) -> uuid.UUID | None:
    with pw.database.session(pw.tenant_id) as session:
        return session.scalar(
            select(PayrollRun.flow_run_id).where(PayrollRun.id == uuid.UUID(run_id))
        )


def state_name(flow_run_id: uuid.UUID) -> str | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state.name if state else None


def state_names(flow_run_id: str | uuid.UUID) -> list[str]:
    """Every state the flow run went through, oldest first."""
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(uuid.UUID(str(flow_run_id)))
    return [state.name for state in sorted(states, key=lambda s: s.timestamp)]


def artifacts_of(flow_run_id: str) -> dict[str, str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])
            )
        )
    return {a.key: a.type for a in found if a.key}


def task_runs(flow_run_id: str) -> list[str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)]))
        )
    return [run.name.rsplit("-", 1)[0] for run in found]


def test_finance_starts_a_second_finance_user_approves_and_the_bank_gets_its_files(
    served, api, flow_env, payroll_world
):
    pw = payroll_world
    run_id = started(api, pw.world.finance)["id"]
    wait_until(lambda: waiting_for_approval(pw, run_id), timeout=RUN_TIMEOUT, what="approval")

    shown = httpx.get(
        f"{api.base_url}/payroll-runs/{run_id}", headers=bearer(pw.world.finance), timeout=30
    ).json()
    assert shown["gate"]["success"] is True
    usd_in_eur = convert_minor(
        30_000, "USD", "EUR", RateTable.from_json(shown["fx_rates"]).rate("USD", "EUR")
    )
    assert shown["totals"]["payout"]["EUR"]["amount_minor"] == 120_000 + usd_in_eur
    assert shown["data_docs_url"].endswith("/data-docs/index.html")
    kinds = artifacts_of(shown["flow_run_id"])
    assert kinds[f"payroll-{this_period()}-a1-lines"] == "table"
    assert kinds[f"payroll-{this_period()}-a1-summary"] == "markdown"
    docs = httpx.get(
        f"{api.base_url}{shown['data_docs_url']}", headers=bearer(pw.world.finance), timeout=30
    )
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]

    refused = decide(api, pw.world.finance, run_id, "approve")
    assert refused.status_code == 403
    assert refused.json()["code"] == "four_eyes"
    assert decide(api, second_finance(pw), run_id, "approve", "checked").status_code == 202

    wait_until(lambda: run_status(pw, run_id) == RunStatus.POSTED, timeout=RUN_TIMEOUT, what="post")
    shown = wait_until(
        lambda: (
            (
                body := httpx.get(
                    f"{api.base_url}/payroll-runs/{run_id}",
                    headers=bearer(pw.world.finance),
                    timeout=30,
                ).json()
            )["files"]
            and body
        ),
        timeout=RUN_TIMEOUT,
        what="the payout files",
    )
    formats = {f["format"]: f for f in shown["files"]}
    assert set(formats) == {"pain.001.001.03", "pain.001.001.09", "csv"}
    for fmt in ("pain.001.001.03", "pain.001.001.09"):
        download = httpx.get(
            f"{api.base_url}/payroll-runs/{run_id}/files/{formats[fmt]['name']}",
            headers=bearer(pw.world.finance),
            timeout=30,
        )
        assert download.status_code == 200
        validate(download.content, fmt)
    with flow_env.session(pw.tenant_id) as session:
        assert all(v == 0 for v in trial_balance(session).values())
        lines = session.scalars(
            select(PayrollLine).where(PayrollLine.run_id == uuid.UUID(run_id))
        ).all()
        assert sum(line.status == LineStatus.POSTED for line in lines) == 4
    specialist = httpx.get(
        f"{api.base_url}/payroll-runs/{run_id}", headers=bearer(pw.specialists["ana"]), timeout=30
    )
    assert specialist.status_code == 403
    slips = wait_until(
        lambda: httpx.get(
            f"{api.base_url}/me/payslips", headers=bearer(pw.specialists["ana"]), timeout=30
        ).json(),
        what="ana's payslip",
    )
    assert slips[0]["total_minor"] == 120_000 + usd_in_eur
    pdf = httpx.get(
        f"{api.base_url}/me/payslips/{slips[0]['id']}?format=pdf",
        headers=bearer(pw.specialists["ana"]),
        timeout=30,
    )
    assert pdf.content.startswith(b"%PDF")
    with flow_env.session(pw.tenant_id) as session:
        audited = {
            e.action: e
            for e in session.scalars(select(AuditEntry).where(AuditEntry.object_id == run_id))
        }
    assert audited["payroll_run.started"].actor_id == pw.world.finance.id
    assert audited["payroll_run.approved"].actor_id == second_finance(pw).id
    assert audited["payroll_run.approved"].request_id == f"flow-run:{shown['flow_run_id']}"
    # Approved during the hold, the same process went on: computed and gated once, one start.
    assert task_runs(shown["flow_run_id"]).count("Compute the lines") == 1
    assert "Suspended" not in state_names(shown["flow_run_id"])


def test_an_approval_after_the_hold_resumes_the_suspended_run_once(
    served, api, flow_env, payroll_world, monkeypatch
):
    """Past the hold the run is suspended (its process exits, it holds no worker); the approval
    starts it again from the top, and each step answers from the database."""
    monkeypatch.setenv("QUIRE_PAYROLL_APPROVAL_HOLD_SECONDS", "2")
    pw = payroll_world
    run_id = started(api, pw.world.finance)["id"]
    flow_run_id = wait_until(
        lambda: (found := flow_run_of(pw, run_id)) and state_name(found) == "Suspended" and found,
        timeout=RUN_TIMEOUT,
        what="the suspension",
    )
    assert "Paused" in state_names(flow_run_id)  # held in its process first
    assert decide(api, second_finance(pw), run_id, "approve", "late").status_code == 202
    wait_until(lambda: run_status(pw, run_id) == RunStatus.POSTED, timeout=RUN_TIMEOUT, what="post")
    assert task_runs(str(flow_run_id)).count("Compute the lines") == 1
    with flow_env.session(pw.tenant_id) as session:
        assert all(v == 0 for v in trial_balance(session).values())


def test_a_rejected_run_posts_nothing_and_a_new_attempt_can_start(
    served, api, flow_env, payroll_world
):
    pw = payroll_world
    run_id = started(api, pw.world.finance)["id"]
    wait_until(lambda: waiting_for_approval(pw, run_id), timeout=RUN_TIMEOUT, what="approval")
    assert decide(api, second_finance(pw), run_id, "reject").status_code == 422  # needs a reason
    assert decide(api, second_finance(pw), run_id, "reject", "wrong rates").status_code == 202
    wait_until(lambda: run_status(pw, run_id) == RunStatus.REJECTED, timeout=RUN_TIMEOUT, what="no")
    with flow_env.session(pw.tenant_id) as session:
        assert not session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.kind == "payroll_payout")
        )
    again = start(api, pw.world.finance)
    assert again.status_code == 202, again.text
    assert again.json()["attempt"] == 2


def test_a_dry_run_stops_after_the_preview(served, api, flow_env, payroll_world):
    pw = payroll_world
    body = started(api, pw.world.finance, dry_run=True)
    wait_until(
        lambda: flow_run_state(uuid.UUID(body["flow_run_id"])) == StateType.COMPLETED,
        timeout=RUN_TIMEOUT,
        what="the dry run to finish",
    )
    assert run_status(pw, body["id"]) == RunStatus.DRAFT
    assert f"payroll-{this_period()}-a1-summary" in artifacts_of(body["flow_run_id"])
    assert start(api, pw.world.finance).status_code == 202  # a dry run holds no period


def test_a_bank_account_shared_by_two_specialists_fails_the_gate_and_nothing_is_posted(
    served, api, flow_env, payroll_world
):
    pw = payroll_world
    from quire.payroll.models import PayoutDetails
    from tests.quire.payroll.support import fingerprint

    with flow_env.session(pw.tenant_id, write=True) as session:
        ken = session.get(PayoutDetails, pw.id("ken"))
        ken.scheme, ken.iban, ken.country = "iban", IBANS["DE"], "DE"
        ken.account_number = ken.bank_code = None
        ken.account_fingerprint = fingerprint(IBANS["DE"])  # ana's account
    body = started(api, pw.world.finance)
    # The run is failed in the database first, then the gate's artifact published, then the
    # flow run ends: wait for its end, after which everything is there.
    wait_until(
        lambda: flow_run_state(uuid.UUID(body["flow_run_id"])) == StateType.FAILED,
        timeout=RUN_TIMEOUT,
        what="the gate to fail the flow run",
    )
    assert run_status(pw, body["id"]) == RunStatus.FAILED
    shown = httpx.get(
        f"{api.base_url}/payroll-runs/{body['id']}", headers=bearer(pw.world.finance), timeout=30
    ).json()
    assert shown["gate"]["success"] is False
    assert any("bank account" in f["name"].lower() for f in shown["gate"]["failed"])
    assert f"payroll-{this_period()}-a1-gate" in artifacts_of(body["flow_run_id"])
    with flow_env.session(pw.tenant_id) as session:
        assert not session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.kind == "payroll_payout")
        )


def test_cancelling_a_run_that_waits_for_approval_frees_its_period(
    served, api, flow_env, payroll_world, monkeypatch
):
    """Cancelled while suspended, the flow run runs no hook: hourly maintenance sees it ended
    and fails the payroll run, so finance can start a new attempt."""
    from prefect.states import Cancelled

    from flows.maintenance import marketplace_maintenance

    monkeypatch.setenv("QUIRE_PAYROLL_APPROVAL_HOLD_SECONDS", "0")  # suspended at once
    pw = payroll_world
    body = started(api, pw.world.finance)
    wait_until(lambda: waiting_for_approval(pw, body["id"]), timeout=RUN_TIMEOUT, what="approval")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            uuid.UUID(body["flow_run_id"]), Cancelled(message="wrong month"), force=True
        )
    assert start(api, pw.world.finance).status_code == 409  # still held until maintenance runs
    report = marketplace_maintenance()
    assert report.payroll_released >= 1
    with flow_env.session(pw.tenant_id) as session:
        run = session.get(PayrollRun, uuid.UUID(body["id"]))
        assert run.status == RunStatus.FAILED
        assert "cancelled" in run.failure_reason
    assert started(api, pw.world.finance)["attempt"] == 2
