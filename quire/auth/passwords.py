"""Argon2id password hashing (argon2-cffi's defaults follow RFC 9106's recommendations).

`QUIRE_PASSWORD_HASH_PROFILE=cheapest` swaps in argon2-cffi's CHEAPEST parameters: the same
algorithm and code path at a fraction of the cost, for test suites only.
"""

from __future__ import annotations

import os
from functools import cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10


@cache
def _hasher() -> PasswordHasher:
    if os.environ.get("QUIRE_PASSWORD_HASH_PROFILE") == "cheapest":
        return PasswordHasher.from_parameters(profiles.CHEAPEST)
    return PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


@cache
def _dummy_hash() -> str:
    return hash_password("not-a-real-password-used-for-timing")


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-ish time: an unknown user still costs one Argon2 verification."""
    try:
        matched = _hasher().verify(password_hash or _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)
