"""The QA pipeline's business steps, one function per step, for the Prefect flow to call.

Each step is safe to repeat: a Prefect retry, a resumed run re-executing its body, or a second run
of the same submission must never move an order twice or post money twice. Order transitions go
through the state machine (a repeat finds the order already where it should be); ledger postings
are idempotent by their business key (`earnings:<order>`, `late-fine:<order>`).
"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import business
from quire.errors import Conflict
from quire.orders import service as orders
from quire.orders.models import Order, Submission
from quire.orders.state import IllegalTransition, OrderStatus
from quire.people.actor import Actor
from quire.people.models import User
from quire.qa import policy, runs
from quire.qa.config import QAConfig
from quire.qa.fines import LateFine
from quire.qa.models import RunStatus
from quire.qa.results import CheckResult
from quire.qa.runs import ReviewDecisionData


class Subject(BaseModel):
    """Everything the checks and the decisions need about one submission (JSON-persistable)."""

    model_config = ConfigDict(frozen=True)

    tenant_id: uuid.UUID
    order_id: uuid.UUID
    order_title: str
    submission_id: uuid.UUID
    submission_number: int
    specialist_id: uuid.UUID
    content: str
    content_hash: str
    submitted_at: dt.datetime
    deadline: dt.datetime
    fee_minor: int
    currency: str
    qa: QAConfig


class NotTheLatestSubmission(Conflict):
    code = "superseded_submission"


def load_subject(session: Session, submission_id: uuid.UUID) -> Subject:
    row = session.execute(
        select(Submission, Order)
        .join(Order, Order.id == Submission.order_id)
        .where(Submission.id == submission_id)
    ).one_or_none()
    if row is None:
        raise LookupError(f"submission {submission_id} not found in this tenant")
    submission, order = row
    return Subject(
        tenant_id=order.tenant_id,
        order_id=order.id,
        order_title=order.title,
        submission_id=submission.id,
        submission_number=submission.number,
        specialist_id=submission.specialist_id,
        content=submission.content,
        content_hash=submission.content_hash,
        submitted_at=submission.created_at,
        deadline=order.deadline,
        fee_minor=order.fee_minor,
        currency=order.currency,
        qa=QAConfig.model_validate(order.qa_config or {}),
    )


def begin(session: Session, subject: Subject, flow_run_id: uuid.UUID | None) -> OrderStatus:
    """Register the run and put the order in review. Returns the order's status afterwards."""
    runs.register(
        session,
        submission_id=subject.submission_id,
        order_id=subject.order_id,
        flow_run_id=flow_run_id,
        review_stages=subject.qa.review_stages,
    )
    order = _order(session, subject)
    if order.status == OrderStatus.SUBMITTED:
        order = orders.start_review(session, _system(subject), subject.order_id)
    return OrderStatus(order.status)


def _order(session: Session, subject: Subject) -> Order:
    order = session.get_one(Order, subject.order_id, populate_existing=True)
    latest = session.scalar(
        select(Submission.id)
        .where(Submission.order_id == subject.order_id)
        .order_by(Submission.number.desc())
        .limit(1)
    )
    if latest != subject.submission_id:
        raise NotTheLatestSubmission(
            f"submission {subject.submission_id} was superseded by a newer version"
        )
    return order


def _system(subject: Subject) -> Actor:
    return Actor.system(subject.tenant_id)


def await_review(
    session: Session, subject: Subject, stage: int, results: list[CheckResult]
) -> None:
    """The run waits for stage `stage`; the checks' results are kept for when it resumes."""
    runs.set_status(
        session,
        subject.submission_id,
        RunStatus.AWAITING_REVIEW,
        awaiting_stage=stage,
        checks=[r.model_dump(mode="json") for r in results],
    )


def kept_results(session: Session, subject: Subject) -> list[CheckResult] | None:
    stored = runs.stored_checks(session, subject.submission_id)
    return None if stored is None else [CheckResult.model_validate(r) for r in stored]


