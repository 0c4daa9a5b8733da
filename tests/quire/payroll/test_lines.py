"""A run's lines: one per (specialist, source currency), converted per pair in integer
arithmetic exactly as the ledger converts, withheld (with the reason) when they cannot be paid."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal

import pandas as pd
import pytest

from ledger import chart
from ledger.fx import convert_minor
from ledger.models import AccountKind, Entry
from ledger.posting import Leg, TransferSpec, post
from quire.db import Database, utcnow
from quire.payroll import lines, periods
from quire.payroll.models import LineStatus
from tests.quire.payroll.support import (
    RATES,
    PayrollWorld,
    build_payroll_world,
    earn,
    line_of,
    payroll_profile,
    this_period,
)


@pytest.fixture
def pw(database: Database) -> PayrollWorld:
    return build_payroll_world(database, "acme")


def compute(pw: PayrollWorld, *, minimums: dict[str, int] | None = None, period: str | None = None):
    period = period or this_period()
    with pw.database.session(pw.tenant_id) as session:
        return lines.compute(
            session,
            run_id=uuid.uuid4(),
            period=period,
            attempt=1,
            cutoff=periods.cutoff(period, "Europe/Berlin"),
            as_of=utcnow(),
            cooling_days=14,
            minimums={"EUR": 500} if minimums is None else minimums,
            rate=RATES.rate,
            rate_source=RATES.source_label,
        )


def test_one_line_per_specialist_and_source_currency_with_every_column_the_gate_reads(pw):
    frame = compute(pw)
    assert list(frame.columns) == lines.COLUMNS
    assert not frame.duplicated(["specialist_id", "source_currency"]).any()
    assert len(frame) == 8  # ana twice (EUR, USD), everyone else once


def test_a_same_currency_line_pays_the_payable(pw):
    ana = line_of(compute(pw), "ana", pw, "EUR")
    assert (ana["payable_minor"], ana["payout_minor"], ana["fx_rate"]) == (120_000, 120_000, "1")
    assert ana["status"] == LineStatus.PAYABLE
    assert ana["sepa"]


def test_a_second_source_currency_is_converted_into_the_payout_currency(pw):
    usd = line_of(compute(pw), "ana", pw, "USD")
    rate = RATES.rate("USD", "EUR")
    assert usd["payout_currency"] == "EUR"
    assert Decimal(usd["fx_rate"]) == rate
    assert usd["payout_minor"] == convert_minor(30_000, "USD", "EUR", rate) == 27_747


def test_jpy_has_no_decimals(pw):
    ken = line_of(compute(pw), "ken", pw, "EUR")
    assert ken["payout_currency"] == "JPY"
    assert ken["payout_minor"] == 81_175  # 500.00 EUR at 162.35
    assert ken["scheme"] == "local"
    assert not ken["sepa"]


def test_kwd_has_three_decimals_and_a_cross_rate_goes_through_eur(pw):
    fatima = line_of(compute(pw), "fatima", pw, "USD")
    rate = RATES.rate("USD", "KWD")
    assert rate == Decimal("0.3071587125")  # 0.3321 / 1.0812, ten significant digits
    assert fatima["payout_minor"] == convert_minor(25_000, "USD", "KWD", rate) == 76_790
    assert "via EUR" in fatima["fx_source"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("holly", "on hold: contract dispute"),
        ("chris", "bank details changed recently: held for review until"),
        ("nadia", "no bank details"),
        ("tim", "under the minimum payout of EUR 5.00"),
    ],
)
def test_withheld_lines_say_why_and_pay_nothing(pw, name, reason):
    line = line_of(compute(pw), name, pw, "EUR")
    assert line["status"] == LineStatus.WITHHELD
    assert line["hold_reason"].startswith(reason)
    assert pd.isna(line["payout_minor"])
    assert line["end_to_end_id"] is None


def test_the_minimum_counts_every_source_currency_together(pw):
    earn(pw, "tim", 250, "USD")  # 3.00 EUR + 2.50 USD (~2.31 EUR) > 5.00 EUR
    frame = compute(pw)
    assert line_of(frame, "tim", pw, "EUR")["status"] == LineStatus.PAYABLE
    assert line_of(frame, "tim", pw, "USD")["status"] == LineStatus.PAYABLE


def test_no_minimum_pays_small_amounts(pw):
    assert line_of(compute(pw, minimums={}), "tim", pw, "EUR")["status"] == LineStatus.PAYABLE


def test_earnings_effective_after_the_cutoff_wait_for_the_next_period(pw, database):
    period = this_period()
    later = periods.cutoff(period, "Europe/Berlin") + dt.timedelta(hours=1)
    with database.session(pw.tenant_id, write=True) as session:
        payable = chart.account(session, AccountKind.SPECIALIST_PAYABLE, "EUR", pw.id("ana"))
        receivable = chart.account(session, AccountKind.CLIENT_RECEIVABLE, "EUR")
        post(
            session,
            TransferSpec(
                kind="earnings",
                idempotency_key="late-earnings",
                legs=[Leg.debit(receivable, 9_999), Leg.credit(payable, 9_999)],
                effective_at=later,
            ),
        )
    assert line_of(compute(pw), "ana", pw, "EUR")["payable_minor"] == 120_000


def test_debits_after_the_cutoff_still_reduce_the_line(pw, database):
    """A fine posted after the cutoff is taken into account: never pay more than is owed now."""
    later = periods.cutoff(this_period(), "Europe/Berlin") + dt.timedelta(hours=1)
    with database.session(pw.tenant_id, write=True) as session:
        payable = chart.account(session, AccountKind.SPECIALIST_PAYABLE, "EUR", pw.id("ana"))
        fines = chart.account(session, AccountKind.FINES_INCOME, "EUR")
        post(
            session,
            TransferSpec(
                kind="late_fine",
                idempotency_key="fine-after-cutoff",
                legs=[Leg.debit(payable, 20_000), Leg.credit(fines, 20_000)],
                effective_at=later,
            ),
        )
    assert line_of(compute(pw), "ana", pw, "EUR")["payable_minor"] == 100_000


def test_selected_totals_are_the_sum_of_the_payables_per_currency(pw):
    period = this_period()
    with pw.database.session(pw.tenant_id) as session:
        totals = lines.selected_totals(session, periods.cutoff(period, "Europe/Berlin"))
    frame = compute(pw)
    assert totals == frame.groupby("source_currency")["payable_minor"].sum().astype(int).to_dict()
    assert totals == {"EUR": 227_300, "USD": 55_000}


def test_end_to_end_ids_are_deterministic_and_fit_iso_20022(pw):
    first, second = compute(pw), compute(pw)
    ids = first["end_to_end_id"].dropna()
    assert ids.tolist() == second["end_to_end_id"].dropna().tolist()
    assert ids.is_unique
    assert all(len(i) <= 35 for i in ids)


def test_a_tenant_sees_only_its_own_payables(pw, database):
    other = build_payroll_world(database, "rivalco")
    payroll_profile(other)
    frame = compute(pw)
    assert set(frame["specialist_id"]) == {str(p.id) for p in pw.specialists.values()}


def test_vectorised_conversion_is_exactly_the_ledgers(pw):
    rng = random.Random(7)
    for source, target in [("EUR", "JPY"), ("JPY", "KWD"), ("USD", "GBP"), ("KWD", "USD")]:
        rate = RATES.rate(source, target)
        amounts = [rng.randint(1, 10**13) for _ in range(500)] + [1, 2, 5, 50]
        converted = lines.convert(pd.Series(amounts), source, target, rate).tolist()
        assert converted == [convert_minor(a, source, target, rate) for a in amounts]


def test_computing_reads_the_ledger_with_one_aggregate_not_a_query_per_specialist(pw):
    """Set-based: a handful of statements whatever the number of specialists."""
    from sqlalchemy import event

    statements: list[str] = []
    engine = pw.database.engine

    def count(*args):  # type: ignore[no-untyped-def]
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        compute(pw)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len([s for s in statements if Entry.__tablename__ in s]) == 1
    assert len(statements) <= 3
