"""QA's shapes over HTTP: a reviewer's decision, the answer that it was taken, a recorded review.

(`runs.ReviewDecisionData` is what reaches the suspended flow run; `ReviewIn` is what a reviewer
sends, before the API adds who they are and which stage they decide.)"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field

from quire.qa.runs import ReviewChoice
from quire.schemas import Input, Output


class ReviewIn(Input):
    model_config = ConfigDict(str_strip_whitespace=True)

    decision: ReviewChoice
    comments: str = Field(default="", max_length=10_000)


class ReviewAccepted(BaseModel):
    order_id: uuid.UUID
    submission_id: uuid.UUID
    stage: int
    decision: ReviewChoice
    flow_run_id: uuid.UUID


class ReviewOut(Output):
    submission_id: uuid.UUID
    stage: int
    decision: str
    comments: str
    reviewer_id: uuid.UUID | None
    reviewer_label: str
    decided_at: dt.datetime
