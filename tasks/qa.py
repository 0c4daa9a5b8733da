"""QA pipeline tasks: each wraps one domain step with what Prefect adds.

Checks are cached by what determines their answer (the content hash plus the check's own
configuration), so re-running QA on unchanged content reuses them. The one check that calls out
retries transient failures with exponential backoff and jitter; a refusal is not retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import httpx
from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State

from quire.orders.state import OrderStatus
from quire.qa import checks, grammar, report, runs, similarity
from quire.qa import service as qa
from quire.qa.config import Check
from quire.qa.errors import ServiceUnavailable
from quire.qa.fines import LateFine, LateFinePolicy, assess_late_fine
from quire.qa.results import CheckResult
from quire.qa.runs import ReviewDecisionData
from quire.qa.service import Acceptance, Subject
from quire.settings import get_settings
from tasks.database import flow_database

CACHE_FOR = dt.timedelta(days=30)
# Part of every check's cache key: bump it when a check's logic changes, so cached verdicts on
# unchanged content are not reused for a month under the old rules.
CHECKS_VERSION = 1


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def by_content(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key: the task, the content hash and the order's QA configuration."""
    subject: Subject = parameters["subject"]
    return _digest(
        CHECKS_VERSION, context.task.name, subject.content_hash, subject.qa.model_dump(mode="json")
    )


