"""Idempotency keys for retried writes (claim, submit).

The key is reserved in the same transaction as the work it guards. A concurrent duplicate blocks
on the unique key until the first commits (PostgreSQL) or waits for the write lock (SQLite), then
finds the stored response. Only successful responses are stored: a failed attempt rolls back its
reservation, so retrying it simply runs again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from quire.db import Base, JSONType, upsert, utcnow
from quire.errors import Conflict, Invalid
from quire.tenancy import TenantScoped, tenant_of

MAX_KEY_LENGTH = 200


class IdempotencyRecord(TenantScoped, Base):
    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # type: ignore[assignment]
    principal_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def reserve(
    session: Session, principal_id: uuid.UUID, key: str, request_hash: str
) -> StoredResponse | None:
    """Claim `key` for this request, or return the response already stored under it."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Invalid(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            code="invalid_idempotency_key",
        )
    tenant_id = tenant_of(session)
    insert = upsert(session)
    inserted = session.execute(
        insert(IdempotencyRecord)
        .values(
            tenant_id=tenant_id,
            principal_id=principal_id,
            key=key,
            request_hash=request_hash,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(IdempotencyRecord.key)
    ).first()
    if inserted is not None:
        return None
    record = session.execute(
        select(
            IdempotencyRecord.request_hash,
            IdempotencyRecord.status_code,
            IdempotencyRecord.response,
        ).where(IdempotencyRecord.principal_id == principal_id, IdempotencyRecord.key == key)
    ).one()
    if record.request_hash != request_hash:
        raise Invalid(
            "this Idempotency-Key was used with a different request",
            code="idempotency_key_reused",
        )
    if record.status_code is None:
        raise Conflict(
            "a request with this Idempotency-Key is still in progress",
            code="idempotency_in_progress",
        )
    return StoredResponse(record.status_code, record.response)


def complete(
    session: Session, principal_id: uuid.UUID, key: str, status_code: int, body: Any
) -> None:
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.principal_id == principal_id, IdempotencyRecord.key == key)
        .values(status_code=status_code, response=body)
    )
