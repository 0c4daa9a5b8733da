"""People's shapes: who an admin may add (and the payout profile a specialist needs), and how a
user reads back."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from quire.auth.passwords import MIN_PASSWORD_LENGTH
from quire.money import CurrencyCode, MinorUnits
from quire.people.models import Role
from quire.schemas import Input, Output

# One rule for an address, checked by pydantic's own regex engine so that the OpenAPI schema
# states exactly what the server accepts: an RFC 5322 dot-atom, an @, and a host name with at
# least one dot (ASCII; no quoted local parts or address literals). Every address it matches
# is a valid `format: email`, so the schema promises nothing the server would refuse.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$"
# The longest address SMTP can carry (RFC 5321's 256-octet path, minus the angle brackets).
EMAIL_MAX_LENGTH = 254


class ProfileDraft(Input):
    payout_currency: CurrencyCode
    skills: list[str] = Field(default_factory=list, max_length=50)
    rate_minor: MinorUnits = Field(default=0, ge=0, le=10**9)
    rate_currency: CurrencyCode | None = None


class UserDraft(Input):
    """A person to add to a tenant. A specialist is paid, so they come with a payout profile."""

    email: str = Field(
        max_length=EMAIL_MAX_LENGTH,
        pattern=EMAIL_PATTERN,
        json_schema_extra={"format": "email"},
        description="Stored lower-cased; one user per email in a tenant.",
    )
    display_name: Annotated[str, StringConstraints(strip_whitespace=True)] = Field(
        min_length=1, max_length=200
    )
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)
    roles: list[Role] = Field(min_length=1)
    # validate_default: the profile rule below must also run when the field is left out.
    profile: ProfileDraft | None = Field(default=None, validate_default=True)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        local, _, domain = value.rpartition("@")
        if len(local) > 64 or len(domain) > 253:  # RFC 5321's limits, part of `format: email`
            raise ValueError("an address has at most 64 characters before the @, 253 after")
        return value.lower()

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value: list[Role]) -> list[Role]:
        return sorted(set(value))

    @field_validator("profile")
    @classmethod
    def _specialist_profile(
        cls, value: ProfileDraft | None, info: ValidationInfo
    ) -> ProfileDraft | None:
        # `roles` is declared first, so it is in info.data once it validated (absent if it failed).
        if value is None and Role.SPECIALIST in info.data.get("roles", ()):
            raise ValueError("a specialist needs a profile (payout currency at least)")
        return value


class UserOut(Output):
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    display_name: str
    roles: list[str]
    is_active: bool
    created_at: dt.datetime
