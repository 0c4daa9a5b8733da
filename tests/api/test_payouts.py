"""Bank details, holds and the payroll profile over HTTP: a specialist keeps their own (and sees
them in full), finance holds payouts and keeps the profile (and sees accounts masked), every
change is audited once with masked values, a refusal names its field and writes nothing, and
another tenant's specialists are not there. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from api.app import create_app
from quire.audit.models import AuditEntry
from quire.money import MAX_AMOUNT_MINOR
from quire.payroll.models import PayoutDetails, PayrollProfile
from quire.people import service as people
from quire.people.models import Role
from quire.people.schemas import UserDraft
from quire.tenancy import ALL_TENANTS
from tests.conftest import make_settings
from tests.support.world import PASSWORD, Person, World, login

# Refused by the schema, the roles or the bank rules before any SQL runs: the database makes no
# difference, so these run on SQLite only (the PostgreSQL paths are the hostile-input tests).
ONE_DATABASE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


DE_IBAN = "DE89370400440532013000"
FR_IBAN = "FR1420041010050500013M02606"
COOLING = dt.timedelta(days=14)  # the setting's default, which the test app runs with
PROFILE = {
    "debtor_name": "Acme GmbH",
    "debtor_iban": "DE89 3704 0044 0532 0130 00",
    "debtor_bic": "cobadeffxxx",
    "time_zone": "Europe/Berlin",
    "minimum_payouts": {"EUR": 5000, "JPY": 1000},
}


def iban_body(**fields: Any) -> dict[str, Any]:
    return {"scheme": "iban", "account_holder": "Sam Specialist", "iban": DE_IBAN, **fields}


def us_body(**fields: Any) -> dict[str, Any]:
    return {
        "scheme": "local",
        "account_holder": "Sam Specialist",
        "country": "US",
        "bank_code": "021000021",
        "account_number": "000123456789",
        **fields,
    }


async def put_details(client, person: Person, body: dict[str, Any], status: int = 200) -> Any:
    response = await client.put("/me/payout-details", json=body, headers=person.auth)
    assert response.status_code == status, response.text
    return response.json()


def audit_entries(database, world: World, action: str | None = None) -> list[AuditEntry]:
    with database.session(world.tenant_id) as s:
        stmt = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        return list(s.scalars(stmt))


def stored(database) -> dict[str, int]:
    """Rows of every table these endpoints write, across tenants."""
    with database.session(None) as s:
        return {
            model.__tablename__: s.scalar(
                select(func.count()).select_from(model).execution_options(**ALL_TENANTS)
            )
            for model in (PayoutDetails, PayrollProfile, AuditEntry)
        }


def assert_field_error(response, loc: list[Any], type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    found = [e for e in body["errors"] if e["loc"] == loc]
    assert found, body
    if type_ is not None:
        assert found[0]["type"] == type_, body
    return body


async def add_person(client, database, world: World, name: str, roles: list[Role]) -> Person:
    """Another member of `world` (logged in), e.g. finance who is also paid as a specialist."""
    profile = {"payout_currency": "EUR"} if Role.SPECIALIST in roles else None
    with database.session(world.tenant_id, write=True) as s:
        user = people.add_user(
            s,
            world.tenant_id,
            UserDraft(
                email=f"{name}@{world.slug}.test",
                display_name=name,
                password=PASSWORD,
                roles=roles,
                profile=profile,
            ),
        )
        person = Person(user.id, user.email, list(user.roles), world.tenant_id, world.slug)
    world.people[name] = person
    return await login(client, person)


# --- A specialist's own details -------------------------------------------------------------


async def test_a_specialist_sets_an_iban_and_reads_it_back_in_full_and_normalised(client, world):
    body = iban_body(iban="de89 3704 0044 0532 0130 00", bic="cobadeffxxx")
    saved = await put_details(client, world.specialist, body)
    assert saved["iban"] == DE_IBAN
    assert saved["bic"] == "COBADEFFXXX"
    assert (saved["country"], saved["scheme"], saved["payout_currency"]) == ("DE", "iban", "EUR")
    assert saved["on_hold"] is False
    changed = dt.datetime.fromisoformat(saved["details_changed_at"])
    assert dt.datetime.fromisoformat(saved["cooling_until"]) == changed + COOLING
    response = await client.get("/me/payout-details", headers=world.specialist.auth)
    assert response.status_code == 200
    assert response.json() == saved


async def test_a_specialist_without_details_gets_a_404_until_they_give_some(client, world):
    response = await client.get("/me/payout-details", headers=world.specialist.auth)
    assert response.status_code == 404
    assert response.json()["code"] == "payout_details_not_found"


async def test_a_local_account_is_stored_in_its_countrys_form(client, world):
    saved = await put_details(client, world.specialist, us_body(bank_code="021-000-021"))
    assert (saved["bank_code"], saved["account_number"], saved["iban"]) == (
        "021000021",
        "000123456789",
        None,
    )


@ONE_DATABASE
@pytest.mark.parametrize(
    ("body", "loc", "problem"),
    [
        (iban_body(iban="DE89370400440532013001"), ["iban"], "iban_checksum"),
        (iban_body(iban="DE8937040044053201300"), ["iban"], "iban_length"),
        (iban_body(bic="BNPAFRPP"), ["bic"], "bic_country_mismatch"),
        (us_body(bank_code="021000022"), ["bank_code"], "bank_code_checksum"),
        (us_body(country="DE"), ["country"], "iban_required"),
        (iban_body(bank_code="021000021"), ["bank_code"], "not_allowed"),
        (iban_body(account_holder="Sam\u202eSpecialist"), ["account_holder"], "invalid_character"),
    ],
)
async def test_wrong_bank_details_are_a_422_naming_the_field_and_nothing_is_stored(
    client, world, database, body, loc, problem
):
    before = stored(database)
    response = await client.put("/me/payout-details", json=body, headers=world.specialist.auth)
    problem_body = assert_field_error(response, loc, problem)
    assert problem_body["code"] == "invalid_payout_details"
    assert stored(database) == before


async def test_a_change_of_details_is_audited_once_with_masked_values(client, world, database):
    await put_details(client, world.specialist, iban_body())
    await put_details(client, world.specialist, iban_body(iban=FR_IBAN))
    await put_details(client, world.specialist, iban_body(iban=FR_IBAN))  # no change: no entry
    first, second = audit_entries(database, world, "payout_details.changed")
    assert (first.actor_id, first.object_type, first.object_id) == (
        world.specialist.id,
        "specialist",
        str(world.specialist.id),
    )
    assert first.before is None
    assert first.after == {
        "scheme": "iban",
        "account_holder": "Sam Specialist",
        "iban": "DE89…3000",
        "bic": None,
        "account_number": None,
        "bank_code": None,
        "country": "DE",
        "account_changed": True,
    }
    assert second.before["iban"] == "DE89…3000"
    assert second.after["iban"] == "FR14…2606"
    assert second.request_id
    text = json.dumps([first.before, first.after, second.before, second.after])
    assert DE_IBAN not in text
    assert FR_IBAN not in text


async def test_details_changed_at_moves_only_when_the_account_changes(client, world, database):
    first = await put_details(client, world.specialist, iban_body())
    typo = await put_details(
        client, world.specialist, iban_body(account_holder="Sam Spezialist", bic="COBADEFF")
    )
    assert typo["details_changed_at"] == first["details_changed_at"]
    assert typo["account_holder"] == "Sam Spezialist"
    moved = await put_details(client, world.specialist, iban_body(iban=FR_IBAN))
    assert moved["details_changed_at"] > first["details_changed_at"]
    local = await put_details(client, world.specialist, us_body())
    assert local["details_changed_at"] > moved["details_changed_at"]
    changes = audit_entries(database, world, "payout_details.changed")
    assert [e.after["account_changed"] for e in changes] == [True, False, True, True]


async def test_concurrent_first_details_store_one_row_and_audit_each_change_once(
    client, world, database
):
    bodies = [iban_body(account_holder=f"Sam {i}") for i in range(6)]
    responses = await asyncio.gather(
        *(
            client.put("/me/payout-details", json=body, headers=world.specialist.auth)
            for body in bodies
        )
    )
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    with database.session(world.tenant_id) as s:
        assert s.scalar(select(func.count()).select_from(PayoutDetails)) == 1
    changes = audit_entries(database, world, "payout_details.changed")
    assert len(changes) == 6
    assert [e.after["account_changed"] for e in changes] == [True] + [False] * 5
    assert [e.before is None for e in changes] == [True] + [False] * 5


async def test_the_cooling_period_follows_the_setting(world, database, db_url, tmp_path):
    settings = make_settings(db_url, tmp_path, QUIRE_PAYOUT_DETAILS_COOLING_DAYS=0)
    app = create_app(settings, database=database)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quire.test") as c:
            saved = await put_details(c, world.specialist, iban_body())
    assert saved["cooling_until"] is None


async def test_finance_sees_the_account_masked_with_the_cooling_period(client, world):
    mine = await put_details(client, world.specialist, us_body())
    response = await client.get(
        f"/specialists/{world.specialist.id}/payout-details", headers=world.finance.auth
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["account_number"] == "****6789"
    assert seen["bank_code"] == "021000021"
    assert seen["cooling_until"] == mine["cooling_until"]
    assert (seen["on_hold"], seen["hold_reason"], seen["shared_with"]) == (False, None, [])
    assert "000123456789" not in response.text


async def test_two_specialists_paid_into_one_account_see_each_other_in_shared_with(client, world):
    await put_details(client, world.specialist, iban_body())
    await put_details(client, world.specialist1, iban_body(iban="de89 3704 0044 0532 0130 00"))
    page = (await client.get("/payout-details", headers=world.finance.auth)).json()
    shared = {item["user_id"]: item["shared_with"] for item in page["items"]}
    assert shared == {
        str(world.specialist.id): [str(world.specialist1.id)],
        str(world.specialist1.id): [str(world.specialist.id)],
    }


async def test_the_list_pages_by_specialist_and_filters_on_hold(client, world, database):
    for name in ("specialist", "specialist1"):
        await put_details(client, world.people[name], iban_body())
    extra = await add_person(client, database, world, "specialist2", [Role.SPECIALIST])
    await put_details(client, extra, us_body())
    await client.put(
        f"/specialists/{extra.id}/payout-hold", json={"reason": "check"}, headers=world.finance.auth
    )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/payout-details", params=params, headers=world.admin.auth)).json()
        seen += [item["user_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = sorted(str(p.id) for p in (world.specialist, world.specialist1, extra))
    assert seen == ids
    held = await client.get("/payout-details", params={"on_hold": True}, headers=world.finance.auth)
    assert [i["user_id"] for i in held.json()["items"]] == [str(extra.id)]
    free = await client.get(
        "/payout-details", params={"on_hold": "false"}, headers=world.finance.auth
    )
    assert len(free.json()["items"]) == 2


# --- Holds ----------------------------------------------------------------------------------


async def test_finance_holds_and_releases_a_specialist_and_both_are_audited(
    client, world, database
):
    await put_details(client, world.specialist, iban_body())
    url = f"/specialists/{world.specialist.id}/payout-hold"
    held = await client.put(url, json={"reason": "  name mismatch  "}, headers=world.finance.auth)
    assert held.status_code == 200, held.text
    view = held.json()
    assert (view["on_hold"], view["hold_reason"], view["hold_set_by"]) == (
        True,
        "name mismatch",
        str(world.finance.id),
    )
    mine = await client.get("/me/payout-details", headers=world.specialist.auth)
    assert mine.json()["on_hold"] is True
    assert "hold_reason" not in mine.json()  # finance's reasons are finance's
    lifted = await client.delete(
        url, params={"reason": "confirmed by phone"}, headers=world.finance.auth
    )
    assert lifted.status_code == 200
    assert (lifted.json()["on_hold"], lifted.json()["hold_reason"]) == (False, None)
    again = await client.delete(url, headers=world.finance.auth)  # nothing to lift: no entry
    assert again.status_code == 200

    (set_entry,) = audit_entries(database, world, "payout_hold.set")
    assert set_entry.actor_id == world.finance.id
    assert set_entry.object_id == str(world.specialist.id)
    assert set_entry.before["on_hold"] is False
    assert (set_entry.after["on_hold"], set_entry.after["hold_reason"]) == (True, "name mismatch")
    (lift_entry,) = audit_entries(database, world, "payout_hold.lifted")
    assert lift_entry.before["hold_reason"] == "name mismatch"
    assert lift_entry.after == {
        "on_hold": False,
        "hold_reason": None,
        "hold_set_by": None,
        "hold_set_at": None,
        "reason": "confirmed by phone",
    }


async def test_a_hold_survives_a_change_of_bank_details(client, world):
    await put_details(client, world.specialist, iban_body())
    url = f"/specialists/{world.specialist.id}/payout-hold"
    await client.put(url, json={"reason": "review"}, headers=world.finance.auth)
    changed = await put_details(client, world.specialist, iban_body(iban=FR_IBAN))
    assert changed["on_hold"] is True


@pytest.mark.parametrize(
    "body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": None}]
)
async def test_a_hold_needs_a_reason(client, world, database, body):
    await put_details(client, world.specialist, iban_body())
    before = stored(database)
    response = await client.put(
        f"/specialists/{world.specialist.id}/payout-hold", json=body, headers=world.finance.auth
    )
    assert_field_error(response, ["reason"])
    assert stored(database) == before


async def test_a_specialist_without_details_cannot_be_held_as_there_is_nothing_to_pay(
    client, world
):
    response = await client.put(
        f"/specialists/{world.specialist.id}/payout-hold",
        json={"reason": "review"},
        headers=world.finance.auth,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "payout_details_not_found"


async def test_finance_may_not_hold_or_release_their_own_payouts(client, world, database):
    both = await add_person(
        client, database, world, "paid_finance", [Role.FINANCE, Role.SPECIALIST]
    )
    await put_details(client, both, iban_body())
    url = f"/specialists/{both.id}/payout-hold"
    for method, kwargs in (("PUT", {"json": {"reason": "mine"}}), ("DELETE", {})):
        response = await client.request(method, url, headers=both.auth, **kwargs)
        assert response.status_code == 403
        assert response.json()["code"] == "own_payout_hold"
    held = await client.put(url, json={"reason": "review"}, headers=world.finance.auth)
    assert held.status_code == 200


# --- The payroll profile --------------------------------------------------------------------


async def test_finance_sets_the_payroll_profile_validated_and_normalised(client, world, database):
    response = await client.get("/payroll/profile", headers=world.finance.auth)
    assert (response.status_code, response.json()["code"]) == (404, "payroll_profile_not_found")
    saved = await client.put("/payroll/profile", json=PROFILE, headers=world.finance.auth)
    assert saved.status_code == 200, saved.text
    profile = saved.json()
    assert (profile["debtor_iban"], profile["debtor_bic"]) == (DE_IBAN, "COBADEFFXXX")
    assert profile["minimum_payouts"] == {"EUR": 5000, "JPY": 1000}
    assert profile["time_zone"] == "Europe/Berlin"
    read = await client.get("/payroll/profile", headers=world.admin.auth)
    assert read.json() == profile
    replaced = await client.put(
        "/payroll/profile", json={**PROFILE, "minimum_payouts": {}}, headers=world.finance.auth
    )
    assert replaced.json()["id"] == profile["id"]
    await client.put(
        "/payroll/profile", json={**PROFILE, "minimum_payouts": {}}, headers=world.finance.auth
    )
    first, second = audit_entries(database, world, "payroll_profile.changed")
    assert first.before is None
    assert first.after["debtor_iban"] == "DE89…3000"
    assert second.before["minimum_payouts"] == {"EUR": 5000, "JPY": 1000}
    assert second.after["minimum_payouts"] == {}
    assert DE_IBAN not in json.dumps([first.after, second.before, second.after])


@ONE_DATABASE
@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"debtor_iban": "DE89370400440532013001"}, ["debtor_iban"]),
        ({"debtor_bic": "BNPAFRPP"}, ["debtor_bic"]),
        ({"debtor_bic": "COBADE"}, ["debtor_bic"]),
        ({"debtor_name": " "}, ["debtor_name"]),
        ({"time_zone": "Mars/Olympus_Mons"}, ["time_zone"]),
        ({"time_zone": "../../etc/passwd"}, ["time_zone"]),
        ({"minimum_payouts": {"XXX": 100}}, ["minimum_payouts", "XXX", "[key]"]),
        ({"minimum_payouts": {"eur": 100}}, ["minimum_payouts", "eur", "[key]"]),
        ({"minimum_payouts": {"EUR": -1}}, ["minimum_payouts", "EUR"]),
        ({"minimum_payouts": {"EUR": MAX_AMOUNT_MINOR + 1}}, ["minimum_payouts", "EUR"]),
        ({"minimum_payouts": {"EUR": 10**40}}, ["minimum_payouts", "EUR"]),
        ({"minimum_payouts": {"EUR": 12.5}}, ["minimum_payouts", "EUR"]),
        ({"minimum_payouts": {"EUR": "100"}}, ["minimum_payouts", "EUR"]),
        ({"minimum_payouts": {"EUR": True}}, ["minimum_payouts", "EUR"]),
    ],
)
async def test_a_wrong_payroll_profile_is_a_422_naming_the_field_and_nothing_is_stored(
    client, world, database, change, loc
):
    before = stored(database)
    response = await client.put(
        "/payroll/profile", json={**PROFILE, **change}, headers=world.finance.auth
    )
    assert_field_error(response, loc)
    assert stored(database) == before


async def test_concurrent_first_profiles_make_one_profile(client, world, database):
    bodies = [{**PROFILE, "debtor_name": f"Acme {i}"} for i in range(4)]
    responses = await asyncio.gather(
        *(client.put("/payroll/profile", json=b, headers=world.finance.auth) for b in bodies)
    )
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    with database.session(world.tenant_id) as s:
        assert s.scalar(select(func.count()).select_from(PayrollProfile)) == 1
    changes = audit_entries(database, world, "payroll_profile.changed")
    assert [e.before is None for e in changes] == [True, False, False, False]


async def test_a_minimum_payout_may_be_zero_or_the_largest_amount(client, world):
    body = {**PROFILE, "minimum_payouts": {"EUR": 0, "KWD": MAX_AMOUNT_MINOR}}
    response = await client.put("/payroll/profile", json=body, headers=world.finance.auth)
    assert response.status_code == 200, response.text


# --- Roles ----------------------------------------------------------------------------------

FINANCE_READS = [("GET", "/payout-details"), ("GET", "/specialists/{id}/payout-details")]
FINANCE_WRITES = [
    ("PUT", "/specialists/{id}/payout-hold"),
    ("DELETE", "/specialists/{id}/payout-hold"),
    ("PUT", "/payroll/profile"),
]
BODIES = {"/specialists/{id}/payout-hold": {"reason": "r"}, "/payroll/profile": PROFILE}


async def request(client, world: World, person: Person | None, method: str, path: str):
    body = BODIES.get(path) if method == "PUT" else None
    if path == "/me/payout-details" and method == "PUT":
        body = iban_body()
    return await client.request(
        method,
        path.format(id=world.specialist.id),
        json=body,
        headers=person.auth if person else {},
    )


@ONE_DATABASE
@pytest.mark.parametrize(("method", "path"), [*FINANCE_READS, ("GET", "/payroll/profile")])
@pytest.mark.parametrize("role", ["specialist", "manager", "reviewer"])
async def test_only_finance_and_admins_read_payout_details_and_the_profile(
    client, world, method, path, role
):
    response = await request(client, world, world.people[role], method, path)
    assert response.status_code == 403
    assert response.json()["code"] == "wrong_role"


@ONE_DATABASE
@pytest.mark.parametrize(("method", "path"), FINANCE_WRITES)
@pytest.mark.parametrize("role", ["specialist", "manager", "reviewer", "admin"])
async def test_only_finance_holds_payouts_and_changes_the_profile(
    client, world, database, method, path, role
):
    await put_details(client, world.specialist, iban_body())
    before = stored(database)
    response = await request(client, world, world.people[role], method, path)
    assert response.status_code == 403
    assert stored(database) == before


@ONE_DATABASE
@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("role", ["finance", "admin", "manager", "reviewer"])
async def test_only_a_specialist_has_payout_details_of_their_own(client, world, method, role):
    response = await request(client, world, world.people[role], method, "/me/payout-details")
    assert response.status_code == 403
    assert response.json()["code"] == "wrong_role"


@ONE_DATABASE
@pytest.mark.parametrize(
    ("method", "path"),
    [*FINANCE_READS, *FINANCE_WRITES, ("GET", "/payroll/profile"), ("GET", "/me/payout-details")],
)
async def test_anonymous_callers_are_refused(client, world, method, path):
    assert (await request(client, world, None, method, path)).status_code == 401


async def test_admins_read_what_finance_reads(client, world):
    await put_details(client, world.specialist, iban_body())
    await client.put("/payroll/profile", json=PROFILE, headers=world.finance.auth)
    for method, path in [*FINANCE_READS, ("GET", "/payroll/profile")]:
        response = await request(client, world, world.admin, method, path)
        assert response.status_code == 200, (path, response.text)


# --- Tenant isolation -----------------------------------------------------------------------


async def test_another_tenants_specialist_looks_like_a_missing_one(client, world, rival, database):
    await put_details(client, world.specialist, iban_body())
    await client.put("/payroll/profile", json=PROFILE, headers=world.finance.auth)
    before = stored(database)
    for method, path in [
        ("GET", "/specialists/{id}/payout-details"),
        ("PUT", "/specialists/{id}/payout-hold"),
        ("DELETE", "/specialists/{id}/payout-hold"),
    ]:
        foreign = await request(client, world, rival.finance, method, path)
        missing = await client.request(
            method,
            path.format(id=uuid.uuid4()),
            json=BODIES.get(path) if method == "PUT" else None,
            headers=rival.finance.auth,
        )
        assert foreign.status_code == missing.status_code == 404, (path, foreign.text)
        assert foreign.json()["code"] == missing.json()["code"] == "specialist_not_found"
    assert stored(database) == before
    listed = await client.get("/payout-details", headers=rival.finance.auth)
    assert listed.json()["items"] == []
    profile = await client.get("/payroll/profile", headers=rival.finance.auth)
    assert profile.status_code == 404


async def test_a_shared_account_across_tenants_is_not_shown(client, world, rival):
    await put_details(client, world.specialist, iban_body())
    await put_details(client, rival.specialist, iban_body())
    seen = await client.get(
        f"/specialists/{world.specialist.id}/payout-details", headers=world.finance.auth
    )
    assert seen.json()["shared_with"] == []


async def test_a_user_who_is_not_a_specialist_has_no_payout_details_to_show(client, world):
    response = await client.get(
        f"/specialists/{world.manager.id}/payout-details", headers=world.finance.auth
    )
    assert (response.status_code, response.json()["code"]) == (404, "specialist_not_found")


# --- Hostile input --------------------------------------------------------------------------

LONG = "9" * 10_000


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (iban_body(account_holder="Sam\x00"), ["account_holder"]),
        (iban_body(iban="DE89\x00370400440532013000"), ["iban"]),
        (iban_body(account_holder="S" * 10_000), ["account_holder"]),
        (iban_body(iban=LONG), ["iban"]),
        (iban_body(bic=LONG), ["bic"]),
        (us_body(account_number=LONG), ["account_number"]),
        (us_body(bank_code=LONG), ["bank_code"]),
        (us_body(country=LONG), ["country"]),
        (iban_body(scheme="swift"), ["scheme"]),
        (iban_body(iban=10**40), ["iban"]),
        (iban_body(extra="field"), ["extra"]),
        ({"scheme": "iban"}, ["account_holder"]),
    ],
)
async def test_hostile_bank_details_are_a_4xx_and_nothing_is_written(
    client, world, database, body, loc
):
    before = stored(database)
    response = await client.put("/me/payout-details", json=body, headers=world.specialist.auth)
    assert_field_error(response, loc)
    assert stored(database) == before


async def test_a_lone_surrogate_in_the_holder_is_a_422_not_a_500(client, world, database):
    before = stored(database)
    raw = json.dumps(iban_body(account_holder="Sam \ud800"))  # ASCII JSON with a \ud800 escape
    response = await client.put(
        "/me/payout-details",
        content=raw,
        headers={**world.specialist.auth, "content-type": "application/json"},
    )
    assert_field_error(response, ["account_holder"])  # pydantic's own string_unicode
    assert stored(database) == before


@pytest.mark.parametrize(
    "params",
    [{"reason": "a\x00b"}, {"reason": "r" * 10_000}, {"reason": ""}],
)
async def test_a_hostile_lift_reason_is_a_422(client, world, database, params):
    await put_details(client, world.specialist, iban_body())
    before = stored(database)
    response = await client.delete(
        f"/specialists/{world.specialist.id}/payout-hold", params=params, headers=world.finance.auth
    )
    assert response.status_code == 422, response.text
    assert stored(database) == before


@pytest.mark.parametrize(
    "params",
    [{"cursor": "not-a-uuid"}, {"limit": 10**30}, {"limit": 0}, {"on_hold": "maybe"}],
)
async def test_a_hostile_list_query_is_a_422(client, world, params):
    response = await client.get("/payout-details", params=params, headers=world.finance.auth)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "change",
    [
        {"debtor_name": "A\x00"},
        {"debtor_name": "A" * 10_000},
        {"time_zone": "Europe/\x00Berlin"},
        {"time_zone": "E" * 10_000},
        {"minimum_payouts": {f"C{i:02}": 1 for i in range(300)}},
        {"minimum_payouts": {"EUR": 1e308}},
    ],
)
async def test_a_hostile_payroll_profile_is_a_422(client, world, database, change):
    before = stored(database)
    response = await client.put(
        "/payroll/profile", json={**PROFILE, **change}, headers=world.finance.auth
    )
    assert response.status_code == 422, response.text
    assert stored(database) == before
