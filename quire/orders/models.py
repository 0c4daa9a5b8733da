from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, JSONType, utcnow
from quire.orders.state import OrderStatus
from quire.tenancy import TenantScoped


class OrderMode(enum.StrEnum):
    CLAIM = "claim"  # first come, first served: one conditional UPDATE picks the winner
    BIDDING = "bidding"  # specialists bid; a manager awards one bid


class BidStatus(enum.StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    AWARDED = "awarded"
    LOST = "lost"


class Order(TenantScoped, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("fee_minor > 0", name="fee_positive"),
        Index("ix_orders_tenant_status_created", "tenant_id", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(200))
    brief: Mapped[str] = mapped_column(Text)
    skill: Mapped[str | None] = mapped_column(String(64), index=True)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    deadline: Mapped[dt.datetime]
    # Which automated checks and how many human review stages QA runs (see the QA pipeline).
    qa_config: Mapped[dict] = mapped_column(JSONType, default=dict)
    mode: Mapped[str] = mapped_column(String(16), default=OrderMode.CLAIM)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.DRAFT)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    specialist_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None]
    claimed_at: Mapped[dt.datetime | None]
    submitted_at: Mapped[dt.datetime | None]


class Bid(TenantScoped, Base):
    __tablename__ = "bids"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        # At most one live bid per specialist per order; withdrawn ones stay as history.
        Index(
            "uq_bids_one_active",
            "order_id",
            "specialist_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    specialist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=BidStatus.ACTIVE)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Submission(TenantScoped, Base):
    __tablename__ = "submissions"
    __table_args__ = (UniqueConstraint("order_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    specialist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    number: Mapped[int]
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
