"""The QA pipeline as Prefect runs it: checks as tasks, retries, caching, verdicts, money."""

from __future__ import annotations

import pytest
from prefect.context import TaskRunContext
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from flows.qa_pipeline import QARequest, ReviewDecision, qa_pipeline
from ledger.models import Transfer
from quire.events.models import Event
from quire.orders.state import OrderStatus
from quire.qa.config import QAConfig
from quire.qa.errors import ServiceUnavailable
from tests.flows.scenario import ARTICLE, make_late, order_status, submitted_work


def run_qa(world, work) -> object:
    return qa_pipeline(QARequest(tenant_id=world.tenant_id, submission_id=work.submission_id))


def test_clean_work_without_review_stages_is_accepted_and_paid_once(
    prefect_api, flow_env, world, grammar_service
):
    work = submitted_work(flow_env, world, qa=QAConfig(review_stages=0))
    outcome = run_qa(world, work)
    assert outcome.verdict == "accepted"
    assert order_status(flow_env, world, work.order_id) == OrderStatus.ACCEPTED
    with flow_env.session(world.tenant_id) as s:
        earnings = s.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.kind == "earnings")
        )
    assert earnings == 1


def test_a_flaky_grammar_service_is_retried_with_backoff_until_it_answers(
    prefect_api, flow_env, world, grammar_service
):
    work = submitted_work(
        flow_env, world, qa=QAConfig(review_stages=0), content=ARTICLE + " (flaky run)"
    )
    grammar_service.fail_next(2, status=503)
    outcome = run_qa(world, work)
    assert outcome.verdict == "accepted"
    asked = [t for t in grammar_service.texts if t.endswith("(flaky run)")]
    assert len(asked) == 3  # two failures, then the answer


def test_unchanged_content_reuses_the_cached_check_results(
    prefect_api, flow_env, world, grammar_service
):
    content = ARTICLE + " (cached run)"
    first = submitted_work(flow_env, world, qa=QAConfig(review_stages=0), content=content)
    run_qa(world, first)
    calls = grammar_service.request_count
    second = submitted_work(flow_env, world, qa=QAConfig(review_stages=0), content=content)
    outcome = run_qa(world, second)
    assert grammar_service.request_count == calls  # the grammar check came from the cache
    # ...while the duplicate check, which depends on the tenant's other work, did run:
    assert outcome.verdict == "rework"
    assert "duplicate" in outcome.reasons.lower()


def test_failed_checks_send_the_work_back_without_bothering_a_reviewer(
    prefect_api, flow_env, world
):
    qa = QAConfig(review_stages=1, banned_terms=["roadmap"])
    work = submitted_work(flow_env, world, qa=qa, content=ARTICLE + " (banned term run)")
    outcome = run_qa(world, work)
    assert outcome.verdict == "rework"
    assert "roadmap" in outcome.reasons
    assert order_status(flow_env, world, work.order_id) == OrderStatus.REWORK


def test_earnings_are_posted_once_even_when_the_acceptance_step_is_retried(
    prefect_api, flow_env, world
):
    """The first attempt commits and then fails (as a lost connection after COMMIT would):
    Prefect retries the step, which finds the order accepted and the transfers already posted."""
    failures = []

    def fail_once_after_commit(session: Session) -> None:
        context = TaskRunContext.get()
        if context and context.task.name.startswith("Accept") and not failures:
            failures.append(context.task_run.id)
            raise ConnectionError("connection lost after COMMIT")

    work = submitted_work(flow_env, world, qa=QAConfig(review_stages=0), content=ARTICLE + " rt")
    make_late(flow_env, world, work.order_id, days=1.5)  # two started days late: a fine too
    event.listen(Session, "after_commit", fail_once_after_commit)
    try:
        outcome = run_qa(world, work)
    finally:
        event.remove(Session, "after_commit", fail_once_after_commit)
    assert failures, "the acceptance step never failed"
    assert outcome.verdict == "accepted"
    with flow_env.session(world.tenant_id) as s:
        kinds = sorted(s.scalars(select(Transfer.kind)))
    assert kinds == ["earnings", "late_fine"]
    assert outcome.late_fine_minor == 50_000 * 10 // 100  # 5% per started day, 2 days


def test_a_service_down_past_every_retry_hands_the_order_back_instead_of_stranding_it(
    prefect_api, flow_env, world, grammar_service
):
    work = submitted_work(
        flow_env, world, qa=QAConfig(review_stages=1), content=ARTICLE + " (service down)"
    )
    grammar_service.fail_next(5, status=503)  # the first try and all four retries
    with pytest.raises(ServiceUnavailable):
        run_qa(world, work)
    assert order_status(flow_env, world, work.order_id) == OrderStatus.REWORK
    with flow_env.session(world.tenant_id) as s:
        reasons = s.scalars(
            select(Event.payload).where(
                Event.aggregate_id == work.order_id, Event.type == "order.rework_requested"
            )
        ).one()["reasons"]
    assert "QA could not finish" in reasons


def test_the_review_form_has_no_default_decision():
    """An empty resume (an automation, a bare API call) must not count as an approval."""
    form = ReviewDecision.with_initial_data(stage=1).model_json_schema()
    assert form["required"] == ["decision"]
