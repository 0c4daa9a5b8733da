"""Near-duplicate index: one MinHash signature per submission, and its LSH band hashes.

A lookup finds candidates by band hash through `ix_qa_signature_bands_lookup` (tenant first, so it
also serves tenant scoping) and only then reads the candidates' signatures: the cost of a check
grows with the number of similar submissions, not with the size of the tenant's history.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, SmallInteger
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, utcnow
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
