"""Posting transfers: validated, idempotent, atomic, and cheap in batches.

A batch is one transaction. Its cost is a handful of statements however many transfers it holds:
one read of the accounts it touches, one bulk insert of transfers (ON CONFLICT DO NOTHING, which
is how concurrent replays of a key resolve), one bulk insert of entries, one lock of the touched
accounts in id order (a single global order, so concurrent batches never deadlock), one
executemany of balance deltas, and one check that no `no_negative` account went below zero.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from ledger.models import Account, Entry, Side, Transfer
from quire.db import upsert, utcnow
from quire.errors import Conflict, Invalid, NotFound
from quire.money import MAX_AMOUNT_MINOR
from quire.tenancy import tenant_of


@dataclass(frozen=True)
class Leg:
    """One entry to be: `amount` > 0 debits the account, < 0 credits it (minor units)."""

    account_id: uuid.UUID
    amount: int

    @classmethod
    def debit(cls, account: Account | uuid.UUID, amount: int) -> Leg:
        return cls(_id(account), amount)

    @classmethod
    def credit(cls, account: Account | uuid.UUID, amount: int) -> Leg:
        return cls(_id(account), -amount)


def _id(account: Account | uuid.UUID) -> uuid.UUID:
    return account if isinstance(account, uuid.UUID) else account.id


@dataclass(frozen=True)
class TransferSpec:
    kind: str
    idempotency_key: str
    legs: Sequence[Leg]
    reference: str = ""
    effective_at: dt.datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reverses_id: uuid.UUID | None = None

    def fingerprint(self) -> str:
        """What 'the same content' means for an idempotent replay."""
        body = {
            "kind": self.kind,
            "reference": self.reference,
            "legs": sorted((str(leg.account_id), leg.amount) for leg in self.legs),
            "effective_at": self.effective_at.isoformat() if self.effective_at else None,
            "metadata": self.metadata,
            "reverses_id": str(self.reverses_id) if self.reverses_id else None,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


class Unbalanced(Invalid):
    code = "unbalanced_transfer"


class InsufficientFunds(Conflict):
    code = "insufficient_funds"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


def post(session: Session, spec: TransferSpec) -> Transfer:
    """Post one transfer (or return the one already posted under its key)."""
    return post_batch(session, [spec])[0]


def post_batch(session: Session, specs: Sequence[TransferSpec]) -> list[Transfer]:
    """Post every transfer or none. Returns them in order (replays return the original).

    The batch runs in a SAVEPOINT: a refused batch leaves nothing behind even if the caller
    catches the error and goes on to commit its own transaction.
    """
    if not specs:
        return []
    with session.begin_nested():
        return _post_batch(session, specs)


def _post_batch(session: Session, specs: Sequence[TransferSpec]) -> list[Transfer]:
    tenant_id = tenant_of(session)
    accounts = _load_accounts(session, {leg.account_id for s in specs for leg in s.legs})
    now = utcnow()
    fingerprints = [s.fingerprint() for s in specs]
    for spec in specs:
        _validate(spec, accounts)

    unique: dict[str, tuple[TransferSpec, str]] = {}
    for spec, fp in zip(specs, fingerprints, strict=True):
        seen = unique.get(spec.idempotency_key)
        if seen is not None and seen[1] != fp:
            raise IdempotencyConflict(
                f"idempotency key {spec.idempotency_key!r} appears twice with different content",
                key=spec.idempotency_key,
            )
        unique[spec.idempotency_key] = (spec, fp)

    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "kind": spec.kind,
            "reference": spec.reference,
            "idempotency_key": key,
            "fingerprint": fp,
            "effective_at": spec.effective_at or now,
            "created_at": now,
            "metadata": dict(spec.metadata),
            "reverses_id": spec.reverses_id,
        }
        # Sorted keys: concurrent batches take the unique-index locks in one global order.
        for key, (spec, fp) in sorted(unique.items())
    ]
    table = Transfer.__table__
    inserted_keys = (
        set(
            session.execute(
                upsert(session)(table)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
                .returning(table.c.idempotency_key)
            ).scalars()
        )
        if len(rows) <= 1000
        else _insert_in_chunks(session, rows)
    )

    fresh = [r for r in rows if r["idempotency_key"] in inserted_keys]
    replays = [r for r in rows if r["idempotency_key"] not in inserted_keys]
    if replays:
        _check_replays(session, replays)

    entries: list[dict[str, Any]] = []
    deltas: dict[uuid.UUID, int] = defaultdict(int)
    for row in fresh:
        spec = unique[row["idempotency_key"]][0]
        for leg in spec.legs:
            entries.append(
                {
                    "tenant_id": tenant_id,
                    "transfer_id": row["id"],
                    "account_id": leg.account_id,
                    "currency": accounts[leg.account_id].currency,
                    "amount": leg.amount,
                    "effective_at": row["effective_at"],
                    "created_at": now,
                }
            )
            deltas[leg.account_id] += leg.amount
    if entries:
        session.execute(insert(Entry), entries)
        _apply_deltas(session, deltas)

    by_key = {
        t.idempotency_key: t
        for t in session.scalars(select(Transfer).where(Transfer.idempotency_key.in_(list(unique))))
    }
    return [by_key[s.idempotency_key] for s in specs]


def _insert_in_chunks(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    table = Transfer.__table__
    keys: set[str] = set()
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        keys.update(
            session.execute(
                upsert(session)(table)
                .values(chunk)
                .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
                .returning(table.c.idempotency_key)
            ).scalars()
        )
    return keys


def _load_accounts(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Account]:
    wanted = set(ids)
    found = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(wanted)))}
    missing = wanted - set(found)
    if missing:
        raise NotFound(
            f"unknown account(s): {', '.join(sorted(map(str, missing)))}",
            code="account_not_found",
        )
    return found


def _validate(spec: TransferSpec, accounts: Mapping[uuid.UUID, Account]) -> None:
    if not spec.idempotency_key or len(spec.idempotency_key) > 200:
        raise Invalid(
            "a transfer needs an idempotency key of 1-200 characters",
            code="invalid_idempotency_key",
        )
    if not spec.kind or len(spec.kind) > 32:
        raise Invalid("a transfer needs a kind of 1-32 characters", code="invalid_kind")
    if len(spec.legs) < 2:
        raise Invalid("a transfer needs at least two entries", code="too_few_entries")
    sums: dict[str, int] = defaultdict(int)
    for leg in spec.legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
            raise Invalid("entry amounts are integers in minor units", code="invalid_amount")
        if leg.amount == 0:
            raise Invalid("an entry amount cannot be zero", code="invalid_amount")
        if abs(leg.amount) > MAX_AMOUNT_MINOR:
            raise Invalid(f"entry amount {leg.amount} is absurdly large", code="invalid_amount")
        sums[accounts[leg.account_id].currency] += leg.amount
    off = {currency: total for currency, total in sums.items() if total != 0}
    if off:
        raise Unbalanced(
            "debits and credits differ: "
            + ", ".join(f"{c} off by {t}" for c, t in sorted(off.items())),
            imbalance=off,
        )


def _check_replays(session: Session, replays: list[dict[str, Any]]) -> None:
    rows = session.execute(
        select(Transfer.idempotency_key, Transfer.fingerprint).where(
            Transfer.idempotency_key.in_([r["idempotency_key"] for r in replays])
        )
    )
    stored = {key: fingerprint for key, fingerprint in rows}
    for row in replays:
        if stored.get(row["idempotency_key"]) != row["fingerprint"]:
            raise IdempotencyConflict(
                f"idempotency key {row['idempotency_key']!r} was used for a different transfer",
                key=row["idempotency_key"],
            )


def _apply_deltas(session: Session, deltas: Mapping[uuid.UUID, int]) -> None:
    """Lock the touched accounts in id order, refuse forbidden negatives, add the deltas.

    One global lock order means concurrent batches queue behind each other instead of
    deadlocking; the CHECK constraint on ledger_accounts is the database's own backstop.
    """
    ids = sorted(deltas)
    locked = session.execute(
        select(
            Account.id, Account.currency, Account.balance, Account.normal_side, Account.no_negative
        )
        .where(Account.id.in_(ids))
        .order_by(Account.id)
        # NO KEY UPDATE: entry inserts hold KEY SHARE locks on these rows (foreign keys);
        # a plain FOR UPDATE would conflict with them and deadlock concurrent batches.
        .with_for_update(key_share=True)
    ).all()
    for row in locked:
        after = row.balance + deltas[row.id]
        on_normal_side = after if row.normal_side == Side.DEBIT else -after
        if row.no_negative and on_normal_side < 0:
            raise InsufficientFunds(
                f"account {row.id} would go negative: {on_normal_side} {row.currency}",
                account_id=str(row.id),
            )
    table = Account.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("account_id"))
        .values(balance=table.c.balance + bindparam("delta")),
        [{"account_id": i, "delta": deltas[i]} for i in ids],
    )
    for account in session.identity_map.values():
        if isinstance(account, Account) and account.id in deltas:
            session.expire(account, ["balance"])


def reverse(session: Session, transfer_id: uuid.UUID, *, reason: str = "") -> Transfer:
    """Undo a transfer by posting its mirror image; the original stays untouched."""
    existing = session.scalar(select(Transfer).where(Transfer.reverses_id == transfer_id))
    if existing is not None:
        # A transfer has at most one reversal: asking again is answered with it, unless the
        # request says something else (another reason), which would be silently lost.
        if existing.meta.get("reason", "") == reason:
            return existing
        raise Conflict(
            f"transfer {transfer_id} was already reversed by {existing.id}",
            code="already_reversed",
            reversal_id=str(existing.id),
        )
    original = session.scalar(select(Transfer).where(Transfer.id == transfer_id))
    if original is None:
        raise NotFound(f"transfer {transfer_id} not found", code="transfer_not_found")
    if original.reverses_id is not None:
        raise Conflict(
            "a reversal cannot itself be reversed; post a new transfer", code="reversal_of_reversal"
        )
    legs = [
        Leg(account_id, -amount)
        for account_id, amount in session.execute(
            select(Entry.account_id, Entry.amount)
            .where(Entry.transfer_id == transfer_id)
            .order_by(Entry.id)
        )
    ]
    return post(
        session,
        TransferSpec(
            kind="reversal",
            idempotency_key=f"reversal:{transfer_id}",
            legs=legs,
            reference=original.reference,
            metadata={"reason": reason} if reason else {},
            reverses_id=transfer_id,
        ),
    )