def refusal(
    session: Session, subject: Subject, stage: int, decision: ReviewDecisionData
) -> str | None:
    """Why this decision cannot count (None when it can). The API applied the same policy before
    resuming the run, but a decision may also come from the Prefect UI form, which knows nothing
    of Quire's users (no reviewer id: the person signed in to Prefect decides)."""
    if decision.stage is not None and decision.stage != stage:
        return f"the decision is for stage {decision.stage}, but stage {stage} is waiting"
    if decision.reviewer_id is None:
        return None
    reviewer = session.get(User, decision.reviewer_id)
    refused = policy.review_refusal(
        session,
        submission_id=subject.submission_id,
        author_id=subject.specialist_id,
        stage=stage,
        reviewer_id=decision.reviewer_id,
        reviewer_roles=reviewer.roles if reviewer is not None else (),
    )
    return None if refused is None else refused.reason


def reviewer_label(session: Session, decision: ReviewDecisionData) -> str:
    if decision.reviewer_id is None:
        return "Prefect UI"
    reviewer = session.get(User, decision.reviewer_id)
    return reviewer.email if reviewer is not None else str(decision.reviewer_id)


def send_back(session: Session, subject: Subject, reasons: str) -> None:
    """Rework: the order returns to its specialist with the reasons."""
    order = _order(session, subject)
    if order.status != OrderStatus.REWORK:
        orders.request_rework(
            session,
            _system(subject),
            subject.order_id,
            submission_id=str(subject.submission_id),
            reasons=reasons,
        )
    runs.set_status(session, subject.submission_id, RunStatus.REWORK, summary=reasons)


class Acceptance(BaseModel):
    earnings_transfer_id: uuid.UUID
    late_fine_transfer_id: uuid.UUID | None = None
    late_fine_minor: int = 0


def accept(session: Session, subject: Subject, *, fee_bps: int, fine: LateFine) -> Acceptance:
    """Accept the work, credit the specialist's earnings and charge a late fine if one is due."""
    order = _order(session, subject)
    if order.status != OrderStatus.ACCEPTED:
        try:
            order = orders.accept(
                session,
                _system(subject),
                subject.order_id,
                submission_id=str(subject.submission_id),
            )
        except IllegalTransition as exc:
            if exc.status != OrderStatus.ACCEPTED:
                raise
            order = _order(session, subject)  # a concurrent run of this submission got there first
    earnings = business.post_earnings(
        session,
        order_id=subject.order_id,
        specialist_id=subject.specialist_id,
        gross_minor=order.fee_minor,
        currency=order.currency,
        fee_bps=fee_bps,
    )
    fine_transfer = None
    if fine.applies:
        fine_transfer = business.post_late_fine(
            session,
            order_id=subject.order_id,
            specialist_id=subject.specialist_id,
            amount_minor=fine.amount_minor,
            currency=fine.currency,
        ).id
    runs.set_status(session, subject.submission_id, RunStatus.ACCEPTED, summary="accepted")
    return Acceptance(
        earnings_transfer_id=earnings.id,
        late_fine_transfer_id=fine_transfer,
        late_fine_minor=fine.amount_minor,
    )


def give_back_after_failure(session: Session, subject: Subject, reason: str) -> bool:
    """The run failed for good (a service down past its retries, an error): rather than leave
    the order in review with nobody to decide it, hand it back to the specialist to resubmit,
    which starts a fresh run. Returns whether the order was handed back."""
    try:
        order = _order(session, subject)
    except NotTheLatestSubmission:
        return False
    if order.status != OrderStatus.IN_REVIEW:
        return False
    orders.request_rework(
        session,
        _system(subject),
        subject.order_id,
        submission_id=str(subject.submission_id),
        reasons=f"QA could not finish ({reason}); please submit again to rerun it",
    )
    runs.set_status(session, subject.submission_id, RunStatus.FAILED, summary=reason)
    return True
