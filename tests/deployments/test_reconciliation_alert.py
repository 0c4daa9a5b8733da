"""The alert automation on a real Prefect server: prefect.yaml's trigger on
`quire.reconciliation.failed`, deployed with `prefect deploy --all`, runs the notify-finance
deployment on a worker when the event arrives, and the tenant's finance users get the mail on a
real SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import httpx
import pytest

from deployments.local_smtp import LocalMailbox
from quire.db import Database
from tests.deployments.test_smoke import (  # noqa: F401 - the server, deploy and worker fixtures
    RUN_TIMEOUT,
    Stack,
    deployed,
    grammar_service,
    prefect_home,
    prefect_server,
    scheduler_loop_seconds,
    stack,
    worker,
)
from tests.support.world import build_world

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def mailbox() -> Iterator[LocalMailbox]:
    with LocalMailbox() as box:
        yield box


@pytest.fixture
def worker_env_extra(mailbox: LocalMailbox) -> dict[str, str]:
    return {"QUIRE_SMTP_HOST": "127.0.0.1", "QUIRE_SMTP_PORT": str(mailbox.port)}


def notify_runs(api_url: str) -> list[dict]:
    deployment = httpx.get(
        f"{api_url}/deployments/name/notify-finance/notify-finance", timeout=30
    ).json()
    query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}
    return httpx.post(f"{api_url}/flow_runs/filter", json=query, timeout=30).json()


def test_the_failed_reconciliation_event_runs_notify_finance_which_mails_finance(
    stack: Stack,  # noqa: F811
    worker: str,  # noqa: F811
    mailbox: LocalMailbox,
    pg_url: str,
) -> None:
    api_url = worker
    automations = httpx.post(f"{api_url}/automations/filter", json={}, timeout=30).json()
    assert [a["name"] for a in automations] == ["finance on a failed reconciliation"]
    database = Database(pg_url)
    try:
        world = build_world(database, f"alert{uuid.uuid4().hex[:6]}", specialists=0)
    finally:
        database.dispose()
    event = {
        "id": str(uuid.uuid4()),
        "occurred": dt.datetime.now(dt.UTC).isoformat(),
        "event": "quire.reconciliation.failed",
        "resource": {
            "prefect.resource.id": f"quire.tenant.{world.slug}.reconciliation.2026-11",
            "quire.tenant": world.slug,
            "quire.period": "2026-11",
        },
        "payload": {"reason": "2 exception(s) wait in the queue", "reconciliation_id": ""},
    }
    sent = httpx.post(f"{api_url}/events", json=[event], timeout=30)
    assert sent.status_code in (200, 204), sent.text

    [run] = stack.wait_until(
        lambda: [r for r in notify_runs(api_url) if r["state"]["type"] == "COMPLETED"],
        timeout=RUN_TIMEOUT,
        what="the automation's notify-finance run to complete",
    )
    assert run["parameters"]["tenant"] == world.slug
    assert run["parameters"]["period"] == "2026-11"
    stack.wait_until(lambda: mailbox.messages, timeout=30, what="the mail")
    [message] = mailbox.messages
    assert world.finance.email in message["To"]
    assert "2 exception(s) wait in the queue" in message.get_payload()
