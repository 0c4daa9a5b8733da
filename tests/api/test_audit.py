"""The audit log over HTTP: every audited action leaves exactly one entry (actor, request id,
what changed; never a secret), `GET /audit-log` pages it newest first for admins (finance: the
finance entries; anyone else 403), `GET /audit-log.csv` exports it, and no query a client can
send makes it fail with a 500 or see another tenant's entries."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from quire.audit.models import AuditEntry
from quire.audit.service import record
from quire.auth.models import ApiKey
from quire.db import Database
from quire.tenancy import ALL_TENANTS
from tests.support.world import PASSWORD, Person, World

# Refused by the schema, the roles or the bank rules before any SQL runs: the database makes no
# difference, so these run on SQLite only (the PostgreSQL paths are the hostile-input tests).
ONE_DATABASE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


NUL = "\x00"


def entries_of(database: Database, world: World, **where: Any) -> list[AuditEntry]:
    with database.session(world.tenant_id) as s:
        stmt = select(AuditEntry).filter_by(**where).order_by(AuditEntry.id)
        return list(s.scalars(stmt))


def entry_count(database: Database) -> int:
    with database.session(None) as s:
        return s.scalar(
            select(func.count()).select_from(AuditEntry).execution_options(**ALL_TENANTS)
        )


def seed(database: Database, world: World, *actions: str) -> list[int]:
    """Entries written as the domain writes them (record), by the world's admin."""
    with database.session(world.tenant_id, write=True) as s:
        return [
            record(s, world.admin.actor, action, action.split(".")[0], f"obj-{i}").id
            for i, action in enumerate(actions)
        ]


async def read_log(client: httpx.AsyncClient, person: Person, **params: Any) -> dict[str, Any]:
    response = await client.get("/audit-log", params=params, headers=person.auth)
    assert response.status_code == 200, response.text
    return response.json()


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text)))


# --- what is recorded ----------------------------------------------------------------------------


async def test_creating_a_user_records_one_entry_with_the_admin_and_the_request_id(
    client, world, database
):
    body = {
        "email": "new@acme.test",
        "display_name": "New",
        "password": PASSWORD,
        "roles": ["reviewer", "manager"],
    }
    response = await client.post(
        "/users", json=body, headers={**world.admin.auth, "X-Request-ID": "create-user-1"}
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]

    [entry] = entries_of(database, world, object_type="user", object_id=user_id)
    assert entry.action == "user.created"
    assert (entry.actor_id, entry.actor_roles) == (world.admin.id, ["admin"])
    assert entry.request_id == "create-user-1"
    assert entry.before is None
    assert entry.after == {
        "email": "new@acme.test",
        "roles": ["manager", "reviewer"],
        "is_active": True,
    }
    assert PASSWORD not in json.dumps(entry.after)


async def test_a_refused_user_creation_records_nothing(client, world, database):
    before = entry_count(database)
    taken = {
        "email": world.manager.email,
        "display_name": "Twin",
        "password": PASSWORD,
        "roles": ["manager"],
    }
    assert (await client.post("/users", json=taken, headers=world.admin.auth)).status_code == 409
    assert (await client.post("/users", json=taken, headers=world.manager.auth)).status_code == 403
    assert entry_count(database) == before


async def test_minting_and_revoking_an_api_key_record_one_entry_each_and_never_the_secret(
    client, world, database
):
    minted = await client.post(
        "/api-keys",
        json={"name": "ci", "roles": ["manager"]},
        headers={**world.manager.auth, "X-Request-ID": "mint-1"},
    )
    assert minted.status_code == 201, minted.text
    key = minted.json()
    for attempt in (1, 2):  # revoking twice changes nothing the second time
        revoked = await client.delete(
            f"/api-keys/{key['id']}",
            headers={**world.admin.auth, "X-Request-ID": f"revoke-{attempt}"},
        )
        assert revoked.status_code == 200, revoked.text

    mint, revoke = entries_of(database, world, object_type="api_key", object_id=key["id"])
    facts = {"id": key["id"], "name": "ci", "owner_id": str(world.manager.id), "roles": ["manager"]}
    assert (mint.action, mint.actor_id, mint.request_id) == (
        "api_key.minted",
        world.manager.id,
        "mint-1",
    )
    assert (mint.before, mint.after) == (None, {**facts, "revoked_at": None})
    assert (revoke.action, revoke.actor_id, revoke.request_id) == (
        "api_key.revoked",
        world.admin.id,
        "revoke-1",
    )
    assert revoke.before == {**facts, "revoked_at": None}
    assert revoke.after == {
        **facts,
        "revoked_at": revoked.json()["revoked_at"].replace("Z", "+00:00"),
    }
    with database.session(world.tenant_id) as s:
        key_hash = s.scalar(select(ApiKey.key_hash).where(ApiKey.id == uuid.UUID(key["id"])))
    stored = json.dumps([mint.before, mint.after, revoke.before, revoke.after])
    assert key["key"] not in stored
    assert key_hash not in stored
    assert key["prefix"] not in stored


