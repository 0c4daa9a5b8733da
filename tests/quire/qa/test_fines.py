"""The late-fine policy: per started day late, after a grace period, capped; integer minor units."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from quire.money import UnknownCurrency
from quire.qa.fines import LateFinePolicy, assess_late_fine, days_late
from quire.settings import Settings

DEADLINE = dt.datetime(2030, 5, 1, 17, 0, tzinfo=dt.UTC)
DEFAULT = LateFinePolicy()  # no grace, 5% per started day, capped at 50%


def fine_of(
    fee_minor: int,
    currency: str,
    submitted_at: dt.datetime,
    deadline: dt.datetime,
    policy: LateFinePolicy,
) -> int:
    """The fine's amount alone (minor units), as most rules below are stated."""
    return assess_late_fine(fee_minor, currency, submitted_at, deadline, policy).amount_minor


def after(**delta: float) -> dt.datetime:
    return DEADLINE + dt.timedelta(**delta)


def test_on_time_costs_nothing():
    assert fine_of(25_000, "USD", DEADLINE, DEADLINE, DEFAULT) == 0
    assert fine_of(25_000, "USD", after(hours=-5), DEADLINE, DEFAULT) == 0


@pytest.mark.parametrize(
    ("submitted", "days"),
    [
        (after(seconds=1), 1),
        (after(hours=23, minutes=59), 1),
        (after(days=1), 1),
        (after(days=1, seconds=1), 2),
        (after(days=3, hours=2), 4),
    ],
)
def test_every_started_day_counts(submitted, days):
    assert days_late(submitted, DEADLINE) == days
    assert fine_of(10_000, "EUR", submitted, DEADLINE, DEFAULT) == 500 * days


def test_the_fine_never_exceeds_the_cap():
    assert fine_of(10_000, "EUR", after(days=10), DEADLINE, DEFAULT) == 5_000
    assert fine_of(10_000, "EUR", after(days=400), DEADLINE, DEFAULT) == 5_000


def test_within_the_grace_period_there_is_no_fine():
    policy = LateFinePolicy(grace=dt.timedelta(hours=2))
    assert fine_of(10_000, "EUR", after(hours=2), DEADLINE, policy) == 0


def test_past_the_grace_period_days_count_from_the_deadline_itself():
    """Grace forgives a little lateness; it does not move the deadline."""
    policy = LateFinePolicy(grace=dt.timedelta(hours=2))
    assert (
        assess_late_fine(10_000, "EUR", after(hours=2, minutes=1), DEADLINE, policy).amount_minor
        == 500
    )
    assert fine_of(10_000, "EUR", after(hours=25), DEADLINE, policy) == 1_000


def test_rounding_is_half_even_in_minor_units():
    policy = LateFinePolicy(percent_per_day=Decimal("2.5"))
    # 2.5% of 1,010 = 25.25 -> 25; 2.5% of 1,030 = 25.75 -> 26
    assert fine_of(1_010, "USD", after(hours=1), DEADLINE, policy) == 25
    assert fine_of(1_030, "USD", after(hours=1), DEADLINE, policy) == 26
    # exact halves go to the even neighbour: 5% of 10 = 0.5 -> 0, 5% of 30 = 1.5 -> 2
    assert fine_of(10, "USD", after(hours=1), DEADLINE, DEFAULT) == 0
    assert fine_of(30, "USD", after(hours=1), DEADLINE, DEFAULT) == 2


def test_amounts_are_minor_units_whatever_the_currency_exponent():
    assert fine_of(1_000, "JPY", after(hours=1), DEADLINE, DEFAULT) == 50
    assert fine_of(1_000, "BHD", after(hours=1), DEADLINE, DEFAULT) == 50


def test_the_assessment_explains_the_fine():
    fine = assess_late_fine(20_000, "USD", after(days=2, hours=1), DEADLINE, DEFAULT)
    assert (fine.amount_minor, fine.days_late, fine.percent, fine.applies) == (
        3_000,
        3,
        Decimal(15),
        True,
    )


@pytest.mark.parametrize(
    ("fee", "currency"), [(0, "USD"), (-5, "USD"), (True, "USD"), (100, "usd"), (100, "XAU")]
)
def test_bad_amounts_and_currencies_are_refused(fee, currency):
    with pytest.raises((ValueError, UnknownCurrency)):
        fine_of(fee, currency, after(days=1), DEADLINE, DEFAULT)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        fine_of(100, "USD", dt.datetime(2030, 5, 2), DEADLINE, DEFAULT)


@pytest.mark.parametrize(
    "values",
    [
        {"percent_per_day": Decimal(-1)},
        {"cap_percent": Decimal(101)},
        {"grace": dt.timedelta(hours=-1)},
        {"surprise": 1},
    ],
)
def test_nonsense_policies_are_refused(values):
    with pytest.raises(ValidationError):
        LateFinePolicy(**values)


@given(
    fee=st.integers(min_value=1, max_value=10**13),
    late_seconds=st.integers(min_value=-(10**7), max_value=10**8),
    per_day=st.decimals(min_value=0, max_value=100, places=2),
    cap=st.decimals(min_value=0, max_value=100, places=2),
)
def test_a_fine_is_a_whole_non_negative_amount_never_above_the_cap(fee, late_seconds, per_day, cap):
    policy = LateFinePolicy(percent_per_day=per_day, cap_percent=cap)
    fine = fine_of(fee, "USD", after(seconds=late_seconds), DEADLINE, policy)
    assert isinstance(fine, int)
    assert 0 <= fine <= fee
    assert fine <= fee * cap / 100 + Decimal("0.5")


def test_settings_describe_the_policy():
    settings = Settings(
        _env_file=None,
        QUIRE_LATE_FINE_GRACE_HOURS="1.5",
        QUIRE_LATE_FINE_PERCENT_PER_DAY="2.5",
        QUIRE_LATE_FINE_CAP_PERCENT="20",
    )
    assert LateFinePolicy.from_settings(settings) == LateFinePolicy(
        grace=dt.timedelta(minutes=90), percent_per_day=Decimal("2.5"), cap_percent=Decimal(20)
    )
    assert LateFinePolicy.from_settings(Settings(_env_file=None)) == DEFAULT
