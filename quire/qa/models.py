"""QA tables. The near-duplicate index: one MinHash signature per submission and its LSH bands.

A lookup finds candidates by band hash through `ix_qa_signature_bands_lookup` (tenant first, so it
also serves tenant scoping) and only then reads the candidates' signatures: the cost of a check
grows with the number of similar submissions, not with the size of the tenant's history.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, JSONType, utcnow
from quire.tenancy import TenantScoped


class QASignature(TenantScoped, Base):
    """A submission's MinHash signature (packed little-endian uint64 values)."""

    __tablename__ = "qa_signatures"

    submission_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    # Rework versions of one order never flag each other: lookups exclude the asking order.
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    shingles: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QASignatureBand(TenantScoped, Base):
    """One LSH band of a signature. `band_hash` mixes in the band number, so a lookup is a plain
    `band_hash IN (...)` over one index rather than a disjunction of (band, hash) pairs."""

    __tablename__ = "qa_signature_bands"
    __table_args__ = (
        Index("ix_qa_signature_bands_lookup", "tenant_id", "band_hash", "submission_id"),
    )

    # The lookup index starts with tenant_id: the mixin's separate tenant_id index would only
    # cost writes (one row per band per submission), so this table declares the column itself.
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    submission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("qa_signatures.submission_id"), primary_key=True
    )
    band: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    band_hash: Mapped[int] = mapped_column(BigInteger)


class RunStatus(enum.StrEnum):
    CHECKING = "checking"
    AWAITING_REVIEW = "awaiting_review"
    REWORK = "rework"
    ACCEPTED = "accepted"
    FAILED = "failed"


class QARun(TenantScoped, Base):
    """One QA pipeline run per submission (the relay starts exactly one)."""

    __tablename__ = "qa_runs"

    submission_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    flow_run_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.CHECKING)
    review_stages: Mapped[int]
    awaiting_stage: Mapped[int | None]
    summary: Mapped[str] = mapped_column(Text, default="")
    # The automated checks' results, kept once a run waits for a reviewer: a resumed run decides
    # on these, never on a fresh check whose answer may have changed while it waited.
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QAReview(TenantScoped, Base):
    """A human decision at one review stage of one submission (at most one per stage)."""

    __tablename__ = "qa_reviews"
    __table_args__ = (UniqueConstraint("submission_id", "stage"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    submission_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("submissions.id"), index=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    stage: Mapped[int]
    decision: Mapped[str] = mapped_column(String(16))
    comments: Mapped[str] = mapped_column(Text, default="")
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    reviewer_label: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
