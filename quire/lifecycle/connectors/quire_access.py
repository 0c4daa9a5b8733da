"""Quire's own side of a person's lifecycle: their specialist account, their access, their
payouts. The "provider" is Quire's database; each step is one transaction in it, audited, and
goes through the owning domain's own rules (people, auth, payroll), never around them.

Idempotency: a specialist created by a step is audited with the step's idempotency key, so an
attempt that committed but whose answer was lost finds its own user again on retry, and a user
that already existed with that email (a stranger to this run) is never adopted, nor later
removed by a compensation.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from quire.audit import service as audit
from quire.audit.models import AuditEntry
from quire.auth.models import ApiKey, RefreshToken
from quire.db import Database, utcnow
from quire.errors import DomainError
from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
)
from quire.people import service as people
from quire.people.actor import SYSTEM_USER_ID, Actor
from quire.people.models import Role, User
from quire.people.schemas import ProfileDraft, UserDraft

CREATED = "lifecycle.specialist_created"


@dataclass(frozen=True)
class QuireConnection:
    """Quire's own database; nothing to configure per tenant."""

    database: Database
    payout_cooling_days: int = 0


def _actor(tenant_id: uuid.UUID) -> Actor:
    """Quire's lifecycle automation acting in one tenant: it administers accounts and, on an
    exit, holds payouts as finance would (it is nobody's own payout, so four eyes hold)."""
    return Actor(SYSTEM_USER_ID, tenant_id, frozenset({Role.ADMIN, Role.FINANCE}))


def _fail(detail: str) -> PermanentFailure:
    return PermanentFailure(Provider.QUIRE, detail)


def _user(session: Session, params: Any) -> User:
    if params.get("user_id"):
        try:
            user = session.get(User, uuid.UUID(str(params["user_id"])))
        except ValueError as exc:
            raise _fail(f"user_id {params['user_id']!r} is not a UUID") from exc
    elif params.get("email"):
        user = session.scalar(select(User).where(User.email == str(params["email"]).lower()))
    else:
        raise _fail("name the person by email or user_id")
    if user is None:
        raise _fail("no Quire user is that person")
    return user


def _created_by(session: Session, user: User, key: str) -> bool:
    entries = session.scalars(
        select(AuditEntry.after).where(
            AuditEntry.action == CREATED,
            AuditEntry.object_type == "user",
            AuditEntry.object_id == str(user.id),
        )
    )
    return any((after or {}).get("step") == key for after in entries)


def create_specialist(connection: QuireConnection, call: StepCall) -> StepOutcome:
    """A specialist account (and payout profile) for the new person; their password is random
    and unknown to anyone until they set one. Undo: `remove_specialist`."""
    p = call.params
    with connection.database.session(call.tenant_id, write=True) as session:
        email = str(p.get("email", "")).lower()
        existing = session.scalar(select(User).where(User.email == email))
        if existing is not None:
            if not _created_by(session, existing, call.idempotency_key):
                raise _fail(f"a Quire user with email {email} exists already: not adopted")
            user = existing
        else:
            try:
                draft = UserDraft(
                    email=email,
                    display_name=str(p.get("display_name", "")),
                    password=secrets.token_urlsafe(24),
                    roles=[Role.SPECIALIST],
                    profile=ProfileDraft(
                        payout_currency=str(p.get("payout_currency") or "EUR"),
                        skills=list(p.get("skills") or []),
                    ),
                )
            except ValidationError as exc:
                raise _fail(f"not a valid specialist: {exc.errors()[0]['msg']}") from exc
            try:
                user = people.add_user(session, call.tenant_id, draft)
            except DomainError as exc:
                raise _fail(exc.message) from exc
            audit.record(
                session,
                None,
                CREATED,
                "user",
                user.id,
                after={
                    "email": user.email,
                    "roles": sorted(user.roles),
                    "step": call.idempotency_key,
                },
            )
        return StepOutcome(
            output={"user_id": str(user.id), "email": user.email},
            undo={"user_id": str(user.id)},
        )


def _revoke(session: Session, user: User) -> dict[str, int]:
    now = utcnow()
    tokens = session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    keys = session.execute(
        update(ApiKey)
        .where(ApiKey.owner_id == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return {"sessions_revoked": tokens, "api_keys_revoked": keys}


def remove_specialist(connection: QuireConnection, call: StepCall) -> StepOutcome:
    """Undo of create_specialist: the account is deactivated and its access revoked (a user is
    never deleted: orders, audit entries and the ledger name them)."""
    with connection.database.session(call.tenant_id, write=True) as session:
        user = session.get(User, uuid.UUID(str(call.params["user_id"])))
        if user is None:
            return StepOutcome(output={"removed": False})
        revoked = _revoke(session, user)
        if user.is_active:
            user.is_active = False
            audit.record(
                session,
                None,
                "user.deactivated",
                "user",
                user.id,
                before={"is_active": True},
                after={"is_active": False},
            )
        return StepOutcome(output={"removed": True, **revoked})


def revoke_access(connection: QuireConnection, call: StepCall) -> StepOutcome:
    """An exit: every session (refresh token family) and API key of the person revoked and the
    account deactivated, so even an access token still in its 15 minutes is refused. Nothing to
    undo: access revoked stays revoked."""
    with connection.database.session(call.tenant_id, write=True) as session:
        user = _user(session, call.params)
        revoked = _revoke(session, user)
        was_active = user.is_active
        user.is_active = False
        audit.record(
            session,
            None,
            "user.access_revoked",
            "user",
            user.id,
            before={"is_active": was_active},
            after={"is_active": False, **revoked},
        )
        return StepOutcome(output={"user_id": str(user.id), **revoked})


# Payroll's service is imported by the two steps that use it, not with this module: it
# brings pandas and the payslip renderer (0.4 s), and every lifecycle flow run is a process
# of its own that imports this module for quire.create_specialist; only an exit holds payouts.


def hold_payouts(connection: QuireConnection, call: StepCall) -> StepOutcome:
    """Stop the person's payouts (payroll's hold) until finance releases them. Undo:
    `release_payouts`. A specialist without payout details is withheld by every run anyway."""
    from quire.payroll import service as payroll  # here, not above: see hold_payouts

    reason = str(call.params.get("reason") or "lifecycle: the person is leaving")
    with connection.database.session(call.tenant_id, write=True) as session:
        user = _user(session, call.params)
        actor = _actor(call.tenant_id)
        try:
            payroll.set_hold(session, actor, user.id, reason, connection.payout_cooling_days)
        except DomainError as exc:
            if exc.code == "payout_details_not_found":
                return StepOutcome(output={"user_id": str(user.id), "held": False})
            raise _fail(exc.message) from exc
        return StepOutcome(
            output={"user_id": str(user.id), "held": True}, undo={"user_id": str(user.id)}
        )


def release_payouts(connection: QuireConnection, call: StepCall) -> StepOutcome:
    from quire.payroll import service as payroll  # here, not above: see hold_payouts

    with connection.database.session(call.tenant_id, write=True) as session:
        user_id = uuid.UUID(str(call.params["user_id"]))
        try:
            payroll.lift_hold(
                session,
                _actor(call.tenant_id),
                user_id,
                "lifecycle: compensated",
                connection.payout_cooling_days,
            )
        except DomainError as exc:
            if exc.code not in ("payout_details_not_found", "not_found"):
                raise _fail(exc.message) from exc
        return StepOutcome(output={"user_id": str(user_id), "released": True})
