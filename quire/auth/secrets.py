"""High-entropy opaque credentials (refresh tokens, API keys): stored as SHA-256 only.

A slow password hash buys nothing for 256-bit random secrets, and a fast digest lets the lookup be a
single indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
