"""The cast of the lifecycle flow specs: a real SCIM identity provider (scim2-server), SMTP
server (aiosmtpd) and chat webhook, a tenant connected to them, and helpers to record events,
run the flow and read the saga log."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import select

from deployments.local_chat import LocalChat
from deployments.local_idp import DEFAULT_TOKEN, LocalIdentityProvider
from deployments.local_smtp import LocalMailbox
from quire.db import Database, utcnow
from quire.lifecycle import connections, service, webhooks
from quire.lifecycle.models import SagaStep
from quire.lifecycle.secrets import Keyring
from quire.lifecycle.shipped import shipped_definition
from quire.settings import get_settings
from tests.support.world import World


@pytest.fixture(scope="package")
def idp() -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(slow_seconds=1.0, seed=11) as server:
        for group in ("writers", "editors", "de"):
            server.add_group(group)
        yield server


@pytest.fixture
def healthy_idp(idp: LocalIdentityProvider) -> Iterator[None]:
    idp.failure_rate, idp.down, idp.slow_seconds = 0.0, False, 1.0
    yield
    idp.failure_rate, idp.down, idp.slow_seconds = 0.0, False, 1.0


@pytest.fixture(scope="package")
def mailbox() -> Iterator[LocalMailbox]:
    with LocalMailbox() as box:
        yield box


@pytest.fixture(scope="package")
def chat() -> Iterator[LocalChat]:
    with LocalChat() as server:
        yield server


def keyring() -> Keyring:
    return Keyring.from_settings(get_settings())


@pytest.fixture
def tenant(
    world: World,
    flow_env: Database,
    idp: LocalIdentityProvider,
    mailbox: LocalMailbox,
    chat: LocalChat,
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


def start_on_the_worker(world: World, event_id: uuid.UUID) -> Any:
    """A run of the lifecycle deployment, as the relay starts one (not waiting for it): the
    served worker runs it in a process of its own. Returns Prefect's flow run."""
    from prefect.deployments import run_deployment

    return run_deployment(
        get_settings().lifecycle_deployment,
        parameters={"tenant": world.slug, "event_id": str(event_id)},
        timeout=0,
        as_subflow=False,
    )


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


def mails_to(mailbox: LocalMailbox, address: str) -> list[Message]:
    return [m for m in mailbox.messages if address in str(m["To"])]
