"""/payroll-runs over HTTP: finance only, one tenant's runs, clear 4xx for every bad input, and a
503 that frees the period when Prefect cannot start the run. (The flow itself, started and
approved through these endpoints, is tests/flows/test_payroll_run.py.)"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from api.deps import token_config
from quire.payroll import files, runs
from quire.payroll.models import PayrollLine, RunStatus
from quire.payroll.payout_files import validate
from tests.quire.payroll.support import PayrollWorld, build_payroll_world, this_period
from tests.quire.payroll.test_runs import approve_and_post, open_and_compute
from tests.support.world import World, login, sign_in_all, unique_slug

# Refused by the schema, the roles or the bank rules before any SQL runs: the database makes no
# difference, so these run on SQLite only (the PostgreSQL paths are the hostile-input tests).
ONE_DATABASE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def pw(database, settings) -> PayrollWorld:
    payroll_world = build_payroll_world(database, unique_slug("acme"))
    sign_in_all(payroll_world.world, token_config(settings))
    return payroll_world


async def posted_run(pw: PayrollWorld, settings) -> str:
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with pw.database.session(pw.tenant_id, write=True) as session:
        files.write_files(session, runs.get_run(session, run_id), settings.reports_dir)
    return str(run_id)


async def test_starting_a_run_without_a_workflow_engine_is_a_503_and_frees_the_period(client, pw):
    """No PREFECT_API_URL here: the run is opened, cannot be started, and fails at once."""
    started = await client.post(
        "/payroll-runs", json={"period": this_period()}, headers=pw.world.finance.auth
    )
    assert started.status_code == 503
    assert started.json()["code"] == "workflow_unavailable"
    listed = await client.get("/payroll-runs", headers=pw.world.finance.auth)
    assert [r["status"] for r in listed.json()] == [RunStatus.FAILED]
    assert "could not be started" in listed.json()[0]["failure_reason"]


async def test_a_paid_period_is_a_409(client, pw, settings):
    await posted_run(pw, settings)
    refused = await client.post(
        "/payroll-runs", json={"period": this_period()}, headers=pw.world.finance.auth
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "period_already_paid"


@ONE_DATABASE
@pytest.mark.parametrize(
    "body",
    [
        {"period": "2026-13"},
        {"period": "26-11"},
        {"period": "2026-11\x00"},
        {"period": "2026-11", "payout_date": "tomorrow"},
        {"period": "2026-11", "dry_run": "perhaps"},
        {"period": "2026-11", "extra": 1},
        {},
    ],
)
async def test_a_bad_start_is_a_422_and_opens_nothing(client, pw, body):
    refused = await client.post("/payroll-runs", json=body, headers=pw.world.finance.auth)
    assert refused.status_code == 422, refused.text
    assert (await client.get("/payroll-runs", headers=pw.world.finance.auth)).json() == []


async def test_a_run_shows_its_state_totals_files_and_lines_page_by_page(client, pw, settings):
    run_id = await posted_run(pw, settings)
    shown = (await client.get(f"/payroll-runs/{run_id}", headers=pw.world.finance.auth)).json()
    assert shown["status"] == RunStatus.POSTED
    assert set(shown["totals"]["payout"]) == {"EUR", "JPY", "KWD"}
    assert {f["format"] for f in shown["files"]} == {"pain.001.001.03", "pain.001.001.09", "csv"}

    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get(
                f"/payroll-runs/{run_id}/lines", params=params, headers=pw.world.finance.auth
            )
        ).json()
        seen += [line["id"] for line in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 8


async def test_payout_files_download_as_recorded_and_a_tampered_file_is_refused(
    client, pw, settings
):
    run_id = await posted_run(pw, settings)
    shown = (await client.get(f"/payroll-runs/{run_id}", headers=pw.world.finance.auth)).json()
    sepa = next(f for f in shown["files"] if f["format"] == "pain.001.001.03")
    download = await client.get(
        f"/payroll-runs/{run_id}/files/{sepa['name']}", headers=pw.world.finance.auth
    )
    assert download.status_code == 200
    assert download.headers["x-content-sha256"] == sepa["sha256"]
    validate(download.content, "pain.001.001.03")

    with pw.database.session(pw.tenant_id) as session:
        stored = files.files_of(session, uuid.UUID(run_id))
    path = settings.reports_dir / next(f.path for f in stored if f.name == sepa["name"])
    path.write_bytes(path.read_bytes().replace(b"EUR", b"USD"))
    tampered = await client.get(
        f"/payroll-runs/{run_id}/files/{sepa['name']}", headers=pw.world.finance.auth
    )
    assert tampered.status_code == 409
    assert tampered.json()["code"] == "payroll_file_tampered"
    missing = await client.get(
        f"/payroll-runs/{run_id}/files/..%2F..%2Fjwt_secret", headers=pw.world.finance.auth
    )
    assert missing.status_code == 404


async def test_finance_reverses_a_line_then_the_whole_run(client, pw, settings):
    run_id = await posted_run(pw, settings)
    with pw.database.session(pw.tenant_id) as session:
        line = session.scalar(
            select(PayrollLine).where(
                PayrollLine.run_id == uuid.UUID(run_id), PayrollLine.status == "posted"
            )
        )
    reversed_line = await client.post(
        f"/payroll-runs/{run_id}/lines/{line.id}/reverse",
        json={"reason": "returned by the bank"},
        headers=pw.world.finance.auth,
    )
    assert reversed_line.status_code == 200, reversed_line.text
    assert reversed_line.json()["status"] == "reversed"
    assert reversed_line.json()["reversal_ids"]

    whole = await client.post(
        f"/payroll-runs/{run_id}/reverse",
        json={"reason": "wrong cutoff"},
        headers=pw.world.finance.auth,
    )
    assert whole.status_code == 200
    assert whole.json()["status"] == RunStatus.REVERSED
    assert {f["status"] for f in whole.json()["files"]} == {"void"}
    again = await client.post(
        f"/payroll-runs/{run_id}/lines/{line.id}/reverse",
        json={"reason": ""},
        headers=pw.world.finance.auth,
    )
    assert again.status_code == 422  # a reason is required


async def test_the_starter_may_not_approve_and_a_run_not_waiting_is_a_409(client, pw):
    run_id = open_and_compute(pw)
    own = await client.post(
        f"/payroll-runs/{run_id}/approval",
        json={"decision": "approve"},
        headers=pw.world.finance.auth,
    )
    assert own.status_code == 403
    assert own.json()["code"] == "four_eyes"
    approve_and_post(pw, run_id)
    second = await login(client, pw.world.people["finance"])
    late = await client.post(
        f"/payroll-runs/{run_id}/approval", json={"decision": "approve"}, headers=second.auth
    )
    assert late.status_code in (403, 409)


@pytest.mark.parametrize("role", ["specialist", "reviewer", "manager", "admin"])
async def test_only_finance_sees_payroll(client, pw, settings, role):
    run_id = await posted_run(pw, settings)
    person = pw.specialists["ana"] if role == "specialist" else pw.world.people[role]
    await login(client, person)
    for method, path, body in [
        ("GET", "/payroll-runs", None),
        ("GET", f"/payroll-runs/{run_id}", None),
        ("GET", f"/payroll-runs/{run_id}/lines", None),
        ("POST", "/payroll-runs", {"period": this_period()}),
        ("POST", f"/payroll-runs/{run_id}/reverse", {"reason": "x"}),
    ]:
        response = await client.request(method, path, json=body, headers=person.auth)
        assert response.status_code == 403, (role, path, response.text)


async def test_another_tenants_run_does_not_exist(client, pw, settings, rival: World):
    run_id = await posted_run(pw, settings)
    with pw.database.session(pw.tenant_id) as session:
        name = files.files_of(session, uuid.UUID(run_id))[0].name
    for path in (
        f"/payroll-runs/{run_id}",
        f"/payroll-runs/{run_id}/lines",
        f"/payroll-runs/{run_id}/files/{name}",
        f"/payroll-runs/{run_id}/data-docs/index.html",
    ):
        assert (await client.get(path, headers=rival.finance.auth)).status_code == 404
    assert (await client.get("/payroll-runs", headers=rival.finance.auth)).json() == []


ANY_RUN = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"  # fixed: it appears in test ids (xdist)


@pytest.mark.parametrize(
    "path",
    [
        "/payroll-runs/not-a-uuid",
        f"/payroll-runs/{ANY_RUN}/lines?cursor=-1",
        f"/payroll-runs/{ANY_RUN}/lines?cursor=99999999999999999999999",
        f"/payroll-runs/{ANY_RUN}/lines?limit=0",
        "/payroll-runs?period=2026-11%00",
        "/payroll-runs?status=" + "x" * 100,
    ],
)
async def test_hostile_queries_are_4xx(client, pw, path):
    response = await client.get(path, headers=pw.world.finance.auth)
    assert 400 <= response.status_code < 500, response.text
