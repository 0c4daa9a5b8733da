"""Short-lived JWT access tokens (PyJWT). One fixed algorithm; every registered claim checked."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

import jwt

from quire.errors import Unauthenticated

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenConfig:
    secret: str
    issuer: str
    audience: str
    ttl_seconds: int


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    roles: frozenset[str]


def issue(config: TokenConfig, claims: AccessClaims, *, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    payload = {
        "sub": str(claims.user_id),
        "tid": str(claims.tenant_id),
        "roles": sorted(claims.roles),
        "iss": config.issuer,
        "aud": config.audience,
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(seconds=config.ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, config.secret, algorithm=ALGORITHM)


LEEWAY_SECONDS = 5


def verify(config: TokenConfig, token: str) -> AccessClaims:
    """Check a token and return its claims.

    A client sends the same token with every request for its whole life, and checking it (base64,
    JSON, HMAC, six claims) is a large share of a cheap request's CPU. So a verified token is
    remembered, keyed by its exact text (a forged or altered token never matches), and only its
    expiry is checked again on later uses.
    """
    claims, expires_at = _verified(config, token)
    if time.time() > expires_at + LEEWAY_SECONDS:
        raise Unauthenticated("access token expired", code="token_expired")
    return claims


@lru_cache(maxsize=4096)
def _verified(config: TokenConfig, token: str) -> tuple[AccessClaims, float]:
    try:
        payload = jwt.decode(
            token,
            config.secret,
            algorithms=[ALGORITHM],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            leeway=LEEWAY_SECONDS,
        )
        claims = AccessClaims(
            user_id=uuid.UUID(payload["sub"]),
            tenant_id=uuid.UUID(payload["tid"]),
            roles=frozenset(payload.get("roles", [])),
        )
        return claims, float(payload["exp"])
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("access token expired", code="token_expired") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise Unauthenticated("invalid access token", code="invalid_token") from None
