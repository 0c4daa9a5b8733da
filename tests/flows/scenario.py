"""Building blocks of QA scenarios: an order worked on up to a submission, through the domain."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from sqlalchemy import select

from quire.db import Database, utcnow
from quire.events.models import Event
from quire.orders import claims
from quire.orders import service as orders
from quire.orders.models import Order
from quire.orders.schemas import OrderDraft, SubmissionDraft
from quire.qa.config import QAConfig
from quire.qa.models import QARun, RunStatus
from tests.support.world import Person, World

ARTICLE = (
    "Quarterly planning works best when every team writes down what it will stop doing. "
    "Our editors found that a short list of commitments, reviewed each month, beats a long "
    "roadmap that nobody reads. This article explains how to run that review in one hour, "
    "which questions to ask, and how to record the answers so that finance can follow them."
)


@dataclass(frozen=True)
class Submitted:
    order_id: uuid.UUID
    submission_id: uuid.UUID
    event_id: int


def submitted_work(
    database: Database,
    world: World,
    *,
    qa: QAConfig | None = None,
    content: str = ARTICLE,
    specialist: Person | None = None,
    fee_minor: int = 50_000,
) -> Submitted:
    specialist = specialist or world.specialist
    draft = OrderDraft(
        title="Planning article",
        brief="An article on quarterly planning.",
        fee_minor=fee_minor,
        currency="EUR",
        deadline=utcnow() + dt.timedelta(days=3),
        qa=qa or QAConfig(review_stages=0),
        publish=True,
    )
    with database.session(world.tenant_id, write=True) as s:
        order_id = orders.create_order(s, world.manager.actor, draft).id
    with database.session(world.tenant_id, write=True) as s:
        claims.claim(s.connection(), specialist.actor, order_id)
    return resubmit(database, world, order_id, content=content, specialist=specialist)


def resubmit(
    database: Database,
    world: World,
    order_id: uuid.UUID,
    *,
    content: str = ARTICLE,
    specialist: Person | None = None,
) -> Submitted:
    specialist = specialist or world.specialist
    with database.session(world.tenant_id, write=True) as s:
        submission = orders.submit(s, specialist.actor, order_id, SubmissionDraft(content=content))
    with database.session(world.tenant_id) as s:
        event_id = s.scalar(
            select(Event.id)
            .where(Event.type == "order.submitted", Event.aggregate_id == order_id)
            .order_by(Event.id.desc())
            .limit(1)
        )
    assert event_id is not None
    return Submitted(order_id, submission.id, event_id)


def order_status(database: Database, world: World, order_id: uuid.UUID) -> str:
    with database.session(world.tenant_id) as s:
        return s.get_one(Order, order_id, populate_existing=True).status


def make_late(database: Database, world: World, order_id: uuid.UUID, days: float) -> None:
    """Move the deadline into the past (drafts refuse past deadlines, so after the fact)."""
    with database.session(world.tenant_id, write=True) as s:
        order = s.get_one(Order, order_id)
        order.deadline = utcnow() - dt.timedelta(days=days)


def qa_run(database, world, submission_id: uuid.UUID) -> QARun | None:
    with database.session(world.tenant_id) as s:
        return s.get(QARun, submission_id, populate_existing=True)


def awaiting_review(database, world, submission_id: uuid.UUID) -> QARun | None:
    run = qa_run(database, world, submission_id)
    return run if run is not None and run.status == RunStatus.AWAITING_REVIEW else None


def flow_run_state(flow_run_id: uuid.UUID) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state.type if state else None
