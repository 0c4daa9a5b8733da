"""Payslips: one statement per paid specialist per run, as a self-billing invoice version that
adds up to what was paid, says what is behind it (orders, fines, FX), never moves money itself,
gets a new version when a line is reversed, and is read only by its specialist and finance."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from ledger import business, chart
from ledger.invoices import STATEMENT_KIND, correct
from ledger.models import AccountKind, Invoice, InvoiceStatus, Transfer
from ledger.posting import Leg, TransferSpec, post
from ledger.schemas import InvoiceLine
from quire.errors import Conflict, Forbidden, NotFound
from quire.payroll import corrections, payslips, runs
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.payroll.payslip_render import render_html, render_pdf
from quire.people.models import Tenant, User
from tests.quire.payroll.support import (
    PayrollWorld,
    add_specialist,
    bank_details,
    build_payroll_world,
    earn,
    this_period,
)
from tests.quire.payroll.test_runs import approve_and_post, open_and_compute


@pytest.fixture
def pw(database) -> PayrollWorld:
    return build_payroll_world(database, "acme")


def posted(pw: PayrollWorld) -> uuid.UUID:
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    return run_id


def issue(pw: PayrollWorld, run_id: uuid.UUID) -> int:
    with pw.database.session(pw.tenant_id, write=True) as session:
        return payslips.issue_for_run(session, runs.get_run(session, run_id))


def statements(pw: PayrollWorld, name: str) -> list[Invoice]:
    """A specialist's payslip versions, oldest first."""
    with pw.database.session(pw.tenant_id) as session:
        return list(
            session.scalars(
                select(Invoice)
                .where(Invoice.specialist_id == pw.id(name))
                .order_by(Invoice.version)
            )
        )


def lines_of(invoice: Invoice, kind: str | None = None) -> list[dict[str, Any]]:
    return [ln for ln in invoice.lines if kind is None or ln["kind"] == kind]


def line_id(pw: PayrollWorld, run_id: uuid.UUID, name: str, source: str) -> int:
    with pw.database.session(pw.tenant_id) as session:
        return session.scalar(
            select(PayrollLine.id).where(
                PayrollLine.run_id == run_id,
                PayrollLine.specialist_id == pw.id(name),
                PayrollLine.source_currency == source,
            )
        )


def reverse(pw: PayrollWorld, run_id: uuid.UUID, name: str, source: str, why: str) -> Invoice:
    """What corrections.reverse_line and the lead's hook do: reverse, then reissue."""
    with pw.database.session(pw.tenant_id, write=True) as session:
        actor = pw.world.finance.actor
        line = corrections.reverse_line(
            session, actor, run_id, line_id(pw, run_id, name, source), why
        )
        new = payslips.reissue_for_line(session, runs.get_run(session, run_id), line)
        session.expunge(new)
        return new


def transfers(pw: PayrollWorld) -> int:
    with pw.database.session(pw.tenant_id) as session:
        return session.scalar(select(func.count()).select_from(Transfer))


# --- issuing ---------------------------------------------------------------------------------


def test_a_posted_run_issues_one_payslip_per_paid_specialist_and_none_for_the_withheld(pw):
    run_id = posted(pw)
    assert issue(pw, run_id) == 3
    for name in ("ana", "ken", "fatima"):
        (only,) = statements(pw, name)
        assert (only.status, only.period, only.version) == (InvoiceStatus.ISSUED, this_period(), 1)
        assert only.lines[0]["kind"] == STATEMENT_KIND
        assert only.lines[0]["payroll_run_id"] == str(run_id)
    for name in ("holly", "chris", "nadia", "tim"):  # on hold, cooling, no details, minimum
        assert statements(pw, name) == []


def test_a_payslip_adds_up_to_what_was_paid_in_the_payout_currency(pw):
    run_id = posted(pw)
    issue(pw, run_id)
    with pw.database.session(pw.tenant_id) as session:
        paid = dict(
            session.execute(
                select(PayrollLine.specialist_id, func.sum(PayrollLine.payout_minor))
                .where(PayrollLine.run_id == run_id, PayrollLine.status == LineStatus.POSTED)
                .group_by(PayrollLine.specialist_id)
            ).all()
        )
    for name, currency in (("ana", "EUR"), ("ken", "JPY"), ("fatima", "KWD")):
        (invoice,) = statements(pw, name)
        assert invoice.currency == currency
        assert invoice.total_minor == paid[pw.id(name)]
        amounts = [ln["amount_minor"] for ln in invoice.lines if ln["amount_minor"] is not None]
        assert sum(amounts) == invoice.total_minor
        assert all(ln["kind"] == payslips.PAYOUT for ln in invoice.lines if ln["amount_minor"])
        for line in lines_of(invoice, payslips.PAYOUT):  # valid invoice lines, as the ledger's
            InvoiceLine(description=line["description"], amount_minor=line["amount_minor"])


