"""Client input never produces a 500: NUL characters, crafted cursors, out-of-range periods and
half-specified users are ordinary 4xx problems, and nothing is written. Runs on SQLite and
PostgreSQL (PostgreSQL is the database that refuses a NUL in text outright)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger import business
from ledger.models import Entry, Invoice, Transfer
from quire.auth.models import ApiKey
from quire.events.models import Event
from quire.orders.models import Bid, Order, Submission
from quire.people.models import SpecialistProfile, User
from quire.tenancy import ALL_TENANTS
from tests.support.world import PASSWORD, order_body, publish_order

NUL = "\x00"
WRITTEN = (Order, Bid, Submission, Event, User, SpecialistProfile, ApiKey, Transfer, Entry, Invoice)


def counts(database) -> dict[str, int]:
    """Rows of every table a request could write to, across tenants."""
    with database.session(None) as s:
        return {
            model.__tablename__: s.scalar(
                select(func.count()).select_from(model).execution_options(**ALL_TENANTS)
            )
            for model in WRITTEN
        }


def assert_refused_nul(response, loc: list[Any]) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_failed"
    assert response.headers["content-type"] == "application/problem+json"
    assert body["request_id"] == response.headers["x-request-id"]
    assert {"loc": loc, "type": "invalid_character"}.items() <= body["errors"][0].items(), body


def cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.fixture
def earnings(database, world):
    with database.session(world.tenant_id, write=True) as s:
        for gross in (10_000, 5_000):
            business.post_earnings(
                s,
                order_id=uuid.uuid4(),
                specialist_id=world.specialist.id,
                gross_minor=gross,
                currency="USD",
                fee_bps=1500,
            )


async def payable_account(client, person) -> str:
    response = await client.get("/ledger/accounts", headers=person.auth)
    assert response.status_code == 200, response.text
    return next(a["id"] for a in response.json() if a["kind"] == "specialist_payable")


# --- NUL characters in bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "loc"),
    [
        ({"title": f"Blog{NUL}post"}, ["title"]),
        ({"brief": f"800 words{NUL}"}, ["brief"]),
        ({"skill": f"copy{NUL}"}, ["skill"]),
        ({"qa": {"required_terms": ["ledger", f"debit{NUL}"]}}, ["qa", "required_terms"]),
    ],
)
async def test_a_nul_in_an_order_is_a_422_and_nothing_is_written(
    client, world, database, override, loc
):
    before = counts(database)
    response = await client.post("/orders", json=order_body(**override), headers=world.manager.auth)
    assert_refused_nul(response, loc)
    assert counts(database) == before


async def test_a_nul_in_a_submission_or_a_bid_is_a_422_and_nothing_is_written(
    client, world, database
):
    order = await publish_order(client, world.manager)
    await client.post(f"/orders/{order['id']}/claim", headers=world.specialist.auth)
    bidding = await publish_order(client, world.manager, mode="bidding")
    before = counts(database)
    submission = await client.post(
        f"/orders/{order['id']}/submissions",
        json={"content": f"The work{NUL}"},
        headers={**world.specialist.auth, "Idempotency-Key": "nul-1"},
    )
    assert_refused_nul(submission, ["content"])
    bid = await client.post(
        f"/orders/{bidding['id']}/bids",
        json={"amount_minor": 1_000, "note": f"{NUL}"},
        headers=world.specialist.auth,
    )
    assert_refused_nul(bid, ["note"])
    assert counts(database) == before


async def test_a_nul_in_a_user_or_an_api_key_is_a_422_and_nothing_is_written(
    client, world, database
):
    before = counts(database)
    user = await client.post(
        "/users",
        json={
            "email": "new@acme.test",
            "display_name": f"New{NUL}",
            "password": PASSWORD,
            "roles": ["manager"],
        },
        headers=world.admin.auth,
    )
    assert_refused_nul(user, ["display_name"])
    key = await client.post(
        "/api-keys", json={"name": f"ci{NUL}", "roles": ["manager"]}, headers=world.manager.auth
    )
    assert_refused_nul(key, ["name"])
    assert counts(database) == before


@pytest.mark.parametrize("field", ["email", "tenant"])
async def test_a_nul_in_a_login_is_a_422(client, world, database, field):
    body = {"tenant": world.slug, "email": world.manager.email, "password": PASSWORD}
    body[field] = body[field] + NUL
    before = counts(database)
    assert_refused_nul(await client.post("/auth/login", json=body), [field])
    assert counts(database) == before


async def test_a_nul_in_a_ledger_body_is_a_422_and_nothing_is_written(
    client, world, database, earnings
):
    account = await payable_account(client, world.finance)
    legs = [{"account_id": account, "amount_minor": 1}, {"account_id": account, "amount_minor": -1}]
    before = counts(database)
    for body, loc in (
        ({"idempotency_key": "k", "reference": NUL, "legs": legs}, ["reference"]),
        ({"idempotency_key": "k", "legs": legs, "metadata": {"why": NUL}}, ["metadata"]),
        ({"idempotency_key": "k", "legs": legs, "metadata": {NUL: "x"}}, ["metadata"]),
    ):
        response = await client.post("/ledger/transfers", json=body, headers=world.finance.auth)
        assert_refused_nul(response, loc)
    invoice = await client.post(
        "/ledger/invoices",
        json={
            "specialist_id": str(world.specialist.id),
            "period": "2026-01",
            "currency": "USD",
            "lines": [{"description": f"Blog{NUL}", "amount_minor": 100}],
        },
        headers=world.finance.auth,
    )
    assert_refused_nul(invoice, ["lines", 0, "description"])
    assert counts(database) == before


# --- NUL characters in the query, path and headers ---------------------------------------------


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"skill": f"copy{NUL}writing"}, ["query", "skill"]),
        ({"cursor": NUL}, ["query", "cursor"]),
        ({f"sk{NUL}ill": "x"}, ["query", "skill"]),
    ],
)
async def test_a_nul_in_a_query_parameter_is_a_422_naming_it(client, world, params, loc):
    response = await client.get("/orders", params=params, headers=world.manager.auth)
    assert_refused_nul(response, loc)


async def test_a_nul_in_a_header_or_the_path_is_a_422(client, world, database):
    order = await publish_order(client, world.manager)
    await client.post(f"/orders/{order['id']}/claim", headers=world.specialist.auth)
    before = counts(database)
    keyed = await client.post(
        f"/orders/{order['id']}/submissions",
        json={"content": "The work"},
        headers={**world.specialist.auth, "Idempotency-Key": f"k{NUL}1"},
    )
    assert_refused_nul(keyed, ["header", "idempotency-key"])
    api_key = await client.get("/orders", headers={"X-API-Key": f"qk_{NUL}"})
    assert_refused_nul(api_key, ["header", "x-api-key"])
    path = await client.get("/orders/%00", headers=world.manager.auth)
    assert_refused_nul(path, ["path"])
    assert counts(database) == before


# --- crafted cursors ---------------------------------------------------------------------------

# A fixed id: cursors appear in test ids, the same in every collection (xdist).
ANY_ID = "6f903c2f-0130-403a-9f15-f8d2b1e46107"
BAD_ORDER_CURSORS = [
    ("created_at", "not base64 !!"),
    ("created_at", base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode()),  # not UTF-8
    ("created_at", base64.urlsafe_b64encode(b"[1, 2").decode()),  # not JSON
    ("created_at", cursor_of({"value": 1})),  # wrong shape
    ("created_at", cursor_of(["2026-01-01T00:00:00+00:00"])),  # one part
    ("created_at", cursor_of(["2026-01-01T00:00:00+00:00", "not-a-uuid"])),
    ("created_at", cursor_of(["2026-01-01T00:00:00", ANY_ID])),  # naive
    ("deadline", cursor_of(["0001-01-01T00:00:00+05:00", ANY_ID])),  # overflows UTC
    ("created_at", cursor_of([12, ANY_ID])),  # a number for a time
    ("fee_minor", cursor_of([10**30, ANY_ID])),  # beyond BIGINT
    ("fee_minor", cursor_of([-(2**63) - 1, ANY_ID])),
    ("fee_minor", cursor_of([1.5, ANY_ID])),
    ("fee_minor", cursor_of([True, ANY_ID])),
    ("fee_minor", cursor_of(["2026-01-01T00:00:00+00:00", ANY_ID])),
    ("fee_minor", base64.urlsafe_b64encode(b"[Infinity, 1]").decode()),
    ("fee_minor", base64.urlsafe_b64encode(b"[" * 300).decode()),
]


@pytest.mark.parametrize(("sort", "cursor"), BAD_ORDER_CURSORS)
async def test_a_crafted_order_cursor_is_a_422(client, world, sort, cursor):
    await publish_order(client, world.manager)
    for direction in ("", "-"):
        response = await client.get(
            "/orders",
            params={"sort": direction + sort, "cursor": cursor},
            headers=world.manager.auth,
        )
        assert (response.status_code, response.json()["code"]) == (422, "invalid_cursor")


@pytest.mark.parametrize("cursor", [str(2**70), str(2**63), "0", "-1", "abc", "1.5", "\uff11"])
async def test_a_crafted_statement_cursor_is_a_422(client, world, earnings, cursor):
    account = await payable_account(client, world.specialist)
    response = await client.get(
        f"/ledger/accounts/{account}/statement",
        params={"period": dt.date.today().strftime("%Y-%m"), "cursor": cursor},
        headers=world.specialist.auth,
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_cursor")


async def test_a_statement_cursor_of_another_account_is_a_422(client, world, earnings):
    everything = (await client.get("/ledger/accounts", headers=world.finance.auth)).json()
    payable = next(a["id"] for a in everything if a["kind"] == "specialist_payable")
    revenue = next(a["id"] for a in everything if a["kind"] == "platform_revenue")
    period = dt.date.today().strftime("%Y-%m")
    first = await client.get(
        f"/ledger/accounts/{revenue}/statement",
        params={"period": period, "limit": 1},
        headers=world.finance.auth,
    )
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    response = await client.get(
        f"/ledger/accounts/{payable}/statement",
        params={"period": period, "cursor": cursor},
        headers=world.finance.auth,
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_cursor")


# --- statement periods -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"period": "9999-12"},
        {"period": "0000-01"},
        {"period": "0001-01"},
        {"period": "2026-13"},
        {"period": "\uff12\uff10\uff12\uff16-01"},  # fullwidth digits are digits, not ASCII
        {"period": "2026-01\n"},
        {"period": "2026-01", "start": "2026-01-01T00:00:00Z"},
        {"start": "2026-01-01T00:00:00Z"},
        {"start": "2026-01-01T00:00:00", "end": "2026-02-01T00:00:00"},
        {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"start": "0001-01-01T00:00:00+01:00", "end": "2026-01-01T00:00:00Z"},
        {"start": "0001-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"start": "2026-01-01T00:00:00Z", "end": "9999-12-31T23:59:59-01:00"},
        {"start": "2026-01-01T00:00:00Z", "end": "9999-12-31T23:59:59.999999Z"},
    ],
)
async def test_a_statement_period_out_of_range_is_a_422(client, world, earnings, params):
    account = await payable_account(client, world.specialist)
    response = await client.get(
        f"/ledger/accounts/{account}/statement", params=params, headers=world.specialist.auth
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_period")


async def test_a_statement_at_the_edges_of_the_range_still_works(client, world, earnings):
    account = await payable_account(client, world.specialist)
    for params in (
        {"period": "0001-02"},
        {"period": "9998-12"},
        {"start": "0001-01-02T00:00:00Z", "end": "9999-12-31T00:00:00Z"},
    ):
        response = await client.get(
            f"/ledger/accounts/{account}/statement", params=params, headers=world.specialist.auth
        )
        assert response.status_code == 200, (params, response.text)
    everything = response.json()
    assert everything["closing_balance_minor"] == 12_750


# --- users -------------------------------------------------------------------------------------


async def test_a_specialist_without_a_profile_is_a_422_on_the_field(client, world, database):
    before = counts(database)
    response = await client.post(
        "/users",
        json={
            "email": "writer@acme.test",
            "display_name": "Writer",
            "password": PASSWORD,
            "roles": ["specialist"],
        },
        headers=world.admin.auth,
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_failed"
    assert [e["loc"] for e in body["errors"]] == [["profile"]]
    assert counts(database) == before
    with_profile = await client.post(
        "/users",
        json={
            "email": "writer@acme.test",
            "display_name": "Writer",
            "password": PASSWORD,
            "roles": ["specialist"],
            "profile": {"payout_currency": "EUR"},
        },
        headers=world.admin.auth,
    )
    assert with_profile.status_code == 201, with_profile.text


async def test_a_naive_transfer_time_is_a_422_and_nothing_is_written(
    client, world, database, earnings
):
    account = await payable_account(client, world.finance)
    before = counts(database)
    response = await client.post(
        "/ledger/transfers",
        json={
            "idempotency_key": "naive",
            "effective_at": "2026-01-01T00:00:00",
            "legs": [
                {"account_id": account, "amount_minor": 1},
                {"account_id": account, "amount_minor": -1},
            ],
        },
        headers=world.finance.auth,
    )
    assert response.status_code == 422, response.text
    assert counts(database) == before
