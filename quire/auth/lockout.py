"""Account lockout that cannot tell anyone which accounts exist.

A streak of failed logins is kept per (tenant slug, normalised email), whether or not such an
account exists: an unknown email is counted, locked (423 after `max_failures`) and released
exactly like a real one, by the same rows and the same statements. Streaks live in the
database (`LoginFailure`), so every API process sees the same count.

An attempt is three steps in the login's write transaction:
1. `enter` upserts the key's row and returns its lock, if any. The upsert locks the row until
   commit (PostgreSQL; SQLite serialises write transactions), so concurrent guesses on one key
   are counted one after another: no burst of parallel guesses all slips in under the limit.
2. If not locked, the caller verifies the password (always one Argon2 verification, against a
   dummy hash when there is no usable account), then
3. `fail` counts a failure, locking the key for `lockout_seconds` once the streak reaches
   `max_failures` (and again on each further failure after a lock ends), or `clear` ends the
   streak on success.

A streak is forgotten `memory_seconds` after its last failure (`enter` resets it), so rows for
emails sprayed at random do not accumulate: `prune` deletes forgotten ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from dataclasses import dataclass

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.orm import Session

from quire.auth.models import LoginFailure
from quire.db import upsert

PRUNE_PROBABILITY = 0.01
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int
    lockout_seconds: int
    memory_seconds: int = 24 * 3600


def key(tenant_slug: str, normalized_email: str) -> str:
    """The fixed-length key of one (tenant, email) pair, real or not."""
    return hashlib.sha256(json.dumps(["login", tenant_slug, normalized_email]).encode()).hexdigest()


def enter(
    session: Session, key: str, *, policy: LockoutPolicy, now: dt.datetime
) -> dt.datetime | None:
    """Start an attempt on `key`: lock its row and return until when it is locked (or None)."""
    forgotten = LoginFailure.last_failure_at <= now - dt.timedelta(seconds=policy.memory_seconds)
    unlocked = or_(LoginFailure.locked_until.is_(None), LoginFailure.locked_until <= now)
    reset = forgotten & unlocked
    insert = upsert(session)
    stmt = (
        insert(LoginFailure)
        .values(key=key, failures=0, locked_until=None, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[LoginFailure.key],
            set_={
                "failures": case((reset, 0), else_=LoginFailure.failures),
                "locked_until": case((reset, None), else_=LoginFailure.locked_until),
            },
        )
        .returning(LoginFailure.locked_until)
    )
    locked_until: dt.datetime | None = session.execute(stmt).scalar_one()
    if locked_until is not None and locked_until > now:
        return locked_until
    return None


def fail(session: Session, key: str, *, policy: LockoutPolicy, now: dt.datetime) -> None:
    """Count one failure of the attempt `enter` started (the row is locked by it)."""
    failures = LoginFailure.failures + 1
    session.execute(
        update(LoginFailure)
        .where(LoginFailure.key == key)
        .values(
            failures=failures,
            last_failure_at=now,
            locked_until=case(
                (
                    failures >= policy.max_failures,
                    now + dt.timedelta(seconds=policy.lockout_seconds),
                ),
                else_=None,
            ),
        )
    )
    if random.random() < PRUNE_PROBABILITY:
        prune(session, policy=policy, now=now)


def clear(session: Session, key: str) -> None:
    """A successful login ends the streak."""
    session.execute(delete(LoginFailure).where(LoginFailure.key == key))


def prune(session: Session, *, policy: LockoutPolicy, now: dt.datetime) -> int:
    """Delete streaks `enter` would forget anyway (unlocked, last failure beyond memory)."""
    cutoff = now - dt.timedelta(seconds=policy.memory_seconds)
    # SKIP LOCKED (PostgreSQL): a row an attempt holds is left alone, so pruning never waits on
    # (or deadlocks with) logins in flight. Bounded, so one unlucky login never does much work.
    doomed = (
        select(LoginFailure.key)
        .where(
            LoginFailure.last_failure_at <= cutoff,
            or_(LoginFailure.locked_until.is_(None), LoginFailure.locked_until <= now),
        )
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(delete(LoginFailure).where(LoginFailure.key.in_(doomed)))
    return int(result.rowcount or 0)
