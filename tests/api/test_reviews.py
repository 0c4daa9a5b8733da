"""Reviews over HTTP, where no QA run is involved: who may ask, and what they are told."""

from __future__ import annotations

import httpx

from tests.support.world import World, publish_order


async def claim_and_submit_order(client: httpx.AsyncClient, world: World) -> dict:
    order = await publish_order(client, world.manager)
    specialist = world.specialist.auth
    claimed = await client.post(f"/orders/{order['id']}/claim", headers=specialist)
    assert claimed.status_code == 200, claimed.text
    body = {"content": "Eight hundred words on double-entry bookkeeping."}
    submitted = await client.post(
        f"/orders/{order['id']}/submissions", json=body, headers=specialist
    )
    assert submitted.status_code == 201, submitted.text
    return order


async def test_a_review_when_no_stage_is_waiting_is_a_conflict(client, world):
    order = await claim_and_submit_order(client, world)
    answer = await client.post(
        f"/orders/{order['id']}/reviews", json={"decision": "approve"}, headers=world.reviewer.auth
    )
    assert answer.status_code == 409
    assert answer.json()["code"] == "review_not_open"


async def test_a_review_needs_a_known_decision(client, world):
    order = await claim_and_submit_order(client, world)
    answer = await client.post(
        f"/orders/{order['id']}/reviews", json={"decision": "maybe"}, headers=world.reviewer.auth
    )
    assert answer.status_code == 422
