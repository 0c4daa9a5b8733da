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
from ledger.models import Account, AccountKind, Transfer
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


def _two_legs(
    session: Session,
    *,
    kind: str,
    key: str,
    reference: str,
    amount_minor: int,
    debit: Account,
    credit: Account,
    metadata: dict[str, str] | None = None,
) -> Transfer:
    """Move `amount_minor` from `credit` to `debit`: the shape of most business events."""
    validate_amount(amount_minor)
    return post(
        session,
        TransferSpec(
            kind=kind,
            idempotency_key=key,
            reference=reference,
            legs=[Leg.debit(debit, amount_minor), Leg.credit(credit, amount_minor)],
            metadata=metadata or {},
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
    return _two_legs(
        session,
        kind="late_fine",
        key=f"late-fine:{order_id}",
        reference=f"order:{order_id}",
        amount_minor=amount_minor,
        debit=chart.account(session, K.SPECIALIST_PAYABLE, currency, specialist_id),
        credit=chart.account(session, K.FINES_INCOME, currency),
        metadata={"order_id": str(order_id), "specialist_id": str(specialist_id)},
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
    return _two_legs(
        session,
        kind="payout",
        key=f"payout:{payout_id}",
        reference=f"payout:{payout_id}",
        amount_minor=amount_minor,
        debit=chart.account(session, K.SPECIALIST_PAYABLE, currency, specialist_id),
        credit=chart.account(session, K.PAYOUT_CLEARING, currency),
        metadata={"specialist_id": str(specialist_id)},
    )


def settle_payout(
    session: Session, *, payout_id: str, amount_minor: int, currency: str
) -> Transfer:
    """The bank confirmed the payout: clearing empties into the bank account."""
    return _two_legs(
        session,
        kind="payout_settlement",
        key=f"payout-settle:{payout_id}",
        reference=f"payout:{payout_id}",
        amount_minor=amount_minor,
        debit=chart.account(session, K.PAYOUT_CLEARING, currency),
        credit=chart.account(session, K.BANK, currency),
    )
