"""Currency conversion: two linked transfers through the FX liquidity accounts.

Converting amounts a_1..a_n from S to T at rate r (T per S, a Decimal):

    in S:  debit the source account  sum(a_i)  / credit fx_liquidity[S]  sum(a_i)
    in T:  debit fx_liquidity[T]     B         / credit the target account b_i for each i
           and the remainder B - sum(b_i) to fx_gain_loss[T]

where b_i = a_i * r rounded half-even to T's minor unit (each leg on its own) and B is the whole
sum converted and rounded once. Each currency balances exactly; rounding dust is never lost, it is
booked. No float is involved: amounts are ints, the rate a Decimal.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from sqlalchemy.orm import Session

from ledger import chart
from ledger.models import Account, AccountKind, Transfer
from ledger.posting import Leg, TransferSpec, post_batch
from quire.errors import Invalid
from quire.money import exponent


def convert_minor(amount_minor: int, source: str, target: str, rate: Decimal) -> int:
    """`amount_minor` of `source` in `target` minor units, rounded half-even."""
    with localcontext() as ctx:
        ctx.prec = 50
        major = Decimal(amount_minor).scaleb(-exponent(source))
        target_minor = (major * rate).scaleb(exponent(target))
        return int(target_minor.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class Conversion:
    out_leg: Transfer
    in_leg: Transfer
    converted: list[int]
    remainder: int  # minor units of the target currency booked to FX gain/loss


def convert(
    session: Session,
    *,
    key: str,
    source_account: Account,
    target_account: Account,
    amounts: list[int],
    rate: Decimal,
    rate_source: str,
    reference: str = "",
) -> Conversion:
    """Move `amounts` out of `source_account` and their value into `target_account`."""
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
        raise Invalid("an FX rate is a positive, finite Decimal", code="invalid_rate")
    if not amounts or any(isinstance(a, bool) or not isinstance(a, int) or a <= 0 for a in amounts):
        raise Invalid(
            "conversion amounts are positive integers in minor units", code="invalid_amount"
        )
    source, target = source_account.currency, target_account.currency
    if source == target:
        raise Invalid(f"nothing to convert: both accounts are in {source}", code="same_currency")
    legs = [convert_minor(a, source, target, rate) for a in amounts]
    whole = convert_minor(sum(amounts), source, target, rate)
    if whole <= 0 or any(b <= 0 for b in legs):
        raise Invalid("the amount is too small to convert at this rate", code="amount_too_small")
    remainder = whole - sum(legs)
    meta = {
        "rate": str(rate),
        "rate_source": rate_source,
        "source_currency": source,
        "target_currency": target,
        "conversion": key,
    }
    liquidity_out = chart.account(session, AccountKind.FX_LIQUIDITY, source)
    liquidity_in = chart.account(session, AccountKind.FX_LIQUIDITY, target)
    in_legs = [Leg.debit(liquidity_in, whole), *(Leg.credit(target_account, b) for b in legs)]
    if remainder:
        gain_loss = chart.account(session, AccountKind.FX_GAIN_LOSS, target)
        in_legs.append(Leg(gain_loss.id, -remainder))
    out_spec = TransferSpec(
        kind="fx_out",
        idempotency_key=f"{key}:out",
        reference=reference,
        legs=[Leg.debit(source_account, sum(amounts)), Leg.credit(liquidity_out, sum(amounts))],
        metadata=meta,
    )
    in_spec = TransferSpec(
        kind="fx_in",
        idempotency_key=f"{key}:in",
        reference=reference,
        legs=in_legs,
        metadata=meta,
    )
    out_leg, in_leg = post_batch(session, [out_spec, in_spec])
    return Conversion(out_leg, in_leg, legs, remainder)


def new_conversion_key() -> str:
    return f"fx:{uuid.uuid4()}"
