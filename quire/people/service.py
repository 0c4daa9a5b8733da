"""Tenants and their people. Admins create users inside their own tenant only."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from pydantic import Field, StringConstraints, ValidationInfo, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from quire.db import utcnow
from quire.errors import Conflict, NotFound
from quire.inputs import Input
from quire.money import CurrencyCode, MinorUnits, validate_currency
from quire.people.actor import Actor
from quire.people.models import Role, SpecialistProfile, Tenant, User

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
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


def create_tenant(session: Session, slug: str, name: str) -> Tenant:
    if not SLUG.match(slug):
        raise ValueError("tenant slug: 3-64 lowercase letters, digits and dashes")
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f"tenant {slug!r} exists", code="tenant_exists")
    tenant = Tenant(slug=slug, name=name, created_at=utcnow())
    session.add(tenant)
    session.flush()
    return tenant


def add_user(session: Session, tenant_id: uuid.UUID, draft: UserDraft) -> User:
    """Create a user (and a specialist's profile). The session must be scoped to `tenant_id`."""
    if session.scalar(select(User.id).where(User.email == draft.email)) is not None:
        raise Conflict(f"a user with email {draft.email} exists", code="user_exists")
    user = User(
        tenant_id=tenant_id,
        email=draft.email,
        display_name=draft.display_name,
        password_hash=hash_password(draft.password),
        roles=[str(r) for r in draft.roles],
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    if draft.profile is not None:
        session.add(
            SpecialistProfile(
                tenant_id=tenant_id,
                user_id=user.id,
                payout_currency=draft.profile.payout_currency,
                skills=draft.profile.skills,
                rate_minor=draft.profile.rate_minor,
                rate_currency=validate_currency(
                    draft.profile.rate_currency or draft.profile.payout_currency
                ),
            )
        )
        session.flush()
    return user


def create_user(session: Session, actor: Actor, draft: UserDraft) -> User:
    actor.require(Role.ADMIN)
    return add_user(session, actor.tenant_id, draft)


def get_user(session: Session, actor: Actor, user_id: uuid.UUID) -> User:
    if user_id != actor.user_id:
        actor.require(Role.ADMIN, Role.MANAGER)
    user = session.get(User, user_id)
    if user is None or user.tenant_id != actor.tenant_id:
        raise NotFound(f"user {user_id} not found", code="user_not_found")
    return user


def list_users(session: Session, actor: Actor) -> list[User]:
    actor.require(Role.ADMIN, Role.MANAGER)
    return list(session.scalars(select(User).order_by(User.created_at, User.id)))


def get_profile(session: Session, user_id: uuid.UUID) -> SpecialistProfile | None:
    return session.scalar(select(SpecialistProfile).where(SpecialistProfile.user_id == user_id))
