"""Sliding-window rate limits counted in the database, so all API processes share one budget.

Guarantee. For every key, `hit` admits at most `limit` attempts whose `now` lies in any
half-open span `[s, s + window_seconds)`: not "per clock minute" (a fixed window admits twice the
limit across its boundary, 61 refreshes in a minute passed), but in *every* such span. Refused
attempts consume nothing, and every attempt the span has room for is admitted, so the budget is
exactly `limit` per window, with bursts allowed (unlike GCRA without a burst, which spaces
attempts `window / limit` apart; and unlike GCRA with a burst of `limit`, which admits up to
`2 * limit - 1` in a window span: the burst, then the sustained rate).

How. One row per key (`RateLimitLog`) holds the expiry (`now + window`) of each admitted attempt
that has not expired yet: at most `limit` of them. A hit is two statements in the caller's
transaction: an upsert that creates or touches the row and returns its log, which locks the row
until commit on PostgreSQL (SQLite write transactions are serialised by BEGIN IMMEDIATE); then,
if admitted, an UPDATE writing the log back. Hits on one key are therefore serialised.

Proof. Suppose `limit + 1` admitted attempts had `now` in `[s, s + W)`; take the one whose
transaction locked the row last, at time `t < s + W`. Each earlier one committed its expiry
`e = now_e + W >= s + W > t` before that lock was granted, so (on READ COMMITTED the next
statement sees every commit before it) the last one read at least `limit` unexpired entries
(entries of any expiry count, including ones from a clock that runs ahead) and was refused.
An entry is dropped only by an admission whose `now` is past its expiry, which cannot happen
while the entry can still matter if clocks agree. With API hosts' clocks at most `eps` apart,
an entry can be dropped up to `eps` early, and the guarantee holds for spans of `W - eps`.

`Retry-After` is exact: the instant the `limit`-th latest entry expires, rounded up to a second.

Keys are SHA-256 hex digests of their parts (`key(...)`), so no input length can overflow the
column (an email of 300 characters once did, on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from quire.auth.models import RateLimitLog
from quire.db import upsert
from quire.errors import RateLimited

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)
PER_SECOND = 1_000_000
# Each hit deletes the table's dead keys with this probability: no separate job needed.
PRUNE_PROBABILITY = 0.01
PRUNE_BATCH = 1000


def key(*parts: str) -> str:
    """The fixed-length key for these parts (JSON-encoded first, so no two tuples collide)."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def micros(instant: dt.datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    return (instant - EPOCH) // MICROSECOND


def hit(session: Session, key: str, *, limit: int, window_seconds: int, now: dt.datetime) -> None:
    """Admit one attempt against `key`, or raise RateLimited if `limit` are already in the window.

    `key` is a value of `key(...)`. Runs in the caller's transaction: an admitted attempt is
    only counted if that transaction commits (a refusal by a later limit rolls it back).
    """
    if limit < 1 or window_seconds < 1:
        raise ValueError("a rate limit needs limit >= 1 and window_seconds >= 1")
    now_us = micros(now)
    insert = upsert(session)
    touch = (
        insert(RateLimitLog)
        .values(key=key, hits=[], expires_at=now_us)
        .on_conflict_do_update(
            index_elements=[RateLimitLog.key],
            set_={"expires_at": RateLimitLog.expires_at},  # a no-op that takes the row lock
        )
        .returning(RateLimitLog.hits)
    )
    logged: list[int] = session.execute(touch).scalar_one()
    live = sorted((expiry for expiry in logged if expiry > now_us), reverse=True)
    if len(live) >= limit:
        wait_us = live[limit - 1] - now_us
        retry_after = max(1, -(-wait_us // PER_SECOND))
        raise RateLimited(
            f"too many attempts; try again in {retry_after} s", retry_after=retry_after
        )
    live.insert(0, now_us + window_seconds * PER_SECOND)
    session.execute(
        update(RateLimitLog).where(RateLimitLog.key == key).values(hits=live, expires_at=max(live))
    )
    if random.random() < PRUNE_PROBABILITY:
        prune(session, now)


def prune(session: Session, now: dt.datetime) -> int:
    """Delete keys whose every attempt has expired (they behave exactly like absent keys)."""
    # SKIP LOCKED (PostgreSQL): a key another hit holds is left alone, so pruning never waits on
    # (or deadlocks with) hits in flight. Bounded, so one unlucky hit never does much work.
    doomed = (
        select(RateLimitLog.key)
        .where(RateLimitLog.expires_at <= micros(now))
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(delete(RateLimitLog).where(RateLimitLog.key.in_(doomed)))
    return int(result.rowcount or 0)
