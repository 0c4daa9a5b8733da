"""The outbox relay: at-least-once delivery, one flow run per event, nothing lost while Prefect
is away."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import update

from flows.outbox_relay import outbox_relay
from quire.events import relay as outbox
from quire.events.models import Event
from quire.qa.config import QAConfig
from quire.tenancy import ALL_TENANTS
from tasks import relay
from tests.flows.conftest import drain_outbox, wait_until
from tests.flows.scenario import ARTICLE, awaiting_review, submitted_work


def key_of(world, work) -> str:
    return f"quire-event-{world.tenant_id}-{work.event_id}"


def runs_for(key: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key]))
        )


def unrelayed(database) -> list[int]:
    with database.session() as session:
        return [e.id for e in outbox.pending(session, 10_000)]


def test_the_same_submission_event_relayed_twice_starts_one_run(served, flow_env, world):
    drain_outbox(flow_env)
    work = submitted_work(flow_env, world, qa=QAConfig(review_stages=1), content=ARTICLE + " r2")
    assert outbox_relay().runs_started == 1
    # As if the relay had crashed after starting the run but before marking the event:
    with flow_env.session(write=True) as session:
        session.execute(
            update(Event)
            .where(Event.id == work.event_id)
            .values(relayed_at=None)
            .execution_options(**ALL_TENANTS)
        )
    assert work.event_id in unrelayed(flow_env)
    outbox_relay()
    assert work.event_id not in unrelayed(flow_env)
    assert len(runs_for(key_of(world, work))) == 1
    settle(flow_env, world, work)


def test_events_wait_while_prefect_is_unreachable_and_go_on_the_next_pass(served, flow_env, world):
    drain_outbox(flow_env)
    work = submitted_work(flow_env, world, qa=QAConfig(review_stages=1), content=ARTICLE + " r3")
    waiting = relay.read_pending.fn(100)
    assert work.event_id in [e.id for e in waiting]

    with (
        temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(relay.PrefectUnreachable),
    ):
        relay.deliver.fn(waiting)
    # Nothing lost: events with nothing to start were handled, the submission still waits.
    assert unrelayed(flow_env) == [work.event_id]
    assert runs_for(key_of(world, work)) == []

    report = outbox_relay()  # Prefect is back: the next pass catches up
    assert report.runs_started == 1
    assert unrelayed(flow_env) == []
    assert len(runs_for(key_of(world, work))) == 1
    settle(flow_env, world, work)


def settle(database, world, work) -> None:
    """Leave no run mid-check behind: wait until this test's run waits for its reviewer."""
    wait_until(
        lambda: awaiting_review(database, world, work.submission_id),
        timeout=240,
        what="the started QA run to reach its review stage",
    )
