"""Human review of submitted work: the decision resumes the order's suspended QA run."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api import workflows
from api.deps import Work
from api.errors import responses
from quire.qa import runs
from quire.qa.schemas import ReviewAccepted, ReviewIn, ReviewOut

router = APIRouter(prefix="/orders", tags=["reviews"])


@router.post(
    "/{order_id}/reviews",
    status_code=202,
    response_model=ReviewAccepted,
    responses=responses(401, 403, 404, 409, 422, 503),
)
async def review(order_id: uuid.UUID, body: ReviewIn, work: Work) -> ReviewAccepted:
    """Approve the work at the stage waiting for a reviewer, or send it back for rework.

    The decision resumes the order's QA run, which records it and moves the order on; the answer
    is 202 because that happens in the run, moments later (follow it on the event stream).
    A reviewer cannot review their own submission.
    """
    ticket = await work.read(runs.open_review, order_id)
    await workflows.resume(
        ticket.flow_run_id,
        {
            "decision": body.decision.value,
            "comments": body.comments,
            "reviewer_id": str(work.actor.user_id),
            "stage": ticket.stage,
        },
    )
    return ReviewAccepted(
        order_id=order_id,
        submission_id=ticket.submission_id,
        stage=ticket.stage,
        decision=body.decision,
        flow_run_id=ticket.flow_run_id,
    )


@router.get("/{order_id}/reviews", response_model=list[ReviewOut], responses=responses(401, 404))
async def list_reviews(order_id: uuid.UUID, work: Work) -> list[ReviewOut]:
    """Every recorded review decision on the order's submissions, oldest first."""
    return [ReviewOut.model_validate(r) for r in await work.read(runs.reviews_of_order, order_id)]
