"""Posting, as a specification: what `post`, `post_batch`, `reverse`, the FX conversion, the
business events and the balance read-outs promise. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger import balances, business, chart, fx
from ledger.models import Account, Entry, Transfer
from ledger.posting import (
    IdempotencyConflict,
    InsufficientFunds,
    Leg,
    TransferSpec,
    Unbalanced,
    post,
    post_batch,
    reverse,
)
from quire.errors import Conflict, Invalid, NotFound
from tests.ledger.support import K, audit, balances_by_id, count_rows, new_tenant, rows

SPECIALIST = uuid.UUID("00000000-0000-4000-8000-000000000001")


def spec(key: str, *legs: Leg, kind: str = "adjustment", **fields: Any) -> TransferSpec:
    return TransferSpec(kind=kind, idempotency_key=key, legs=list(legs), **fields)


@pytest.fixture
def usd(database, tenant):
    """A few USD accounts of one tenant: bank, revenue, receivable, a specialist's payable."""
    with database.session(tenant, write=True) as s:
        return {
            "bank": chart.account(s, K.BANK, "USD").id,
            "revenue": chart.account(s, K.PLATFORM_REVENUE, "USD").id,
            "receivable": chart.account(s, K.CLIENT_RECEIVABLE, "USD").id,
            "payable": chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALIST).id,
            "clearing": chart.account(s, K.PAYOUT_CLEARING, "USD").id,
        }


def earn(database, tenant, gross: int, *, currency: str = "USD", fee_bps: int = 0) -> Transfer:
    with database.session(tenant, write=True) as s:
        return business.post_earnings(
            s,
            order_id=uuid.uuid4(),
            specialist_id=SPECIALIST,
            gross_minor=gross,
            currency=currency,
            fee_bps=fee_bps,
        )


def payable_balance(database, tenant, currency: str = "USD") -> int:
    """What the specialist is owed, on the payable's normal (credit) side."""
    with database.session(tenant, write=True) as s:
        payable = chart.account(s, K.SPECIALIST_PAYABLE, currency, SPECIALIST)
        return balances.normal_balance(payable, payable.balance)


# --- batches are all-or-nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (lambda a: spec("bad", Leg.debit(a["bank"], 5), Leg.credit(a["revenue"], 4)), Unbalanced),
        (lambda a: spec("bad", Leg.debit(a["bank"], 5), Leg.credit(uuid.uuid4(), 5)), NotFound),
        (lambda a: spec("bad", Leg.debit(a["bank"], 5)), Invalid),
        (
            lambda a: spec("bad", Leg.debit(a["payable"], 1), Leg.credit(a["bank"], 1)),
            InsufficientFunds,
        ),
    ],
    ids=["unbalanced", "unknown-account", "one-leg", "forbidden-negative"],
)
def test_one_bad_transfer_in_a_batch_means_nothing_of_the_batch_is_written(
    database, tenant, usd, bad, error
):
    good = [
        spec(
            f"good-{i}", Leg.debit(usd["receivable"], 100 + i), Leg.credit(usd["revenue"], 100 + i)
        )
        for i in range(3)
    ]
    before = balances_by_id(database, tenant)
    with pytest.raises(error), database.session(tenant, write=True) as s:
        post_batch(s, [good[0], good[1], bad(usd), good[2]])
    assert count_rows(database, tenant) == (0, 0)
    assert balances_by_id(database, tenant) == before


def test_a_batch_nets_its_deltas_so_an_account_may_dip_inside_it_but_not_end_negative(
    database, tenant, usd
):
    """The no_negative rule is checked once per batch, on the batch's net effect per account."""
    with database.session(tenant, write=True) as s:
        post_batch(
            s,
            [
                spec("pay-first", Leg.debit(usd["payable"], 70), Leg.credit(usd["clearing"], 70)),
                spec(
                    "earn-later", Leg.debit(usd["receivable"], 100), Leg.credit(usd["payable"], 100)
                ),
            ],
        )
    assert payable_balance(database, tenant) == 30
    audit(database, tenant)