def by_content_and_service(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of the grammar check: also the service and the limits it was judged by."""
    settings = get_settings()
    return _digest(
        by_content(context, parameters),
        settings.grammar_check_url,
        settings.grammar_language,
        settings.grammar_max_issues_per_1000_words,
    )


def only_when_unavailable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a service that is down or busy; a request it refuses would be refused again."""
    try:
        state.result()
    except ServiceUnavailable:
        return True
    except Exception:
        return False
    return False


@task(name="Take the submission into review")
def take_into_review(
    tenant_id: uuid.UUID, submission_id: uuid.UUID, flow_run_id: uuid.UUID | None
) -> tuple[Subject, OrderStatus, list[CheckResult] | None]:
    """Load what QA needs, register this run, and put the order in review (one transaction).

    Also returns the checks' results if an earlier pass of this run already kept them (a run
    resumed after waiting for a reviewer), so the verdict is not re-judged on fresh checks.
    """
    with flow_database().session(tenant_id, write=True) as session:
        subject = qa.load_subject(session, submission_id)
        status = qa.begin(session, subject, flow_run_id)
        return subject, status, qa.kept_results(session, subject)


@task(
    name="Check the length against the brief", cache_key_fn=by_content, cache_expiration=CACHE_FOR
)
def check_length(subject: Subject) -> CheckResult:
    return checks.check_length(subject.content, subject.qa)


@task(name="Check banned and required terms", cache_key_fn=by_content, cache_expiration=CACHE_FOR)
def check_terms(subject: Subject) -> CheckResult:
    return checks.check_terms(subject.content, subject.qa)


@task(name="Check lateness against the deadline")
def check_lateness(subject: Subject) -> CheckResult:
    return checks.check_lateness(subject.submitted_at, subject.deadline)


@task(name="Look for near-duplicates among the tenant's work")
def check_duplicates(subject: Subject) -> CheckResult:
    """Index first and commit, then look: two near-copies submitted together still meet."""
    database = flow_database()
    sig = similarity.signature(subject.content)
    with database.session(subject.tenant_id, write=True) as session:
        similarity.index_submission(session, subject.submission_id, subject.order_id, sig)
    with database.session(subject.tenant_id) as session:
        return similarity.check_duplicate(
            session,
            subject.order_id,
            sig,
            threshold=get_settings().duplicate_threshold,
            submitted_before=subject.submitted_at,
        )


@task(
    name="Check grammar with the external service",
    cache_key_fn=by_content_and_service,
    cache_expiration=CACHE_FOR,
    retries=4,
    retry_jitter_factor=0.5,
    retry_condition_fn=only_when_unavailable,
)
def check_grammar(subject: Subject) -> CheckResult:
    settings = get_settings()
    with httpx.Client(timeout=settings.grammar_timeout_seconds) as client:
        return grammar.check_grammar(
            client,
            settings.grammar_check_url,
            subject.content,
            settings.grammar_max_issues_per_1000_words,
            language=settings.grammar_language,
        )


AUTOMATED_CHECKS: dict[Check, Task[..., CheckResult]] = {
    Check.LENGTH: check_length,
    Check.TERMS: check_terms,
    Check.DUPLICATE: check_duplicates,
    Check.LATENESS: check_lateness,
    Check.EXTERNAL: check_grammar,
}


def late_fine_for(subject: Subject) -> LateFine:
    """The fine the policy sets for this submission (zero when on time): pure arithmetic, so it
    is not a task of its own; the report and the acceptance step show it."""
    return assess_late_fine(
        subject.fee_minor,
        subject.currency,
        subject.submitted_at,
        subject.deadline,
        LateFinePolicy.from_settings(get_settings()),
    )


@task(name="Publish the QA report")
def publish_report(
    subject: Subject,
    results: list[CheckResult],
    fine: LateFine,
    stage_label: str,
) -> uuid.UUID:
    with flow_database().session(subject.tenant_id) as session:
        reviews = [
            report.ReviewEntry(
                stage=r.stage,
                reviewer=r.reviewer_label,
                decision=r.decision,
                comments=r.comments,
                decided_at=r.decided_at,
            )
            for r in runs.reviews_of(session, subject.submission_id)
        ]
    markdown = report.render_report(
        order_title=subject.order_title,
        order_id=subject.order_id,
        submission_number=subject.submission_number,
        content_hash=subject.content_hash,
        results=results,
        reviews=reviews,
        late_fine=fine,
    )
    return create_markdown_artifact(
        markdown=markdown,
        key=f"qa-report-{subject.submission_id}",
        description=f"QA of {subject.order_title} v{subject.submission_number}: {stage_label}",
    )


@task(name="Wait for a reviewer")
def mark_awaiting_review(subject: Subject, stage: int, results: list[CheckResult]) -> None:
    with flow_database().session(subject.tenant_id, write=True) as session:
        qa.await_review(session, subject, stage, results)


@task(name="Check the reviewer's decision")
def vet_decision(subject: Subject, stage: int, decision: ReviewDecisionData) -> str | None:
    with flow_database().session(subject.tenant_id) as session:
        return qa.refusal(session, subject, stage, decision)


@task(name="Record the review")
def record_review(subject: Subject, stage: int, decision: ReviewDecisionData) -> None:
    with flow_database().session(subject.tenant_id, write=True) as session:
        runs.record_review(
            session,
            submission_id=subject.submission_id,
            order_id=subject.order_id,
            stage=stage,
            decision=decision,
            reviewer_label=qa.reviewer_label(session, decision),
        )


@task(name="Send the work back for rework")
def send_back(subject: Subject, reasons: str) -> None:
    with flow_database().session(subject.tenant_id, write=True) as session:
        qa.send_back(session, subject, reasons)


@task(name="Accept the work and post the earnings", retries=3, retry_delay_seconds=1)
def accept_and_pay(subject: Subject, fine: LateFine) -> Acceptance:
    """One transaction: accepted order, earnings and any late fine, all or nothing. A retry
    (or a re-run) finds the order accepted and the transfers posted under their keys."""
    with flow_database().session(subject.tenant_id, write=True) as session:
        return qa.accept(session, subject, fee_bps=get_settings().platform_fee_bps, fine=fine)


def give_back_after_failure(tenant_id: uuid.UUID, submission_id: uuid.UUID, reason: str) -> bool:
    """Called from the flow's failure hooks (not a task: the run has already ended)."""
    with flow_database().session(tenant_id, write=True) as session:
        subject = qa.load_subject(session, submission_id)
        return qa.give_back_after_failure(session, subject, reason)
