"""The marketplace's shapes: validated inputs (shared by the HTTP API and Python callers) and the
response shapes of orders, bids and submissions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from quire.db import utcnow
from quire.money import AmountMinor, CurrencyCode
from quire.orders.models import OrderMode
from quire.qa.config import QAConfig
from quire.schemas import Input, Output

MAX_CONTENT_CHARS = 500_000


class OrderDraft(Input):
    model_config = ConfigDict(str_strip_whitespace=True)

    title: str = Field(min_length=3, max_length=200)
    brief: str = Field(min_length=1, max_length=20_000)
    skill: str | None = Field(default=None, min_length=1, max_length=64)
    fee_minor: AmountMinor
    currency: CurrencyCode
    deadline: dt.datetime = Field(
        description="When the work is due: a timestamp with a timezone offset, in the future and "
        "at most three years (3 x 366 days) away."
    )
    mode: OrderMode = OrderMode.CLAIM
    qa: QAConfig = Field(default_factory=QAConfig)
    publish: bool = Field(default=False, description="Publish straight away instead of a draft.")

    @field_validator("deadline")
    @classmethod
    def _future_deadline(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("deadline needs a timezone offset (e.g. 2030-01-31T17:00:00Z)")
        if value <= utcnow():
            raise ValueError("deadline is in the past")
        if value > utcnow() + dt.timedelta(days=3 * 366):
            raise ValueError("deadline is more than three years away")
        return value.astimezone(dt.UTC)


class BidDraft(Input):
    model_config = ConfigDict(str_strip_whitespace=True)

    amount_minor: AmountMinor
    note: str = Field(default="", max_length=5_000)


class SubmissionDraft(Input):
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content is blank")
        return value


# --- responses ------------------------------------------------------------------------------


class OrderOut(Output):
    id: uuid.UUID
    title: str
    brief: str
    skill: str | None
    fee_minor: int
    currency: str
    deadline: dt.datetime
    mode: str
    status: str
    qa_config: dict[str, Any]
    created_by: uuid.UUID
    specialist_id: uuid.UUID | None
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    published_at: dt.datetime | None
    claimed_at: dt.datetime | None
    submitted_at: dt.datetime | None


class BidOut(Output):
    id: uuid.UUID
    order_id: uuid.UUID
    specialist_id: uuid.UUID
    amount_minor: int
    note: str
    status: str
    created_at: dt.datetime


class SubmissionOut(Output):
    id: uuid.UUID
    order_id: uuid.UUID
    specialist_id: uuid.UUID
    number: int
    content_hash: str
    content: str
    created_at: dt.datetime
