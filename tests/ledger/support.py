"""Helpers shared by the ledger's domain tests: fresh tenants, accounts, and an invariant audit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Executable, func, select
from sqlalchemy.orm import Session

from ledger.balances import drifted_accounts, normal_balance, trial_balance
from ledger.models import Account, AccountKind, Entry, Transfer
from quire.db import Database
from quire.people import service as people

K = AccountKind
EXPONENTS = {"JPY": 0, "USD": 2, "BHD": 3}


def new_tenant(database: Database, prefix: str = "ledger") -> uuid.UUID:
    """A tenant of its own, so that tests (and hypothesis examples) share nothing."""
    with database.session(write=True) as s:
        return people.create_tenant(s, f"{prefix}-{uuid.uuid4().hex[:16]}", prefix.title()).id


def balances_by_id(database: Database, tenant_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """The maintained (signed, debit-positive) balance of every account that holds money. (Empty
    accounts are left out: creating one on first use writes no money, whatever happens next.)"""
    with database.session(tenant_id) as s:
        return dict(
            s.execute(select(Account.id, Account.balance).where(Account.balance != 0)).all()
        )


def count_rows(database: Database, tenant_id: uuid.UUID) -> tuple[int, int]:
    """(transfers, entries) of one tenant."""
    with database.session(tenant_id) as s:
        transfers = s.scalar(select(func.count()).select_from(Transfer))
        entries = s.scalar(select(func.count()).select_from(Entry))
    return transfers, entries


def audit(database: Database, tenant_id: uuid.UUID) -> None:
    """Assert the ledger's invariants for one tenant, straight from the stored rows."""
    with database.session(tenant_id) as s:
        # 1. every transfer has >= 2 entries and balances per currency
        per_transfer = s.execute(
            select(Transfer.id, func.count(Entry.id))
            .outerjoin(Entry, Entry.transfer_id == Transfer.id)
            .group_by(Transfer.id)
        ).all()
        assert all(n >= 2 for _, n in per_transfer), per_transfer
        off = s.execute(
            select(Entry.transfer_id, Entry.currency, func.sum(Entry.amount))
            .group_by(Entry.transfer_id, Entry.currency)
            .having(func.sum(Entry.amount) != 0)
        ).all()
        assert off == [], f"unbalanced transfers: {off}"
        # 3. entries carry their account's currency (and are never zero)
        mismatched = s.execute(
            select(Entry.id)
            .join(Account, Account.id == Entry.account_id)
            .where((Account.currency != Entry.currency) | (Entry.amount == 0))
        ).all()
        assert mismatched == []
        # trial balance zero per currency, 4. maintained balance = sum of entries
        assert all(total == 0 for total in trial_balance(s).values()), trial_balance(s)
        assert drifted_accounts(s) == []
        # 5. no forbidden negative
        for account in s.scalars(select(Account).where(Account.no_negative)):
            assert normal_balance(account, account.balance) >= 0, (account.kind, account.balance)
        # 6. one transfer per key (the unique index; checked anyway)
        keys = s.execute(
            select(Transfer.idempotency_key, func.count())
            .group_by(Transfer.idempotency_key)
            .having(func.count() > 1)
        ).all()
        assert keys == []


def rows(session: Session, statement: Executable) -> list[tuple[Any, ...]]:
    """A statement's rows as plain tuples."""
    return [tuple(row) for row in session.execute(statement)]
