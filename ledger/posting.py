"""Posting transfers: validated, idempotent, atomic, and cheap in batches.

A batch is one transaction (a SAVEPOINT inside the caller's). Its cost is a handful of statements
however many transfers it holds: one read of the accounts it touches, one insert of all its
transfers (ON CONFLICT DO NOTHING, which is how concurrent replays of a key resolve), one insert of
all its entries, one lock of the touched accounts in id order (a single global order, so
concurrent batches never deadlock) and one update of their balances; and, only if the insert
skipped keys already used, one read of the transfers stored under them.

What keeps it cheap is that nothing is done per row that can be done per batch. There is no ORM
unit of work: rows go out through SQLAlchemy Core. On PostgreSQL each insert is one `INSERT ...
SELECT FROM unnest(<one array per column>)` with binary parameters: the same statement text for
every batch, with one parameter per column, where a multi-row VALUES is a new statement with one
parameter per value to build, parse and plan. The balances go as one `UPDATE ... FROM unnest(...)`.
SQLite gets the portable equivalents. New transfers are returned as built from the values
inserted, not read back.
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

from sqlalchemy import Connection, String, any_, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.types import Uuid

from ledger import periods
from ledger.models import Account, Entry, Side, Transfer
from quire.db import utcnow
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

    New transfers are returned as built from the values inserted, not read back: complete (every
    column, `txid` included) and in no session (a transfer never changes, nothing is left to
    load). Replays return the stored rows, loaded through the session.
    """
    if not specs:
        return []
    with session.begin_nested():
        return _post_batch(session, specs)


@dataclass(slots=True)
class _Planned:
    """One transfer of the batch as it will be stored (`metadata` as its JSON text)."""

    spec: TransferSpec
    id: uuid.UUID
    fingerprint: str
    effective_at: dt.datetime
    metadata: str


def _post_batch(session: Session, specs: Sequence[TransferSpec]) -> list[Transfer]:
    tenant_id = tenant_of(session)
    postgres = session.get_bind().dialect.name == "postgresql"
    currencies = _account_currencies(
        session, {leg.account_id for s in specs for leg in s.legs}, postgres
    )
    for spec in specs:
        _validate(spec, currencies)
    now = utcnow()
    planned = _plan(specs, now)

    conn = session.connection()
    if postgres:
        inserted, txid = _pg_insert_transfers(conn, tenant_id, now, planned)
    else:
        inserted, txid = _sqlite_insert_transfers(conn, tenant_id, now, planned), None
    replayed = _replayed(session, planned, postgres) if inserted < len(planned) else {}
    fresh = [p for p in planned if p.spec.idempotency_key not in replayed]

    deltas: dict[uuid.UUID, int] = defaultdict(int)
    for p in fresh:
        for leg in p.spec.legs:
            deltas[leg.account_id] += leg.amount
    if fresh:
        # Replays of transfers posted before a close still answer; new ones dated in a closed
        # period are refused here, clearly (the batch's savepoint undoes its transfers).
        periods.refuse_closed(session, (p.effective_at for p in fresh))
        if postgres:
            _pg_insert_entries(conn, tenant_id, now, fresh, currencies)
        else:
            _sqlite_insert_entries(conn, tenant_id, now, fresh, currencies)
        _apply_deltas(session, tenant_id, deltas, postgres)

    by_key = {p.spec.idempotency_key: _built(p, tenant_id, now, txid) for p in fresh}
    by_key.update(replayed)
    return [by_key[s.idempotency_key] for s in specs]


def _plan(specs: Sequence[TransferSpec], now: dt.datetime) -> list[_Planned]:
    """One row per distinct key, sorted by key: concurrent batches then take the unique-index
    locks in one global order. A key given twice must come with the same content."""
    unique: dict[str, _Planned] = {}
    for spec in specs:
        fingerprint = spec.fingerprint()
        seen = unique.get(spec.idempotency_key)
        if seen is None:
            unique[spec.idempotency_key] = _Planned(
                spec,
                uuid.uuid4(),
                fingerprint,
                spec.effective_at.astimezone(dt.UTC) if spec.effective_at else now,
                json.dumps(dict(spec.metadata)),
            )
        elif seen.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"idempotency key {spec.idempotency_key!r} appears twice with different content",
                key=spec.idempotency_key,
            )
    return [unique[key] for key in sorted(unique)]


