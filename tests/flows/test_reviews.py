"""Human review through the API: the QA run suspends (holding no worker) until a reviewer decides.

These run the real path: the outbox relay starts a deployment run, the served worker executes it
in a subprocess, the run suspends, `POST /orders/{id}/reviews` resumes it, and the run finishes.
"""

from __future__ import annotations

import uuid

import httpx
from prefect.client.schemas.objects import StateType
from sqlalchemy import func, select

from flows.outbox_relay import outbox_relay
from ledger.models import Transfer
from quire.orders.state import OrderStatus
from quire.people import service as people
from quire.people.models import Role
from quire.people.schemas import UserDraft
from quire.qa.config import QAConfig
from tests.flows.conftest import bearer, drain_outbox, wait_until
from tests.flows.scenario import (
    ARTICLE,
    awaiting_review,
    flow_run_state,
    order_status,
    resubmit,
    submitted_work,
)
from tests.support.world import PASSWORD, Person

RUN_TIMEOUT = 240


def review(api, person: Person, order_id: uuid.UUID, decision: str, comments: str = ""):
    return httpx.post(
        f"{api.base_url}/orders/{order_id}/reviews",
        json={"decision": decision, "comments": comments},
        headers=bearer(person),
        timeout=60,
    )


def test_a_reviewer_approves_through_the_api_and_the_suspended_run_finishes(
    served, api, flow_env, world
):
    drain_outbox(flow_env)
    work = submitted_work(
        flow_env, world, qa=QAConfig(review_stages=1), content=ARTICLE + " (approved once)"
    )
    assert outbox_relay().runs_started == 1

    run = wait_until(
        lambda: awaiting_review(flow_env, world, work.submission_id),
        timeout=RUN_TIMEOUT,
        what="the QA run to wait for a reviewer",
    )
    assert run.awaiting_stage == 1
    wait_until(lambda: flow_run_state(run.flow_run_id) == StateType.PAUSED, what="suspension")
    assert order_status(flow_env, world, work.order_id) == OrderStatus.IN_REVIEW

    # The submitting specialist and a manager may not decide; a reviewer may.
    assert review(api, world.specialist, work.order_id, "approve").status_code == 403
    assert review(api, world.manager, work.order_id, "approve").status_code == 403
    answer = review(api, world.reviewer, work.order_id, "approve", "Reads well.")
    assert answer.status_code == 202, answer.text
    assert answer.json()["stage"] == 1
    # The run is no longer waiting: a second decision is refused, not lost.
    assert review(api, world.reviewer, work.order_id, "rework").status_code == 409

    wait_until(
        lambda: flow_run_state(run.flow_run_id) == StateType.COMPLETED,
        timeout=RUN_TIMEOUT,
        what="the QA run to complete",
    )
    assert order_status(flow_env, world, work.order_id) == OrderStatus.ACCEPTED
    reviews = httpx.get(
        f"{api.base_url}/orders/{work.order_id}/reviews", headers=bearer(world.manager)
    ).json()
    assert [(r["stage"], r["decision"], r["comments"]) for r in reviews] == [
        (1, "approve", "Reads well.")
    ]
    with flow_env.session(world.tenant_id) as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 1  # the earnings


def test_rework_then_a_new_submission_then_acceptance(served, api, flow_env, world):
    drain_outbox(flow_env)
    with flow_env.session(world.tenant_id, write=True) as s:
        both = people.add_user(
            s,
            world.tenant_id,
            UserDraft(
                email=f"both@{world.slug}.test",
                display_name="writes and reviews",
                password=PASSWORD,
                roles=[Role.SPECIALIST, Role.REVIEWER],
                profile={"payout_currency": "EUR", "skills": ["copywriting"]},
            ),
        )
    author = Person(both.id, both.email, list(both.roles), world.tenant_id, world.slug)
    work = submitted_work(
        flow_env,
        world,
        qa=QAConfig(review_stages=1),
        content=ARTICLE + " (first draft)",
        specialist=author,
    )
    outbox_relay()
    wait_until(
        lambda: awaiting_review(flow_env, world, work.submission_id),
        timeout=RUN_TIMEOUT,
        what="the first run to wait for a reviewer",
    )
    # A reviewer who wrote the work cannot review it.
    refused = review(api, author, work.order_id, "approve")
    assert refused.status_code == 403
    assert refused.json()["code"] == "own_submission"

    assert review(api, world.reviewer, work.order_id, "rework", "Add a summary.").status_code == 202
    wait_until(
        lambda: order_status(flow_env, world, work.order_id) == OrderStatus.REWORK,
        timeout=RUN_TIMEOUT,
        what="the order to go back for rework",
    )

    second = resubmit(
        flow_env, world, work.order_id, content=ARTICLE + " In summary: plan.", specialist=author
    )
    assert outbox_relay().runs_started == 1
    run = wait_until(
        lambda: awaiting_review(flow_env, world, second.submission_id),
        timeout=RUN_TIMEOUT,
        what="the second run to wait for a reviewer",
    )
    assert review(api, world.reviewer, work.order_id, "approve").status_code == 202
    wait_until(
        lambda: order_status(flow_env, world, work.order_id) == OrderStatus.ACCEPTED,
        timeout=RUN_TIMEOUT,
        what="acceptance",
    )
    wait_until(lambda: flow_run_state(run.flow_run_id) == StateType.COMPLETED, what="completion")