def test_an_empty_batch_posts_nothing(database, tenant):
    with database.session(tenant, write=True) as s:
        assert post_batch(s, []) == []
    assert count_rows(database, tenant) == (0, 0)


# --- idempotency ------------------------------------------------------------------------------


def test_the_same_key_with_the_same_content_returns_the_existing_transfer(database, tenant, usd):
    transfer = spec("order-1", Leg.debit(usd["receivable"], 250), Leg.credit(usd["revenue"], 250))
    with database.session(tenant, write=True) as s:
        first = post(s, transfer)
    before = balances_by_id(database, tenant)
    with database.session(tenant, write=True) as s:
        again = post(s, transfer)
        in_batch = post_batch(s, [transfer, transfer])
    assert again.id == first.id
    assert [t.id for t in in_batch] == [first.id, first.id]
    assert count_rows(database, tenant) == (1, 2)
    assert balances_by_id(database, tenant) == before


def test_the_same_key_with_different_content_is_refused_and_nothing_is_written(
    database, tenant, usd
):
    with database.session(tenant, write=True) as s:
        post(s, spec("order-1", Leg.debit(usd["receivable"], 250), Leg.credit(usd["revenue"], 250)))
    before = balances_by_id(database, tenant)
    different = spec("order-1", Leg.debit(usd["receivable"], 251), Leg.credit(usd["revenue"], 251))
    fresh = spec("order-2", Leg.debit(usd["receivable"], 9), Leg.credit(usd["revenue"], 9))
    with pytest.raises(IdempotencyConflict) as refused, database.session(tenant, write=True) as s:
        post_batch(s, [fresh, different])
    assert refused.value.details == {"key": "order-1"}
    with pytest.raises(IdempotencyConflict), database.session(tenant, write=True) as s:
        post_batch(s, [fresh, fresh.__class__(**{**fresh.__dict__, "reference": "changed"})])
    assert count_rows(database, tenant) == (1, 2)
    assert balances_by_id(database, tenant) == before


def test_an_idempotency_key_belongs_to_one_tenant(database, tenant, usd):
    other = new_tenant(database)
    with database.session(other, write=True) as s:
        theirs = post(
            s,
            spec(
                "order-1",
                Leg.debit(chart.account(s, K.BANK, "USD"), 7),
                Leg.credit(chart.account(s, K.PLATFORM_REVENUE, "USD"), 7),
            ),
        )
    with database.session(tenant, write=True) as s:
        ours = post(s, spec("order-1", Leg.debit(usd["bank"], 3), Leg.credit(usd["revenue"], 3)))
    assert ours.id != theirs.id
    audit(database, tenant)
    audit(database, other)


# --- validation -------------------------------------------------------------------------------


def test_an_unbalanced_transfer_is_refused_with_its_imbalance_per_currency(database, tenant, usd):
    with database.session(tenant, write=True) as s:
        yen_bank = chart.account(s, K.BANK, "JPY").id
        yen_revenue = chart.account(s, K.PLATFORM_REVENUE, "JPY").id
    legs = [
        Leg.debit(usd["bank"], 1_000),
        Leg.credit(usd["revenue"], 995),
        Leg.debit(yen_bank, 300),
        Leg.credit(yen_revenue, 303),
    ]
    with pytest.raises(Unbalanced) as refused, database.session(tenant, write=True) as s:
        post(s, spec("fx-typo", *legs))
    assert refused.value.code == "unbalanced_transfer"
    assert refused.value.details == {"imbalance": {"USD": 5, "JPY": -3}}
    assert "JPY off by -3" in str(refused.value)
    assert "USD off by 5" in str(refused.value)
    assert count_rows(database, tenant) == (0, 0)


