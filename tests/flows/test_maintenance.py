"""Hourly maintenance as a flow run: overdue claims reopen, stale orders expire, old relayed
events go, and the statistics are published."""

from __future__ import annotations

import datetime as dt

from prefect.client.orchestration import get_client
from sqlalchemy import select, update

from flows.maintenance import marketplace_maintenance
from quire.db import utcnow
from quire.events.models import Event
from quire.orders import claims
from quire.orders.state import OrderStatus
from quire.qa import service as qa
from quire.qa.config import QAConfig
from quire.qa.models import QARun
from quire.tenancy import ALL_TENANTS
from tests.flows.scenario import make_late, order_status, submitted_work
from tests.quire.orders.test_service import new_order


def test_an_overdue_claim_is_released_then_expired_and_old_relayed_events_pruned(
    prefect_api, flow_env, world
):
    overdue = new_order(flow_env, world)
    with flow_env.session(world.tenant_id, write=True) as s:
        claims.claim(s.connection(), world.specialist.actor, overdue)
    make_late(flow_env, world, overdue, days=1)
    delivered = submitted_work(flow_env, world)  # submitted: maintenance leaves it alone
    make_late(flow_env, world, delivered.order_id, days=1)
    with flow_env.session(write=True) as s:  # an old, relayed event past retention
        s.execute(
            update(Event)
            .where(Event.id == delivered.event_id)
            .values(relayed_at=utcnow(), created_at=utcnow() - dt.timedelta(days=400))
            .execution_options(**ALL_TENANTS)
        )

    report = marketplace_maintenance()

    assert report.released >= 1
    assert report.expired >= 1
    assert report.pruned >= 1
    assert order_status(flow_env, world, overdue) == OrderStatus.EXPIRED
    assert order_status(flow_env, world, delivered.order_id) == OrderStatus.SUBMITTED
    with flow_env.session(world.tenant_id) as s:
        types = list(s.scalars(select(Event.type).where(Event.aggregate_id == overdue)))
    assert types[-2:] == ["order.released", "order.expired"]
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    assert any(a.key == "marketplace-statistics" for a in artifact)


def test_work_whose_review_never_came_goes_back_to_its_specialist(prefect_api, flow_env, world):
    """Past the review timeout Prefect fails the suspended run itself (no flow hook runs there);
    maintenance hands the order back so a resubmission can start a fresh run."""
    work = submitted_work(flow_env, world, qa=QAConfig(review_stages=1))
    with flow_env.session(world.tenant_id, write=True) as s:
        subject = qa.load_subject(s, work.submission_id)
        qa.begin(s, subject, flow_run_id=None)
        qa.await_review(s, subject, 1, [])
        s.execute(
            update(QARun)
            .where(QARun.submission_id == work.submission_id)
            .values(updated_at=utcnow() - dt.timedelta(days=30))
        )
    assert order_status(flow_env, world, work.order_id) == OrderStatus.IN_REVIEW

    report = marketplace_maintenance()

    assert report.handed_back >= 1
    assert order_status(flow_env, world, work.order_id) == OrderStatus.REWORK
