"""Ledger tables. Sign convention: an entry's amount is positive for a debit, negative for a credit;
an account's `balance` is the signed sum of its entries (debit-positive)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, BigIntId, JSONType, utcnow
from quire.tenancy import TenantScoped


class Side(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class AccountKind(enum.StrEnum):
    CLIENT_RECEIVABLE = "client_receivable"
    SPECIALIST_PAYABLE = "specialist_payable"
    PLATFORM_REVENUE = "platform_revenue"
    FINES_INCOME = "fines_income"
    PAYOUT_CLEARING = "payout_clearing"
    BANK = "bank"
    FX_LIQUIDITY = "fx_liquidity"
    FX_GAIN_LOSS = "fx_gain_loss"
    BANK_FEES = "bank_fees"  # what the bank kept, or small differences written off


class OwnerType(enum.StrEnum):
    PLATFORM = "platform"
    CLIENT = "client"
    SPECIALIST = "specialist"


class Account(TenantScoped, Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "owner_key", "currency"),
        CheckConstraint("normal_side IN ('debit', 'credit')", name="normal_side_known"),
        CheckConstraint(
            "NOT no_negative OR "
            "(CASE WHEN normal_side = 'debit' THEN balance ELSE -balance END) >= 0",
            name="no_negative_balance",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(32))
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID | None]
    # owner_id or 'platform': NULLs are never equal in a unique index, so the key is spelled out.
    owner_key: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    normal_side: Mapped[str] = mapped_column(String(6))
    no_negative: Mapped[bool] = mapped_column(default=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Set by the database when the account's first entry is inserted, never reset: from then on
    # every column but `balance` is frozen (migration 0005). Not the application's to write.
    has_entries: Mapped[bool] = mapped_column(default=False, server_default=false())


class Transfer(TenantScoped, Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    effective_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ledger_transfers.id"), unique=True
    )
    # PostgreSQL fills this with txid_current(): the commit-time balance check finds the
    # transaction's own transfers by it.
    txid: Mapped[int | None] = mapped_column(BigInteger, index=True)


class Entry(TenantScoped, Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_ledger_entries_account_time", "account_id", "effective_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transfers.id"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_accounts.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    effective_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


class Invoice(TenantScoped, Base):
    """One version of a specialist's invoice for a period. Issued versions are never edited: a
    correction is a new version (with adjusting transfers) that supersedes the old one."""

    __tablename__ = "ledger_invoices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "specialist_id", "period", "version"),
        CheckConstraint("status IN ('draft', 'issued', 'paid', 'void')", name="status_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    specialist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(8), default=InvoiceStatus.DRAFT)
    currency: Mapped[str] = mapped_column(String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    supersedes_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ledger_invoices.id"))
    lock_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    issued_at: Mapped[dt.datetime | None]
    paid_at: Mapped[dt.datetime | None]
    voided_at: Mapped[dt.datetime | None]

    __mapper_args__ = {"version_id_col": lock_version}


class CommitCheck(Base):
    """PostgreSQL only: the append-only journal of the commit-time balance check (migration
    0005). A row with `passed` false arms a deferred check of its transaction (inserting it
    queues the check, whoever inserts it); the check writes one with `passed` true when the
    transaction balanced, after which the transaction's next ledger write arms a new check. Rows
    carry their own transaction's id; UPDATE, DELETE and TRUNCATE are refused."""

    __tablename__ = "ledger_commit_checks"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    txid: Mapped[int] = mapped_column(BigInteger, index=True)
    passed: Mapped[bool]


class ClosedPeriod(TenantScoped, Base):
    """A closed accounting period of a tenant: no entry dated in [starts_at, ends_at) may be
    added while it is closed (ledger/README.md, invariant 8; refused by the database too).
    Reopening (an admin, with a reason) stamps `reopened_*` once; the row itself stays, so the
    history of closes and reopens is the table. A period can be closed again after a reopen
    (a new row); at most one unreopened closure per (tenant, period)."""

    __tablename__ = "ledger_closed_periods"
    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="range_ordered"),
        CheckConstraint(
            "(reopened_at IS NULL) = (reopen_reason IS NULL)", name="reopen_has_reason"
        ),
        Index(
            "uq_ledger_closed_periods_open",
            "tenant_id",
            "period",
            unique=True,
            postgresql_where=text("reopened_at IS NULL"),
            sqlite_where=text("reopened_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    closed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    reopened_at: Mapped[dt.datetime | None]
    reopened_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    reopen_reason: Mapped[str | None] = mapped_column(String(500))
