"""Payslips over HTTP: a specialist lists and reads their own (JSON by default, HTML or PDF by
`Accept` or `?format=`), another specialist's is a 404 like a missing one, finance reads any of
the tenant's at /payslips/{id}, other roles get 403, another tenant's are not there, and bad
input is a 4xx."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from api.deps import token_config
from ledger.models import Invoice
from quire.payroll import payslips, runs
from tests.quire.payroll.support import PayrollWorld, build_payroll_world, this_period
from tests.quire.payroll.test_runs import approve_and_post, open_and_compute
from tests.support.world import sign_in_all, unique_slug


def issue_payslips(pw: PayrollWorld) -> uuid.UUID:
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with pw.database.session(pw.tenant_id, write=True) as session:
        payslips.issue_for_run(session, runs.get_run(session, run_id))
    return run_id


@pytest.fixture
def pw(database, settings) -> PayrollWorld:
    payroll_world = build_payroll_world(database, unique_slug("acme"))
    sign_in_all(payroll_world.world, token_config(settings))
    return payroll_world


def payslip_of(pw: PayrollWorld, name: str) -> str:
    with pw.database.session(pw.tenant_id) as session:
        return str(session.scalar(select(Invoice.id).where(Invoice.specialist_id == pw.id(name))))


async def test_a_specialist_lists_their_payslips(client, pw):
    run_id = issue_payslips(pw)
    listed = await client.get("/me/payslips", headers=pw.world.ana.auth)
    assert listed.status_code == 200, listed.text
    (only,) = listed.json()
    assert {k: only[k] for k in ("period", "version", "status", "currency", "total_minor")} == {
        "period": this_period(),
        "version": 1,
        "status": "issued",
        "currency": "EUR",
        "total_minor": 147_747,
    }
    assert only["run_id"] == str(run_id)
    assert (await client.get("/me/payslips", headers=pw.world.holly.auth)).json() == []


async def test_a_payslip_is_json_by_default_html_or_pdf_on_request(client, pw):
    issue_payslips(pw)
    url = f"/me/payslips/{payslip_of(pw, 'ana')}"
    auth = pw.world.ana.auth
    as_json = await client.get(url, headers=auth)
    assert as_json.status_code == 200
    assert as_json.headers["content-type"].startswith("application/json")
    body = as_json.json()
    assert (body["total_minor"], body["specialist_name"]) == (147_747, "Ana")
    assert [line["kind"] for line in body["lines"]].count("payout") == 2
    html = await client.get(url, headers={**auth, "Accept": "text/html,application/xhtml+xml"})
    assert html.headers["content-type"].startswith("text/html")
    assert "Payslip" in html.text
    assert "EUR 1,477.47" in html.text
    pdf = await client.get(url, headers={**auth, "Accept": "application/pdf"})
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert "payslip-" in pdf.headers["content-disposition"]
    by_query = await client.get(url, params={"format": "pdf"}, headers={**auth, "Accept": "*/*"})
    assert by_query.content.startswith(b"%PDF-")
    preferred = await client.get(
        url, headers={**auth, "Accept": "text/html;q=0.5, application/pdf;q=0.9"}
    )
    assert preferred.headers["content-type"] == "application/pdf"
    odd = await client.get(url, headers={**auth, "Accept": "image/png;q=nonsense, x"})
    assert odd.headers["content-type"].startswith("application/json")


async def test_another_specialists_payslip_is_not_found_like_a_missing_one(client, pw):
    issue_payslips(pw)
    theirs = await client.get(f"/me/payslips/{payslip_of(pw, 'ana')}", headers=pw.world.ken.auth)
    missing = await client.get(f"/me/payslips/{uuid.uuid4()}", headers=pw.world.ken.auth)
    assert (theirs.status_code, theirs.json()["code"]) == (404, "payslip_not_found")
    assert (missing.status_code, missing.json()["code"]) == (404, "payslip_not_found")


async def test_finance_reads_any_payslip_of_the_tenant_other_roles_are_refused(client, pw):
    issue_payslips(pw)
    url = f"/payslips/{payslip_of(pw, 'ana')}"
    assert (await client.get(url, headers=pw.world.finance.auth)).json()["total_minor"] == 147_747
    assert (await client.get(url, headers=pw.world.admin.auth)).status_code == 200
    html = await client.get(url, params={"format": "html"}, headers=pw.world.finance.auth)
    assert html.headers["content-type"].startswith("text/html")
    for role in ("manager", "reviewer", "ana"):
        refused = await client.get(url, headers=pw.world.people[role].auth)
        assert (refused.status_code, refused.json()["code"]) == (403, "wrong_role"), role
    for role in ("manager", "finance"):
        refused = await client.get("/me/payslips", headers=pw.world.people[role].auth)
        assert refused.status_code == 403, role
    assert (await client.get(url)).status_code == 401


async def test_an_ordinary_invoice_is_not_a_payslip(client, pw):
    draft = await client.post(
        "/ledger/invoices",
        json={
            "specialist_id": str(pw.id("ana")),
            "period": this_period(),
            "currency": "EUR",
            "lines": [{"description": "Blog post", "amount_minor": 100}],
        },
        headers=pw.world.finance.auth,
    )
    assert draft.status_code == 201, draft.text
    assert (await client.get("/me/payslips", headers=pw.world.ana.auth)).json() == []
    hidden = await client.get(f"/payslips/{draft.json()['id']}", headers=pw.world.finance.auth)
    assert hidden.status_code == 404


async def test_another_tenants_payslips_are_not_there(client, pw, database, settings):
    rival = build_payroll_world(database, unique_slug("globex"))
    sign_in_all(rival.world, token_config(settings))
    issue_payslips(pw)
    issue_payslips(rival)
    theirs = payslip_of(rival, "ana")
    for url, person in (
        (f"/payslips/{theirs}", pw.world.finance),
        (f"/me/payslips/{theirs}", pw.world.ana),
    ):
        found = await client.get(url, headers=person.auth)
        assert (found.status_code, found.json()["code"]) == (404, "payslip_not_found")
    mine = (await client.get("/me/payslips", headers=pw.world.ana.auth)).json()
    assert [p["id"] for p in mine] == [payslip_of(pw, "ana")]
    own = await client.get(f"/payslips/{theirs}", headers=rival.world.finance.auth)
    assert own.json()["tenant_name"] == rival.world.slug.title()  # build_world's tenant name


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/me/payslips/not-a-uuid", {}),
        ("/me/payslips/{id}", {"format": "xml"}),
        ("/me/payslips/{id}", {"format": "pdf\x00"}),
        ("/me/payslips/{id}", {"format": "x" * 10_000}),
        ("/me/payslips/%00", {}),
    ],
)
async def test_bad_input_is_a_422_never_a_500(client, pw, path, params):
    issue_payslips(pw)
    url = path.format(id=payslip_of(pw, "ana"))
    refused = await client.get(url, params=params, headers=pw.world.ana.auth)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"


async def test_a_reissued_payslip_lists_both_versions_the_void_one_pointing_at_its_successor(
    client, pw
):
    from quire.payroll import corrections
    from quire.payroll.models import PayrollLine

    run_id = issue_payslips(pw)
    with pw.database.session(pw.tenant_id, write=True) as session:
        line = session.scalar(
            select(PayrollLine).where(
                PayrollLine.specialist_id == pw.id("ana"), PayrollLine.source_currency == "USD"
            )
        )
        corrections.reverse_line(session, pw.world.finance.actor, run_id, line.id, "returned")
        payslips.reissue_for_line(session, runs.get_run(session, run_id), line)
    latest, old = (await client.get("/me/payslips", headers=pw.world.ana.auth)).json()
    assert (latest["version"], latest["total_minor"], latest["supersedes_id"]) == (
        2,
        120_000,
        old["id"],
    )
    assert (old["status"], old["superseded_by_id"]) == ("void", latest["id"])
    void = await client.get(
        f"/me/payslips/{old['id']}", params={"format": "html"}, headers=pw.world.ana.auth
    )
    assert "VOID" in void.text
