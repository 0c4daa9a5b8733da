"""QA runs and human reviews: which flow run is checking which submission, and who decided what.

The QA pipeline itself runs in Prefect; this is the part of its state the marketplace needs to
answer questions without asking Prefect: is this order waiting for a reviewer, at which stage,
and which flow run should a decision resume? Reviews are recorded here once a run accepts them.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from quire.db import upsert, utcnow
from quire.errors import Conflict, Forbidden
from quire.orders.models import Order, Submission
from quire.orders.service import get_order
from quire.orders.state import OrderStatus
from quire.people.actor import Actor
from quire.qa import policy
from quire.qa.models import QAReview, QARun, RunStatus
from quire.tenancy import ALL_TENANTS, tenant_of


class ReviewChoice(enum.StrEnum):
    APPROVE = "approve"
    REWORK = "rework"


class ReviewDecisionData(BaseModel):
    """What a reviewer decides at one stage. The Prefect flow's `ReviewDecision` form is this
    model, so the Prefect UI and the API (which resumes the run with it) speak the same shape."""

    model_config = ConfigDict(extra="forbid")

    decision: ReviewChoice = Field(description="approve, or send the work back for rework")
    comments: str = Field(default="", max_length=10_000, description="What the specialist reads")
    reviewer_id: uuid.UUID | None = Field(
        default=None, description="The deciding Quire user (set by the API; empty from the UI)"
    )
    stage: int | None = Field(
        default=None, ge=1, description="The stage decided (set by the API, checked by the run)"
    )


def register(
    session: Session,
    *,
    submission_id: uuid.UUID,
    order_id: uuid.UUID,
    flow_run_id: uuid.UUID | None,
    review_stages: int,
) -> None:
    """Note that `flow_run_id` checks this submission (a re-run of the flow re-registers)."""
    now = utcnow()
    insert = upsert(session)(QARun).values(
        tenant_id=tenant_of(session),
        submission_id=submission_id,
        order_id=order_id,
        flow_run_id=flow_run_id,
        status=RunStatus.CHECKING,
        review_stages=review_stages,
        started_at=now,
        updated_at=now,
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["submission_id"],
            set_={"flow_run_id": flow_run_id, "updated_at": now},
        )
    )


def set_status(
    session: Session,
    submission_id: uuid.UUID,
    status: RunStatus,
    *,
    awaiting_stage: int | None = None,
    summary: str | None = None,
    checks: list[dict[str, Any]] | None = None,
) -> None:
    values: dict[str, object] = {
        "status": status,
        "awaiting_stage": awaiting_stage,
        "updated_at": utcnow(),
    }
    if summary is not None:
        values["summary"] = summary
    if checks is not None:
        values["checks"] = checks
    session.execute(
        update(QARun)
        .where(QARun.submission_id == submission_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class ReviewTicket:
    """Where a reviewer's decision goes: this flow run, this stage."""

    order_id: uuid.UUID
    submission_id: uuid.UUID
    flow_run_id: uuid.UUID
    stage: int


def open_review(session: Session, actor: Actor, order_id: uuid.UUID) -> ReviewTicket:
    """May `actor` decide the review this order is waiting for? Returns where the decision goes."""
    actor.require(*policy.REVIEWER_ROLES)  # before anything about the order is revealed (403)
    order: Order = get_order(session, actor, order_id)
    run = session.scalar(
        select(QARun)
        .where(QARun.order_id == order_id, QARun.status == RunStatus.AWAITING_REVIEW)
        .order_by(QARun.started_at.desc())
        .limit(1)
    )
    if order.status != OrderStatus.IN_REVIEW or run is None or run.flow_run_id is None:
        raise Conflict(
            f"order {order_id} is not waiting for a review (it is {order.status}; automated "
            "checks may still be running)",
            code="review_not_open",
        )
    author = session.scalar(
        select(Submission.specialist_id).where(Submission.id == run.submission_id)
    )
    assert author is not None
    assert run.awaiting_stage is not None
    decided = session.scalar(
        select(QAReview.reviewer_label).where(
            QAReview.submission_id == run.submission_id, QAReview.stage == run.awaiting_stage
        )
    )
    if decided is not None:
        # The run has its decision for this stage and is acting on it: nothing waits for another.
        raise Conflict(
            f"review stage {run.awaiting_stage} of this work was already decided ({decided})",
            code="review_not_open",
        )
    refused = policy.review_refusal(
        session,
        submission_id=run.submission_id,
        author_id=author,
        stage=run.awaiting_stage,
        reviewer_id=actor.user_id,
        reviewer_roles=actor.roles,
    )
    if refused is not None:
        raise Forbidden(refused.reason, code=refused.code)
    return ReviewTicket(order_id, run.submission_id, run.flow_run_id, run.awaiting_stage)


def record_review(
    session: Session,
    *,
    submission_id: uuid.UUID,
    order_id: uuid.UUID,
    stage: int,
    decision: ReviewDecisionData,
    reviewer_label: str,
) -> None:
    """Keep the decision (idempotent: a re-run of the flow records a stage once)."""
    insert = upsert(session)(QAReview).values(
        id=uuid.uuid4(),
        tenant_id=tenant_of(session),
        submission_id=submission_id,
        order_id=order_id,
        stage=stage,
        decision=decision.decision,
        comments=decision.comments,
        reviewer_id=decision.reviewer_id,
        reviewer_label=reviewer_label,
        decided_at=utcnow(),
    )
    session.execute(insert.on_conflict_do_nothing(index_elements=["submission_id", "stage"]))


def stored_checks(session: Session, submission_id: uuid.UUID) -> list[dict[str, Any]] | None:
    """The automated checks' results as the run first recorded them (None before that)."""
    return session.scalar(select(QARun.checks).where(QARun.submission_id == submission_id))


def reviews_of(session: Session, submission_id: uuid.UUID) -> list[QAReview]:
    return list(
        session.scalars(
            select(QAReview).where(QAReview.submission_id == submission_id).order_by(QAReview.stage)
        )
    )


def reviews_of_order(session: Session, actor: Actor, order_id: uuid.UUID) -> list[QAReview]:
    """The decisions on an order's submissions, for anyone who may see the order (else 404)."""
    get_order(session, actor, order_id)
    return list(
        session.scalars(
            select(QAReview)
            .where(QAReview.order_id == order_id)
            .order_by(QAReview.decided_at, QAReview.stage)
        )
    )


def unanswered_reviews(
    session: Session, older_than: dt.datetime, limit: int = 500
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant, submission) of runs still waiting for a reviewer since before `older_than`,
    across tenants: by then Prefect has failed the suspended run, and nobody can answer it."""
    rows = session.execute(
        select(QARun.tenant_id, QARun.submission_id)
        .where(QARun.status == RunStatus.AWAITING_REVIEW, QARun.updated_at < older_than)
        .order_by(QARun.updated_at)
        .limit(limit)
        .execution_options(**ALL_TENANTS)
    )
    return [(row.tenant_id, row.submission_id) for row in rows]