def test_a_eur_and_usd_specialist_sees_each_order_and_the_usd_conversion(pw):
    issue(pw, posted(pw))
    (ana,) = statements(pw, "ana")
    assert ana.total_minor == 120_000 + 27_747
    orders = lines_of(ana, payslips.ORDER)
    assert [(o["source_currency"], o["source_amount_minor"]) for o in orders] == [
        ("EUR", 120_000),
        ("USD", 30_000),
    ]
    assert all(o["order_id"] and o["order_id"] in o["description"] for o in orders)
    assert "USD 300.00" in orders[1]["description"]
    (fx,) = lines_of(ana, payslips.FX)
    assert fx["source_currency"] == "USD"
    assert fx["source_amount_minor"] == 30_000
    assert fx["fx_rate"] == "0.9248982612"
    assert "www.ecb.europa.eu" in fx["fx_source"]
    assert "EUR 277.47" in fx["description"]
    assert "0.9248982612" in fx["description"]
    payouts = lines_of(ana, payslips.PAYOUT)
    assert [(p["source_currency"], p["amount_minor"]) for p in payouts] == [
        ("EUR", 120_000),
        ("USD", 27_747),
    ]
    assert lines_of(ana, payslips.BROUGHT_FORWARD) == []  # the window holds all of it


def test_yen_have_no_decimals_and_dinars_three(pw):
    issue(pw, posted(pw))
    (ken,) = statements(pw, "ken")
    (fatima,) = statements(pw, "fatima")
    assert (ken.total_minor, fatima.total_minor) == (81_175, 76_790)
    assert "JPY 81,175" in lines_of(ken, payslips.FX)[0]["description"]
    assert "KWD 76.790" in lines_of(fatima, payslips.FX)[0]["description"]
    assert "via EUR" in lines_of(fatima, payslips.FX)[0]["fx_source"]  # USD -> KWD cross rate


def test_issuing_again_for_the_same_run_creates_nothing(pw):
    run_id = posted(pw)
    assert issue(pw, run_id) == 3
    before = transfers(pw)
    assert issue(pw, run_id) == 0
    with pw.database.session(pw.tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(Invoice)) == 3
    assert transfers(pw) == before  # and a payslip never posts


def test_a_run_not_posted_has_no_payslips(pw):
    run_id = open_and_compute(pw)
    with pytest.raises(Conflict) as refused:
        issue(pw, run_id)
    assert refused.value.code == "payroll_not_posted"


def test_fines_in_the_window_are_listed_and_the_total_still_adds_up(pw):
    order_id = uuid.uuid4()
    with pw.database.session(pw.tenant_id, write=True) as session:
        business.post_late_fine(
            session,
            order_id=order_id,
            specialist_id=pw.id("ana"),
            amount_minor=2_500,
            currency="EUR",
        )
    issue(pw, posted(pw))
    (ana,) = statements(pw, "ana")
    (fine,) = lines_of(ana, payslips.FINE)
    assert fine["order_id"] == str(order_id)
    assert fine["source_amount_minor"] == -2_500
    assert "EUR -25.00" in fine["description"]
    assert ana.total_minor == 120_000 - 2_500 + 27_747