def _built(p: _Planned, tenant_id: uuid.UUID, now: dt.datetime, txid: int | None) -> Transfer:
    """The `Transfer` just inserted, from the values sent, built the way the ORM builds a loaded
    row: every column set, nothing pending (the constructor would record each value as a change
    to flush), in no session. Its metadata is parsed back from the JSON sent, as a read gives it.
    Reading the batch back costs more than inserting it; the constructor, 10x this."""
    spec = p.spec
    transfer = _TRANSFER_MANAGER.new_instance()
    transfer.__dict__.update(
        id=p.id,
        tenant_id=tenant_id,
        kind=spec.kind,
        reference=spec.reference,
        idempotency_key=spec.idempotency_key,
        fingerprint=p.fingerprint,
        effective_at=p.effective_at,
        created_at=now,
        meta=json.loads(p.metadata),
        reverses_id=spec.reverses_id,
        txid=txid,
    )
    return transfer


_TRANSFER_MANAGER = Transfer.__mapper__.class_manager


def _account_currencies(
    session: Session, ids: Iterable[uuid.UUID], postgres: bool
) -> dict[uuid.UUID, str]:
    """Each account's currency. An account of another tenant is as unknown as a missing one
    (the session scopes the query to its tenant)."""
    wanted = list(set(ids))
    found = dict(
        session.execute(
            select(Account.id, Account.currency).where(_among(Account.id, wanted, Uuid(), postgres))
        ).all()
    )
    missing = set(wanted) - set(found)
    if missing:
        raise NotFound(
            f"unknown account(s): {', '.join(sorted(map(str, missing)))}",
            code="account_not_found",
        )
    return found


def _validate(spec: TransferSpec, currencies: Mapping[uuid.UUID, str]) -> None:
    if not spec.idempotency_key or len(spec.idempotency_key) > 200:
        raise Invalid(
            "a transfer needs an idempotency key of 1-200 characters",
            code="invalid_idempotency_key",
        )
    if not spec.kind or len(spec.kind) > 32:
        raise Invalid("a transfer needs a kind of 1-32 characters", code="invalid_kind")
    if spec.effective_at is not None and spec.effective_at.utcoffset() is None:
        raise Invalid(
            "effective_at needs a timezone (a naive time is ambiguous)", code="invalid_effective_at"
        )
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
        sums[currencies[leg.account_id]] += leg.amount
    off = {currency: total for currency, total in sums.items() if total != 0}
    if off:
        raise Unbalanced(
            "debits and credits differ: "
            + ", ".join(f"{c} off by {t}" for c, t in sorted(off.items())),
            imbalance=off,
        )


def _replayed(session: Session, planned: list[_Planned], postgres: bool) -> dict[str, Transfer]:
    """The transfers stored earlier under the batch's keys (not the ones it just inserted), if
    their content is the same. Only asked when the insert skipped a key."""
    keys = [p.spec.idempotency_key for p in planned]
    ids = [p.id for p in planned]
    stored = {
        t.idempotency_key: t
        for t in session.scalars(
            select(Transfer).where(
                _among(Transfer.idempotency_key, keys, String(), postgres),
                ~_among(Transfer.id, ids, Uuid(), postgres),
            )
        )
    }
    for p in planned:
        key = p.spec.idempotency_key
        if key in stored and stored[key].fingerprint != p.fingerprint:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was used for a different transfer", key=key
            )
    return stored


def _among(column: Any, values: list[Any], item_type: Any, postgres: bool) -> Any:
    """`column IN values`; on PostgreSQL as `= ANY(array)`: one parameter, not one per value."""
    if postgres:
        return column == any_(bindparam(None, values, type_=ARRAY(item_type)))
    return column.in_(values)


# --- PostgreSQL: one parameter per column ------------------------------------------------------

# Rows go in array order (WITH ORDINALITY ... ORDER BY), which is key order: the unique-index
# locks are taken in one global order. One row comes back: how many were inserted (fewer if
# keys were already used) and the transaction id the txid column's default gave them.
_PG_INSERT_TRANSFERS = """
WITH inserted AS (
    INSERT INTO ledger_transfers (id, tenant_id, kind, reference, idempotency_key, fingerprint,
                                  effective_at, created_at, metadata, reverses_id)
    SELECT t.id, %(tenant_id)b::uuid, t.kind, t.reference, t.key, t.fingerprint,
           t.effective_at, %(now)b::timestamptz, t.metadata::jsonb, t.reverses_id
    FROM unnest(%(ids)b::uuid[], %(kinds)b::text[], %(references)b::text[], %(keys)b::text[],
                %(fingerprints)b::text[], %(effective_at)b::timestamptz[], %(metadata)b::text[],
                %(reverses_ids)b::uuid[])
         WITH ORDINALITY AS t(id, kind, reference, key, fingerprint, effective_at, metadata,
                              reverses_id, n)
    ORDER BY t.n
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING 1
)
SELECT count(*), txid_current() FROM inserted
"""

