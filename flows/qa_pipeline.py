"""QA pipeline: one flow run per submission, from automated checks to a verdict.

    take the submission into review -> run the order's automated checks
    -> publish the QA report -> failed checks? send back for rework
    -> for each human review stage: wait (suspended) for a reviewer's decision
       -> rework? send back -> otherwise next stage
    -> accept the work and post the earnings (and a late fine)

While it waits for a reviewer the run is *suspended*: it holds no worker, and resumes when a
reviewer answers in the Prefect UI form or through `POST /orders/{id}/reviews`. On resume the flow
runs again from the top, and every finished step returns its persisted result instead of running;
the checks' results are also kept with the run in Quire's database, so a resumed run decides on
them even where Prefect's cache cannot help (another worker, a redeploy).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.flow_runs import suspend_flow_run
from prefect.futures import wait
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import State
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, Field

from quire.orders.state import OrderStatus
from quire.qa.config import Check
from quire.qa.results import CheckResult, blocking_failures
from quire.qa.runs import ReviewChoice, ReviewDecisionData
from quire.qa.service import Subject
from quire.settings import get_settings
from tasks import qa


class QARequest(BaseModel):
    """Which submission to check (the outbox relay fills it from `order.submitted`)."""

    tenant_id: uuid.UUID
    submission_id: uuid.UUID
    event_id: int | None = Field(default=None, description="The outbox event that asked for it")


class ReviewDecision(ReviewDecisionData, RunInput):
    """The form a reviewer fills in (Prefect UI) or the API sends when resuming the run."""


class QAOutcome(BaseModel):
    submission_id: uuid.UUID
    order_id: uuid.UUID
    verdict: str  # accepted | rework | skipped
    reasons: str = ""
    earnings_transfer_id: uuid.UUID | None = None
    late_fine_minor: int = 0


def _give_back(flow: Any, run: FlowRun, state: State[Any]) -> None:
    """on_failure / on_crashed: never leave an order in review with a dead run."""
    request = QARequest.model_validate(run.parameters["request"])
    reason = state.message or state.name or "the run failed"
    qa.give_back_after_failure(request.tenant_id, request.submission_id, reason)


@flow(
    name="qa-pipeline",
    persist_result=True,
    log_prints=True,
    on_failure=[_give_back],
    on_crashed=[_give_back],
)
def qa_pipeline(request: QARequest) -> QAOutcome:
    logger = get_run_logger()
    subject, status, kept = qa.take_into_review(
        request.tenant_id, request.submission_id, _this_run()
    )
    if status in (OrderStatus.ACCEPTED, OrderStatus.REWORK):
        # A re-run after the verdict (or a superseded run): nothing left to decide.
        logger.info("order %s is already %s; nothing to do", subject.order_id, status)
        return QAOutcome(
            submission_id=subject.submission_id, order_id=subject.order_id, verdict="skipped"
        )

    results = kept if kept is not None else run_automated_checks(subject)
    fine = qa.late_fine_for(subject)
    blocking = blocking_failures(results)
    if blocking:
        reasons = "\n".join(_explain(r) for r in blocking)
        qa.send_back(subject, reasons)
        qa.publish_report(subject, results, fine, "sent back by the automated checks")
        return QAOutcome(
            submission_id=subject.submission_id,
            order_id=subject.order_id,
            verdict="rework",
            reasons=reasons,
        )
    if subject.qa.review_stages:
        qa.publish_report(subject, results, fine, "automated checks passed; awaiting review")

    for stage in range(1, subject.qa.review_stages + 1):
        decision = wait_for_review(subject, stage, results)
        qa.record_review(subject, stage, decision)
        if decision.decision == ReviewChoice.REWORK:
            reasons = decision.comments or f"rework requested at review stage {stage}"
            qa.send_back(subject, reasons)
            qa.publish_report(subject, results, fine, f"sent back at review stage {stage}")
            return QAOutcome(
                submission_id=subject.submission_id,
                order_id=subject.order_id,
                verdict="rework",
                reasons=reasons,
            )

    acceptance = qa.accept_and_pay(subject, fine)
    qa.publish_report(subject, results, fine, "accepted")
    return QAOutcome(
        submission_id=subject.submission_id,
        order_id=subject.order_id,
        verdict="accepted",
        earnings_transfer_id=acceptance.earnings_transfer_id,
        late_fine_minor=acceptance.late_fine_minor,
    )


def run_automated_checks(subject: Subject) -> list[CheckResult]:
    """The order's configured checks, concurrently; the one that calls out retries with backoff."""
    backoff = get_settings().qa_retry_backoff_seconds
    tasks = {
        check: qa.AUTOMATED_CHECKS[check]
        for check in Check
        if check in subject.qa.checks or check == Check.LATENESS
    }
    if Check.EXTERNAL in tasks:
        tasks[Check.EXTERNAL] = qa.check_grammar.with_options(
            retry_delay_seconds=exponential_backoff(backoff_factor=backoff)
        )
    futures = [task.submit(subject) for task in tasks.values()]
    wait(futures)
    return [future.result() for future in futures]


def wait_for_review(subject: Subject, stage: int, results: list[CheckResult]) -> ReviewDecision:
    """Suspend until a usable decision for `stage` arrives; refuse (and wait again) otherwise."""
    logger = get_run_logger()
    qa.mark_awaiting_review(subject, stage, results)
    timeout = int(dt.timedelta(hours=get_settings().review_timeout_hours).total_seconds())
    attempt = 0
    while True:
        decision = suspend_flow_run(
            wait_for_input=ReviewDecision.with_initial_data(
                description=(
                    f"**Review stage {stage} of {subject.qa.review_stages}** for "
                    f"*{subject.order_title}* (version {subject.submission_number}). "
                    "The QA report is in this run's artifacts."
                ),
                stage=stage,
            ),
            timeout=timeout,
            key=f"review-{stage}-{attempt}",
        )
        refusal = qa.vet_decision(subject, stage, decision)
        if refusal is None:
            return decision
        logger.warning("review decision refused: %s; waiting for another", refusal)
        attempt += 1


def _explain(result: CheckResult) -> str:
    """What the specialist reads: the check's verdict and the points behind it."""
    if not result.findings:
        return result.summary
    return f"{result.summary}: " + "; ".join(result.findings)


def _this_run() -> uuid.UUID | None:
    run_id = flow_run.get_id()
    return uuid.UUID(run_id) if run_id else None
