"""Response bodies. Request bodies are the domain's own input models (quire.*.schemas)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class OrderOut(Out):
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


class BidOut(Out):
    id: uuid.UUID
    order_id: uuid.UUID
    specialist_id: uuid.UUID
    amount_minor: int
    note: str
    status: str
    created_at: dt.datetime


class SubmissionOut(Out):
    id: uuid.UUID
    order_id: uuid.UUID
    specialist_id: uuid.UUID
    number: int
    content_hash: str
    content: str
    created_at: dt.datetime


class UserOut(Out):
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    display_name: str
    roles: list[str]
    is_active: bool
    created_at: dt.datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    user: UserOut


class ApiKeyOut(Out):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    prefix: str
    roles: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown once; store it now.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )
