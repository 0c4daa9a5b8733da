"""Tenants and their people. Admins create users inside their own tenant only."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.audit import service as audit
from quire.auth.passwords import hash_password
from quire.db import utcnow
from quire.errors import Conflict, NotFound
from quire.money import validate_currency
from quire.people.actor import Actor
from quire.people.models import Role, SpecialistProfile, Tenant, User
from quire.people.schemas import UserDraft

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")


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
    user = add_user(session, actor.tenant_id, draft)
    audit.record(
        session,
        actor,
        "user.created",
        "user",
        user.id,
        after={"email": user.email, "roles": sorted(user.roles), "is_active": user.is_active},
    )
    return user


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
