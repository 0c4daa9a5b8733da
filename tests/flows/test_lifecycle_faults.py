"""Lifecycle runs when things go wrong, on a real Prefect API against real local servers.

- 50 onboardings while the identity provider fails 30 % of its calls at random (503s and
  timeouts, half of them after it did the work, so the answer is lost): every run either
  completes or is a dead letter fully compensated, and the provider holds no orphan account.
- An outage opens the provider's circuit breaker: later runs fail fast (no retries waited
  out), and once the provider is back a probe closes it.
- A worker killed (`kill -9`) mid-compensation: the maintenance flow finishes the undoing from
  the saga log. (Prefect marks a run whose process died as crashed — its heartbeat and zombie
  detection do so in production; here the spec says so itself, as that automation would.)
- A run cancelled through Prefect is compensated by the maintenance flow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Crashed
from sqlalchemy import select

from deployments.local_chat import LocalChat
from deployments.local_idp import LocalIdentityProvider
from deployments.local_smtp import LocalMailbox
from quire.db import Database
from quire.lifecycle import breaker
from quire.lifecycle.connectors.base import Provider
from quire.lifecycle.models import (
    BreakerState,
    DeadLetter,
    LifecycleRun,
    RunStatus,
    StepStatus,
)
from quire.settings import get_settings
from tests.flows.conftest import project_root, wait_until
from tests.flows.lifecycle_cast import (
    mails_to,
    person,
    quick_playbook,
    record,
    run_lifecycle,
    start_on_the_worker,
    steps_of,
    store_playbook,
)
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("prefect_api", "healthy_idp")

ONBOARDINGS = 50


def impatient_playbook() -> dict:
    """Quick retries; the identity steps wait half a second for an answer (the fake's slow
    answers take a second: a timeout)."""
    playbook = quick_playbook()
    for step in playbook["steps"]:
        if step["kind"].startswith("identity."):
            step["timeout_seconds"] = 0.5
            step["retry"] = {"attempts": 3, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2}
    return playbook


def lean_playbook() -> dict:
    """The onboarding's account, groups, specialist and welcome mail: the steps a flaky
    identity provider can break, and one it cannot (50 runs of the full playbook would spend
    the suite's time on steps this spec is not about)."""
    playbook = impatient_playbook()
    keep = {"account", "groups", "specialist", "welcome_email"}
    playbook["steps"] = [s for s in playbook["steps"] if s["id"] in keep]
    for step in playbook["steps"]:
        step["needs"] = [n for n in step.get("needs", []) if n in keep]
        if step["id"] == "welcome_email":
            step["params"]["body"] = "Welcome aboard, {{ person.given_name }}!"
    return playbook


def accounts_named(idp: LocalIdentityProvider, emails: set[str]) -> list[dict]:
    return [u for u in idp.users() if u["userName"] in emails]


def test_fifty_onboardings_against_a_flaky_provider_complete_or_are_compensated(
    tenant: World, flow_env: Database, idp: LocalIdentityProvider
) -> None:
    store_playbook(flow_env, tenant, lean_playbook())
    people = [person(str(i)) for i in range(ONBOARDINGS)]
    events = [record(flow_env, tenant, p) for p in people]
    idp.failure_rate = 0.3
    with ThreadPoolExecutor(3) as pool:  # a worker's few concurrent flow runs
        outcomes = list(pool.map(lambda e: run_lifecycle(tenant, e), events))
    idp.failure_rate = 0.0

    assert idp.failures_injected > 20  # the provider really was flaky
    assert idp.answers_lost > 0  # and some work was done whose answer never came
    by_status: dict[str, list[uuid.UUID]] = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(outcome.run_id)
    assert set(by_status) <= {RunStatus.COMPLETED, RunStatus.DEAD_LETTERED}, by_status
    completed = set(by_status.get(RunStatus.COMPLETED, []))
    assert completed  # most get through their retries
    for run_id in by_status.get(RunStatus.DEAD_LETTERED, []):
        steps = steps_of(flow_env, tenant, run_id)
        assert all(
            r.status != StepStatus.SUCCEEDED or r.compensation_kind is None for r in steps.values()
        ), {s: r.status for s, r in steps.items()}
        with flow_env.session(tenant.tenant_id) as session:
            assert session.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id)).one()
    # No orphan: exactly one account per completed run, none for the others.
    accounts = accounts_named(idp, {p["email"] for p in people})
    owners = [uuid.UUID(a["externalId"].split(":")[0]) for a in accounts]
    assert sorted(owners) == sorted(completed)


