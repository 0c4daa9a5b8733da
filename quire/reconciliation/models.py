"""Reconciliation's tables: the bank's statements and their lines as the bank sent them, each
reconciliation run, the matches it made (or finance made by hand) and the exceptions it raised.

A statement is stored once per tenant, by the bank's statement id for its account; the sha256
of the file it came in finds a re-upload of the same bytes (a file may hold several
statements). Its lines are facts and never change; what reconciliation concluded about a line
is its match (at most one live match per bank line, a partial unique index) or its open
exception. Amounts are signed integers in minor units: credits (money in) positive, debits
(money out) negative, as on the statement.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, BigIntId, JSONType, utcnow
from quire.tenancy import TenantScoped


def bank_line_reference(bank_line_id: int) -> str:
    """The `reference` of every ledger transfer reconciliation posts because of one bank line
    (a settled payout, money received, a fee written off, a return after settlement): the
    statement invariant (`expectations.py`) finds a statement's bank movements in the ledger by
    it. Several transfers may carry one line's reference (a payout file settled by one debit)."""
    return f"bank-line:{bank_line_id}"


class BankStatement(TenantScoped, Base):
    """One statement of one account, as the bank sent it (camt.053 or MT940)."""

    __tablename__ = "bank_statements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account", "statement_id"),
        # One file may hold several statements: the file's digest finds them all again.
        Index("ix_bank_statements_tenant_sha256", "tenant_id", "sha256"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    statement_id: Mapped[str] = mapped_column(String(35))  # camt Stmt/Id, MT940 :20:/:28C:
    account: Mapped[str] = mapped_column(String(64))  # IBAN or the bank's account id
    currency: Mapped[str] = mapped_column(String(3))
    format: Mapped[str] = mapped_column(String(24))  # camt.053.001.08 | mt940
    file_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    opening_minor: Mapped[int] = mapped_column(BigInteger)
    opening_date: Mapped[dt.date]
    closing_minor: Mapped[int] = mapped_column(BigInteger)
    closing_date: Mapped[dt.date]
    created_by_bank_at: Mapped[dt.datetime | None]
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BankLine(TenantScoped, Base):
    """One entry of a statement (camt Ntry / MT940 :61: with its :86:)."""

    __tablename__ = "bank_lines"
    __table_args__ = (
        UniqueConstraint("statement_id", "position"),
        CheckConstraint("amount_minor <> 0", name="amount_not_zero"),
        Index("ix_bank_lines_tenant_end_to_end", "tenant_id", "end_to_end_id"),
        Index("ix_bank_lines_tenant_amount", "tenant_id", "currency", "amount_minor"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    statement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bank_statements.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 1-based order on the statement
    booking_date: Mapped[dt.date]
    value_date: Mapped[dt.date]
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # + credit (in), - debit (out)
    currency: Mapped[str] = mapped_column(String(3))
    end_to_end_id: Mapped[str | None] = mapped_column(String(35))
    bank_reference: Mapped[str | None] = mapped_column(String(64))
    customer_reference: Mapped[str | None] = mapped_column(String(64))
    counterparty_name: Mapped[str | None] = mapped_column(String(140))
    counterparty_account: Mapped[str | None] = mapped_column(String(64))
    remittance: Mapped[str | None] = mapped_column(Text)
    transaction_code: Mapped[str | None] = mapped_column(String(64))
    # A payment the bank returned or reversed: what it says and why (e.g. AC04 closed account).
    returned: Mapped[bool] = mapped_column(Boolean, default=False)
    return_reason: Mapped[str | None] = mapped_column(String(64))
    raw_reference: Mapped[str | None] = mapped_column(String(140))


class ReconciliationStatus(enum.StrEnum):
    RUNNING = "running"
    CLEAN = "clean"  # every line matched, every suite passed
    EXCEPTIONS = "exceptions"  # suites passed; open exceptions wait for finance
    FAILED = "failed"  # a suite failed: the ledger contradicts itself or the bank


class Reconciliation(TenantScoped, Base):
    """One run of matching and proving, over a statement or a period."""

    __tablename__ = "reconciliations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'clean', 'exceptions', 'failed')", name="status_known"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    period: Mapped[str | None] = mapped_column(String(7))  # YYYY-MM
    statement_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bank_statements.id"))
    status: Mapped[str] = mapped_column(String(12), default=ReconciliationStatus.RUNNING)
    # {"matched": n, "settled": n, "returned": n, "exceptions": n, "by_rule": {rule: n}}
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The invariant suites' outcome: {"success", "failed": [...], "data_docs_index", "seconds"}
    suites: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    flow_run_id: Mapped[uuid.UUID | None]
    started_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class MatchRule(enum.StrEnum):
    END_TO_END = "end_to_end"  # 1: the end-to-end id of a payout line
    AMOUNT_DATE_NAME = "amount_date_name"  # 2: amount + currency + value date + name
    FILE_TOTAL = "file_total"  # 3: one debit for all the lines of a payout file
    CLIENT_REFERENCE = "client_reference"  # money in naming an order or invoice
    RETURN = "return"  # a payment the bank returned: the payout line is reversed
    MANUAL = "manual"  # finance, with a reason
    WRITE_OFF = "write_off"  # a small difference within tolerance, to bank fees


class BankMatch(TenantScoped, Base):
    """What one bank line was matched with, by which rule, and what was posted for it."""

    __tablename__ = "bank_matches"
    __table_args__ = (
        # A bank line is matched once (a reversed match frees it).
        Index(
            "uq_bank_matches_live_line",
            "bank_line_id",
            unique=True,
            postgresql_where=text("NOT undone"),
            sqlite_where=text("NOT undone"),
        ),
        Index("ix_bank_matches_payroll_line", "tenant_id", "payroll_line_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    reconciliation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reconciliations.id"), index=True
    )
    bank_line_id: Mapped[int] = mapped_column(ForeignKey("bank_lines.id"))
    rule: Mapped[str] = mapped_column(String(20))
    payroll_line_id: Mapped[int | None] = mapped_column(ForeignKey("payroll_lines.id"))
    payroll_file_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payroll_files.id"))
    reference: Mapped[str | None] = mapped_column(String(140))  # the order or invoice named
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # what this match settles
    transfer_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    reason: Mapped[str | None] = mapped_column(String(500))  # manual matches and write-offs
    matched_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    undone: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ExceptionSide(enum.StrEnum):
    BANK = "bank"  # a bank line nothing in Quire explains
    LEDGER = "ledger"  # a payout Quire sent that no bank line confirms


class ExceptionStatus(enum.StrEnum):
    OPEN = "open"
    MATCHED = "matched"  # finance matched it by hand
    WRITTEN_OFF = "written_off"
    RESOLVED = "resolved"  # a later statement matched it


class ReconciliationException(TenantScoped, Base):
    """An item the rules could not match, waiting in finance's queue."""

    __tablename__ = "reconciliation_exceptions"
    __table_args__ = (
        CheckConstraint("(bank_line_id IS NULL) <> (payroll_line_id IS NULL)", name="one_side"),
        # One open exception per item, whichever run raised it.
        Index(
            "uq_reconciliation_exceptions_open_bank_line",
            "bank_line_id",
            unique=True,
            postgresql_where=text("status = 'open' AND bank_line_id IS NOT NULL"),
            sqlite_where=text("status = 'open' AND bank_line_id IS NOT NULL"),
        ),
        Index(
            "uq_reconciliation_exceptions_open_payroll_line",
            "payroll_line_id",
            unique=True,
            postgresql_where=text("status = 'open' AND payroll_line_id IS NOT NULL"),
            sqlite_where=text("status = 'open' AND payroll_line_id IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    reconciliation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reconciliations.id"), index=True
    )
    side: Mapped[str] = mapped_column(String(8))
    bank_line_id: Mapped[int | None] = mapped_column(ForeignKey("bank_lines.id"))
    payroll_line_id: Mapped[int | None] = mapped_column(ForeignKey("payroll_lines.id"))
    reason: Mapped[str] = mapped_column(String(500))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12), default=ExceptionStatus.OPEN)
    resolution: Mapped[str | None] = mapped_column(String(500))
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
