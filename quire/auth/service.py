"""Logging in, rotating refresh tokens, API keys.

Some failures must still write (a failed login counts towards lockout; a reused refresh token
revokes its family), so these functions return `Denied` instead of raising: the caller commits,
then raises `denied.error`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from quire.audit import service as audit
from quire.auth import access_tokens, lockout, passwords, rate_limit
from quire.auth.access_tokens import AccessClaims, TokenConfig
from quire.auth.models import ApiKey, RefreshToken
from quire.auth.secrets import digest, new_secret
from quire.errors import DomainError, Forbidden, Locked, NotFound, Unauthenticated
from quire.people.actor import Actor
from quire.people.models import Role, Tenant, User
from quire.tenancy import ALL_TENANTS

BAD_CREDENTIALS = "invalid tenant, email or password"


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int
    lockout_seconds: int
    refresh_ttl_seconds: int

    def lockout_policy(self) -> lockout.LockoutPolicy:
        return lockout.LockoutPolicy(self.max_failures, self.lockout_seconds)


@dataclass(frozen=True)
class AttemptLimits:
    """How many login (or refresh) attempts pass in any `window_seconds` span: per client
    address, and per account (a login's tenant and email; a refresh token's owner)."""

    per_ip: int
    per_user: int
    window_seconds: int


def count_login_attempt(
    session: Session, limits: AttemptLimits, *, ip: str, tenant: str, email: str, now: dt.datetime
) -> None:
    """Count a login against its address and its account, or raise RateLimited (429).

    All or nothing in the caller's transaction: an attempt the second limit refuses is not
    counted by the first either. Unknown accounts are counted like real ones.
    """
    _count(session, limits, now, "login", (ip,), (tenant, normalize_email(email)))


def count_refresh_attempt(
    session: Session, limits: AttemptLimits, *, ip: str, owner: uuid.UUID | None, now: dt.datetime
) -> None:
    """Count a refresh against its address and its token's owner (an unknown token counts as one
    owner), or raise RateLimited (429)."""
    _count(session, limits, now, "refresh", (ip,), (str(owner or "unknown"),))


def _count(
    session: Session,
    limits: AttemptLimits,
    now: dt.datetime,
    action: str,
    address: tuple[str, ...],
    account: tuple[str, ...],
) -> None:
    for key, limit in (
        (rate_limit.key(action, "ip", *address), limits.per_ip),
        (rate_limit.key(action, "user", *account), limits.per_user),
    ):
        rate_limit.hit(session, key, limit=limit, window_seconds=limits.window_seconds, now=now)


@dataclass(frozen=True)
class Granted:
    user: User
    access_token: str
    refresh_token: str
    refresh_expires_at: dt.datetime


@dataclass(frozen=True)
class Denied:
    error: DomainError


def _grant(
    session: Session,
    user: User,
    tokens: TokenConfig,
    policy: LoginPolicy,
    now: dt.datetime,
    family_id: uuid.UUID | None = None,
) -> Granted:
    secret = new_secret()
    expires_at = now + dt.timedelta(seconds=policy.refresh_ttl_seconds)
    session.add(
        RefreshToken(
            tenant_id=user.tenant_id,
            user_id=user.id,
            family_id=family_id or uuid.uuid4(),
            token_hash=digest(secret),
            issued_at=now,
            expires_at=expires_at,
        )
    )
    access = access_tokens.issue(
        tokens, AccessClaims(user.id, user.tenant_id, frozenset(user.roles)), now=now
    )
    return Granted(user, access, secret, expires_at)


def normalize_email(email: str) -> str:
    """The one spelling of an email address used for lookups and per-user limits."""
    return email.strip().lower()


def login(
    session: Session,
    tenant_slug: str,
    email: str,
    password: str,
    *,
    tokens: TokenConfig,
    policy: LoginPolicy,
    now: dt.datetime,
) -> Granted | Denied:
    """Check a password, counting failures per (tenant, email) whether or not the account exists.

    Every attempt that is not locked out performs the same statements and exactly one Argon2
    verification (against a dummy hash when there is no usable account), so neither the answer
    (401, then 423 after `max_failures`) nor its timing says whether an account exists.
    """
    normalized = normalize_email(email)
    user = session.scalar(
        select(User)
        .join(Tenant, Tenant.id == User.tenant_id)
        .where(Tenant.slug == tenant_slug, User.email == normalized)
        .execution_options(**ALL_TENANTS)
    )
    streak = lockout.key(tenant_slug, normalized)
    rules = policy.lockout_policy()
    locked_until = lockout.enter(session, streak, policy=rules, now=now)
    if locked_until is not None:
        return Denied(locked_error(locked_until, now))
    usable = user if user is not None and user.is_active else None
    if not passwords.verify_password(usable.password_hash if usable else None, password):
        lockout.fail(session, streak, policy=rules, now=now)
        return Denied(Unauthenticated(BAD_CREDENTIALS, code="invalid_credentials"))
    assert usable is not None  # verify_password never accepts the dummy hash
    lockout.clear(session, streak)
    session.info["tenant_id"] = usable.tenant_id
    if passwords.needs_rehash(usable.password_hash):
        usable.password_hash = passwords.hash_password(password)
    return _grant(session, usable, tokens, policy, now)


def locked_error(locked_until: dt.datetime, now: dt.datetime) -> Locked:
    """The one 423 answer, for real and unknown accounts alike (`retry_after` in seconds)."""
    wait = (locked_until - now).total_seconds()
    return Locked(
        "too many failed logins; the account is locked for a while",
        locked_until=locked_until.isoformat(),
        retry_after=max(1, math.ceil(wait)),
    )


def refresh(
    session: Session,
    presented: str,
    *,
    tokens: TokenConfig,
    policy: LoginPolicy,
    now: dt.datetime,
) -> Granted | Denied:
    """Rotate: one UPDATE marks the presented token used, so only one caller can ever win it."""
    token_hash = digest(presented)
    won = session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_hash,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(rotated_at=now)
        .returning(RefreshToken.user_id, RefreshToken.family_id, RefreshToken.tenant_id)
        .execution_options(**ALL_TENANTS)
    ).first()
    if won is None:
        known = session.execute(
            select(RefreshToken.family_id, RefreshToken.rotated_at)
            .where(RefreshToken.token_hash == token_hash)
            .execution_options(**ALL_TENANTS)
        ).first()
        if known is not None and known.rotated_at is not None:
            _revoke_family(session, known.family_id, now)
            return Denied(
                Unauthenticated(
                    "refresh token reuse detected; every session of this login is revoked",
                    code="refresh_token_reused",
                )
            )
        return Denied(
            Unauthenticated("invalid or expired refresh token", code="invalid_refresh_token")
        )
    session.info["tenant_id"] = won.tenant_id
    user = session.scalar(select(User).where(User.id == won.user_id))
    if user is None or not user.is_active:
        _revoke_family(session, won.family_id, now)
        return Denied(Unauthenticated("the user is no longer active", code="user_inactive"))
    return _grant(session, user, tokens, policy, now, family_id=won.family_id)


def token_owner(session: Session, presented: str) -> uuid.UUID | None:
    """The user a refresh token belongs to (for per-user rate limits), whatever its state."""
    return session.scalar(
        select(RefreshToken.user_id)
        .where(RefreshToken.token_hash == digest(presented))
        .execution_options(**ALL_TENANTS)
    )


def logout(session: Session, presented: str, *, now: dt.datetime) -> None:
    family = session.scalar(
        select(RefreshToken.family_id)
        .where(RefreshToken.token_hash == digest(presented))
        .execution_options(**ALL_TENANTS)
    )
    if family is not None:
        _revoke_family(session, family, now)


def _revoke_family(session: Session, family_id: uuid.UUID, now: dt.datetime) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(**ALL_TENANTS)
    )


# --- API keys --------------------------------------------------------------------------------

API_KEY_PREFIX = "qk_"


def create_api_key(
    session: Session, actor: Actor, name: str, roles: list[Role]
) -> tuple[ApiKey, str]:
    """A key acting for `actor` with at most the actor's own roles. The secret is shown once."""
    if actor.via_api_key is not None:
        raise Forbidden("API keys cannot mint API keys", code="api_key_not_allowed")
    wanted = {str(r) for r in roles}
    if not wanted <= actor.roles:
        raise Forbidden("an API key cannot hold roles its owner lacks", code="role_not_held")
    prefix = secrets.token_hex(6)
    secret = f"{API_KEY_PREFIX}{prefix}_{new_secret()}"
    key = ApiKey(
        tenant_id=actor.tenant_id,
        owner_id=actor.user_id,
        name=name,
        prefix=prefix,
        key_hash=digest(secret),
        roles=sorted(wanted),
    )
    session.add(key)
    session.flush()
    audit.record(session, actor, "api_key.minted", "api_key", key.id, after=_key_facts(key))
    return key, secret


