"""The business events finance cares about, each idempotent by its business key.

- earnings for an accepted order: client receivable -> specialist payable (+ platform fee ->
  platform revenue);
- a late fine: specialist payable -> fines income;
- a payout: specialist payable -> payout clearing (initiated), then payout clearing -> bank
  (settled by the bank's confirmation).
"""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.orm import Session

from ledger import chart
from ledger.models import AccountKind, Transfer
from ledger.posting import Leg, TransferSpec, post
from quire.errors import Invalid
from quire.money import validate_amount, validate_currency

K = AccountKind


def platform_fee(gross_minor: int, fee_bps: int) -> int:
    """The platform's cut in basis points, rounded half-even to the minor unit."""
    if not 0 <= fee_bps <= 10_000:
        raise Invalid("platform fee must be between 0 and 10000 basis points", code="invalid_fee")
    cut = Decimal(gross_minor) * Decimal(fee_bps) / Decimal(10_000)
    return int(cut.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def post_earnings(
    session: Session,
    *,
    order_id: uuid.UUID,
    specialist_id: uuid.UUID,
    gross_minor: int,
    currency: str,
    fee_bps: int = 0,
    client_id: uuid.UUID | None = None,
) -> Transfer:
    validate_amount(gross_minor)
    validate_currency(currency)
    fee = platform_fee(gross_minor, fee_bps)
    legs = [
        Leg.debit(chart.account(session, K.CLIENT_RECEIVABLE, currency, client_id), gross_minor)
    ]
    if gross_minor - fee:  # a fee can take it all; an entry is never zero
        payable = chart.account(session, K.SPECIALIST_PAYABLE, currency, specialist_id)
        legs.append(Leg.credit(payable, gross_minor - fee))
    if fee:
        legs.append(Leg.credit(chart.account(session, K.PLATFORM_REVENUE, currency), fee))
    return post(
        session,
        TransferSpec(
            kind="earnings",
            idempotency_key=f"earnings:{order_id}",
            reference=f"order:{order_id}",
            legs=legs,
            metadata={
                "order_id": str(order_id),
                "specialist_id": str(specialist_id),
                "fee_bps": fee_bps,
            },
        ),
    )


def post_late_fine(
    session: Session,
    *,
    order_id: uuid.UUID,
    specialist_id: uuid.UUID,
    amount_minor: int,
    currency: str,
) -> Transfer:
    validate_amount(amount_minor)
    return post(
        session,
        TransferSpec(
            kind="late_fine",
            idempotency_key=f"late-fine:{order_id}",
            reference=f"order:{order_id}",
            legs=[
                Leg.debit(
                    chart.account(session, K.SPECIALIST_PAYABLE, currency, specialist_id),
                    amount_minor,
                ),
                Leg.credit(chart.account(session, K.FINES_INCOME, currency), amount_minor),
            ],
            metadata={"order_id": str(order_id), "specialist_id": str(specialist_id)},
        ),
    )


def initiate_payout(
    session: Session,
    *,
    payout_id: str,
    specialist_id: uuid.UUID,
    amount_minor: int,
    currency: str,
) -> Transfer:
    """Take money owed out of the payable (never below zero) into clearing."""
    validate_amount(amount_minor)
    return post(
        session,
        TransferSpec(
            kind="payout",
            idempotency_key=f"payout:{payout_id}",
            reference=f"payout:{payout_id}",
            legs=[
                Leg.debit(
                    chart.account(session, K.SPECIALIST_PAYABLE, currency, specialist_id),
                    amount_minor,
                ),
                Leg.credit(chart.account(session, K.PAYOUT_CLEARING, currency), amount_minor),
            ],
            metadata={"specialist_id": str(specialist_id)},
        ),
    )


def settle_payout(
    session: Session, *, payout_id: str, amount_minor: int, currency: str
) -> Transfer:
    """The bank confirmed the payout: clearing empties into the bank account."""
    validate_amount(amount_minor)
    return post(
        session,
        TransferSpec(
            kind="payout_settlement",
            idempotency_key=f"payout-settle:{payout_id}",
            reference=f"payout:{payout_id}",
            legs=[
                Leg.debit(chart.account(session, K.PAYOUT_CLEARING, currency), amount_minor),
                Leg.credit(chart.account(session, K.BANK, currency), amount_minor),
            ],
        ),
    )