def test_earlier_orders_are_not_listed_again_what_was_not_paid_then_is_brought_forward(pw):
    """The window starts at the cutoff of the specialist's previous run that paid them: orders
    before it were on the previous payslip; what is still owed from then is one line."""
    period_start = runs.periods.cutoff(this_period(), "Europe/Berlin") - dt.timedelta(days=40)
    earlier_cutoff = period_start + dt.timedelta(days=5)
    with pw.database.session(pw.tenant_id, write=True) as session:
        previous = PayrollRun(
            tenant_id=pw.tenant_id,
            period="2001-01",
            attempt=1,
            cutoff_at=earlier_cutoff,
            payout_date=earlier_cutoff.date(),
            status=RunStatus.POSTED,
            totals={},
        )
        session.add(previous)
        session.flush()
        session.add(
            PayrollLine(
                tenant_id=pw.tenant_id,
                run_id=previous.id,
                specialist_id=pw.id("ana"),
                source_currency="EUR",
                payable_minor=1,
                payout_currency="EUR",
                payout_minor=1,
                status=LineStatus.POSTED,
            )
        )
        receivable = chart.account(session, AccountKind.CLIENT_RECEIVABLE, "EUR")
        payable = chart.account(session, AccountKind.SPECIALIST_PAYABLE, "EUR", pw.id("ana"))
        post(
            session,
            TransferSpec(
                "earnings",
                "earnings:old",
                [Leg.debit(receivable, 4_000), Leg.credit(payable, 4_000)],
                reference="order:old",
                effective_at=earlier_cutoff - dt.timedelta(days=1),
                metadata={"order_id": str(uuid.uuid4())},
            ),
        )
    issue(pw, posted(pw))
    (ana,) = statements(pw, "ana")
    eur_orders = [o for o in lines_of(ana, payslips.ORDER) if o["source_currency"] == "EUR"]
    assert [o["source_amount_minor"] for o in eur_orders] == [120_000]
    (carried,) = lines_of(ana, payslips.BROUGHT_FORWARD)
    assert (carried["source_currency"], carried["source_amount_minor"]) == ("EUR", 4_000)
    assert ana.total_minor == 124_000 + 27_747


# --- reversal --------------------------------------------------------------------------------


def test_a_reversed_line_gets_a_new_version_that_supersedes_the_old_one(pw):
    run_id = posted(pw)
    issue(pw, run_id)
    before = transfers(pw)
    new = reverse(pw, run_id, "ana", "USD", "returned by the bank")
    old, latest = statements(pw, "ana")
    assert (old.status, latest.status) == (InvoiceStatus.VOID, InvoiceStatus.ISSUED)
    assert (latest.id, latest.version, latest.supersedes_id) == (new.id, 2, old.id)
    assert old.total_minor == 147_747
    assert latest.total_minor == 120_000
    (gone,) = lines_of(latest, payslips.REVERSED)
    assert gone["source_currency"] == "USD"
    assert "reversed: returned by the bank" in gone["description"]
    assert "EUR 277.47 not paid" in gone["description"]
    assert [p["source_currency"] for p in lines_of(latest, payslips.PAYOUT)] == ["EUR"]
    # the line's two reversal transfers, and nothing from the payslip
    assert transfers(pw) == before + 2


def test_reissuing_when_the_payslip_already_says_so_changes_nothing(pw):
    run_id = posted(pw)
    issue(pw, run_id)
    first = reverse(pw, run_id, "ana", "USD", "returned by the bank")
    again = reverse(pw, run_id, "ana", "USD", "returned by the bank")
    assert again.id == first.id
    assert len(statements(pw, "ana")) == 2


def test_a_reversed_run_reissues_every_payslip_with_nothing_paid(pw):
    run_id = posted(pw)
    issue(pw, run_id)
    with pw.database.session(pw.tenant_id, write=True) as session:
        corrections.reverse_run(session, pw.world.finance.actor, run_id, "wrong month")
        # The reversal restated them itself: nothing is left to restate.
        assert payslips.reissue_for_run(session, runs.get_run(session, run_id)) == 0
    for name in ("ana", "ken", "fatima"):
        old, latest = statements(pw, name)
        assert (old.status, latest.supersedes_id, latest.total_minor) == ("void", old.id, 0)
        assert lines_of(latest, payslips.PAYOUT) == []
        assert all(
            "reversed: wrong month" in r["description"] for r in lines_of(latest, "reversed")
        )
    with pw.database.session(pw.tenant_id, write=True) as session:
        assert payslips.issue_for_run(session, runs.get_run(session, run_id)) == 0


def test_a_line_reversed_before_the_payslips_were_issued_shows_on_the_first_version(pw):
    run_id = posted(pw)
    with pw.database.session(pw.tenant_id, write=True) as session:
        corrections.reverse_line(
            session, pw.world.finance.actor, run_id, line_id(pw, run_id, "ken", "EUR"), "closed"
        )
    issue(pw, run_id)
    (ken,) = statements(pw, "ken")
    assert ken.total_minor == 0
    assert "reversed: closed" in lines_of(ken, payslips.REVERSED)[0]["description"]