def test_two_currencies_that_each_balance_make_a_valid_transfer(database, tenant, usd):
    with database.session(tenant, write=True) as s:
        yen_bank = chart.account(s, K.BANK, "JPY")
        yen_revenue = chart.account(s, K.PLATFORM_REVENUE, "JPY")
        post(
            s,
            spec(
                "two-currencies",
                Leg.debit(usd["bank"], 1_000),
                Leg.credit(usd["revenue"], 1_000),
                Leg.debit(yen_bank, 151),
                Leg.credit(yen_revenue, 151),
            ),
        )
    audit(database, tenant)


@pytest.mark.parametrize(
    ("legs", "code"),
    [
        (lambda a: [Leg.debit(a["bank"], 0), Leg.credit(a["revenue"], 0)], "invalid_amount"),
        (lambda a: [Leg.debit(a["bank"], 10)], "too_few_entries"),
        (lambda a: [], "too_few_entries"),
        (lambda a: [Leg(a["bank"], 1.5), Leg(a["revenue"], -1.5)], "invalid_amount"),  # type: ignore[arg-type]
        (lambda a: [Leg(a["bank"], True), Leg(a["revenue"], -1)], "invalid_amount"),
        (
            lambda a: [Leg.debit(a["bank"], 10**14), Leg.credit(a["revenue"], 10**14)],
            "invalid_amount",
        ),
    ],
    ids=["zero", "one-leg", "no-legs", "float", "bool", "absurd"],
)
def test_malformed_transfers_are_refused_with_a_clear_code(database, tenant, usd, legs, code):
    with pytest.raises(Invalid) as refused, database.session(tenant, write=True) as s:
        post(s, spec("malformed", *legs(usd)))
    assert refused.value.code == code
    assert count_rows(database, tenant) == (0, 0)


@pytest.mark.parametrize(
    ("key", "kind", "code"),
    [
        ("", "adjustment", "invalid_idempotency_key"),
        ("k" * 201, "adjustment", "invalid_idempotency_key"),
        ("key", "", "invalid_kind"),
        ("key", "k" * 33, "invalid_kind"),
    ],
    ids=["empty-key", "long-key", "empty-kind", "long-kind"],
)
def test_keys_and_kinds_must_be_sensible(database, tenant, usd, key, kind, code):
    with pytest.raises(Invalid) as refused, database.session(tenant, write=True) as s:
        post(s, spec(key, Leg.debit(usd["bank"], 1), Leg.credit(usd["revenue"], 1), kind=kind))
    assert refused.value.code == code


def test_an_unknown_account_is_refused_by_name(database, tenant, usd):
    ghost = uuid.uuid4()
    with pytest.raises(NotFound) as refused, database.session(tenant, write=True) as s:
        post(s, spec("ghost", Leg.debit(usd["bank"], 1), Leg.credit(ghost, 1)))
    assert refused.value.code == "account_not_found"
    assert str(ghost) in str(refused.value)


def test_another_tenants_account_looks_exactly_like_an_unknown_one(database, tenant, usd):
    other = new_tenant(database)
    with database.session(other, write=True) as s:
        theirs = chart.account(s, K.PLATFORM_REVENUE, "USD").id
    with pytest.raises(NotFound) as refused, database.session(tenant, write=True) as s:
        post(s, spec("steal", Leg.debit(usd["bank"], 1), Leg.credit(theirs, 1)))
    assert refused.value.code == "account_not_found"
    assert count_rows(database, tenant) == (0, 0)
    assert count_rows(database, other) == (0, 0)


def test_entries_carry_their_accounts_currency_and_the_balance_follows_them(database, tenant, usd):
    with database.session(tenant, write=True) as s:
        transfer = post(
            s, spec("t", Leg.debit(usd["bank"], 42), Leg.credit(usd["revenue"], 42), reference="r")
        )
        entries = s.scalars(select(Entry).where(Entry.transfer_id == transfer.id)).all()
        assert sorted((e.account_id, e.amount, e.currency) for e in entries) == sorted(
            [(usd["bank"], 42, "USD"), (usd["revenue"], -42, "USD")]
        )
        assert {e.effective_at for e in entries} == {transfer.effective_at}
    assert balances_by_id(database, tenant)[usd["bank"]] == 42
    assert balances_by_id(database, tenant)[usd["revenue"]] == -42


