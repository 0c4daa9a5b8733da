"""Access tokens: remembered once verified, yet never accepted past their expiry."""

from __future__ import annotations

import time
import uuid

import pytest

from quire.auth import access_tokens
from quire.auth.access_tokens import AccessClaims, TokenConfig
from quire.errors import Unauthenticated

CONFIG = TokenConfig(secret="s" * 32, issuer="quire", audience="quire-api", ttl_seconds=60)
CLAIMS = AccessClaims(uuid.uuid4(), uuid.uuid4(), frozenset({"specialist"}))


def test_a_verified_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = access_tokens.issue(CONFIG, CLAIMS)
    assert access_tokens.verify(CONFIG, token) == CLAIMS
    assert access_tokens.verify(CONFIG, token) == CLAIMS  # second use: from the cache

    later = time.time() + 60 + access_tokens.LEEWAY_SECONDS + 1
    monkeypatch.setattr(access_tokens.time, "time", lambda: later)
    with pytest.raises(Unauthenticated) as refused:
        access_tokens.verify(CONFIG, token)
    assert refused.value.code == "token_expired"


def test_a_token_signed_with_another_secret_is_refused_even_after_the_real_one_was_cached() -> None:
    token = access_tokens.issue(CONFIG, CLAIMS)
    access_tokens.verify(CONFIG, token)
    forged = access_tokens.issue(
        TokenConfig("x" * 32, CONFIG.issuer, CONFIG.audience, CONFIG.ttl_seconds), CLAIMS
    )
    with pytest.raises(Unauthenticated):
        access_tokens.verify(CONFIG, forged)
    other_audience = TokenConfig(CONFIG.secret, CONFIG.issuer, "elsewhere", CONFIG.ttl_seconds)
    with pytest.raises(Unauthenticated):
        access_tokens.verify(other_audience, token)