def test_a_payslip_is_not_corrected_with_a_ledger_adjustment(pw):
    issue(pw, posted(pw))
    (ana,) = statements(pw, "ana")
    with pytest.raises(Conflict) as refused, pw.database.session(pw.tenant_id, write=True) as s:
        correct(s, ana.id, ana.lock_version, [InvoiceLine(description="x", amount_minor=1)])
    assert refused.value.code == "statement_not_correctable"


# --- reading ---------------------------------------------------------------------------------


def test_a_specialist_lists_their_own_payslips_newest_first(pw):
    run_id = posted(pw)
    issue(pw, run_id)
    reverse(pw, run_id, "ana", "USD", "returned by the bank")
    with pw.database.session(pw.tenant_id) as session:
        listed = payslips.list_for(session, pw.world.ana.actor)
    assert [(p.version, p.status, p.total_minor) for p in listed] == [
        (2, "issued", 120_000),
        (1, "void", 147_747),
    ]
    assert listed[1].superseded_by_id == listed[0].id
    assert {p.run_id for p in listed} == {run_id}


def test_a_specialist_reads_only_their_own_payslip_finance_reads_any(pw):
    issue(pw, posted(pw))
    (ana,) = statements(pw, "ana")
    with pw.database.session(pw.tenant_id) as session:
        mine = payslips.read_for(session, pw.world.ana.actor, ana.id)
        assert (mine.specialist_name, mine.currency, mine.total_minor) == ("Ana", "EUR", 147_747)
        assert payslips.read_for(session, pw.world.finance.actor, ana.id).id == ana.id
        with pytest.raises(NotFound) as hidden:
            payslips.read_for(session, pw.world.ken.actor, ana.id)
        assert hidden.value.code == "payslip_not_found"
        with pytest.raises(NotFound):
            payslips.read_for(session, pw.world.ana.actor, uuid.uuid4())
        with pytest.raises(Forbidden):
            payslips.read_for(session, pw.world.manager.actor, ana.id)
        with pytest.raises(Forbidden):
            payslips.list_for(session, pw.world.finance.actor)


def test_an_ordinary_invoice_is_no_payslip(pw):
    from ledger.invoices import create_draft
    from ledger.schemas import InvoiceDraft

    with pw.database.session(pw.tenant_id, write=True) as session:
        draft = create_draft(
            session,
            pw.tenant_id,
            InvoiceDraft(
                specialist_id=pw.id("ana"),
                period=this_period(),
                currency="EUR",
                lines=[InvoiceLine(description="Blog post", amount_minor=100)],
            ),
        )
        draft_id = draft.id
    with pw.database.session(pw.tenant_id) as session:
        assert payslips.list_for(session, pw.world.ana.actor) == []
        with pytest.raises(NotFound):
            payslips.read_for(session, pw.world.finance.actor, draft_id)


def test_payslips_stay_in_their_tenant(pw, database):
    rival = build_payroll_world(database, "globex")
    issue(pw, posted(pw))
    issue(rival, posted(rival))
    (ours,) = statements(pw, "ana")
    (theirs,) = statements(rival, "ana")
    with pw.database.session(pw.tenant_id) as session:
        with pytest.raises(NotFound):
            payslips.read_for(session, pw.world.finance.actor, theirs.id)
        assert [p.id for p in payslips.list_for(session, pw.world.ana.actor)] == [ours.id]
    with rival.database.session(rival.tenant_id) as session:
        assert payslips.read_for(session, rival.world.finance.actor, theirs.id).tenant_name
        with pytest.raises(NotFound):
            payslips.read_for(session, rival.world.finance.actor, ours.id)


# --- rendering -------------------------------------------------------------------------------


def hostile_names(pw: PayrollWorld) -> None:
    with pw.database.session(pw.tenant_id, write=True) as session:
        session.execute(
            update(User)
            .where(User.id == pw.id("ana"))
            .values(display_name='<script>alert("x")</script> Zoë Łódź & Co')
        )
        session.execute(
            update(Tenant).where(Tenant.id == pw.tenant_id).values(name="Acme <b>bold</b>")
        )


def read(pw: PayrollWorld, name: str, version: int = -1) -> payslips.Payslip:
    invoice = statements(pw, name)[version]
    with pw.database.session(pw.tenant_id) as session:
        return payslips.read_for(session, pw.world.finance.actor, invoice.id)