def test_an_outage_opens_the_breaker_runs_then_fail_fast_and_a_probe_closes_it(
    tenant: World, flow_env: Database, idp: LocalIdentityProvider
) -> None:
    store_playbook(flow_env, tenant, impatient_playbook())
    idp.down = True
    first = run_lifecycle(tenant, record(flow_env, tenant, person()))
    second = run_lifecycle(tenant, record(flow_env, tenant, person()))
    assert first.status == second.status == RunStatus.DEAD_LETTERED
    state = breaker.state_of(flow_env, tenant.tenant_id, Provider.IDENTITY)
    assert state == BreakerState.OPEN  # 4 + 4 consecutive failures >= the threshold of 5

    fast = run_lifecycle(tenant, record(flow_env, tenant, person()))
    account = steps_of(flow_env, tenant, fast.run_id)["account"]
    assert fast.status == RunStatus.DEAD_LETTERED
    assert account.attempts == 1  # not retried: the breaker refused the call
    assert account.error.startswith("identity: circuit breaker open")
    with flow_env.session(tenant.tenant_id) as session:
        letter = session.scalars(select(DeadLetter).where(DeadLetter.run_id == fast.run_id)).one()
        assert letter.step_id == "account"
        assert "circuit breaker open" in letter.error

    idp.down = False
    time.sleep(get_settings().breaker_open_seconds + 0.5)
    zoe = person()
    probe = run_lifecycle(tenant, record(flow_env, tenant, zoe))
    assert probe.status == RunStatus.COMPLETED
    assert breaker.state_of(flow_env, tenant.tenant_id, Provider.IDENTITY) == BreakerState.CLOSED
    assert len(accounts_named(idp, {zoe["email"]})) == 1
    # The outage's runs could not look for accounts their lost answers might have made; the
    # maintenance flow does now.
    from flows.maintenance import marketplace_maintenance

    marketplace_maintenance()
    for outage_run in (first, second):
        account = steps_of(flow_env, tenant, outage_run.run_id)["account"]
        assert account.status == StepStatus.COMPENSATED


def run_in_a_worker(world: World, event_id: uuid.UUID) -> subprocess.Popen[bytes]:
    """The flow run in a process of its own, as a worker runs it."""
    code = (
        "import sys, uuid\n"
        "from flows.lifecycle import lifecycle_flow\n"
        "lifecycle_flow(tenant=sys.argv[1], event_id=uuid.UUID(sys.argv[2]))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, world.slug, str(event_id)],
        cwd=project_root(),
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_of(database: Database, world: World, event_id: uuid.UUID) -> LifecycleRun | None:
    with database.session(world.tenant_id) as session:
        return session.scalar(select(LifecycleRun).where(LifecycleRun.event_id == event_id))


def test_a_worker_killed_mid_compensation_is_resumed_by_maintenance(
    tenant: World, flow_env: Database, idp: LocalIdentityProvider, chat: LocalChat
) -> None:
    from flows.maintenance import marketplace_maintenance

    store_playbook(flow_env, tenant, quick_playbook())
    zoe = person()
    event_id = record(flow_env, tenant, zoe)
    chat.down = True  # the announcement fails for good: the run compensates
    idp.slow_seconds = 60.0
    idp.fail_next(1, kind="slow", method="DELETE")  # the account's undo hangs
    worker = run_in_a_worker(tenant, event_id)
    try:
        wait_until(
            lambda: (
                (run := run_of(flow_env, tenant, event_id))
                and run.status == RunStatus.COMPENSATING
                and idp.failures_injected
            ),
            timeout=120,
            what="the run to be compensating",
        )
        time.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        chat.down = False
        idp.slow_seconds = 1.0
        if worker.poll() is None:
            worker.kill()
    run = run_of(flow_env, tenant, event_id)
    assert run.status == RunStatus.COMPENSATING
    assert len(accounts_named(idp, {zoe["email"]})) == 1  # not undone yet
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.flow_run_id, Crashed(message="worker killed"), force=True)

    report = marketplace_maintenance()

    assert report.lifecycle_closed >= 1
    run = run_of(flow_env, tenant, event_id)
    assert run.status == RunStatus.DEAD_LETTERED
    assert accounts_named(idp, {zoe["email"]}) == []
    steps = steps_of(flow_env, tenant, run.id)
    assert steps["account"].status == StepStatus.COMPENSATED
    assert steps["account"].compensation_attempts >= 2  # the killed attempt, then maintenance


