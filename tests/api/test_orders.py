"""The marketplace over HTTP: orders, bids, claims, submissions, idempotency and bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from quire.db import utcnow
from quire.events.models import Event
from quire.orders.models import Order, Submission
from tests.support.world import build_world, login, order_body, publish_order


async def count_rows(database, model) -> int:
    """Rows of `model` across every tenant (the database is shared: compare with a count taken
    before, never with a fixed number)."""
    with database.session(None) as s:
        from quire.tenancy import ALL_TENANTS

        return s.scalar(select(func.count()).select_from(model).execution_options(**ALL_TENANTS))


# --- the order life cycle ----------------------------------------------------------------------


async def test_a_manager_drafts_publishes_and_cancels(client, world):
    draft = await client.post("/orders", json=order_body(publish=False), headers=world.manager.auth)
    assert draft.status_code == 201
    order = draft.json()
    assert (order["status"], order["version"]) == ("draft", 1)
    published = await client.post(f"/orders/{order['id']}/publish", headers=world.manager.auth)
    assert (published.json()["status"], published.json()["version"]) == ("open", 2)
    again = await client.post(f"/orders/{order['id']}/publish", headers=world.manager.auth)
    assert again.status_code == 409
    assert again.json()["code"] == "illegal_transition"
    cancelled = await client.post(f"/orders/{order['id']}/cancel", headers=world.manager.auth)
    assert cancelled.json()["status"] == "cancelled"


async def test_claim_release_and_submit_over_http(client, world):
    order = await publish_order(client, world.manager)
    oid = order["id"]
    assert (
        await client.post(f"/orders/{oid}/claim", headers=world.specialist.auth)
    ).status_code == 200
    lost = await client.post(f"/orders/{oid}/claim", headers=world.specialist1.auth)
    assert (lost.status_code, lost.json()["code"]) == (409, "illegal_transition")
    sub = await client.post(
        f"/orders/{oid}/submissions",
        json={"content": "Ledgers, explained."},
        headers=world.specialist.auth,
    )
    assert sub.status_code == 201
    assert sub.json()["number"] == 1
    listed = await client.get(f"/orders/{oid}/submissions", headers=world.manager.auth)
    assert [s["number"] for s in listed.json()] == [1]
    fetched = await client.get(f"/orders/{oid}", headers=world.specialist.auth)
    assert fetched.json()["status"] == "submitted"


async def test_bidding_over_http(client, world):
    order = await publish_order(client, world.manager, mode="bidding")
    oid = order["id"]
    claim = await client.post(f"/orders/{oid}/claim", headers=world.specialist.auth)
    assert (claim.status_code, claim.json()["code"]) == (409, "order_requires_bidding")
    a = await client.post(
        f"/orders/{oid}/bids", json={"amount_minor": 20_000}, headers=world.specialist.auth
    )
    b = await client.post(
        f"/orders/{oid}/bids",
        json={"amount_minor": 18_000, "note": "fast"},
        headers=world.specialist1.auth,
    )
    assert a.status_code == b.status_code == 201
    mine = await client.get(f"/orders/{oid}/bids", headers=world.specialist.auth)
    assert [x["id"] for x in mine.json()] == [a.json()["id"]]
    withdrawn = await client.post(
        f"/orders/{oid}/bids/{a.json()['id']}/withdraw", headers=world.specialist.auth
    )
    assert withdrawn.json()["status"] == "withdrawn"
    awarded = await client.post(
        f"/orders/{oid}/bids/{b.json()['id']}/award", headers=world.manager.auth
    )
    assert awarded.status_code == 200
    assert (awarded.json()["status"], awarded.json()["fee_minor"]) == ("awarded", 18_000)
    assert awarded.json()["specialist_id"] == str(world.specialist1.id)


# --- idempotency -------------------------------------------------------------------------------


async def test_a_retried_claim_with_the_same_key_replays_the_first_response(client, world):
    order = await publish_order(client, world.manager)
    headers = {**world.specialist.auth, "Idempotency-Key": "claim-1"}
    first = await client.post(f"/orders/{order['id']}/claim", headers=headers)
    second = await client.post(f"/orders/{order['id']}/claim", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_the_same_key_for_a_different_request_is_refused(client, world, database):
    one = await publish_order(client, world.manager)
    two = await publish_order(client, world.manager)
    headers = {**world.specialist.auth, "Idempotency-Key": "k"}
    assert (await client.post(f"/orders/{one['id']}/claim", headers=headers)).status_code == 200
    other = await client.post(f"/orders/{two['id']}/claim", headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    fetched = await client.get(f"/orders/{two['id']}", headers=world.manager.auth)
    assert fetched.json()["status"] == "open"


async def test_a_retried_submit_creates_one_submission(client, world, database):
    order = await publish_order(client, world.manager)
    oid = order["id"]
    await client.post(f"/orders/{oid}/claim", headers=world.specialist.auth)
    headers = {**world.specialist.auth, "Idempotency-Key": "submit-7"}
    before = await count_rows(database, Submission)
    first = await client.post(f"/orders/{oid}/submissions", json={"content": "v1"}, headers=headers)
    again = await client.post(f"/orders/{oid}/submissions", json={"content": "v1"}, headers=headers)
    changed = await client.post(
        f"/orders/{oid}/submissions", json={"content": "v2"}, headers=headers
    )
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert changed.status_code == 422
    assert await count_rows(database, Submission) == before + 1


async def test_idempotency_keys_belong_to_their_caller(client, world):
    one = await publish_order(client, world.manager)
    two = await publish_order(client, world.manager)
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post(f"/orders/{one['id']}/claim", headers={**world.specialist.auth, **key})
    b = await client.post(f"/orders/{two['id']}/claim", headers={**world.specialist1.auth, **key})
    assert a.status_code == b.status_code == 200


# --- bad input: a clear 4xx and nothing written -------------------------------------------------

BAD_ORDERS = [
    ({"fee_minor": 0}, 422, "fee_minor"),
    ({"fee_minor": -5}, 422, "fee_minor"),
    ({"fee_minor": 10**15}, 422, "fee_minor"),
    ({"fee_minor": 12.5}, 422, "fee_minor"),
    ({"fee_minor": "100"}, 422, "fee_minor"),
    ({"currency": "ZZZ"}, 422, "currency"),
    ({"currency": "usd"}, 422, "currency"),
    ({"currency": "XAU"}, 422, "currency"),
    ({"deadline": (utcnow() - dt.timedelta(hours=1)).isoformat()}, 422, "deadline"),
    ({"deadline": "2030-01-01T00:00:00"}, 422, "deadline"),
    ({"deadline": "tomorrow"}, 422, "deadline"),
    ({"title": ""}, 422, "title"),
    ({"mode": "auction"}, 422, "mode"),
    ({"qa": {"review_stages": 9}}, 422, "review_stages"),
    ({"unexpected": 1}, 422, "unexpected"),
]


@pytest.mark.parametrize(("override", "status", "field"), BAD_ORDERS)
async def test_a_bad_order_is_refused_and_nothing_is_written(
    client, world, database, override, status, field
):
    before = await count_rows(database, Order), await count_rows(database, Event)
    response = await client.post("/orders", json=order_body(**override), headers=world.manager.auth)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == "validation_failed"
    assert field in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert (await count_rows(database, Order), await count_rows(database, Event)) == before


async def test_malformed_json_is_a_400(client, world, database):
    before = await count_rows(database, Order)
    response = await client.post(
        "/orders",
        content=b'{"title": "x",',
        headers={**world.manager.auth, "content-type": "application/json"},
    )
    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")
    assert response.headers["content-type"] == "application/problem+json"
    assert await count_rows(database, Order) == before


async def test_an_oversized_body_is_a_413(client, world, database):
    huge = order_body(brief="x" * 2_000_000)
    before = await count_rows(database, Order)
    response = await client.post("/orders", json=huge, headers=world.manager.auth)
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    assert await count_rows(database, Order) == before


async def test_bad_bids_and_submissions_are_refused(client, world, database):
    bidding = await publish_order(client, world.manager, mode="bidding")
    before = await count_rows(database, Submission)
    for amount in (0, -1, 10**14, 1.5):
        r = await client.post(
            f"/orders/{bidding['id']}/bids",
            json={"amount_minor": amount},
            headers=world.specialist.auth,
        )
        assert r.status_code == 422, amount
    order = await publish_order(client, world.manager)
    await client.post(f"/orders/{order['id']}/claim", headers=world.specialist.auth)
    for content in ("", "   ", None, 42):
        r = await client.post(
            f"/orders/{order['id']}/submissions",
            json={"content": content},
            headers=world.specialist.auth,
        )
        assert r.status_code == 422, content
    assert await count_rows(database, Submission) == before


async def test_an_unknown_id_or_a_malformed_one_is_clear(client, world):
    missing = await client.get(f"/orders/{uuid.uuid4()}", headers=world.manager.auth)
    assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")
    malformed = await client.get("/orders/not-a-uuid", headers=world.manager.auth)
    assert malformed.status_code == 422


# --- listing -----------------------------------------------------------------------------------


async def test_listing_filters_sorts_and_pages(client, world):
    fees = [5_000, 15_000, 10_000, 20_000, 1_000]
    for i, fee in enumerate(fees):
        await publish_order(
            client,
            world.manager,
            fee_minor=fee,
            currency="EUR" if i % 2 else "USD",
            skill="editing" if i == 0 else "copywriting",
        )
    await publish_order(client, world.manager, publish=False, fee_minor=99_999)

    seen: list[int] = []
    cursor = None
    while True:
        params = {"sort": "fee_minor", "limit": 2, "status": "open"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/orders", params=params, headers=world.specialist.auth)).json()
        seen += [o["fee_minor"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(fees)

    eur = await client.get("/orders", params={"currency": "EUR"}, headers=world.manager.auth)
    assert {o["currency"] for o in eur.json()["items"]} == {"EUR"}
    editing = await client.get("/orders", params={"skill": "editing"}, headers=world.manager.auth)
    assert [o["fee_minor"] for o in editing.json()["items"]] == [5_000]
    drafts = await client.get("/orders", params={"status": "draft"}, headers=world.manager.auth)
    assert [o["fee_minor"] for o in drafts.json()["items"]] == [99_999]
    hidden = await client.get("/orders", params={"status": "draft"}, headers=world.specialist.auth)
    assert hidden.json()["items"] == []
    newest_first = await client.get("/orders", headers=world.manager.auth)
    created = [o["created_at"] for o in newest_first.json()["items"]]
    assert created == sorted(created, reverse=True)


async def test_listing_rejects_bad_parameters(client, world):
    for params in (
        {"limit": 0},
        {"limit": 1000},
        {"sort": "title"},
        {"status": "lost"},
        {"currency": "ZZZ"},
        {"cursor": "garbage"},
    ):
        r = await client.get("/orders", params=params, headers=world.manager.auth)
        assert r.status_code == 422, params


# --- the race, through a real server ------------------------------------------------------------


@pytest.mark.postgres
async def test_32_http_clients_race_for_each_order_and_one_wins(pg_url, live_server):
    from quire.db import Database

    database = Database(pg_url)
    world = build_world(database, "race", specialists=32)
    database.dispose()
    server = live_server(pg_url, QUIRE_LOGIN_LIMIT_PER_IP="1000")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        people = [await login(http, p) for p in world.people.values()]
        manager = next(p for p in people if "manager" in p.roles)
        specialists = [p for p in people if "specialist" in p.roles]
        orders = [await publish_order(http, manager) for _ in range(10)]

        async def claim(person, order_id):
            r = await http.post(f"/orders/{order_id}/claim", headers=person.auth)
            return r.status_code, person.id

        for order in orders:
            results = await asyncio.gather(*(claim(p, order["id"]) for p in specialists))
            winners = [who for status, who in results if status == 200]
            assert len(winners) == 1
            assert sorted(s for s, _ in results) == [200] + [409] * 31
            final = (await http.get(f"/orders/{order['id']}", headers=manager.auth)).json()
            assert (final["status"], final["specialist_id"]) == ("claimed", str(winners[0]))