# --- reversals --------------------------------------------------------------------------------


def test_a_reversal_mirrors_the_original_references_it_and_leaves_it_untouched(
    database, tenant, usd
):
    original_spec = spec(
        "order-7",
        Leg.debit(usd["receivable"], 1_000),
        Leg.credit(usd["payable"], 850),
        Leg.credit(usd["revenue"], 150),
        reference="order:7",
    )
    with database.session(tenant, write=True) as s:
        original = post(s, original_spec)
    with database.session(tenant, write=True) as s:
        reversal = reverse(s, original.id, reason="order cancelled")
        legs = dict(
            rows(s, select(Entry.account_id, Entry.amount).where(Entry.transfer_id == reversal.id))
        )
        kept = dict(
            rows(s, select(Entry.account_id, Entry.amount).where(Entry.transfer_id == original.id))
        )
    assert reversal.reverses_id == original.id
    assert (reversal.kind, reversal.reference) == ("reversal", "order:7")
    assert reversal.meta == {"reason": "order cancelled"}
    assert kept == {usd["receivable"]: 1_000, usd["payable"]: -850, usd["revenue"]: -150}
    assert legs == {account: -amount for account, amount in kept.items()}
    assert balances_by_id(database, tenant) == {}
    audit(database, tenant)


def test_reversing_twice_returns_the_first_reversal_and_writes_nothing_more(database, tenant, usd):
    with database.session(tenant, write=True) as s:
        original = post(s, spec("o", Leg.debit(usd["bank"], 10), Leg.credit(usd["revenue"], 10)))
    with database.session(tenant, write=True) as s:
        first = reverse(s, original.id, reason="duplicate")
    with database.session(tenant, write=True) as s:
        second = reverse(s, original.id, reason="duplicate")
    assert second.id == first.id
    assert count_rows(database, tenant) == (2, 4)


def test_reversing_again_with_another_reason_is_refused_and_writes_nothing(database, tenant, usd):
    """A transfer is reversed at most once, whatever the reason given the second time."""
    with database.session(tenant, write=True) as s:
        original = post(s, spec("o", Leg.debit(usd["bank"], 10), Leg.credit(usd["revenue"], 10)))
        reverse(s, original.id, reason="duplicate")
    with pytest.raises(Conflict), database.session(tenant, write=True) as s:
        reverse(s, original.id, reason="changed my mind")
    assert count_rows(database, tenant) == (2, 4)
    assert balances_by_id(database, tenant) == {}


def test_a_reversal_cannot_itself_be_reversed(database, tenant, usd):
    with database.session(tenant, write=True) as s:
        original = post(s, spec("o", Leg.debit(usd["bank"], 10), Leg.credit(usd["revenue"], 10)))
        reversal = reverse(s, original.id)
    with pytest.raises(Conflict) as refused, database.session(tenant, write=True) as s:
        reverse(s, reversal.id)
    assert refused.value.code == "reversal_of_reversal"
    assert count_rows(database, tenant) == (2, 4)


def test_an_unknown_or_foreign_transfer_cannot_be_reversed(database, tenant, usd):
    other = new_tenant(database)
    with database.session(other, write=True) as s:
        theirs = post(
            s,
            spec(
                "theirs",
                Leg.debit(chart.account(s, K.BANK, "USD"), 5),
                Leg.credit(chart.account(s, K.PLATFORM_REVENUE, "USD"), 5),
            ),
        )
    for transfer_id in (uuid.uuid4(), theirs.id):
        with pytest.raises(NotFound) as refused, database.session(tenant, write=True) as s:
            reverse(s, transfer_id)
        assert refused.value.code == "transfer_not_found"
    assert count_rows(database, other) == (1, 2)


