"""The ledger over HTTP: who sees what, statements, manual transfers, invoices, bad input."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from ledger import business
from ledger.models import Entry, Transfer
from quire.db import utcnow
from quire.tenancy import ALL_TENANTS


@pytest.fixture
def earnings(database, world):
    """Two accepted orders' earnings for `specialist`, one for `specialist1` (USD, 15% fee)."""
    with database.session(world.tenant_id, write=True) as s:
        for specialist, gross in (
            (world.specialist, 10_000),
            (world.specialist, 5_000),
            (world.specialist1, 8_000),
        ):
            business.post_earnings(
                s,
                order_id=uuid.uuid4(),
                specialist_id=specialist.id,
                gross_minor=gross,
                currency="USD",
                fee_bps=1500,
            )


def rows(database, model) -> int:
    with database.session(None) as s:
        return s.scalar(select(func.count()).select_from(model).execution_options(**ALL_TENANTS))


async def accounts(client, person, **params):
    response = await client.get("/ledger/accounts", params=params, headers=person.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def test_finance_sees_every_account_and_a_specialist_only_their_own(client, world, earnings):
    everything = await accounts(client, world.finance)
    assert {a["kind"] for a in everything} == {
        "client_receivable",
        "specialist_payable",
        "platform_revenue",
    }
    mine = await accounts(client, world.specialist)
    assert [(a["kind"], a["balance_minor"]) for a in mine] == [("specialist_payable", 12_750)]
    theirs = next(a for a in everything if a["owner_id"] == str(world.specialist1.id))
    hidden = await client.get(f"/ledger/accounts/{theirs['id']}", headers=world.specialist.auth)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "account_not_found")
    refused = await client.get("/ledger/accounts", headers=world.manager.auth)
    assert refused.status_code == 403


