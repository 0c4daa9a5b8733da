"""Who may decide a review stage: the one rule the API and the QA flow both apply.

The API asks before it resumes a run (a refusal becomes a 403); the flow asks again when the
decision arrives, because a decision may also come from the Prefect UI form or race another
reviewer (a refusal there means the run goes on waiting for a decision that counts).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.people.models import Role
from quire.qa.models import QAReview

REVIEWER_ROLES = (Role.REVIEWER,)


@dataclass(frozen=True)
class ReviewRefusal:
    """Why a reviewer's decision cannot count, with the stable code the API reports."""

    code: str
    reason: str


def review_refusal(
    session: Session,
    *,
    submission_id: uuid.UUID,
    author_id: uuid.UUID,
    stage: int,
    reviewer_id: uuid.UUID,
    reviewer_roles: Collection[str],
) -> ReviewRefusal | None:
    """None when `reviewer_id` may decide stage `stage` of this submission, else why not.

    A reviewer needs the reviewer role, may not review their own work, and decides at most one
    stage of a submission (each stage is another pair of eyes); deciding the same stage again —
    a re-run of the flow recording it once more — is not a second stage.
    """
    if not any(role in reviewer_roles for role in REVIEWER_ROLES):
        return ReviewRefusal("wrong_role", "this action needs the reviewer role")
    if reviewer_id == author_id:
        return ReviewRefusal(
            "own_submission", "you submitted this work: another reviewer must review it"
        )
    earlier = session.scalar(
        select(QAReview.stage).where(
            QAReview.submission_id == submission_id,
            QAReview.reviewer_id == reviewer_id,
            QAReview.stage != stage,
        )
    )
    if earlier is not None:
        return ReviewRefusal(
            "already_reviewed",
            f"you decided review stage {earlier} of this work: another reviewer decides the next",
        )
    return None
