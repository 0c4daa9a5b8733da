"""Payroll's tables: where each specialist is paid, the tenant's payroll profile, the runs, their
lines and the files handed to the bank.

A run is (tenant, period `YYYY-MM`, attempt). At most one *live* run per (tenant, period) — one
that is not a dry run and not rejected, failed or reversed — and at most one run *in flight* per
tenant (not posted yet, of any period: two would pay the same payables) are partial unique
indexes, so two finance users starting at once get one run and one refusal, decided by the
database.
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

from quire.db import Base, JSONType, utcnow
from quire.tenancy import TenantScoped


class PayoutScheme(enum.StrEnum):
    """How a specialist's bank account is identified in a payout file."""

    IBAN = "iban"  # IBAN (+ BIC where the scheme needs it): SEPA for EUR, pain.001.001.09 else
    LOCAL = "local"  # an account number and a bank code (routing / sort code), pain.001.001.09


class PayoutDetails(TenantScoped, Base):
    """A specialist's bank details (they maintain them) and finance's hold on their payouts."""

    __tablename__ = "payout_details"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    scheme: Mapped[str] = mapped_column(String(8))
    account_holder: Mapped[str] = mapped_column(String(140))  # ISO 20022 Max140Text
    iban: Mapped[str | None] = mapped_column(String(34))
    bic: Mapped[str | None] = mapped_column(String(11))
    account_number: Mapped[str | None] = mapped_column(String(34))
    bank_code: Mapped[str | None] = mapped_column(String(35))
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166 alpha-2 of the account
    # A stable digest of the account identifier: the gate refuses two specialists sharing one.
    account_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    details_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    on_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    hold_reason: Mapped[str | None] = mapped_column(String(500))
    hold_set_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    hold_set_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PayrollProfile(TenantScoped, Base):
    """The tenant's side of payroll: the account payouts leave from, and the minimum payouts."""

    __tablename__ = "payroll_profiles"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    debtor_name: Mapped[str] = mapped_column(String(140))
    debtor_iban: Mapped[str] = mapped_column(String(34))
    debtor_bic: Mapped[str] = mapped_column(String(11))
    # IANA zone the period's cutoff (the first instant of the next month) is taken in.
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    # {currency: minor units}: a line under its currency's minimum is withheld, payable later.
    minimum_payouts: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RunStatus(enum.StrEnum):
    DRAFT = "draft"  # computing, or a dry run's final state (it stops after the preview)
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    POSTED = "posted"
    PAID = "paid"  # the bank confirmed every line (reconciliation)
    REJECTED = "rejected"
    FAILED = "failed"  # the gate failed, the approval timed out, the flow run died or was cancelled
    REVERSED = "reversed"  # a posted, unpaid run undone as a whole


# States out of which a run no longer holds its period: a new attempt may start.
RELEASED = (RunStatus.REJECTED, RunStatus.FAILED, RunStatus.REVERSED)
_LIVE = text("NOT dry_run AND status NOT IN ('rejected', 'failed', 'reversed')")
# Not posted yet: two such runs (of two periods) would compute and pay the same payables.
_IN_FLIGHT = text("NOT dry_run AND status IN ('draft', 'awaiting_approval', 'approved')")


class PayrollRun(TenantScoped, Base):
    __tablename__ = "payroll_runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "period", "attempt"),
        # One live payroll per (tenant, period): the database decides, not a read-then-write.
        Index(
            "uq_payroll_runs_live_period",
            "tenant_id",
            "period",
            unique=True,
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
        # One run in flight per tenant, whatever its period.
        Index(
            "uq_payroll_runs_in_flight",
            "tenant_id",
            unique=True,
            postgresql_where=_IN_FLIGHT,
            sqlite_where=_IN_FLIGHT,
        ),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    attempt: Mapped[int] = mapped_column(Integer)
    cutoff_at: Mapped[dt.datetime]
    payout_date: Mapped[dt.date]
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.DRAFT)
    started_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None]
    flow_run_id: Mapped[uuid.UUID | None]
    # The rates the run used: {"provider", "rate_date", "base": "EUR", "rates": {ccy: "1.0812"}}.
    # A re-run of the same run converts with these, never with fresh ones.
    fx_rates: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # {ccy: {"payable_minor", "payout_minor", "lines", "withheld_minor", "withheld_lines"}}
    totals: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The gate's outcome: {"success", "suite", "failed": [...], "data_docs": path}.
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    posted_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LineStatus(enum.StrEnum):
    PAYABLE = "payable"  # computed, to be paid once the run is approved
    WITHHELD = "withheld"  # held, missing details, under the minimum: payable again next period
    POSTED = "posted"  # moved out of the payable into payout clearing
    PAID = "paid"  # the bank confirmed it (reconciliation)
    REVERSED = "reversed"  # reversed after posting (e.g. returned by the bank): payable again


class PayrollLine(TenantScoped, Base):
    """One specialist's payout from one source currency in one run."""

    __tablename__ = "payroll_lines"
    __table_args__ = (
        UniqueConstraint("run_id", "specialist_id", "source_currency"),
        UniqueConstraint("tenant_id", "end_to_end_id"),
        CheckConstraint("payable_minor > 0", name="payable_positive"),
        CheckConstraint("payout_minor IS NULL OR payout_minor > 0", name="payout_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payroll_runs.id"), index=True)
    specialist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    source_currency: Mapped[str] = mapped_column(String(3))
    payable_minor: Mapped[int] = mapped_column(BigInteger)
    payout_currency: Mapped[str] = mapped_column(String(3))
    payout_minor: Mapped[int | None] = mapped_column(BigInteger)
    fx_rate: Mapped[str | None] = mapped_column(String(40))  # payout per source unit, a Decimal
    fx_source: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(12))
    hold_reason: Mapped[str | None] = mapped_column(String(500))
    # The id the bank echoes in its statement (ISO 20022 EndToEndId, Max35Text).
    end_to_end_id: Mapped[str | None] = mapped_column(String(35))
    # The bank details the line was computed with (what the payout file says), frozen.
    payee: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    transfer_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    reversal_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FileStatus(enum.StrEnum):
    VALID = "valid"
    VOID = "void"  # its run was reversed: the bank must not execute it


class PayrollFile(TenantScoped, Base):
    """A file written for the bank or for people, kept with its digest so it can be proven."""

    __tablename__ = "payroll_files"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payroll_runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(32))  # pain.001.001.03 | pain.001.001.09 | csv
    media_type: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(String(1000))  # relative to the reports directory
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(35))  # ISO 20022 MsgId
    currencies: Mapped[list[str]] = mapped_column(JSONType, default=list)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(8), default=FileStatus.VALID)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
