"""The lifecycle flow on a real Prefect API, over the real protocols of local servers: a SCIM
2.0 identity provider (scim2-server), an SMTP server (aiosmtpd), a Slack-compatible chat
webhook.

A new specialist is onboarded by the shipped playbook: an account at the identity provider
with its groups, a Quire specialist, a welcome mail, a chat post, a first-day invitation and a
contract. A step that fails for good undoes everything done, last first, and parks the run as
a dead letter; replaying the dead letter completes it. An exit carries on past a failing step
and parks it. One person's events run in the order they happened. Each connector failure is
retried by Prefect; an open breaker fails fast.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from quire.db import Database, utcnow
from quire.lifecycle import connections, service, webhooks
from quire.lifecycle.models import (
    DeadLetter,
    DeadLetterStatus,
    LifecycleEvent,
    LifecycleRun,
    RunStatus,
    SagaStep,
    StepStatus,
)
from quire.lifecycle.secrets import Keyring
from quire.lifecycle.shipped import shipped_definition
from quire.people.models import User
from quire.settings import get_settings
from tests.flows.mailbox import Mailbox
from tests.support.fake_chat import FakeChat
from tests.support.fake_scim import DEFAULT_TOKEN, FakeIdentityProvider
from tests.support.world import World

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdentityProvider]:
    with FakeIdentityProvider(slow_seconds=1.0) as server:
        for group in ("writers", "editors", "de"):
            server.add_group(group)
        yield server


@pytest.fixture(autouse=True)
def healthy_idp(idp: FakeIdentityProvider) -> Iterator[None]:
    idp.failure_rate, idp.down = 0.0, False
    yield
    idp.failure_rate, idp.down = 0.0, False


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    with Mailbox() as box:
        yield box


@pytest.fixture(scope="module")
def chat() -> Iterator[FakeChat]:
    with FakeChat() as server:
        yield server


def keyring() -> Keyring:
    return Keyring.from_settings(get_settings())


@pytest.fixture
def tenant(
    world: World, flow_env: Database, idp: FakeIdentityProvider, mailbox: Mailbox, chat: FakeChat
) -> World:
    """The world's tenant with its identity provider, SMTP server and chat webhook connected."""
    with flow_env.session(world.tenant_id, write=True) as session:
        admin = world.admin.actor
        connections.put_connection(
            session,
            admin,
            keyring(),
            "identity",
            {"base_url": idp.base_url, "bearer_token": DEFAULT_TOKEN},
        )
        connections.put_connection(
            session,
            admin,
            keyring(),
            "email",
            {
                "host": "127.0.0.1",
                "port": mailbox.port,
                "from_address": f"people@{world.slug}.test",
                "starttls": False,
            },
        )
        connections.put_connection(session, admin, keyring(), "chat", {"webhook_url": chat.url})
    return world


def person(n: str = "", **extra: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "id": f"hr-{tag}",
        "email": f"zoe.{tag}{n}@example.com",
        "given_name": "Zoë",
        "family_name": "O'Brien",
        "groups": ["writers", "de"],
        "start_date": "2027-01-04",
        "manager_email": "max@example.com",
        "title": "German copywriter",
        **extra,
    }


def record(
    database: Database,
    world: World,
    data: dict[str, Any],
    event_type: str = "person.onboard",
    at: dt.datetime | None = None,
) -> uuid.UUID:
    payload = webhooks.LifecycleEventIn.model_validate(
        {
            "type": event_type,
            "timestamp": (at or utcnow()).isoformat(),
            "data": {"person": data},
        }
    )
    with database.session(world.tenant_id, write=True) as session:
        return webhooks.record_admin_event(session, world.admin.actor, payload).id


def run_lifecycle(world: World, event_id: uuid.UUID) -> Any:
    from flows.lifecycle import lifecycle_flow

    return lifecycle_flow(tenant=world.slug, event_id=event_id)


def quick_playbook(event_type: str = "person.onboard", **changes: Any) -> dict[str, Any]:
    """The shipped playbook with retries of a tenth of a second (a spec has no time to wait)."""
    playbook = shipped_definition(event_type)
    for step in playbook["steps"]:
        step["retry"] = {"attempts": 2, "backoff_seconds": 0.1, "max_backoff_seconds": 0.2}
        step["timeout_seconds"] = 2
    playbook.update(changes)
    return playbook


def store_playbook(database: Database, world: World, playbook: dict[str, Any]) -> None:
    with database.session(world.tenant_id, write=True) as session:
        service.put_playbook(session, world.admin.actor, playbook["event_type"], playbook)


def steps_of(database: Database, world: World, run_id: uuid.UUID) -> dict[str, SagaStep]:
    with database.session(world.tenant_id) as session:
        rows = session.scalars(select(SagaStep).where(SagaStep.run_id == run_id)).all()
        return {r.step_id: r for r in rows}


def mails_to(mailbox: Mailbox, address: str) -> list[Message]:
    return [m for m in mailbox.messages if address in str(m["To"])]


def test_a_new_specialist_is_onboarded_everywhere_by_the_shipped_playbook(
    tenant: World, flow_env: Database, idp: FakeIdentityProvider, mailbox: Mailbox, chat: FakeChat
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


def test_a_step_failing_for_good_undoes_what_was_done_and_parks_the_run(
    tenant: World, flow_env: Database, idp: FakeIdentityProvider, chat: FakeChat
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
    tenant: World, flow_env: Database, idp: FakeIdentityProvider
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
