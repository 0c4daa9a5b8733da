from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, JSONType, utcnow
from quire.tenancy import TenantScoped


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    REVIEWER = "reviewer"
    FINANCE = "finance"
    SPECIALIST = "specialist"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(TenantScoped, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(256))
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def has_any_role(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)


class SpecialistProfile(TenantScoped, Base):
    """What finance and the marketplace need to know about a specialist."""

    __tablename__ = "specialist_profiles"
    __table_args__ = (CheckConstraint("rate_minor >= 0", name="rate_not_negative"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    payout_currency: Mapped[str] = mapped_column(String(3))
    skills: Mapped[list[str]] = mapped_column(JSONType, default=list)
    rate_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_currency: Mapped[str] = mapped_column(String(3))
