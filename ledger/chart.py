"""The chart of accounts: which account holds what, on which side it normally sits, and which
must never go negative. Accounts are created on first use (get-or-create, race-safe)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.models import Account, AccountKind, OwnerType, Side
from quire.db import upsert, utcnow
from quire.money import validate_currency
from quire.tenancy import tenant_of

K = AccountKind

# kind -> (owner type, normal side, must not go negative on its normal side)
CHART: dict[AccountKind, tuple[OwnerType, Side, bool]] = {
    K.CLIENT_RECEIVABLE: (OwnerType.CLIENT, Side.DEBIT, False),
    K.SPECIALIST_PAYABLE: (OwnerType.SPECIALIST, Side.CREDIT, True),  # never pay out more than owed
    K.PLATFORM_REVENUE: (OwnerType.PLATFORM, Side.CREDIT, False),
    K.FINES_INCOME: (OwnerType.PLATFORM, Side.CREDIT, False),
    K.PAYOUT_CLEARING: (OwnerType.PLATFORM, Side.CREDIT, False),
    K.BANK: (OwnerType.PLATFORM, Side.DEBIT, False),
    K.FX_LIQUIDITY: (OwnerType.PLATFORM, Side.DEBIT, False),
    K.FX_GAIN_LOSS: (OwnerType.PLATFORM, Side.CREDIT, False),
    K.BANK_FEES: (OwnerType.PLATFORM, Side.DEBIT, False),  # an expense
}


def owner_key(kind: AccountKind, owner_id: uuid.UUID | None) -> str:
    owner_type = CHART[kind][0]
    if owner_type is OwnerType.PLATFORM:
        if owner_id is not None:
            raise ValueError(f"{kind} accounts belong to the platform, not to {owner_id}")
        return "platform"
    if owner_id is None and owner_type is OwnerType.SPECIALIST:
        raise ValueError(f"{kind} accounts need a specialist owner")
    return str(owner_id) if owner_id is not None else "clients"


def account(
    session: Session, kind: AccountKind, currency: str, owner_id: uuid.UUID | None = None
) -> Account:
    """The account of `kind` in `currency` for `owner_id`, created if it does not exist yet."""
    validate_currency(currency)
    key = owner_key(kind, owner_id)
    found = session.scalar(
        select(Account).where(
            Account.kind == kind, Account.owner_key == key, Account.currency == currency
        )
    )
    if found is not None:
        return found
    owner_type, side, no_negative = CHART[kind]
    insert = upsert(session)
    statement = (
        insert(Account)
        .values(
            id=uuid.uuid4(),
            tenant_id=tenant_of(session),
            kind=kind,
            owner_type=owner_type,
            owner_id=owner_id,
            owner_key=key,
            currency=currency,
            normal_side=side,
            no_negative=no_negative,
            balance=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )
    if session.get_bind().dialect.name == "postgresql":
        # Create it in its own short transaction: kept inside the caller's, the new row's lock
        # would be held to the end, and two callers creating two accounts in opposite orders
        # would deadlock. An empty account is harmless even if the caller then rolls back.
        with session.get_bind().begin() as conn:
            conn.execute(statement)
    else:
        session.execute(statement)  # SQLite: one writer at a time, and we hold the lock
    return session.scalars(
        select(Account).where(
            Account.kind == kind, Account.owner_key == key, Account.currency == currency
        )
    ).one()


def accounts_of(
    session: Session, kind: AccountKind, wanted: set[tuple[uuid.UUID | None, str]]
) -> dict[tuple[uuid.UUID | None, str], uuid.UUID]:
    """The ids of many accounts of one kind at once, by (owner, currency): one query for the
    ones that exist (payroll asks for thousands of payables), get-or-create for the rest."""
    if not wanted:
        return {}
    currencies = sorted({currency for _, currency in wanted})
    found: dict[tuple[uuid.UUID | None, str], uuid.UUID] = {}
    for account_id, owner_id, currency in session.execute(
        select(Account.id, Account.owner_id, Account.currency).where(
            Account.kind == kind, Account.currency.in_(currencies)
        )
    ):
        if (owner_id, currency) in wanted:
            found[(owner_id, currency)] = account_id
    for owner_id, currency in sorted(wanted - found.keys(), key=str):
        found[(owner_id, currency)] = account(session, kind, currency, owner_id).id
    return found
