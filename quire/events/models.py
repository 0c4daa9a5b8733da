from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, BigIntId, utcnow
from quire.tenancy import TenantScoped


class Event(TenantScoped, Base):
    """Something that happened, written in the same transaction as the change it describes.

    The id is the stream position (SSE `Last-Event-ID`); `relayed_at` is set once the outbox
    relay has handed the event to Prefect.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index(
            "ix_events_unrelayed",
            "id",
            postgresql_where=text("relayed_at IS NULL"),
            sqlite_where=text("relayed_at IS NULL"),
        ),
        # Never reuse an id on SQLite, even after pruning: ids are stream positions.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    aggregate_type: Mapped[str] = mapped_column(String(32))
    aggregate_id: Mapped[uuid.UUID]
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    relayed_at: Mapped[dt.datetime | None]
