"""The business events finance cares about, each idempotent by its business key.

- earnings for an accepted order: client receivable -> specialist payable (+ platform fee ->
  platform revenue);
- a late fine: specialist payable -> fines income;
- a payout: specialist payable -> payout clearing (initiated), then payout clearing -> bank
  (settled by the bank's confirmation);
- a payroll's payouts, many in one batch (`post_payouts`): per line, payable -> payout clearing,
  through the FX liquidity accounts when the payout currency differs (two transfers, as in
  `ledger.fx`, each leg rounded half-even on its own);
- their settlements, many in one batch (`settle_payouts`): payout clearing -> bank, once the
  bank's statement shows the payment;
- a settled payout the bank sent back (`return_payouts`): bank -> payout clearing, so that the
  payout line can be reversed out of clearing into the payable again;
- money in from clients (`receive_client_payments`): client receivable -> bank, exactly or
  partly what an order or invoice put on the receivable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.orm import Session

from ledger import chart
from ledger.fx import convert_minor
from ledger.models import Account, AccountKind, Transfer
from ledger.posting import Leg, TransferSpec, post, post_batch
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


@dataclass(frozen=True)
class PayoutLine:
    """One payroll line to move out of a specialist's payable into payout clearing.

    `key` makes it idempotent (payroll uses tenant, period, attempt, specialist and source
    currency): posting the same lines again returns the transfers already posted."""

    key: str
    specialist_id: uuid.UUID
    source_currency: str
    amount_minor: int  # taken out of the payable, in the source currency
    payout_currency: str
    payout_minor: int  # paid into clearing, in the payout currency
    rate: Decimal  # payout per source unit (1 when the currencies agree)
    rate_source: str
    reference: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def post_payouts(session: Session, lines: Sequence[PayoutLine]) -> list[list[Transfer]]:
    """Post every line's transfers in one batch (all or none); per line, its one transfer or its
    two FX legs. The accounts are looked up set-based, not one query per specialist."""
    if not lines:
        return []
    payables = chart.accounts_of(
        session, K.SPECIALIST_PAYABLE, {(ln.specialist_id, ln.source_currency) for ln in lines}
    )
    platform_account = _platform_accounts(session)
    specs: list[TransferSpec] = []
    shape: list[int] = []
    for line in lines:
        line_specs = _payout_specs(
            line, payables[line.specialist_id, line.source_currency], platform_account
        )
        specs.extend(line_specs)
        shape.append(len(line_specs))
    transfers = post_batch(session, specs)
    grouped: list[list[Transfer]] = []
    at = 0
    for size in shape:
        grouped.append(transfers[at : at + size])
        at += size
    return grouped


def _payout_specs(
    line: PayoutLine, payable: uuid.UUID, platform_account: Callable[[AccountKind, str], uuid.UUID]
) -> list[TransferSpec]:
    validate_amount(line.amount_minor)
    validate_amount(line.payout_minor)
    meta = {
        **line.metadata,
        "specialist_id": str(line.specialist_id),
        "rate": str(line.rate),
        "rate_source": line.rate_source,
    }
    clearing = platform_account(K.PAYOUT_CLEARING, line.payout_currency)
    if line.source_currency == line.payout_currency:
        if line.payout_minor != line.amount_minor:
            raise Invalid(
                f"payout {line.key}: {line.payout_minor} differs from the payable "
                f"{line.amount_minor} though both are {line.source_currency}",
                code="payout_mismatch",
            )
        return [
            TransferSpec(
                kind="payroll_payout",
                idempotency_key=line.key,
                reference=line.reference,
                legs=[
                    Leg.debit(payable, line.amount_minor),
                    Leg.credit(clearing, line.amount_minor),
                ],
                metadata=meta,
            )
        ]
    expected = convert_minor(
        line.amount_minor, line.source_currency, line.payout_currency, line.rate
    )
    if expected != line.payout_minor:
        raise Invalid(
            f"payout {line.key}: {line.payout_minor} is not {line.amount_minor} "
            f"{line.source_currency} at {line.rate} ({expected})",
            code="payout_mismatch",
        )
    fx_meta = {
        **meta,
        "source_currency": line.source_currency,
        "target_currency": line.payout_currency,
    }
    liquidity_out = platform_account(K.FX_LIQUIDITY, line.source_currency)
    liquidity_in = platform_account(K.FX_LIQUIDITY, line.payout_currency)
    return [
        TransferSpec(
            kind="fx_out",
            idempotency_key=f"{line.key}:fx-out",
            reference=line.reference,
            legs=[
                Leg.debit(payable, line.amount_minor),
                Leg.credit(liquidity_out, line.amount_minor),
            ],
            metadata=fx_meta,
        ),
        TransferSpec(
            kind="payroll_payout",
            idempotency_key=f"{line.key}:fx-in",
            reference=line.reference,
            legs=[
                Leg.debit(liquidity_in, line.payout_minor),
                Leg.credit(clearing, line.payout_minor),
            ],
            metadata=fx_meta,
        ),
    ]


@dataclass(frozen=True)
class Settlement:
    """The bank confirmed one payout: `amount_minor` leaves payout clearing for the bank, in
    `currency`. `key` makes it idempotent (reconciliation keys it by the payout line)."""

    key: str
    currency: str
    amount_minor: int
    reference: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def settle_payouts(session: Session, settlements: Sequence[Settlement]) -> list[Transfer]:
    """Every settlement in one batch (all or none): payout clearing -> bank, per line. The
    accounts are looked up once per currency."""
    return _clearing_batch(session, settlements, "payout_settlement", K.PAYOUT_CLEARING, K.BANK)


def return_payouts(session: Session, returns: Sequence[Settlement]) -> list[Transfer]:
    """Settled payouts the bank sent back, in one batch: bank -> payout clearing, per line
    (the mirror of its settlement), so that clearing holds the line again until payroll
    reverses it into the payable. Reconciliation keys each by its payout line."""
    return _clearing_batch(session, returns, "payout_return", K.BANK, K.PAYOUT_CLEARING)


def _clearing_batch(
    session: Session,
    items: Sequence[Settlement],
    kind: str,
    debit: AccountKind,
    credit: AccountKind,
) -> list[Transfer]:
    """One platform account to another, per item, in one batch; accounts once per currency."""
    accounts = _platform_accounts(session)
    specs = []
    for item in items:
        validate_amount(item.amount_minor)
        specs.append(
            TransferSpec(
                kind=kind,
                idempotency_key=item.key,
                reference=item.reference,
                legs=[
                    Leg.debit(accounts(debit, item.currency), item.amount_minor),
                    Leg.credit(accounts(credit, item.currency), item.amount_minor),
                ],
                metadata=dict(item.metadata),
            )
        )
    return post_batch(session, specs)


def _platform_accounts(session: Session) -> Callable[[AccountKind, str], uuid.UUID]:
    """A lookup of the platform's accounts by kind and currency, each queried once."""
    found: dict[tuple[AccountKind, str], uuid.UUID] = {}

    def account_of(kind: AccountKind, currency: str) -> uuid.UUID:
        if (kind, currency) not in found:
            found[kind, currency] = chart.account(session, kind, currency).id
        return found[kind, currency]

    return account_of