def test_html_escapes_what_people_typed_and_shows_the_fx_and_total(pw):
    hostile_names(pw)
    issue(pw, posted(pw))
    html = render_html(read(pw, "ana"))
    assert "<script>" not in html
    assert "<b>bold</b>" not in html
    assert "&lt;script&gt;" in html
    assert "Zoë Łódź &amp; Co" in html
    assert "Acme &lt;b&gt;bold&lt;/b&gt;" in html
    assert "0.9248982612" in html
    assert "www.ecb.europa.eu" in html
    assert "EUR 1,477.47" in html
    assert this_period() in html
    assert "VOID" not in html


def test_a_void_version_says_void_and_which_version_supersedes_it(pw):
    run_id = posted(pw)
    issue(pw, run_id)
    reverse(pw, run_id, "ana", "USD", "returned <by> the bank")
    old = read(pw, "ana", 0)
    assert (old.status, old.superseded_by_version) == ("void", 2)
    html = render_html(old)
    assert "VOID" in html
    assert "superseded by version\n2" in html
    latest_html = render_html(read(pw, "ana", 1))
    assert "reversed: returned &lt;by&gt; the bank" in latest_html
    assert render_pdf(old).startswith(b"%PDF-")


def test_the_pdf_is_a_pdf_and_the_same_payslip_gives_the_same_bytes(pw):
    hostile_names(pw)
    issue(pw, posted(pw))
    payslip = read(pw, "ana")
    pdf = render_pdf(payslip)
    assert pdf.startswith(b"%PDF-1.")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert b"/Type /Page" in pdf
    assert b"startxref" in pdf
    assert render_pdf(payslip) == pdf
    assert b"/FontFile2" in pdf  # DejaVu embedded: the names print as typed


def test_without_a_unicode_font_the_pdf_transliterates_and_says_so(pw, monkeypatch):
    from quire.payroll import payslip_render

    hostile_names(pw)
    issue(pw, posted(pw))
    monkeypatch.setattr(payslip_render, "unicode_font", lambda: None)
    pdf = render_pdf(read(pw, "ana"))
    assert pdf.startswith(b"%PDF-")
    assert b"/FontFile2" not in pdf
    assert b"Helvetica" in pdf


def queries_to_issue(pw: PayrollWorld, run_id: uuid.UUID) -> tuple[int, int]:
    """(payslips issued, SQL statements it took)."""
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(pw.database.engine, "before_cursor_execute", listener)
    try:
        issued = issue(pw, run_id)
    finally:
        event.remove(pw.database.engine, "before_cursor_execute", listener)
    return issued, len(seen)


def test_issuing_takes_the_same_few_statements_however_many_specialists(pw, database):
    """Set-based: 20 more paid specialists cost not one more query."""
    few = queries_to_issue(pw, posted(pw))
    many = build_payroll_world(database, "initech")
    for i in range(20):
        add_specialist(many, f"s{i}", "EUR")
        bank_details(many, f"s{i}", iban=f"DE{i:02d}370400440532013000")
        earn(many, f"s{i}", 1_000 + i, "EUR")
        earn(many, f"s{i}", 500, "USD")
    issued, statements_taken = queries_to_issue(many, posted(many))
    assert (few[0], issued) == (3, 23)
    assert statements_taken == few[1], (few, statements_taken)


def test_a_large_run_is_issued_chunk_by_chunk_with_the_same_outcome(pw, monkeypatch):
    """Memory stays bounded by the chunk, not by the month: a chunk of 2 issues all three."""
    monkeypatch.setattr(payslips, "CHUNK", 2)
    run_id = posted(pw)
    assert issue(pw, run_id) == 3
    assert issue(pw, run_id) == 0
    (ana,) = statements(pw, "ana")
    assert ana.total_minor == 147_747


@pytest.mark.parametrize("currency", ["EUR", "JPY", "KWD", "CLF"])
def test_payslip_amounts_read_exactly_as_format_minor_writes_them(currency):
    from quire.money import MAX_AMOUNT_MINOR, format_minor

    for amount in (0, 1, -1, 5, -5, 99, -100, 12_345, -12_345, 999_999, MAX_AMOUNT_MINOR):
        for signed in (amount, -amount):
            assert payslips.money(signed, currency) == format_minor(signed, currency)