def test_reversing_earnings_already_paid_out_is_refused_as_insufficient_funds(
    database, tenant, usd
):
    earnings = earn(database, tenant, 1_000)
    with database.session(tenant, write=True) as s:
        business.initiate_payout(
            s, payout_id="p1", specialist_id=SPECIALIST, amount_minor=600, currency="USD"
        )
    with pytest.raises(InsufficientFunds), database.session(tenant, write=True) as s:
        reverse(s, earnings.id, reason="chargeback")
    assert payable_balance(database, tenant) == 400
    assert count_rows(database, tenant)[0] == 2


# --- balances through time --------------------------------------------------------------------

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_balance_as_of_a_past_moment_counts_only_entries_effective_by_then(database, tenant, usd):
    days = [T0 + dt.timedelta(days=d) for d in (0, 10, 20)]
    with database.session(tenant, write=True) as s:
        for i, (day, amount) in enumerate(zip(days, (100, 250, 400), strict=True)):
            post(
                s,
                spec(
                    f"e{i}",
                    Leg.debit(usd["receivable"], amount),
                    Leg.credit(usd["payable"], amount),
                    effective_at=day,
                ),
            )
    with database.session(tenant) as s:
        payable = usd["payable"]
        assert balances.balance_as_of(s, payable, T0 - dt.timedelta(microseconds=1)) == 0
        assert balances.balance_as_of(s, payable, T0) == -100  # at the instant itself: included
        assert balances.balance_as_of(s, payable, days[1] - dt.timedelta(seconds=1)) == -100
        assert balances.balance_as_of(s, payable, days[1]) == -350
        assert balances.balance_as_of(s, payable, days[2] + dt.timedelta(days=365)) == -750
        assert balances.entries_total(s, payable) == -750
        # an instant given in another timezone is the same instant
        tokyo = dt.timezone(dt.timedelta(hours=9))
        assert balances.balance_as_of(s, payable, days[1].astimezone(tokyo)) == -350


def test_a_statement_shows_normal_side_amounts_with_running_balances_across_pages(
    database, tenant, usd
):
    amounts = [(0, 100), (1, 250), (2, -30), (3, 400), (4, 5), (9, 1_000)]
    with database.session(tenant, write=True) as s:
        for day, owed in amounts:
            legs = (
                [Leg.debit(usd["receivable"], owed), Leg.credit(usd["payable"], owed)]
                if owed > 0
                else [Leg.debit(usd["payable"], -owed), Leg.credit(usd["receivable"], -owed)]
            )
            post(
                s,
                spec(
                    f"d{day}",
                    *legs,
                    reference=f"day {day}",
                    effective_at=T0 + dt.timedelta(days=day),
                ),
            )
    start, end = T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=9)  # [day 1, day 9)
    with database.session(tenant) as s:
        pages, cursor = [], None
        while True:
            page = balances.statement(
                s, usd["payable"], start=start, end=end, after_entry=cursor, limit=2
            )
            pages.append(page)
            cursor = page.next_cursor
            if cursor is None:
                break
    lines = [line for page in pages for line in page.lines]
    assert [(line.reference, line.amount, line.running_balance) for line in lines] == [
        ("day 1", 250, 350),
        ("day 2", -30, 320),
        ("day 3", 400, 720),
        ("day 4", 5, 725),
    ]
    assert {page.opening_balance for page in pages} == {100}
    assert {page.closing_balance for page in pages} == {725}
    assert len(pages) == 2
    assert all(line.kind == "adjustment" for line in lines)


