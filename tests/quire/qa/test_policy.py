"""Who may decide a review stage: one policy, asked by the API before it resumes a run and by the
flow when a decision arrives."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from quire.db import Database
from quire.errors import Conflict, Forbidden
from quire.orders.models import Order
from quire.orders.state import OrderStatus
from quire.people.actor import Actor
from quire.people.models import Role
from quire.qa import policy, runs
from quire.qa.models import RunStatus
from quire.qa.runs import ReviewChoice, ReviewDecisionData
from tests.quire.qa.test_similarity import add_submission, new_order
from tests.support.world import World, build_world


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, "acme")


def awaiting_review(s: Session, world: World, stage: int = 1) -> tuple[uuid.UUID, uuid.UUID]:
    """An order in review whose latest submission's run waits for `stage`: (order, submission)."""
    order = new_order(s, world)
    submission = add_submission(s, world, order.id, "The work, handed in.")
    s.get_one(Order, order.id).status = OrderStatus.IN_REVIEW
    runs.register(
        s, submission_id=submission.id, order_id=order.id, flow_run_id=uuid.uuid4(), review_stages=2
    )
    runs.set_status(s, submission.id, RunStatus.AWAITING_REVIEW, awaiting_stage=stage)
    return order.id, submission.id


def decide(s: Session, order_id: uuid.UUID, submission_id: uuid.UUID, stage: int, who: uuid.UUID):
    runs.record_review(
        s,
        submission_id=submission_id,
        order_id=order_id,
        stage=stage,
        decision=ReviewDecisionData(decision=ReviewChoice.APPROVE, reviewer_id=who),
        reviewer_label="reviewer",
    )


def refusal(s: Session, submission_id: uuid.UUID, world: World, reviewer: Actor, stage: int = 1):
    return policy.review_refusal(
        s,
        submission_id=submission_id,
        author_id=world.specialist.id,
        stage=stage,
        reviewer_id=reviewer.user_id,
        reviewer_roles=reviewer.roles,
    )


def test_a_reviewer_may_decide_another_persons_work(database, acme):
    with database.session(acme.tenant_id, write=True) as s:
        _, submission_id = awaiting_review(s, acme)
        assert refusal(s, submission_id, acme, acme.reviewer.actor) is None


def test_deciding_needs_the_reviewer_role(database, acme):
    with database.session(acme.tenant_id, write=True) as s:
        _, submission_id = awaiting_review(s, acme)
        refused = refusal(s, submission_id, acme, acme.manager.actor)
    assert refused is not None
    assert refused.code == "wrong_role"


def test_nobody_reviews_their_own_work_even_with_the_reviewer_role(database, acme):
    author_as_reviewer = Actor(acme.specialist.id, acme.tenant_id, frozenset({Role.REVIEWER}))
    with database.session(acme.tenant_id, write=True) as s:
        _, submission_id = awaiting_review(s, acme)
        refused = refusal(s, submission_id, acme, author_as_reviewer)
    assert refused is not None
    assert refused.code == "own_submission"


def test_each_stage_needs_another_reviewer(database, acme):
    with database.session(acme.tenant_id, write=True) as s:
        order_id, submission_id = awaiting_review(s, acme, stage=2)
        decide(s, order_id, submission_id, 1, acme.reviewer.id)
        refused = refusal(s, submission_id, acme, acme.reviewer.actor, stage=2)
    assert refused is not None
    assert refused.code == "already_reviewed"


def test_a_rerun_recording_the_same_stage_again_is_not_a_second_stage(database, acme):
    """The flow asks again when a re-run meets the decision it recorded before: it still counts."""
    with database.session(acme.tenant_id, write=True) as s:
        order_id, submission_id = awaiting_review(s, acme, stage=1)
        decide(s, order_id, submission_id, 1, acme.reviewer.id)
        assert refusal(s, submission_id, acme, acme.reviewer.actor, stage=1) is None


def test_the_api_finds_where_a_decision_goes(database, acme):
    with database.session(acme.tenant_id, write=True) as s:
        order_id, submission_id = awaiting_review(s, acme)
        ticket = runs.open_review(s, acme.reviewer.actor, order_id)
    assert (ticket.submission_id, ticket.stage) == (submission_id, 1)


def test_the_api_refuses_what_the_policy_refuses(database, acme):
    author_as_reviewer = Actor(acme.specialist.id, acme.tenant_id, frozenset({Role.REVIEWER}))
    with database.session(acme.tenant_id, write=True) as s:
        order_id, _ = awaiting_review(s, acme)
        with pytest.raises(Forbidden) as refused:
            runs.open_review(s, author_as_reviewer, order_id)
    assert refused.value.code == "own_submission"


def test_a_stage_that_already_has_its_decision_waits_for_no_other(database, acme):
    """Between the decision being recorded and the run moving on, a second one is refused."""
    with database.session(acme.tenant_id, write=True) as s:
        order_id, submission_id = awaiting_review(s, acme)
        decide(s, order_id, submission_id, 1, acme.reviewer.id)
        with pytest.raises(Conflict) as refused:
            runs.open_review(s, acme.reviewer.actor, order_id)
    assert refused.value.code == "review_not_open"
