"""Reading money: O(1) current balances, balances as of a moment, statements, trial balance."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from ledger.models import Account, Entry, Side, Transfer
from quire.errors import NotFound


def normal_balance(account: Account, signed: int) -> int:
    """A signed (debit-positive) amount as seen from the account's normal side."""
    return signed if account.normal_side == Side.DEBIT else -signed


def get_account(session: Session, account_id: uuid.UUID) -> Account:
    account = session.scalar(select(Account).where(Account.id == account_id))
    if account is None:
        raise NotFound(f"account {account_id} not found", code="account_not_found")
    return account


def balance_as_of(session: Session, account_id: uuid.UUID, at: dt.datetime) -> int:
    """Signed balance from the entries effective at or before `at`."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Entry.amount), 0)).where(
                Entry.account_id == account_id, Entry.effective_at <= at
            )
        )
    )


def entries_total(session: Session, account_id: uuid.UUID) -> int:
    return balance_as_of(session, account_id, dt.datetime.max.replace(tzinfo=dt.UTC))


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    transfer_id: uuid.UUID
    kind: str
    reference: str
    effective_at: dt.datetime
    amount: int  # on the account's normal side: + increases what the account holds
    running_balance: int


@dataclass(frozen=True)
class Statement:
    account: Account
    opening_balance: int
    closing_balance: int
    lines: list[StatementLine]
    next_cursor: int | None


def statement(
    session: Session,
    account_id: uuid.UUID,
    *,
    start: dt.datetime,
    end: dt.datetime,
    after_entry: int | None = None,
    limit: int = 100,
) -> Statement:
    """Entries effective in [start, end) with a running balance, paginated by entry id."""
    account = get_account(session, account_id)
    base = select(Entry).where(
        Entry.account_id == account_id, Entry.effective_at >= start, Entry.effective_at < end
    )
    opening = balance_as_of(session, account_id, start - dt.timedelta(microseconds=1))
    running = opening
    if after_entry is not None:
        anchor = _position(session, after_entry)
        already_shown = session.scalar(
            select(func.coalesce(func.sum(Entry.amount), 0)).where(
                Entry.account_id == account_id,
                Entry.effective_at >= start,
                Entry.effective_at < end,
                tuple_(Entry.effective_at, Entry.id) <= anchor,
            )
        )
        running += int(already_shown)
        base = base.where(tuple_(Entry.effective_at, Entry.id) > anchor)
    rows = session.execute(
        base.join(Transfer, Transfer.id == Entry.transfer_id)
        .add_columns(Transfer.kind, Transfer.reference)
        .order_by(Entry.effective_at, Entry.id)
        .limit(limit + 1)
    ).all()
    lines = []
    for entry, kind, reference in rows[:limit]:
        running += entry.amount
        lines.append(
            StatementLine(
                entry.id,
                entry.transfer_id,
                kind,
                reference,
                entry.effective_at,
                normal_balance(account, entry.amount),
                normal_balance(account, running),
            )
        )
    closing = balance_as_of(session, account_id, end - dt.timedelta(microseconds=1))
    return Statement(
        account,
        normal_balance(account, opening),
        normal_balance(account, closing),
        lines,
        lines[-1].entry_id if len(rows) > limit else None,
    )


def _position(session: Session, entry_id: int) -> Any:
    row = session.execute(select(Entry.effective_at, Entry.id).where(Entry.id == entry_id)).first()
    if row is None:
        raise NotFound("cursor points at no entry", code="invalid_cursor")
    return tuple_(row.effective_at, row.id)


def trial_balance(session: Session) -> dict[str, int]:
    """Sum of all maintained balances per currency: zero in a healthy ledger."""
    rows = session.execute(
        select(Account.currency, func.sum(Account.balance)).group_by(Account.currency)
    ).all()
    return {currency: int(total) for currency, total in rows}


def drifted_accounts(session: Session) -> list[uuid.UUID]:
    """Accounts whose maintained balance differs from the sum of their entries."""
    sums = (
        select(Entry.account_id, func.sum(Entry.amount).label("total"))
        .group_by(Entry.account_id)
        .subquery()
    )
    rows = session.execute(
        select(Account.id)
        .outerjoin(sums, sums.c.account_id == Account.id)
        .where(Account.balance != func.coalesce(sums.c.total, 0))
    )
    return [r.id for r in rows]