# --- FX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "source", "target", "rate", "expected"),
    [
        (5, "JPY", "USD", Decimal("0.005"), 2),  # 2.5 cents -> 2 (half to even)
        (7, "JPY", "USD", Decimal("0.005"), 4),  # 3.5 cents -> 4
        (1, "USD", "BHD", Decimal("0.25"), 2),  # 2.5 fils -> 2
        (3, "USD", "BHD", Decimal("0.25"), 8),  # 7.5 fils -> 8
        (3333, "USD", "JPY", Decimal("151.2345"), 5041),
        (1_000, "BHD", "JPY", Decimal("397.5"), 398),  # 1 BHD = 397.5 yen -> 398
        (1_500, "JPY", "BHD", Decimal("0.0025"), 3750),
    ],
)
def test_conversion_rounds_half_even_to_the_target_minor_unit(
    amount, source, target, rate, expected
):
    assert fx.convert_minor(amount, source, target, rate) == expected


def test_fx_rounds_each_leg_and_books_the_remainder_so_each_currency_balances(
    database, tenant, usd
):
    """[33.33, 33.34, 0.01] USD at 151.2345: legs 5041 + 5042 + 2 = 10085 yen, but the whole
    66.68 USD is 10084 yen: the 1 yen difference is an FX loss booked to fx_gain_loss."""
    earn(database, tenant, 10_000)
    with database.session(tenant, write=True) as s:
        source = chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALIST)
        target = chart.account(s, K.SPECIALIST_PAYABLE, "JPY", SPECIALIST)
        conversion = fx.convert(
            s,
            key="fx-1",
            source_account=source,
            target_account=target,
            amounts=[3333, 3334, 1],
            rate=Decimal("151.2345"),
            rate_source="ecb:2026-01-02",
            reference="payout in yen",
        )
        assert conversion.converted == [5041, 5042, 2]
        assert conversion.remainder == -1
        legs_in = sorted(
            rows(
                s,
                select(Account.kind, Entry.amount)
                .join(Account, Account.id == Entry.account_id)
                .where(Entry.transfer_id == conversion.in_leg.id),
            )
        )
        legs_out = sorted(
            rows(
                s,
                select(Account.kind, Entry.amount)
                .join(Account, Account.id == Entry.account_id)
                .where(Entry.transfer_id == conversion.out_leg.id),
            )
        )
    assert legs_in == sorted(
        [
            ("fx_liquidity", 10_084),
            ("specialist_payable", -5041),
            ("specialist_payable", -5042),
            ("specialist_payable", -2),
            ("fx_gain_loss", 1),
        ]
    )
    assert legs_out == sorted([("specialist_payable", 6668), ("fx_liquidity", -6668)])
    for leg in (conversion.in_leg, conversion.out_leg):
        assert leg.meta == {
            "rate": "151.2345",
            "rate_source": "ecb:2026-01-02",
            "source_currency": "USD",
            "target_currency": "JPY",
            "conversion": "fx-1",
        }
    assert payable_balance(database, tenant, "USD") == 10_000 - 6668
    assert payable_balance(database, tenant, "JPY") == 10_085
    audit(database, tenant)


def test_fx_rounding_gains_are_credited_to_fx_gain_loss(database, tenant):
    """[1.00, 1.00] USD at 0.0104 BHD: each leg 10.4 fils -> 10, the whole 20.8 -> 21: a gain."""
    earn(database, tenant, 500)
    with database.session(tenant, write=True) as s:
        conversion = fx.convert(
            s,
            key="fx-gain",
            source_account=chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALIST),
            target_account=chart.account(s, K.SPECIALIST_PAYABLE, "BHD", SPECIALIST),
            amounts=[100, 100],
            rate=Decimal("0.0104"),
            rate_source="test",
        )
        gain_loss = chart.account(s, K.FX_GAIN_LOSS, "BHD")
        assert (conversion.converted, conversion.remainder) == ([10, 10], 1)
        assert balances.normal_balance(gain_loss, gain_loss.balance) == 1
    audit(database, tenant)


