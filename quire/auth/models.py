from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, JSONType, utcnow
from quire.tenancy import TenantScoped


class RefreshToken(TenantScoped, Base):
    """One link in a rotation chain. Only the SHA-256 of the token is stored.

    A token is good once: using it marks it rotated and issues its successor in the same family.
    Presenting a rotated token again means it leaked, so the whole family is revoked.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    rotated_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class ApiKey(TenantScoped, Base):
    """A machine credential acting for its owner with a subset of the owner's roles."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


class RateLimitLog(Base):
    """One rate-limit key's admitted attempts still inside their window (see quire.auth.rate_limit).

    `key` is a SHA-256 hex digest of the key's parts, so no input can overflow it. `hits` holds
    the expiry instant (microseconds since the epoch) of each admitted attempt not yet expired:
    never more than the limit. `expires_at` is the latest of them, for pruning dead keys.
    """

    __tablename__ = "rate_limit_logs"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    hits: Mapped[list[int]] = mapped_column(JSONType, default=list)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class LoginFailure(Base):
    """A streak of failed logins for one (tenant, normalised email), whether or not it exists.

    Keyed by a SHA-256 hex digest of the pair rather than by the user row, so an unknown account
    is counted, locked and released by exactly the same rows and statements as a real one
    (quire.auth.lockout). Shared through the database by every API process.
    """

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    last_failure_at: Mapped[dt.datetime] = mapped_column(index=True)
