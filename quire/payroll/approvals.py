"""Four eyes: who may approve or reject a payroll run.

One rule for both doors — the Prefect UI's form and `POST /payroll-runs/{id}/approval` — so the
flow re-checks every decision it is given and waits again after a refusal, and the API refuses
the same cases up front with a 403 or 409.

The Prefect UI has no identities of its own (Prefect OSS), so its form names the approver by
email and the flow checks that person: an active finance user of the tenant who did not start the
run. Through the API the approver is the authenticated caller.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quire.payroll.models import PayrollRun, RunStatus
from quire.people.actor import Actor
from quire.people.models import Role, User


class ApprovalChoice(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ApprovalData(BaseModel):
    """What a finance user answers; the flow's Prefect form is this model (no default choice)."""

    decision: ApprovalChoice = Field(description="Approve posts the payouts; reject posts nothing.")
    comment: str = Field(default="", max_length=2000, description="Why (required to reject).")
    approver: str = Field(
        min_length=1,
        max_length=320,
        description="The approving finance user's email (the API fills in the caller).",
    )


def approver_of(session: Session, reference: str) -> User | None:
    """The tenant's user named by id or email."""
    try:
        user_id = uuid.UUID(reference)
    except ValueError:
        return session.scalar(select(User).where(func.lower(User.email) == reference.lower()))
    return session.scalar(select(User).where(User.id == user_id))


@dataclass(frozen=True)
class Refusal:
    code: (
        str  # not_awaiting_approval | unknown_approver | not_finance | four_eyes | comment_required
    )
    message: str

    def __str__(self) -> str:
        return self.message


def refusal(run: PayrollRun, approver: User | Actor | None, data: ApprovalData) -> Refusal | None:
    """Why this decision cannot count (None: it counts)."""
    if run.status != RunStatus.AWAITING_APPROVAL:
        return Refusal("not_awaiting_approval", f"the run is {run.status}, not awaiting approval")
    if approver is None or (isinstance(approver, User) and not approver.is_active):
        return Refusal("unknown_approver", f"no active user {data.approver!r} in this tenant")
    user_id = approver.user_id if isinstance(approver, Actor) else approver.id
    if Role.FINANCE not in approver.roles:
        return Refusal("not_finance", "only a finance user may approve or reject a payroll run")
    if run.started_by is not None and user_id == run.started_by:
        return Refusal("four_eyes", "whoever started a payroll run may not approve it (four eyes)")
    if data.decision == ApprovalChoice.REJECT and not data.comment.strip():
        return Refusal("comment_required", "a rejection needs a comment saying why")
    return None
