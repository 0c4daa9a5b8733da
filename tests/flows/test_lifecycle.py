"""The lifecycle flow on a real Prefect API, over the real protocols of local servers: a SCIM
2.0 identity provider (scim2-server), an SMTP server (aiosmtpd), a Slack-compatible chat
webhook.

A new specialist is onboarded by the shipped playbook: an account at the identity provider
with its groups, a Quire specialist, a welcome mail, a chat post, a first-day invitation and a
contract. A step that fails for good undoes everything done, last first, and parks the run as
a dead letter; replaying the dead letter completes it. An exit carries on past a failing step
and parks it. One person's events run in the order they happened.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from deployments.local_chat import LocalChat
from deployments.local_idp import LocalIdentityProvider
from deployments.local_smtp import LocalMailbox
from quire.audit.models import AuditEntry
from quire.db import Database, utcnow
from quire.lifecycle import service
from quire.lifecycle.models import (
    DeadLetter,
    DeadLetterStatus,
    LifecycleEvent,
    LifecycleRun,
    RunStatus,
    StepStatus,
)
from quire.people.models import User
from tests.flows.lifecycle_cast import (
    mails_to,
    person,
    quick_playbook,
    record,
    run_lifecycle,
    steps_of,
    store_playbook,
)
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("prefect_api", "healthy_idp")


def test_a_new_specialist_is_onboarded_everywhere_by_the_shipped_playbook(
    tenant: World,
    flow_env: Database,
    idp: LocalIdentityProvider,
    mailbox: LocalMailbox,
    chat: LocalChat,
) -> None:
    zoe = person()
    event_id = record(flow_env, tenant, zoe)

    outcome = run_lifecycle(tenant, event_id)

    assert outcome.status == RunStatus.COMPLETED
    steps = steps_of(flow_env, tenant, outcome.run_id)
    assert {s: str(r.status) for s, r in steps.items()} == {
        "account": "succeeded",
        "specialist": "succeeded",
        "draft": "skipped",  # no AI endpoint configured
        "contract": "succeeded",
        "groups": "succeeded",
        "welcome_email": "succeeded",
        "announce": "succeeded",
        "first_day": "succeeded",
    }
    account = next(u for u in idp.users() if u["userName"] == zoe["email"])
    assert account["externalId"] == f"{outcome.run_id}:account"
    assert account["id"] in idp.members_of("writers")
    assert account["id"] in idp.members_of("de")
    with flow_env.session(tenant.tenant_id) as session:
        specialist = session.scalar(select(User).where(User.email == zoe["email"]))
        assert specialist is not None
        assert specialist.roles == ["specialist"]
    mails = {str(m["Subject"]): m for m in mails_to(mailbox, zoe["email"])}
    assert len(mails) == 2, list(mails)
    invitation = next(m for subject, m in mails.items() if "first day" in subject)
    assert "text/calendar" in {part.get_content_type() for part in invitation.walk()}
    assert any(subject.startswith("Welcome to ") for subject in mails)
    assert any("Zoë" in r.body.get("text", "") for r in chat.requests)
    contract = Path(steps["contract"].output["path"])
    assert contract.read_text(encoding="utf-8").count("Specialist agreement") >= 1
    with flow_env.session(tenant.tenant_id) as session:
        assert session.get(LifecycleEvent, event_id).status == "done"
        audited = session.scalars(
            select(AuditEntry.after).where(
                AuditEntry.action == "lifecycle.step_succeeded",
                AuditEntry.object_id == str(outcome.run_id),
            )
        ).all()
        assert sorted(a["step"] for a in audited) == sorted(
            s for s, r in steps.items() if r.status == "succeeded"
        )
    # What ops see in the Prefect UI: the steps' table, a summary, the playbook and its DAG.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = [f"lifecycle-{outcome.run_id}", "lifecycle-playbook-person-onboard"]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == set(keys)
    assert "graph.svg" in str(by_key["lifecycle-playbook-person-onboard"].data)


def test_a_step_failing_for_good_undoes_what_was_done_and_parks_the_run(
    tenant: World, flow_env: Database, idp: LocalIdentityProvider, chat: LocalChat
) -> None:
    store_playbook(flow_env, tenant, quick_playbook())
    zoe = person()
    chat.down = True  # the announcement can never be posted
    try:
        outcome = run_lifecycle(tenant, record(flow_env, tenant, zoe))
    finally:
        chat.down = False

    assert outcome.status == RunStatus.DEAD_LETTERED
    steps = steps_of(flow_env, tenant, outcome.run_id)
    assert steps["announce"].status == StepStatus.FAILED
    assert steps["announce"].attempts == 3  # the first try and two retries
    assert steps["account"].status == StepStatus.COMPENSATED
    assert steps["groups"].status == StepStatus.COMPENSATED
    assert steps["specialist"].status == StepStatus.COMPENSATED
    assert [u for u in idp.users() if u["userName"] == zoe["email"]] == []  # no orphan
    with flow_env.session(tenant.tenant_id) as session:
        letter = session.scalars(
            select(DeadLetter).where(DeadLetter.run_id == outcome.run_id)
        ).one()
        assert letter.step_id == "announce"
        assert letter.attempts == 3
        assert "chat" in letter.error
        user = session.scalar(select(User).where(User.email == zoe["email"]))
        assert user is not None  # a user is never deleted: deactivated
        assert not user.is_active

    # The chat is back: replaying the dead letter completes the run, account and all.
    with flow_env.session(tenant.tenant_id, write=True) as session:
        service.replay_dead_letter(session, tenant.admin.actor, letter.id)
    with flow_env.session(tenant.tenant_id) as session:
        event_id = session.get(LifecycleRun, outcome.run_id).event_id
    replayed = run_lifecycle(tenant, event_id)
    assert replayed.status == RunStatus.COMPLETED, replayed
    assert replayed.run_id == outcome.run_id
    accounts = [u for u in idp.users() if u["userName"] == zoe["email"]]
    assert len(accounts) == 1
    with flow_env.session(tenant.tenant_id) as session:
        assert session.get(DeadLetter, letter.id).status == DeadLetterStatus.REPLAYED


def test_an_exit_carries_on_past_a_failing_step_and_parks_it(
    tenant: World, flow_env: Database, idp: LocalIdentityProvider
) -> None:
    zoe = person()
    onboarded = run_lifecycle(tenant, record(flow_env, tenant, zoe))
    assert onboarded.status == RunStatus.COMPLETED
    store_playbook(flow_env, tenant, quick_playbook("person.exit"))
    idp.down = True  # the identity provider is out for the whole exit
    try:
        outcome = run_lifecycle(tenant, record(flow_env, tenant, zoe, "person.exit", at=utcnow()))
    finally:
        idp.down = False

    assert outcome.status == RunStatus.COMPLETED_WITH_FAILURES
    steps = steps_of(flow_env, tenant, outcome.run_id)
    parked = {s for s, r in steps.items() if r.status == StepStatus.PARKED}
    assert parked
    assert all(steps[s].kind.startswith("identity.") for s in parked)
    assert steps["revoke_access"].status == StepStatus.SUCCEEDED
    with flow_env.session(tenant.tenant_id) as session:
        user = session.scalar(select(User).where(User.email == zoe["email"]))
        assert not user.is_active
        assert session.scalars(select(DeadLetter).where(DeadLetter.run_id == outcome.run_id)).one()


def test_a_persons_events_run_one_at_a_time_in_the_order_they_happened(
    tenant: World, flow_env: Database
) -> None:
    store_playbook(flow_env, tenant, quick_playbook("person.exit"))
    zoe = person()
    joined = record(flow_env, tenant, zoe, at=utcnow() - dt.timedelta(minutes=5))
    left = record(flow_env, tenant, zoe, "person.exit", at=utcnow())
    # The exit's flow run starts first: it waits until the onboarding is done.
    with ThreadPoolExecutor(2) as pool:
        exit_run = pool.submit(run_lifecycle, tenant, left)
        onboarding = pool.submit(run_lifecycle, tenant, joined)
        assert onboarding.result(timeout=180).status == RunStatus.COMPLETED
        assert exit_run.result(timeout=180).status == RunStatus.COMPLETED
    with flow_env.session(tenant.tenant_id) as session:
        first = session.scalar(select(LifecycleRun).where(LifecycleRun.event_id == joined))
        second = session.scalar(select(LifecycleRun).where(LifecycleRun.event_id == left))
        assert second.started_at >= first.finished_at


def test_a_transfer_moves_the_accounts_groups_found_by_user_name_when_hr_sends_no_identity_id(
    tenant: World, flow_env: Database, idp: LocalIdentityProvider, mailbox: LocalMailbox
) -> None:
    """HR rarely knows the account's id at the identity provider: the shipped transfer finds
    the account by the userName onboarding gave it (the email, when HR sends no user_name)."""
    zoe = person()
    onboarded = run_lifecycle(
        tenant, record(flow_env, tenant, zoe, at=utcnow() - dt.timedelta(minutes=5))
    )
    assert onboarded.status == RunStatus.COMPLETED
    moved = {**zoe, "groups": ["writers", "editors"], "old_groups": ["writers", "de"]}
    moved["attributes"] = {}  # no identity_id

    outcome = run_lifecycle(tenant, record(flow_env, tenant, moved, "person.transfer", at=utcnow()))

    assert outcome.status == RunStatus.COMPLETED, outcome
    account = next(u for u in idp.users() if u["userName"] == zoe["email"])
    assert account["id"] in idp.members_of("writers")
    assert account["id"] in idp.members_of("editors")
    assert account["id"] not in idp.members_of("de")
    steps = steps_of(flow_env, tenant, outcome.run_id)
    assert steps["leave_groups"].output == {
        "user_id": account["id"],
        "groups": ["de"],
        "missing_groups": [],
        "missing_user": False,
    }
    assert steps["join_groups"].output == {"user_id": account["id"], "groups": ["editors"]}
    assert any("Your move" in str(m["Subject"]) for m in mails_to(mailbox, zoe["email"]))