def test_a_run_cancelled_through_prefect_is_compensated(
    served: None, tenant: World, flow_env: Database, idp: LocalIdentityProvider, chat: LocalChat
) -> None:
    from flows.maintenance import marketplace_maintenance

    zoe = person()
    event_id = record(flow_env, tenant, zoe)
    chat.slow_seconds = 60.0  # the announcement hangs: the run is caught in the middle
    try:
        flow_run = start_on_the_worker(tenant, event_id)
        wait_until(
            lambda: (
                len(accounts_named(idp, {zoe["email"]})) == 1
                and (run := run_of(flow_env, tenant, event_id))
                and steps_of(flow_env, tenant, run.id)["announce"].status == StepStatus.RUNNING
            ),
            timeout=120,
            what="the run to be half way",
        )
        from prefect.states import Cancelling

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.id, Cancelling(message="wrong person"), force=True)
            wait_until(
                lambda: client.read_flow_run(flow_run.id).state.is_cancelled(),
                timeout=60,
                what="the flow run to be cancelled",
            )
    finally:
        chat.slow_seconds = 0.0

    marketplace_maintenance()

    run = run_of(flow_env, tenant, event_id)
    assert run.status == RunStatus.CANCELLED
    assert accounts_named(idp, {zoe["email"]}) == []
    assert steps_of(flow_env, tenant, run.id)["account"].status == StepStatus.COMPENSATED


def test_a_run_suspended_through_prefect_resumes_where_it_stopped(
    served: None,
    tenant: World,
    flow_env: Database,
    idp: LocalIdentityProvider,
    mailbox: LocalMailbox,
    chat: LocalChat,
) -> None:
    """Suspended (Prefect's own `suspend_flow_run`, as from another process), the run lets its
    step in flight finish, starts no other and exits, holding no worker; resumed (Prefect's
    `resume_flow_run`, or the UI's Resume), it starts again from the top, the done steps answer
    from the saga log, and the rest run: every effect happens once."""
    from prefect.flow_runs import resume_flow_run, suspend_flow_run

    zoe = person()
    event_id = record(flow_env, tenant, zoe)
    posts_before = len(chat.requests)
    idp.slow_seconds = 4.0  # the account is made, and answered 4 s late: the suspension
    idp.fail_next(1, kind="slow", lose_answer=True, method="POST")  # lands while it runs
    flow_run = start_on_the_worker(tenant, event_id)
    wait_until(
        lambda: (
            (run := run_of(flow_env, tenant, event_id))
            and steps_of(flow_env, tenant, run.id)["account"].status == StepStatus.RUNNING
        ),
        timeout=120,
        what="the account step to be running",
    )
    suspend_flow_run(flow_run_id=flow_run.id, timeout=600)
    run = run_of(flow_env, tenant, event_id)
    wait_until(
        lambda: steps_of(flow_env, tenant, run.id)["account"].status == StepStatus.SUCCEEDED,
        timeout=60,
        what="the step in flight to finish",
    )
    time.sleep(3)  # time enough for the steps that need the account, were it still running
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run.id).state.name == "Suspended"
    waiting = steps_of(flow_env, tenant, run.id)
    assert {s: waiting[s].status for s in ("groups", "announce", "welcome_email")} == {
        "groups": StepStatus.PENDING,
        "announce": StepStatus.PENDING,
        "welcome_email": StepStatus.PENDING,
    }
    assert run_of(flow_env, tenant, event_id).status == RunStatus.RUNNING  # not failed, waiting

    resume_flow_run(flow_run.id)
    with get_client(sync_client=True) as client:
        wait_until(
            lambda: client.read_flow_run(flow_run.id).state.is_completed(),
            timeout=120,
            what="the resumed flow run to complete",
        )
    assert run_of(flow_env, tenant, event_id).status == RunStatus.COMPLETED
    done = steps_of(flow_env, tenant, run.id)
    assert {s: str(r.status) for s, r in done.items()} == {
        **{s: "succeeded" for s in done},
        "draft": "skipped",  # no AI endpoint configured
    }
    assert done["account"].attempts == 1  # answered from the saga log, not made again
    assert len(accounts_named(idp, {zoe["email"]})) == 1
    assert len(mails_to(mailbox, zoe["email"])) == 2  # the welcome mail and the invitation, once
    assert len(chat.requests) - posts_before == 1  # the announcement, posted once