async def test_a_statement_has_a_running_balance_and_pages(client, world, earnings):
    payable = (await accounts(client, world.specialist))[0]
    period = utcnow().strftime("%Y-%m")
    first = await client.get(
        f"/ledger/accounts/{payable['id']}/statement",
        params={"period": period, "limit": 1},
        headers=world.specialist.auth,
    )
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["opening_balance_minor"] == 0
    assert [line["running_balance_minor"] for line in page["lines"]] == [8_500]
    rest = await client.get(
        f"/ledger/accounts/{payable['id']}/statement",
        params={"period": period, "cursor": page["next_cursor"]},
        headers=world.specialist.auth,
    )
    assert [line["running_balance_minor"] for line in rest.json()["lines"]] == [12_750]
    assert rest.json()["closing_balance_minor"] == 12_750
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize("period", ["2026-13", "26-01", "last month", "2026-00"])
async def test_a_bad_period_is_a_422(client, world, earnings, period):
    payable = (await accounts(client, world.specialist))[0]
    response = await client.get(
        f"/ledger/accounts/{payable['id']}/statement",
        params={"period": period},
        headers=world.specialist.auth,
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_period")


async def test_a_manual_transfer_is_idempotent_and_reversible(client, world, earnings, database):
    everything = await accounts(client, world.finance)
    revenue = next(a for a in everything if a["kind"] == "platform_revenue")
    receivable = next(a for a in everything if a["kind"] == "client_receivable")
    body = {
        "kind": "adjustment",
        "idempotency_key": "goodwill-1",
        "reference": "ticket 42",
        "legs": [
            {"account_id": revenue["id"], "amount_minor": 100},
            {"account_id": receivable["id"], "amount_minor": -100, "currency": "USD"},
        ],
    }
    first = await client.post("/ledger/transfers", json=body, headers=world.finance.auth)
    replay = await client.post("/ledger/transfers", json=body, headers=world.finance.auth)
    assert first.status_code == replay.status_code == 201
    assert first.json()["id"] == replay.json()["id"]
    changed = await client.post(
        "/ledger/transfers", headers=world.finance.auth, json={**body, "reference": "ticket 43"}
    )
    assert (changed.status_code, changed.json()["code"]) == (409, "idempotency_key_reused")
    reversal = await client.post(
        f"/ledger/transfers/{first.json()['id']}/reverse",
        json={"reason": "posted by mistake"},
        headers=world.finance.auth,
    )
    assert reversal.status_code == 201
    assert reversal.json()["reverses_id"] == first.json()["id"]
    after = {a["id"]: a["balance_minor"] for a in await accounts(client, world.finance)}
    assert after[revenue["id"]] == revenue["balance_minor"]
    assert after[receivable["id"]] == receivable["balance_minor"]


async def test_bad_transfers_are_refused_and_nothing_is_written(client, world, earnings, database):
    everything = await accounts(client, world.finance)
    revenue = next(a for a in everything if a["kind"] == "platform_revenue")
    receivable = next(a for a in everything if a["kind"] == "client_receivable")
    before = (rows(database, Transfer), rows(database, Entry))

    def legs(*pairs):
        return [{"account_id": a, "amount_minor": m} for a, m in pairs]

    cases = [
        (legs((revenue["id"], 100), (receivable["id"], -99)), 422, "unbalanced_transfer"),
        (legs((revenue["id"], 0), (receivable["id"], 0)), 422, "invalid_amount"),
        (legs((revenue["id"], 100), (str(uuid.uuid4()), -100)), 404, "account_not_found"),
        (
            [
                {"account_id": revenue["id"], "amount_minor": 100, "currency": "EUR"},
                {"account_id": receivable["id"], "amount_minor": -100},
            ],
            422,
            "currency_mismatch",
        ),
        (legs((revenue["id"], 100)), 422, "validation_failed"),
        (legs((revenue["id"], 1.5), (receivable["id"], -1.5)), 422, "validation_failed"),
    ]
    for i, (leg_list, status, code) in enumerate(cases):
        response = await client.post(
            "/ledger/transfers",
            headers=world.finance.auth,
            json={"idempotency_key": f"bad-{i}", "legs": leg_list},
        )
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert (rows(database, Transfer), rows(database, Entry)) == before
    specialist = await client.post(
        "/ledger/transfers",
        headers=world.specialist.auth,
        json={"idempotency_key": "x", "legs": legs((revenue["id"], 1), (receivable["id"], -1))},
    )
    assert specialist.status_code == 403


async def test_invoice_versions_and_optimistic_locking(client, world, earnings):
    draft = await client.post(
        "/ledger/invoices",
        headers=world.finance.auth,
        json={
            "specialist_id": str(world.specialist.id),
            "period": "2026-11",
            "currency": "USD",
            "lines": [{"description": "Order A", "amount_minor": 10_000}],
        },
    )
    assert draft.status_code == 201, draft.text
    invoice = draft.json()
    url = f"/ledger/invoices/{invoice['id']}"
    lines = {"lines": [{"description": "Order A", "amount_minor": 9_000}]}
    edited = await client.put(
        f"{url}/lines", json=lines, headers={**world.finance.auth, "If-Match": "1"}
    )
    assert edited.status_code == 200
    assert (edited.json()["total_minor"], edited.json()["lock_version"]) == (9_000, 2)
    stale = await client.put(
        f"{url}/lines", json=lines, headers={**world.finance.auth, "If-Match": "1"}
    )
    assert (stale.status_code, stale.json()["code"]) == (409, "stale_invoice")
    issued = await client.post(f"{url}/issue", headers={**world.finance.auth, "If-Match": "2"})
    assert issued.json()["status"] == "issued"
    frozen = await client.put(
        f"{url}/lines", json=lines, headers={**world.finance.auth, "If-Match": "3"}
    )
    assert (frozen.status_code, frozen.json()["code"]) == (409, "invoice_not_draft")
    corrected = await client.post(
        f"{url}/correct",
        headers={**world.finance.auth, "If-Match": "3"},
        json={"lines": [{"description": "Order A", "amount_minor": 9_500}]},
    )
    assert corrected.status_code == 201, corrected.text
    new = corrected.json()
    assert (new["version"], new["status"], new["supersedes_id"]) == (2, "issued", invoice["id"])
    old = await client.get(url, headers=world.specialist.auth)
    assert (old.json()["status"], old.json()["total_minor"]) == ("void", 9_000)
    others = await client.get(url, headers=world.specialist1.auth)
    assert others.status_code == 404
    listed = await client.get("/ledger/invoices", headers=world.specialist.auth)
    assert [i["version"] for i in listed.json()] == [1, 2]


async def test_an_invoice_for_someone_who_is_not_a_specialist_is_a_404(client, world):
    response = await client.post(
        "/ledger/invoices",
        headers=world.finance.auth,
        json={
            "specialist_id": str(world.manager.id),
            "period": "2026-11",
            "currency": "USD",
            "lines": [{"description": "x", "amount_minor": 1}],
        },
    )
    assert (response.status_code, response.json()["code"]) == (404, "specialist_not_found")


@pytest.mark.parametrize("period", ["\uff12\uff10\uff12\uff16-11", "2026-11\n", "2026-1"])
async def test_an_invoice_period_is_four_ascii_digits_a_dash_and_a_month(client, world, period):
    """A lookalike period would start a second invoice chain for the same month."""
    response = await client.post(
        "/ledger/invoices",
        headers=world.finance.auth,
        json={
            "specialist_id": str(world.specialist.id),
            "period": period,
            "currency": "USD",
            "lines": [{"description": "Order A", "amount_minor": 10_000}],
        },
    )
    assert response.status_code == 422, response.text
