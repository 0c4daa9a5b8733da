"""Authentication's shapes: a login, an API key to mint, and what a sign-in or a new key returns."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field

from quire.people.models import Role
from quire.people.schemas import EMAIL_MAX_LENGTH, UserOut
from quire.schemas import Input, Output


class LoginIn(Input):
    tenant: str = Field(min_length=1, max_length=64, description="The organisation's slug.")
    # Any address a user can have (no format check: an unknown one is a 401 like a wrong one).
    email: str = Field(min_length=3, max_length=EMAIL_MAX_LENGTH)
    password: str = Field(min_length=1, max_length=1024)


class ApiKeyIn(Input):
    model_config = ConfigDict(str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1, description="A subset of your own roles.")


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    user: UserOut


class ApiKeyOut(Output):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    prefix: str
    roles: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown once; store it now.")
