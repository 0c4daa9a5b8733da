"""The audit log's one table. Rows are only ever inserted (migration 0010's triggers refuse the
rest), so an entry says what was true when it was written, for good."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, BigIntId, JSONType, utcnow
from quire.tenancy import TenantScoped


class AuditEntry(TenantScoped, Base):
    """One action on one object: by whom (`actor_id` None: Quire itself), with which roles,
    under which request or flow run, and the object's relevant fields before and after.

    `domain` is derived from the action when the entry is written (see `service.domain_of`) and
    stored, so "finance sees finance entries" is an indexed equality, not a pattern match.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_tenant_id_id", "tenant_id", "id"),
        Index("ix_audit_log_tenant_object", "tenant_id", "object_type", "object_id", "id"),
        Index("ix_audit_log_tenant_actor", "tenant_id", "actor_id", "id"),
        Index("ix_audit_log_tenant_action", "tenant_id", "action", "id"),
        Index("ix_audit_log_tenant_domain", "tenant_id", "domain", "id"),
        Index("ix_audit_log_tenant_at", "tenant_id", "at"),
        # Ids are the keyset cursor: never reuse one on SQLite.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[uuid.UUID | None]
    actor_roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(64))
    # As long as the API accepts an X-Request-ID (api/observability.py: up to 128 characters).
    request_id: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    domain: Mapped[str] = mapped_column(String(16))
