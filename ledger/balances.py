"""Reading money: O(1) current balances, balances as of a moment, statements, trial balance."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from ledger.models import Account, Entry, Side, Transfer
from quire.errors import Invalid, NotFound
from quire.schemas import BIGINT_MAX


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


# A month, as statements (`period=`) and invoices (`InvoiceDraft.period`) name one.
PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")  # ASCII digits: `\d` is any Unicode digit

# A statement window keeps a day clear of the calendar's ends, so that no arithmetic on its
# bounds (the opening balance is read at `start - 1µs`, a timezone shift, the next month) can
# overflow Python's datetime: 0001-01 and 9999-12 are refused, not a 500.
EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


def _month(period: str) -> tuple[dt.datetime, dt.datetime]:
    if not PERIOD.fullmatch(period):
        raise Invalid(f"period {period!r} is not YYYY-MM", code="invalid_period")
    year, month = map(int, period.split("-"))
    try:  # year 0 does not exist, nor does the month after 9999-12
        start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
    except ValueError:
        raise Invalid(f"period {period!r} is out of range", code="invalid_period") from None
    return start, end


def statement_window(
    period: str | None, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) a statement covers, in UTC: a month (`period=YYYY-MM`), or `start` and
    `end` (aware, start < end). Anything else, or a window outside EARLIEST..LATEST, is an
    `invalid_period` (422) before any query runs."""
    if period is not None:
        if start is not None or end is not None:
            raise Invalid("give period=YYYY-MM, or start and end, not both", code="invalid_period")
        start, end = _month(period)
    elif start is None or end is None:
        raise Invalid("give period=YYYY-MM, or both start and end", code="invalid_period")
    if start.utcoffset() is None or end.utcoffset() is None:
        raise Invalid("start and end need timezones", code="invalid_period")
    try:
        start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    except OverflowError:
        raise Invalid("start or end is out of range", code="invalid_period") from None
    if not start < end:
        raise Invalid("start must be before end", code="invalid_period")
    if start < EARLIEST or end > LATEST:
        raise Invalid(
            f"a statement lies between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
            code="invalid_period",
        )
    return start, end


def entry_cursor(cursor: str | None) -> int | None:
    """The entry id a statement's `next_cursor` names: a positive BIGINT, else `invalid_cursor`."""
    if cursor is None:
        return None
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19:
        raise Invalid("cursor is not one this API issued", code="invalid_cursor")
    entry_id = int(cursor)
    if not 1 <= entry_id <= BIGINT_MAX:
        raise Invalid("cursor is not one this API issued", code="invalid_cursor")
    return entry_id


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
        anchor = _position(session, account_id, after_entry)
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


def _position(session: Session, account_id: uuid.UUID, entry_id: int) -> Any:
    if not 1 <= entry_id <= BIGINT_MAX:
        raise Invalid("cursor is not one this API issued", code="invalid_cursor")
    row = session.execute(
        select(Entry.effective_at, Entry.id).where(
            Entry.id == entry_id, Entry.account_id == account_id
        )
    ).first()
    if row is None:
        # Not an entry of this account: a cursor from another statement, or made up.
        raise Invalid("cursor points at no entry of this account", code="invalid_cursor")
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