def test_fx_replays_return_the_same_transfers(database, tenant):
    earn(database, tenant, 10_000)

    def convert():
        with database.session(tenant, write=True) as s:
            return fx.convert(
                s,
                key="fx-replay",
                source_account=chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALIST),
                target_account=chart.account(s, K.SPECIALIST_PAYABLE, "JPY", SPECIALIST),
                amounts=[1_234],
                rate=Decimal("150"),
                rate_source="test",
            )

    first = convert()
    before = balances_by_id(database, tenant)
    again = convert()
    assert (again.out_leg.id, again.in_leg.id) == (first.out_leg.id, first.in_leg.id)
    assert balances_by_id(database, tenant) == before


def test_fx_cannot_convert_more_than_the_payable_holds(database, tenant):
    earn(database, tenant, 1_000)
    before = balances_by_id(database, tenant)
    with pytest.raises(InsufficientFunds), database.session(tenant, write=True) as s:
        fx.convert(
            s,
            key="fx-too-much",
            source_account=chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALIST),
            target_account=chart.account(s, K.SPECIALIST_PAYABLE, "JPY", SPECIALIST),
            amounts=[600, 401],
            rate=Decimal("150"),
            rate_source="test",
        )
    assert count_rows(database, tenant) == (1, 2)
    assert balances_by_id(database, tenant) == before


@pytest.mark.parametrize(
    ("amounts", "rate", "target", "code"),
    [
        ([100], Decimal(0), "JPY", "invalid_rate"),
        ([100], Decimal(-1), "JPY", "invalid_rate"),
        ([100], Decimal("NaN"), "JPY", "invalid_rate"),
        ([100], 1.5, "JPY", "invalid_rate"),
        ([], Decimal(150), "JPY", "invalid_amount"),
        ([100, 0], Decimal(150), "JPY", "invalid_amount"),
        ([100, -5], Decimal(150), "JPY", "invalid_amount"),
        ([1], Decimal("0.4"), "JPY", "amount_too_small"),  # 0.01 USD = 0.004 yen -> 0
        ([100], Decimal(1), "USD", "same_currency"),
    ],
)
def test_fx_refuses_bad_rates_amounts_and_pointless_conversions(
    database, tenant, amounts, rate, target, code
):
    earn(database, tenant, 1_000)
    with pytest.raises(Invalid) as refused, database.session(tenant, write=True) as s:
        fx.convert(
            s,
            key="fx-bad",
            source_account=chart.account(s, K.SPECIALIST_PAYABLE, "USD", SPECIALIST),
            target_account=chart.account(s, K.SPECIALIST_PAYABLE, target, SPECIALIST),
            amounts=amounts,
            rate=rate,
            rate_source="test",
        )
    assert refused.value.code == code
    assert count_rows(database, tenant) == (1, 2)


# --- business events --------------------------------------------------------------------------


def test_earnings_split_the_gross_between_the_specialist_and_the_platform_fee(database, tenant):
    """15% of 10,001 cents is 1500.15 -> 1500; 5% of 50 is 2.5 -> 2 and of 70 is 3.5 -> 4."""
    assert business.platform_fee(10_001, 1500) == 1500
    assert business.platform_fee(50, 500) == 2
    assert business.platform_fee(70, 500) == 4
    transfer = earn(database, tenant, 10_001, fee_bps=1500)
    with database.session(tenant) as s:
        legs = dict(
            rows(
                s,
                select(Account.kind, Entry.amount)
                .join(Account, Account.id == Entry.account_id)
                .where(Entry.transfer_id == transfer.id),
            )
        )
    assert legs == {
        "client_receivable": 10_001,
        "specialist_payable": -8_501,
        "platform_revenue": -1_500,
    }
    assert payable_balance(database, tenant) == 8_501


def test_earnings_whose_fee_takes_everything_post_without_a_zero_payable_leg(database, tenant):
    """3 cents at 90% is a fee of 2.7 -> 3 cents: the specialist earns nothing, the platform all.
    That is a valid business event; a zero entry must not be posted for the specialist."""
    transfer = earn(database, tenant, 3, fee_bps=9000)
    assert transfer.kind == "earnings"
    assert payable_balance(database, tenant) == 0
    audit(database, tenant)


