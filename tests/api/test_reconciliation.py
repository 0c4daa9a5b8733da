"""Reconciliation over HTTP: finance uploads statements (idempotent, a clear 422 and nothing
stored for a bad file), reads reconciliations and works their exception queue; closing a month
needs a clean reconciliation, reopening an admin; other roles get 403 and other tenants' ids
404."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from api.deps import token_config
from quire.payroll import files, runs
from quire.payroll.models import PayrollProfile
from quire.reconciliation.matching import MatchSettings
from quire.reconciliation.runs import reconcile_statement
from tests.quire.payroll.support import PayrollWorld, build_payroll_world
from tests.quire.payroll.test_runs import approve_and_post, open_and_compute
from tests.quire.reconciliation.payroll_cast import lines_of, paid_by_id, statement
from tests.quire.reconciliation.statement_samples import sample
from tests.support.world import sign_in_all, unique_slug

SAMPLE = "camt053_v02_returned_payout.xml"
SAMPLE_ACCOUNT = "DE89370400440532013000"


@pytest.fixture
def pw(database, settings) -> PayrollWorld:
    world = build_payroll_world(database, unique_slug("recon"))
    sign_in_all(world.world, token_config(settings))
    with database.session(world.tenant_id, write=True) as session:
        session.execute(update(PayrollProfile).values(debtor_iban=SAMPLE_ACCOUNT))
    return world


def reconciled(pw: PayrollWorld, settings, *extra: dict) -> str:
    """A posted run, a statement confirming it (plus `extra` lines), reconciled: its id."""
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with pw.database.session(pw.tenant_id, write=True) as session:
        files.write_files(session, runs.get_run(session, run_id), settings.reports_dir)
    lines = lines_of(pw, run_id)
    stmt = statement(pw, *(paid_by_id(line) for line in lines.values()), *extra)
    with pw.database.session(pw.tenant_id, write=True) as session:
        return str(reconcile_statement(session, None, stmt, MatchSettings()).id)


def upload(client, person, content: bytes, name: str = SAMPLE):
    return client.post(
        "/bank-statements", files={"file": (name, content, "application/xml")}, headers=person.auth
    )


async def test_finance_uploads_a_statement_once(client, pw):
    first = await upload(client, pw.world.finance, sample(SAMPLE))
    assert first.status_code == 201, first.text
    [stored] = first.json()
    assert (stored["statement_id"], stored["line_count"]) == ("STMT-V02-2026-12-01", 3)
    again = await upload(client, pw.world.finance, sample(SAMPLE))
    assert again.status_code == 201
    assert again.json() == first.json()


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"<Document", "malformed_statement"),
        (sample("camt053_v05_reversal.xml"), "statement_wrong_account"),
        (
            sample(SAMPLE).replace(
                b'<Amt Ccy="EUR">1250.00</Amt>', b'<Amt Ccy="EUR">1250.01</Amt>', 1
            ),
            None,
        ),
    ],
    ids=["truncated", "another-account", "does-not-balance"],
)
async def test_a_bad_file_is_a_422_that_says_why_and_stores_nothing(client, pw, content, code):
    refused = await upload(client, pw.world.finance, content)
    assert refused.status_code == 422, refused.text
    if code:
        assert refused.json()["code"] == code
    assert (await client.get("/reconciliations", headers=pw.world.finance.auth)).json() == []
    listed = await upload(client, pw.world.finance, sample(SAMPLE))
    assert listed.status_code == 201  # the good file still goes in: nothing half-stored before


@pytest.mark.parametrize("role", ["specialist", "manager", "reviewer", "admin"])
async def test_only_finance_uploads_and_reads(client, pw, role, settings):
    person = pw.specialists["ana"] if role == "specialist" else pw.world.people[role]
    assert (await upload(client, person, sample(SAMPLE))).status_code == 403
    assert (await client.get("/reconciliations", headers=person.auth)).status_code == 403


async def test_finance_reads_a_reconciliation_and_works_its_queue(client, pw, settings):
    recon_id = reconciled(pw, settings, {"amount_minor": -300})
    shown = await client.get(f"/reconciliations/{recon_id}", headers=pw.world.finance.auth)
    assert shown.status_code == 200
    assert shown.json()["status"] == "exceptions"
    queue = await client.get(
        f"/reconciliations/{recon_id}/exceptions", headers=pw.world.finance.auth
    )
    [exception] = queue.json()
    assert (exception["side"], exception["amount_minor"]) == ("bank", -300)
    path = f"/reconciliations/{recon_id}/exceptions/{exception['id']}"
    no_reason = await client.post(f"{path}/write-off", json={}, headers=pw.world.finance.auth)
    assert no_reason.status_code == 422
    written = await client.post(
        f"{path}/write-off", json={"reason": "account fee"}, headers=pw.world.finance.auth
    )
    assert written.status_code == 200, written.text
    assert written.json()["rule"] == "write_off"
    again = await client.post(
        f"{path}/write-off", json={"reason": "again"}, headers=pw.world.finance.auth
    )
    assert again.status_code == 409
    specialist = await client.get(
        f"/reconciliations/{recon_id}", headers=pw.specialists["ana"].auth
    )
    assert specialist.status_code == 403


async def test_another_tenants_reconciliation_does_not_exist(client, pw, settings, rival):
    recon_id = reconciled(pw, settings, {"amount_minor": -300})
    theirs = rival.finance.auth
    for path in (f"/reconciliations/{recon_id}", f"/reconciliations/{recon_id}/exceptions"):
        assert (await client.get(path, headers=theirs)).status_code == 404
    missing = await client.get(f"/reconciliations/{uuid.uuid4()}", headers=pw.world.finance.auth)
    assert missing.status_code == 404


async def test_closing_needs_a_clean_reconciliation_and_reopening_an_admin(client, pw, settings):
    recon_id = reconciled(pw, settings)
    period = (
        await client.get(f"/reconciliations/{recon_id}", headers=pw.world.finance.auth)
    ).json()["period"]
    dirty = await client.post("/ledger/periods/2020-01/close", headers=pw.world.finance.auth)
    assert dirty.status_code == 409
    assert dirty.json()["code"] == "period_not_reconciled"
    closed = await client.post(f"/ledger/periods/{period}/close", headers=pw.world.finance.auth)
    assert closed.status_code == 200, closed.text
    by_finance = await client.post(
        f"/ledger/periods/{period}/reopen",
        json={"reason": "late fee"},
        headers=pw.world.finance.auth,
    )
    assert by_finance.status_code == 403
    reopened = await client.post(
        f"/ledger/periods/{period}/reopen", json={"reason": "late fee"}, headers=pw.world.admin.auth
    )
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["reopen_reason"] == "late fee"
    bad = await client.post("/ledger/periods/2026-13/close", headers=pw.world.finance.auth)
    assert bad.status_code == 422
    blank = await client.post(
        f"/ledger/periods/{period}/reopen", json={"reason": "   "}, headers=pw.world.admin.auth
    )
    assert blank.status_code == 422  # the schema says so, not only the ledger