@dataclass(frozen=True)
class ClientReceipt:
    """A client paid `amount_minor` in `currency` towards what an order or invoice put on its
    receivable (the account of `client_id`, or the tenant's clients at large when None). `key`
    makes it idempotent (reconciliation keys it by the bank line that brought the money)."""

    key: str
    currency: str
    amount_minor: int
    client_id: uuid.UUID | None
    reference: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def receive_client_payments(session: Session, receipts: Sequence[ClientReceipt]) -> list[Transfer]:
    """Every receipt in one batch (all or none): bank <- client receivable, per receipt. The
    receivables are looked up set-based, the bank once per currency. Whether a receipt is more
    than the client owes is the caller's to decide (reconciliation compares it with what the
    order or invoice put on the receivable); a receivable is a debit balance that may go below
    zero (money received ahead of an invoice)."""
    if not receipts:
        return []
    for receipt in receipts:
        validate_amount(receipt.amount_minor)
        validate_currency(receipt.currency)
    receivables = chart.accounts_of(
        session, K.CLIENT_RECEIVABLE, {(r.client_id, r.currency) for r in receipts}
    )
    platform = _platform_accounts(session)
    return post_batch(
        session,
        [
            TransferSpec(
                kind="client_receipt",
                idempotency_key=receipt.key,
                reference=receipt.reference,
                legs=[
                    Leg.debit(platform(K.BANK, receipt.currency), receipt.amount_minor),
                    Leg.credit(
                        receivables[receipt.client_id, receipt.currency], receipt.amount_minor
                    ),
                ],
                metadata=dict(receipt.metadata),
            )
            for receipt in receipts
        ],
    )