def _key_facts(key: ApiKey) -> dict[str, object]:
    """What the audit log keeps of a key: never its secret nor the secret's hash."""
    return {
        "id": key.id,
        "name": key.name,
        "owner_id": key.owner_id,
        "roles": sorted(key.roles),
        "revoked_at": key.revoked_at,
    }


def authenticate_api_key(session: Session, presented: str) -> Actor:
    parts = presented.removeprefix(API_KEY_PREFIX).split("_", 1)
    if not presented.startswith(API_KEY_PREFIX) or len(parts) != 2:
        raise Unauthenticated("malformed API key", code="invalid_api_key")
    row = session.execute(
        select(ApiKey, User)
        .join(User, User.id == ApiKey.owner_id)
        .where(ApiKey.prefix == parts[0])
        .execution_options(**ALL_TENANTS)
    ).first()
    if row is None or not hmac.compare_digest(row.ApiKey.key_hash, digest(presented)):
        raise Unauthenticated("invalid API key", code="invalid_api_key")
    key, owner = row.ApiKey, row.User
    if key.revoked_at is not None or not owner.is_active:
        raise Unauthenticated("this API key was revoked", code="api_key_revoked")
    return Actor(
        user_id=owner.id,
        tenant_id=key.tenant_id,
        roles=frozenset(key.roles) & frozenset(owner.roles),
        via_api_key=key.id,
    )


def list_api_keys(session: Session, actor: Actor) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not actor.has(Role.ADMIN):
        stmt = stmt.where(ApiKey.owner_id == actor.user_id)
    return list(session.scalars(stmt))


def revoke_api_key(session: Session, actor: Actor, key_id: uuid.UUID, now: dt.datetime) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id))
    if key is None or (key.owner_id != actor.user_id and not actor.has(Role.ADMIN)):
        raise NotFound(f"API key {key_id} not found", code="api_key_not_found")
    if key.revoked_at is None:
        before = _key_facts(key)
        key.revoked_at = now
        audit.record(
            session,
            actor,
            "api_key.revoked",
            "api_key",
            key.id,
            before=before,
            after=_key_facts(key),
        )
    return key