# --- who reads what ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["manager", "reviewer", "specialist"])
async def test_only_admins_and_finance_read_the_log(client, world, role):
    person = world.people[role]
    for path in ("/audit-log", "/audit-log.csv"):
        response = await client.get(path, headers=person.auth)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "wrong_role"
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/audit-log")).status_code == 401


async def test_finance_sees_only_finance_entries_and_admins_see_all(client, world, database):
    seed(
        database,
        world,
        "user.created",
        "payroll_run.started",
        "api_key.minted",
        "payout_details.changed",
        "playbook.started",
    )
    as_admin = await read_log(client, world.admin)
    as_finance = await read_log(client, world.finance)
    assert [e["action"] for e in as_admin["items"]] == [
        "playbook.started",
        "payout_details.changed",
        "api_key.minted",
        "payroll_run.started",
        "user.created",
    ]
    assert [e["action"] for e in as_finance["items"]] == [
        "payout_details.changed",
        "payroll_run.started",
    ]
    assert {e["domain"] for e in as_finance["items"]} == {"finance"}
    exported = await client.get("/audit-log.csv", headers=world.finance.auth)
    assert [r["action"] for r in csv_rows(exported)] == [
        "payout_details.changed",
        "payroll_run.started",
    ]


async def test_a_tenant_never_sees_another_tenants_entries(client, world, rival, database):
    seed(database, world, "payroll_run.started")
    seed(database, rival, "payroll_run.approved")
    theirs = entries_of(database, rival)
    for person in (world.admin, world.finance):
        page = await read_log(client, person)
        assert [e["action"] for e in page["items"]] == ["payroll_run.started"]
        by_their_actor = await read_log(client, person, actor_id=str(rival.admin.id))
        assert by_their_actor["items"] == []
        below_theirs = await read_log(client, person, cursor=theirs[-1].id + 1)
        assert [e["action"] for e in below_theirs["items"]] == ["payroll_run.started"]
        exported = await client.get("/audit-log.csv", headers=person.auth)
        assert [r["action"] for r in csv_rows(exported)] == ["payroll_run.started"]
        assert str(rival.admin.id) not in exported.text


# --- filters, pages, export ----------------------------------------------------------------------


async def test_the_query_filters_by_actor_object_action_and_time(client, world, database):
    with database.session(world.tenant_id, write=True) as s:
        record(s, world.admin.actor, "payroll_run.started", "payroll_run", "r1")
        record(s, world.finance.actor, "payroll_run.approved", "payroll_run", "r1")
        record(s, world.finance.actor, "payroll_line.reversed", "payroll_line", "l1")
    at = entries_of(database, world)[1].at

    async def actions(**params: Any) -> list[str]:
        return [e["action"] for e in (await read_log(client, world.admin, **params))["items"]]

    assert await actions(actor_id=str(world.finance.id)) == [
        "payroll_line.reversed",
        "payroll_run.approved",
    ]
    assert await actions(object_type="payroll_run", object_id="r1") == [
        "payroll_run.approved",
        "payroll_run.started",
    ]
    assert await actions(action="payroll_run.*") == ["payroll_run.approved", "payroll_run.started"]
    assert await actions(action="payroll_line.reversed") == ["payroll_line.reversed"]
    assert await actions(since=at.isoformat()) == ["payroll_line.reversed", "payroll_run.approved"]
    assert await actions(until=at.isoformat()) == ["payroll_run.started"]


async def test_pages_follow_next_cursor_without_repeats_or_gaps(client, world, database):
    ids = seed(database, world, *["user.created"] * 7)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await read_log(client, world.admin, **params)
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    first = (await read_log(client, world.admin, limit=1))["items"][0]
    assert set(first) == {
        "id",
        "at",
        "actor_id",
        "actor_roles",
        "action",
        "object_type",
        "object_id",
        "request_id",
        "before",
        "after",
        "domain",
    }