def test_a_payout_cannot_exceed_what_the_specialist_is_owed(database, tenant):
    earn(database, tenant, 10_000, fee_bps=1500)  # owed 8,500
    before = balances_by_id(database, tenant)
    with pytest.raises(InsufficientFunds) as refused, database.session(tenant, write=True) as s:
        business.initiate_payout(
            s, payout_id="p1", specialist_id=SPECIALIST, amount_minor=8_501, currency="USD"
        )
    assert refused.value.code == "insufficient_funds"
    assert count_rows(database, tenant) == (1, 3)
    assert balances_by_id(database, tenant) == before
    with database.session(tenant, write=True) as s:
        business.initiate_payout(
            s, payout_id="p1", specialist_id=SPECIALIST, amount_minor=8_500, currency="USD"
        )
        business.settle_payout(s, payout_id="p1", amount_minor=8_500, currency="USD")
    with database.session(tenant, write=True) as s:
        assert chart.account(s, K.PAYOUT_CLEARING, "USD").balance == 0
        assert chart.account(s, K.BANK, "USD").balance == -8_500  # money left the bank
    assert payable_balance(database, tenant) == 0
    audit(database, tenant)


def test_a_late_fine_cannot_take_more_than_the_specialist_is_owed(database, tenant):
    earn(database, tenant, 1_000)
    with pytest.raises(InsufficientFunds), database.session(tenant, write=True) as s:
        business.post_late_fine(
            s, order_id=uuid.uuid4(), specialist_id=SPECIALIST, amount_minor=1_001, currency="USD"
        )
    with database.session(tenant, write=True) as s:
        business.post_late_fine(
            s, order_id=uuid.uuid4(), specialist_id=SPECIALIST, amount_minor=1_000, currency="USD"
        )
    assert payable_balance(database, tenant) == 0
    audit(database, tenant)


# --- a refusal is all-or-nothing even when the caller carries on ------------------------------


def test_a_refused_payout_leaves_nothing_behind_even_if_the_caller_carries_on(database, tenant):
    """`post_batch` promises 'every transfer or none': a refusal must not leave half a transfer
    in the unit of work for a caller that catches the error and commits its other work."""
    earn(database, tenant, 1_000)
    with database.session(tenant, write=True) as s:
        with pytest.raises(InsufficientFunds):
            business.initiate_payout(
                s, payout_id="p1", specialist_id=SPECIALIST, amount_minor=5_000, currency="USD"
            )
        business.post_late_fine(
            s, order_id=uuid.uuid4(), specialist_id=SPECIALIST, amount_minor=100, currency="USD"
        )
    with database.session(tenant) as s:
        kinds = sorted(s.scalars(select(Transfer.kind)))
        drifted = balances.drifted_accounts(s)
    assert kinds == ["earnings", "late_fine"]
    assert drifted == []


def test_a_refused_replay_leaves_nothing_behind_even_if_the_caller_carries_on(
    database, tenant, usd
):
    with database.session(tenant, write=True) as s:
        post(s, spec("k1", Leg.debit(usd["bank"], 1), Leg.credit(usd["revenue"], 1)))
    with database.session(tenant, write=True) as s:
        with pytest.raises(IdempotencyConflict):
            post_batch(
                s,
                [
                    spec("k2", Leg.debit(usd["bank"], 2), Leg.credit(usd["revenue"], 2)),
                    spec("k1", Leg.debit(usd["bank"], 3), Leg.credit(usd["revenue"], 3)),
                ],
            )
        post(s, spec("k3", Leg.debit(usd["bank"], 4), Leg.credit(usd["revenue"], 4)))
    with database.session(tenant) as s:
        keys = sorted(s.scalars(select(Transfer.idempotency_key)))
        empty = s.scalar(
            select(func.count())
            .select_from(Transfer)
            .where(~select(Entry.id).where(Entry.transfer_id == Transfer.id).exists())
        )
    assert keys == ["k1", "k3"]
    assert empty == 0