_PG_INSERT_ENTRIES = """
INSERT INTO ledger_entries (tenant_id, transfer_id, account_id, currency, amount, effective_at,
                            created_at)
SELECT %(tenant_id)b::uuid, e.transfer_id, e.account_id, e.currency, e.amount, e.effective_at,
       %(now)b::timestamptz
FROM unnest(%(transfer_ids)b::uuid[], %(account_ids)b::uuid[], %(currencies)b::text[],
            %(amounts)b::bigint[], %(effective_at)b::timestamptz[])
     AS e(transfer_id, account_id, currency, amount, effective_at)
"""

_PG_LOCK_ACCOUNTS = """
SELECT id, currency, balance, normal_side, no_negative FROM ledger_accounts
WHERE tenant_id = %(tenant_id)b::uuid AND id = ANY(%(ids)b::uuid[])
ORDER BY id
FOR NO KEY UPDATE
"""

_PG_ADD_DELTAS = """
UPDATE ledger_accounts AS a SET balance = a.balance + d.delta
FROM unnest(%(ids)b::uuid[], %(deltas)b::bigint[]) AS d(id, delta)
WHERE a.id = d.id AND a.tenant_id = %(tenant_id)b::uuid
"""


def _pg_insert_transfers(
    conn: Connection, tenant_id: uuid.UUID, now: dt.datetime, planned: list[_Planned]
) -> tuple[int, int]:
    """Insert the batch's transfers (in key order), skip keys already used. Returns how many
    were inserted and the transaction id the database gave them (`txid`): one row back, not
    one per transfer."""
    params = {
        "tenant_id": tenant_id,
        "now": now,
        "ids": [p.id for p in planned],
        "kinds": [p.spec.kind for p in planned],
        "references": [p.spec.reference for p in planned],
        "keys": [p.spec.idempotency_key for p in planned],
        "fingerprints": [p.fingerprint for p in planned],
        "effective_at": [p.effective_at for p in planned],
        "metadata": [p.metadata for p in planned],
        "reverses_ids": [p.spec.reverses_id for p in planned],
    }
    inserted, txid = conn.exec_driver_sql(_PG_INSERT_TRANSFERS, params).one()
    return inserted, txid


def _pg_insert_entries(
    conn: Connection,
    tenant_id: uuid.UUID,
    now: dt.datetime,
    fresh: list[_Planned],
    currencies: Mapping[uuid.UUID, str],
) -> None:
    """All the entries in one statement (the insert triggers fire once)."""
    transfer_ids: list[uuid.UUID] = []
    account_ids: list[uuid.UUID] = []
    amounts: list[int] = []
    effective: list[dt.datetime] = []
    for p in fresh:
        for leg in p.spec.legs:
            transfer_ids.append(p.id)
            account_ids.append(leg.account_id)
            amounts.append(leg.amount)
            effective.append(p.effective_at)
    params = {
        "tenant_id": tenant_id,
        "now": now,
        "transfer_ids": transfer_ids,
        "account_ids": account_ids,
        "currencies": [currencies[a] for a in account_ids],
        "amounts": amounts,
        "effective_at": effective,
    }
    conn.exec_driver_sql(_PG_INSERT_ENTRIES, params)


# --- SQLite: the portable statements ----------------------------------------------------------


def _sqlite_insert_transfers(
    conn: Connection, tenant_id: uuid.UUID, now: dt.datetime, planned: list[_Planned]
) -> int:
    """Insert the batch's transfers, skip keys already used; how many were inserted."""
    rows = [
        {
            "id": p.id,
            "tenant_id": tenant_id,
            "kind": p.spec.kind,
            "reference": p.spec.reference,
            "idempotency_key": p.spec.idempotency_key,
            "fingerprint": p.fingerprint,
            "effective_at": p.effective_at,
            "created_at": now,
            "metadata": json.loads(p.metadata),
            "reverses_id": p.spec.reverses_id,
        }
        for p in planned
    ]
    inserted = 0
    for start in range(0, len(rows), 1000):  # a multi-VALUES statement per 1,000 rows
        statement = (
            sqlite_insert(Transfer.__table__)
            .values(rows[start : start + 1000])
            .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        )
        inserted += conn.execute(statement).rowcount
    return inserted