async def test_the_csv_export_is_a_download_of_the_same_entries(client, world, database):
    ids = seed(database, world, "user.created", "payroll_run.started", "payroll_run.approved")
    response = await client.get(
        "/audit-log.csv", params={"action": "payroll_run.*"}, headers=world.admin.auth
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="audit-log.csv"'
    assert "x-next-cursor" not in response.headers
    assert response.text.splitlines()[0] == (
        "id,at,actor_id,action,object_type,object_id,request_id,before,after"
    )
    rows = csv_rows(response)
    assert [int(r["id"]) for r in rows] == [ids[2], ids[1]]
    assert rows[0]["actor_id"] == str(world.admin.id)


async def test_a_capped_csv_export_says_where_the_next_one_continues(client, world, database):
    ids = seed(database, world, *["user.created"] * 5)
    first = await client.get("/audit-log.csv", params={"limit": 2}, headers=world.admin.auth)
    assert [int(r["id"]) for r in csv_rows(first)] == [ids[4], ids[3]]
    cursor = first.headers["x-next-cursor"]
    rest = await client.get(
        "/audit-log.csv", params={"limit": 100, "cursor": cursor}, headers=world.admin.auth
    )
    assert [int(r["id"]) for r in csv_rows(rest)] == [ids[2], ids[1], ids[0]]
    assert "x-next-cursor" not in rest.headers
    empty = await client.get(
        "/audit-log.csv", params={"object_id": "nothing"}, headers=world.admin.auth
    )
    assert empty.status_code == 200
    assert csv_rows(empty) == []


# --- hostile input -------------------------------------------------------------------------------


@ONE_DATABASE
@pytest.mark.parametrize("path", ["/audit-log", "/audit-log.csv"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"object_id": "x" * 65}, "object_id"),
        ({"object_type": "t" * 65}, "object_type"),
        ({"object_type": ""}, "object_type"),
        ({"action": "Payroll_run.*"}, "action"),
        ({"action": "payroll_run.*.x"}, "action"),
        ({"action": "*"}, "action"),
        ({"action": "a." + "b" * 63}, "action"),
        ({"actor_id": "not-a-uuid"}, "actor_id"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no time zone
        ({"until": "2026-01-01T00:00:00"}, "until"),
        ({"since": "1767225600"}, "since"),  # seconds since 1970: not a date-time
        ({"until": "0.5"}, "until"),
        ({"cursor": "0"}, "cursor"),
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": str(2**63)}, "cursor"),
        ({"cursor": str(10**30)}, "cursor"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "1.5"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100001"}, "limit"),
    ],
)
async def test_a_bad_query_is_a_422_naming_the_field(client, world, database, path, params, field):
    before = entry_count(database)
    response = await client.get(path, params=params, headers=world.admin.auth)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_failed"
    assert [e["loc"][-1] for e in body["errors"]] == [field]
    assert entry_count(database) == before


async def test_a_page_larger_than_500_is_a_422(client, world):
    response = await client.get("/audit-log", params={"limit": 501}, headers=world.admin.auth)
    assert response.status_code == 422


@ONE_DATABASE
@pytest.mark.parametrize("path", ["/audit-log", "/audit-log.csv"])
@pytest.mark.parametrize("name", ["object_id", "object_type", "action", "cursor", "since"])
async def test_a_nul_in_the_query_is_a_422_naming_it(client, world, path, name):
    response = await client.get(path, params={name: f"x{NUL}"}, headers=world.admin.auth)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", name]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "0001-01-01T00:00:00+05:00"},
        {"until": "9999-12-31T23:00:00-05:00"},
        {"since": "9999-12-31T23:00:00-05:00"},
        {"until": "0001-01-01T00:00:00+05:00"},
        {"since": "2027-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"cursor": str(2**63 - 1)},
        {"since": "2016-12-31T23:59:60Z"},  # a leap second
        {"until": "2026-01-01t00:00:00.123456789z"},
        {"object_id": "é" * 64, "object_type": "ü" * 64},
    ],
)
async def test_valid_but_extreme_queries_are_answered(client, world, database, params):
    seed(database, world, "user.created")
    for path in ("/audit-log", "/audit-log.csv"):
        response = await client.get(path, params=params, headers=world.admin.auth)
        assert response.status_code == 200, (path, response.text)


async def test_the_openapi_document_describes_both_endpoints(client):
    spec = (await client.get("/openapi.json")).json()
    listing = spec["paths"]["/audit-log"]["get"]
    export = spec["paths"]["/audit-log.csv"]["get"]
    for operation in (listing, export):
        assert {"401", "403", "422"} <= set(operation["responses"])
        names = {p["name"] for p in operation["parameters"]}
        assert {"actor_id", "object_type", "object_id", "action", "since", "until"} <= names
        assert {"cursor", "limit"} <= names
    assert "text/csv" in export["responses"]["200"]["content"]
    assert "X-Next-Cursor" in export["responses"]["200"]["headers"]
