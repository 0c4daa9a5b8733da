"""Computing a run's lines, set-based: one SQL aggregate, one frame, vectorised rules.

    payable per (specialist, source currency) at the cutoff   (one GROUP BY over the entries)
      + who they are and where they are paid                   (one query, merged in pandas)
      -> payout currency, rate and amount                      (per currency pair, not per person)
      -> withheld, and why                                     (column rules, in order)

What a line pays is the payable *as of the cutoff*: earnings effective before the cutoff, minus
every debit whenever it came (a fine or payout after the cutoff still reduces it). So a line is
never more than the payable holds now, and later earnings wait for the next period.

Withheld lines (no specialist profile, on hold, no bank details, bank details changed within
the cooling period, under the minimum payout) are stored too, with their reason; their money
stays in the payable and is computed again next period.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from ledger.models import Account, AccountKind, Entry
from quire.money import exponent, format_minor
from quire.payroll import periods
from quire.payroll.models import LineStatus, PayoutDetails, PayoutScheme
from quire.payroll.payout_details import SEPA_COUNTRIES
from quire.people.models import SpecialistProfile, User

# The frame's columns, as the Great Expectations gate (quire.payroll.expectations) reads them.
COLUMNS = [
    "specialist_id",
    "source_currency",
    "payable_minor",
    "payout_currency",
    "profile_currency",
    "payout_minor",
    "fx_rate",
    "fx_source",
    "status",
    "hold_reason",
    "scheme",
    "iban",
    "account_fingerprint",
    "sepa",
    "end_to_end_id",
    "creditor_name",
    "bic",
    "account_number",
    "bank_code",
    "country",
]

RateOf = Callable[[str, str], Decimal]
SourceOf = Callable[[str, str], str]


def payable_expression(cutoff: dt.datetime) -> object:
    """A specialist payable's balance as of `cutoff` (credit-normal, so negated): credits
    effective before it, debits whenever they came."""
    counted = or_(Entry.amount > 0, Entry.effective_at < cutoff)
    return -func.sum(case((counted, Entry.amount), else_=0))


def payables(session: Session, cutoff: dt.datetime) -> pd.DataFrame:
    """(specialist_id, source_currency, payable_minor) for every positive payable: one query."""
    payable = payable_expression(cutoff)
    rows = session.execute(
        select(Account.owner_id, Account.currency, payable)
        .join(Entry, Entry.account_id == Account.id)
        .where(Account.kind == AccountKind.SPECIALIST_PAYABLE)
        .group_by(Account.owner_id, Account.currency)
        .having(payable > 0)
        .order_by(Account.owner_id, Account.currency)
    ).all()
    frame = pd.DataFrame(rows, columns=["specialist_id", "source_currency", "payable_minor"])
    frame["specialist_id"] = frame["specialist_id"].astype(str)
    frame["payable_minor"] = frame["payable_minor"].astype("int64")
    return frame


def selected_totals(session: Session, cutoff: dt.datetime) -> dict[str, int]:
    """Per source currency, the sum of the positive payables at the cutoff: computed apart from
    the frame, so the gate can compare the two."""
    payable = payable_expression(cutoff).label("payable")
    per_account = (
        select(Account.currency, payable)
        .join(Entry, Entry.account_id == Account.id)
        .where(Account.kind == AccountKind.SPECIALIST_PAYABLE)
        .group_by(Account.id, Account.currency)
        .subquery()
    )
    rows = session.execute(
        select(per_account.c.currency, func.sum(per_account.c.payable))
        .where(per_account.c.payable > 0)
        .group_by(per_account.c.currency)
    ).all()
    return {currency: int(total) for currency, total in rows}


def payees(session: Session) -> pd.DataFrame:
    """Every specialist of the tenant with their payout currency and bank details (one query)."""
    rows = session.execute(
        select(
            User.id,
            User.display_name,
            SpecialistProfile.payout_currency,
            PayoutDetails.scheme,
            PayoutDetails.account_holder,
            PayoutDetails.iban,
            PayoutDetails.bic,
            PayoutDetails.account_number,
            PayoutDetails.bank_code,
            PayoutDetails.country,
            PayoutDetails.account_fingerprint,
            PayoutDetails.details_changed_at,
            PayoutDetails.on_hold,
            PayoutDetails.hold_reason,
        )
        .join(SpecialistProfile, SpecialistProfile.user_id == User.id)
        .outerjoin(PayoutDetails, PayoutDetails.user_id == User.id)
    ).all()
    frame = pd.DataFrame(
        rows,
        columns=[
            "specialist_id",
            "display_name",
            "profile_currency",
            "scheme",
            "account_holder",
            "iban",
            "bic",
            "account_number",
            "bank_code",
            "country",
            "account_fingerprint",
            "details_changed_at",
            "on_hold",
            "finance_hold_reason",
        ],
    )
    frame["specialist_id"] = frame["specialist_id"].astype(str)
    return frame


def held_specialists(session: Session, as_of: dt.datetime, cooling_days: int) -> frozenset[str]:
    """Specialists finance holds, or whose bank details changed within the cooling period."""
    held = PayoutDetails.on_hold.is_(True)
    if cooling_days > 0:
        since = as_of - dt.timedelta(days=cooling_days)
        held = or_(held, PayoutDetails.details_changed_at > since)
    rows = session.scalars(select(PayoutDetails.user_id).where(held))
    return frozenset(str(user_id) for user_id in rows)


def convert(amounts: pd.Series, source: str, target: str, rate: Decimal) -> pd.Series:
    """`amounts` (minor units of `source`) in minor units of `target`, each rounded half-even:
    exactly `ledger.fx.convert_minor`, for a whole column at once, in integer arithmetic."""
    sign, digits, exp = rate.as_tuple()
    if sign or not isinstance(exp, int):
        raise ValueError(f"rate {rate} is not a positive finite decimal")
    numerator = int("".join(map(str, digits)))
    shift = exponent(target) - exponent(source) + exp
    scaled = amounts.astype(object) * numerator  # Python ints: no overflow, no float
    if shift >= 0:
        return scaled * 10**shift
    divisor = 10**-shift
    quotient, remainder = scaled // divisor, scaled % divisor
    twice = remainder * 2
    up = (twice > divisor) | ((twice == divisor) & (quotient % 2 == 1))
    return quotient + up.astype(int)


def compute(
    session: Session,
    *,
    run_id: uuid.UUID,
    period: str,
    attempt: int,
    cutoff: dt.datetime,
    as_of: dt.datetime,
    cooling_days: int,
    minimums: Mapping[str, int],
    rate: RateOf,
    rate_source: SourceOf,
) -> pd.DataFrame:
    """The run's lines as a frame with `COLUMNS`, withheld lines included, sorted by
    (specialist, source currency). Deterministic: the same ledger, details and rates give the
    same frame, end-to-end ids included."""
    frame = payables(session, cutoff).merge(payees(session), on="specialist_id", how="left")
    no_profile = frame["profile_currency"].isna()
    frame["payout_currency"] = frame["profile_currency"].where(
        ~no_profile, frame["source_currency"]
    )
    frame["profile_currency"] = frame["profile_currency"].where(~no_profile, None)

    frame["fx_rate"] = "1"
    frame["fx_source"] = None
    frame["payout_minor"] = pd.Series([None] * len(frame), dtype=object, index=frame.index)
    pairs = frame.groupby(["source_currency", "payout_currency"]).groups
    for (source, target), group in pairs.items():
        amounts = frame.loc[group, "payable_minor"]
        if source == target:
            frame.loc[group, "payout_minor"] = amounts.astype(object)
            continue
        pair_rate = rate(source, target)
        frame.loc[group, "fx_rate"] = str(pair_rate)
        frame.loc[group, "fx_source"] = rate_source(source, target)
        frame.loc[group, "payout_minor"] = convert(amounts, source, target, pair_rate)

    frame["hold_reason"] = _withheld_because(frame, as_of, cooling_days)
    _withhold_under_minimum(frame, minimums)
    frame["status"] = np.where(frame["hold_reason"].isna(), LineStatus.PAYABLE, LineStatus.WITHHELD)
    payable = frame["status"] == LineStatus.PAYABLE
    # A line that pays nothing (a payable too small to convert) is withheld, never a zero payment.
    zero = payable & (frame["payout_minor"].fillna(0).astype(object) <= 0)
    frame.loc[zero, "hold_reason"] = "too small to convert into the payout currency"
    frame.loc[zero, "status"] = LineStatus.WITHHELD
    payable = frame["status"] == LineStatus.PAYABLE
    frame.loc[~payable, "payout_minor"] = None

    # SEPA: euros to an IBAN in the SEPA zone; every other payout goes by pain.001.001.09.
    frame["sepa"] = (
        payable
        & (frame["payout_currency"] == "EUR")
        & (frame["scheme"] == PayoutScheme.IBAN)
        & frame["country"].isin(SEPA_COUNTRIES)
    )
    frame["creditor_name"] = frame["account_holder"].fillna(frame["display_name"])
    frame["end_to_end_id"] = None
    prefix = f"QP{periods.compact(period)}A{attempt}L"
    numbers = pd.Series(np.arange(1, int(payable.sum()) + 1), index=frame.index[payable])
    frame.loc[payable, "end_to_end_id"] = prefix + numbers.astype(str).str.zfill(6)
    frame["payout_minor"] = frame["payout_minor"].astype("Int64")
    frame["run_id"] = str(run_id)
    return frame[COLUMNS].reset_index(drop=True)


def _withheld_because(frame: pd.DataFrame, as_of: dt.datetime, cooling_days: int) -> pd.Series:
    """The first reason each line cannot be paid now (None: it can), in order of precedence."""
    since = pd.Timestamp(as_of - dt.timedelta(days=cooling_days))
    changed = pd.to_datetime(frame["details_changed_at"], utc=True)
    cooling_until = (changed + pd.Timedelta(days=cooling_days)).dt.strftime("%Y-%m-%d")
    hold_text = frame["finance_hold_reason"].fillna("no reason given").astype(str)
    conditions = [
        frame["profile_currency"].isna(),
        frame["on_hold"].fillna(False).astype(bool),
        frame["scheme"].isna(),
        changed.notna() & (changed > since) & (cooling_days > 0),
    ]
    reasons = [
        pd.Series("no specialist profile (no payout currency)", index=frame.index),
        "on hold: " + hold_text,
        pd.Series("no bank details", index=frame.index),
        "bank details changed recently: held for review until " + cooling_until.fillna(""),
    ]
    chosen = pd.Series(None, index=frame.index, dtype=object)
    for condition, reason in reversed(list(zip(conditions, reasons, strict=True))):
        chosen = chosen.mask(condition, reason)
    return chosen


def _withhold_under_minimum(frame: pd.DataFrame, minimums: Mapping[str, int]) -> None:
    """A specialist whose payout in a currency (all source currencies together) is under the
    tenant's minimum for it waits until the sum reaches it."""
    if not minimums or frame.empty:
        return
    open_lines = frame["hold_reason"].isna()
    totals = (
        frame[open_lines]
        .assign(amount=frame.loc[open_lines, "payout_minor"].astype(object))
        .groupby(["specialist_id", "payout_currency"])["amount"]
        .sum()
    )
    floor = pd.Series({currency: int(amount) for currency, amount in minimums.items()})
    minimum = totals.index.get_level_values("payout_currency").map(floor).fillna(0).astype("int64")
    under = totals[totals.to_numpy() < minimum.to_numpy().astype(object)]
    if under.empty:
        return
    keys = pd.MultiIndex.from_frame(frame[["specialist_id", "payout_currency"]])
    hit = open_lines & keys.isin(under.index)
    texts = {
        currency: f"under the minimum payout of {format_minor(minimums[currency], currency)}"
        for currency in under.index.get_level_values("payout_currency").unique()
    }
    frame.loc[hit, "hold_reason"] = frame.loc[hit, "payout_currency"].map(texts)