def _sqlite_insert_entries(
    conn: Connection,
    tenant_id: uuid.UUID,
    now: dt.datetime,
    fresh: list[_Planned],
    currencies: Mapping[uuid.UUID, str],
) -> None:
    conn.execute(
        insert(Entry.__table__),
        [
            {
                "tenant_id": tenant_id,
                "transfer_id": p.id,
                "account_id": leg.account_id,
                "currency": currencies[leg.account_id],
                "amount": leg.amount,
                "effective_at": p.effective_at,
                "created_at": now,
            }
            for p in fresh
            for leg in p.spec.legs
        ],
    )


# --- balances ----------------------------------------------------------------------------------


def _apply_deltas(
    session: Session, tenant_id: uuid.UUID, deltas: Mapping[uuid.UUID, int], postgres: bool
) -> None:
    """Lock the touched accounts in id order, refuse forbidden negatives, add the deltas.

    One global lock order means concurrent batches queue behind each other instead of
    deadlocking; the CHECK constraint on ledger_accounts is the database's own backstop.
    """
    ids = sorted(deltas)
    conn = session.connection()
    if postgres:
        # NO KEY UPDATE: entry inserts hold KEY SHARE locks on these rows (foreign keys);
        # a plain FOR UPDATE would conflict with them and deadlock concurrent batches.
        locked = conn.exec_driver_sql(_PG_LOCK_ACCOUNTS, {"tenant_id": tenant_id, "ids": ids})
    else:
        locked = session.execute(
            select(
                Account.id,
                Account.currency,
                Account.balance,
                Account.normal_side,
                Account.no_negative,
            )
            .where(Account.id.in_(ids))
            .order_by(Account.id)
        )
    for account_id, currency, balance, normal_side, no_negative in locked:
        after = balance + deltas[account_id]
        on_normal_side = after if normal_side == Side.DEBIT else -after
        if no_negative and on_normal_side < 0:
            raise InsufficientFunds(
                f"account {account_id} would go negative: {on_normal_side} {currency}",
                account_id=str(account_id),
            )
    if postgres:
        conn.exec_driver_sql(
            _PG_ADD_DELTAS,
            {"tenant_id": tenant_id, "ids": ids, "deltas": [deltas[i] for i in ids]},
        )
    else:
        table = Account.__table__
        conn.execute(
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


def reverse_many(
    session: Session, transfer_ids: Sequence[uuid.UUID], *, reason: str = ""
) -> list[Transfer]:
    """`reverse` for many transfers in one batch (a payroll run's lines): a handful of queries
    and one `post_batch`, not a batch per transfer. Returns the reversals in the given order;
    one already reversed with the same reason is answered with its reversal."""
    if not transfer_ids:
        return []
    wanted = list(dict.fromkeys(transfer_ids))
    originals = {t.id: t for t in session.scalars(select(Transfer).where(Transfer.id.in_(wanted)))}
    missing = [str(i) for i in wanted if i not in originals]
    if missing:
        raise NotFound(f"transfer {missing[0]} not found", code="transfer_not_found")
    if any(t.reverses_id is not None for t in originals.values()):
        raise Conflict(
            "a reversal cannot itself be reversed; post a new transfer", code="reversal_of_reversal"
        )
    done = {
        t.reverses_id: t
        for t in session.scalars(select(Transfer).where(Transfer.reverses_id.in_(wanted)))
    }
    for original_id, existing in done.items():
        if existing.meta.get("reason", "") != reason:
            raise Conflict(
                f"transfer {original_id} was already reversed by {existing.id}",
                code="already_reversed",
                reversal_id=str(existing.id),
            )
    legs: dict[uuid.UUID, list[Leg]] = defaultdict(list)
    to_do = [i for i in wanted if i not in done]
    for transfer_id, account_id, amount in session.execute(
        select(Entry.transfer_id, Entry.account_id, Entry.amount)
        .where(Entry.transfer_id.in_(to_do))
        .order_by(Entry.id)
    ):
        legs[transfer_id].append(Leg(account_id, -amount))
    posted = post_batch(
        session,
        [
            TransferSpec(
                kind="reversal",
                idempotency_key=f"reversal:{transfer_id}",
                legs=legs[transfer_id],
                reference=originals[transfer_id].reference,
                metadata={"reason": reason} if reason else {},
                reverses_id=transfer_id,
            )
            for transfer_id in to_do
        ],
    )
    done.update(zip(to_do, posted, strict=True))
    return [done[i] for i in transfer_ids]
