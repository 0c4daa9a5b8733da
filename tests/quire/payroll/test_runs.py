"""A run's life in the domain: one live run per period (the database decides), rates fixed once,
approval once, posting all or nothing and never twice, corrections by reversal."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from ledger import chart
from ledger.balances import trial_balance
from ledger.models import Account, AccountKind, Transfer
from quire.audit.models import AuditEntry
from quire.errors import Conflict
from quire.payroll import corrections, lines, runs
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from tests.quire.payroll.support import RATES, PayrollWorld, build_payroll_world, this_period


@pytest.fixture
def pw(database) -> PayrollWorld:
    return build_payroll_world(database, "acme")


def finance(pw: PayrollWorld, name: str = "finance"):
    return pw.world.people[name].actor


def second_finance(pw: PayrollWorld):
    from quire.people.actor import Actor
    from quire.people.models import User

    with pw.database.session(pw.tenant_id) as session:
        user = session.scalar(select(User).where(User.email == f"finance2@{pw.world.slug}.test"))
        return Actor(user.id, pw.tenant_id, frozenset(user.roles))


def open_and_compute(pw: PayrollWorld, *, dry_run: bool = False) -> uuid.UUID:
    """What the flow does before the approval, without Prefect: open, fix rates, compute, keep."""
    with pw.database.session(pw.tenant_id, write=True) as session:
        run = runs.open_run(session, finance(pw), period=this_period(), dry_run=dry_run)
        runs.fix_rates(session, run.id, RATES.to_json())
        frame = lines.compute(
            session,
            run_id=run.id,
            period=run.period,
            attempt=run.attempt,
            cutoff=run.cutoff_at,
            as_of=run.created_at,
            cooling_days=14,
            minimums={"EUR": 500},
            rate=RATES.rate,
            rate_source=RATES.source_label,
        )
        runs.store_lines(session, run, frame)
        runs.record_gate(session, run.id, {"success": True, "failed": []})
        runs.await_approval(session, run.id)
        return run.id


def approve_and_post(pw: PayrollWorld, run_id: uuid.UUID) -> PayrollRun:
    with pw.database.session(pw.tenant_id, write=True) as session:
        runs.decide(session, run_id, second_finance(pw), approve=True, comment="ok")
    with pw.database.session(pw.tenant_id, write=True) as session:
        return runs.post(session, run_id)


def payable(pw: PayrollWorld, name: str, currency: str) -> int:
    with pw.database.session(pw.tenant_id) as session:
        account = chart.account(session, AccountKind.SPECIALIST_PAYABLE, currency, pw.id(name))
        return -account.balance


def clearing(pw: PayrollWorld, currency: str) -> int:
    with pw.database.session(pw.tenant_id) as session:
        return -chart.account(session, AccountKind.PAYOUT_CLEARING, currency).balance


def test_a_run_is_a_new_attempt_for_its_period_and_is_audited(pw):
    run_id = open_and_compute(pw)
    with pw.database.session(pw.tenant_id) as session:
        run = runs.get_run(session, run_id)
        assert (run.attempt, run.status, run.started_by) == (
            1,
            RunStatus.AWAITING_APPROVAL,
            pw.world.finance.id,
        )
        started = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "payroll_run.started")
        ).all()
        assert [e.object_id for e in started] == [str(run_id)]


def test_a_second_run_for_a_period_in_progress_is_refused(pw):
    open_and_compute(pw)
    with pytest.raises(Conflict) as refused, pw.database.session(pw.tenant_id, write=True) as s:
        runs.open_run(s, finance(pw), period=this_period())
    assert refused.value.code == "payroll_in_progress"


def test_a_dry_run_may_run_beside_the_real_one(pw):
    open_and_compute(pw)
    with pw.database.session(pw.tenant_id, write=True) as session:
        dry = runs.open_run(session, finance(pw), period=this_period(), dry_run=True)
    assert dry.attempt == 2


def test_a_rejected_run_frees_the_period_for_a_new_attempt(pw):
    run_id = open_and_compute(pw)
    with pw.database.session(pw.tenant_id, write=True) as session:
        runs.decide(session, run_id, second_finance(pw), approve=False, comment="wrong month")
    with pw.database.session(pw.tenant_id, write=True) as session:
        again = runs.open_run(session, finance(pw), period=this_period())
    assert again.attempt == 2
    assert payable(pw, "ana", "EUR") == 120_000  # nothing was posted


def test_a_paid_period_cannot_be_run_again(pw):
    approve_and_post(pw, open_and_compute(pw))
    with pytest.raises(Conflict) as refused, pw.database.session(pw.tenant_id, write=True) as s:
        runs.open_run(s, finance(pw), period=this_period())
    assert refused.value.code == "period_already_paid"


def test_rates_are_fixed_once_a_rerun_keeps_the_first(pw):
    run_id = open_and_compute(pw)
    fresh = {**RATES.to_json(), "rates": {**RATES.to_json()["rates"], "USD": "2.0"}}
    with pw.database.session(pw.tenant_id, write=True) as session:
        kept = runs.fix_rates(session, run_id, fresh)
    assert kept["rates"]["USD"] == "1.0812"


def test_posting_moves_every_payable_line_into_clearing_in_one_batch(pw):
    run = approve_and_post(pw, open_and_compute(pw))
    assert run.status == RunStatus.POSTED
    assert payable(pw, "ana", "EUR") == 0
    assert payable(pw, "ana", "USD") == 0
    assert payable(pw, "holly", "EUR") == 40_000  # held: stays owed
    assert clearing(pw, "EUR") == 120_000 + 27_747
    assert clearing(pw, "JPY") == 81_175
    assert clearing(pw, "KWD") == 76_790
    with pw.database.session(pw.tenant_id) as session:
        assert all(v == 0 for v in trial_balance(session).values())
        posted = session.scalars(
            select(PayrollLine).where(PayrollLine.status == LineStatus.POSTED)
        ).all()
        assert len(posted) == 4
        fx = [line for line in posted if line.source_currency != line.payout_currency]
        assert all(len(line.transfer_ids) == 2 for line in fx)  # out of the source, into clearing


def test_posting_a_posted_run_posts_nothing(pw):
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with pw.database.session(pw.tenant_id) as session:
        before = session.scalar(select(func.count()).select_from(Transfer))
    with pw.database.session(pw.tenant_id, write=True) as session:
        runs.post(session, run_id)
    with pw.database.session(pw.tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(Transfer)) == before


def test_posting_is_idempotent_by_line_even_if_the_run_state_was_lost(pw):
    """The transfers are keyed by (period, attempt, specialist, currency): posting again the same
    lines (e.g. a replay after a crash between the ledger and the run's state) finds them."""
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with pw.database.session(pw.tenant_id, write=True) as session:
        run = runs.get_run(session, run_id)
        posted = session.scalars(select(PayrollLine).where(PayrollLine.run_id == run_id)).all()
        keys = [runs.payout_key(run, line) for line in posted if line.status == LineStatus.POSTED]
        found = session.scalars(
            select(Transfer.idempotency_key).where(
                Transfer.idempotency_key.in_(keys + [f"{k}:fx-in" for k in keys])
            )
        ).all()
    assert len(found) == 4  # two same-currency lines by key, two FX lines by their :fx-in leg


def test_an_unapproved_run_is_not_posted(pw):
    run_id = open_and_compute(pw)
    with pytest.raises(Conflict), pw.database.session(pw.tenant_id, write=True) as session:
        runs.post(session, run_id)


def test_a_line_whose_payable_shrank_since_the_preview_is_withheld_not_overpaid(pw):
    """A fine after the preview: that line waits (never pay more than is owed); the rest posts."""
    from ledger.posting import Leg, TransferSpec, post

    run_id = open_and_compute(pw)
    with pw.database.session(pw.tenant_id, write=True) as session:
        runs.decide(session, run_id, second_finance(pw), approve=True, comment="")
        ana = chart.account(session, AccountKind.SPECIALIST_PAYABLE, "EUR", pw.id("ana"))
        fines = chart.account(session, AccountKind.FINES_INCOME, "EUR")
        post(
            session,
            TransferSpec("late_fine", "fine-now", [Leg.debit(ana, 100), Leg.credit(fines, 100)]),
        )
    with pw.database.session(pw.tenant_id, write=True) as session:
        run = runs.post(session, run_id)
        ana_eur = session.scalar(
            select(PayrollLine).where(
                PayrollLine.run_id == run_id,
                PayrollLine.specialist_id == pw.id("ana"),
                PayrollLine.source_currency == "EUR",
            )
        )
        assert ana_eur.status == LineStatus.WITHHELD
        assert "fell to 119900" in ana_eur.hold_reason
        assert run.totals["payout"]["EUR"]["amount_minor"] == 27_747
    assert payable(pw, "ana", "EUR") == 119_900  # still owed, paid next period
    assert payable(pw, "ken", "EUR") == 0


def test_a_specialist_held_after_the_preview_is_not_paid(pw):
    from quire.payroll.models import PayoutDetails

    run_id = open_and_compute(pw)
    with pw.database.session(pw.tenant_id, write=True) as session:
        runs.decide(session, run_id, second_finance(pw), approve=True, comment="")
        details = session.get(PayoutDetails, pw.id("ken"))
        details.on_hold, details.hold_reason = True, "fraud alert"
    with pw.database.session(pw.tenant_id, write=True) as session:
        runs.post(session, run_id, cooling_days=14)
    assert payable(pw, "ken", "EUR") == 50_000
    assert clearing(pw, "JPY") == 0
    assert payable(pw, "ana", "EUR") == 0


def test_no_second_period_while_a_run_is_in_flight(pw):
    open_and_compute(pw)
    with pytest.raises(Conflict) as refused, pw.database.session(pw.tenant_id, write=True) as s:
        runs.open_run(s, finance(pw), period="2099-01")
    assert refused.value.code == "payroll_in_progress"


def test_a_replaced_flow_run_cannot_fail_the_run(pw):
    run_id = open_and_compute(pw)
    current, stale = uuid.uuid4(), uuid.uuid4()
    with pw.database.session(pw.tenant_id, write=True) as session:
        runs.attach_flow_run(session, run_id, current)
        assert runs.fail(session, run_id, "old crash", flow_run_id=stale).status != "failed"
        assert runs.fail(session, run_id, "crash", flow_run_id=current).status == "failed"


def test_reversing_a_line_puts_the_amount_back_in_the_payable(pw):
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with pw.database.session(pw.tenant_id, write=True) as session:
        line = session.scalar(
            select(PayrollLine).where(
                PayrollLine.run_id == run_id,
                PayrollLine.specialist_id == pw.id("ana"),
                PayrollLine.source_currency == "USD",
            )
        )
        corrections.reverse_line(session, finance(pw), run_id, line.id, "returned by the bank")
    assert payable(pw, "ana", "USD") == 30_000
    assert clearing(pw, "EUR") == 120_000
    with pw.database.session(pw.tenant_id, write=True) as session:
        again = corrections.reverse_line(session, finance(pw), run_id, line.id, "again")
        assert again.status == LineStatus.REVERSED
        assert all(v == 0 for v in trial_balance(session).values())
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "payroll_line.reversed")
        ).all()
        assert len(entries) == 1


def test_reversing_a_posted_run_reverses_every_line_and_frees_the_period(pw):
    run_id = open_and_compute(pw)
    approve_and_post(pw, run_id)
    with pw.database.session(pw.tenant_id, write=True) as session:
        run = corrections.reverse_run(session, finance(pw), run_id, "wrong cutoff")
        assert run.status == RunStatus.REVERSED
    assert payable(pw, "ana", "EUR") == 120_000
    assert payable(pw, "ken", "EUR") == 50_000
    for currency in ("EUR", "JPY", "KWD"):
        assert clearing(pw, currency) == 0
    with pw.database.session(pw.tenant_id, write=True) as session:
        assert runs.open_run(session, finance(pw), period=this_period()).attempt == 2


@pytest.mark.postgres
def test_two_starts_of_one_period_at_once_make_one_run(pg_url):
    """The live-run index decides the race, not a read before the write."""
    from migrations.upgrade import upgrade
    from quire.db import Database

    database = Database(pg_url)
    upgrade(database)
    pw = build_payroll_world(database, "racers")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start() -> None:
        try:
            with database.session(pw.tenant_id, write=True) as session:
                session.scalar(select(func.count()).select_from(Account))
                barrier.wait()
                runs.open_run(session, finance(pw), period=this_period())
            outcomes.append("opened")
        except Conflict as refused:
            outcomes.append(refused.code)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.dispose()
    assert sorted(outcomes) == ["opened", "payroll_in_progress"]


def test_a_run_that_never_got_a_flow_run_is_found_for_maintenance(pw):
    import datetime as dt

    from quire.db import utcnow

    with pw.database.session(pw.tenant_id, write=True) as session:
        orphan = runs.open_run(session, finance(pw), period=this_period())
    assert (pw.tenant_id, orphan.id) in runs.never_started(pw.database, utcnow() + dt.timedelta(1))
    assert runs.never_started(pw.database, utcnow() - dt.timedelta(hours=1)) == []
