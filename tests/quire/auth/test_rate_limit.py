"""Rate limits, as quire.auth.rate_limit promises them (on SQLite and PostgreSQL).

- At most `limit` attempts are admitted in any window-long span, wherever the span starts: a
  burst across a clock-minute boundary gets no more than one window's budget (the fixed window
  this replaced let 61 refreshes through in a minute, up to twice the limit).
- Exactly that many: an attempt is refused only when the span ending at it is full.
- Retry-After is the wait until the attempt that blocks leaves the window, rounded up.
- Refused attempts consume nothing; an attempt refused by a later limit in the same transaction
  is not counted by an earlier one.
- Keys are SHA-256 digests: any input length fits the column.
- Concurrent hits on one key admit exactly the limit.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from quire.auth import rate_limit
from quire.auth.models import RateLimitLog
from quire.db import Database, utcnow
from quire.errors import RateLimited

T0 = dt.datetime(2031, 5, 6, 7, 8, tzinfo=dt.UTC)  # on a clock-minute boundary
KEY = rate_limit.key("refresh", "user", "someone")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def attempt(
    database: Database, seconds: float, *, limit: int, window: int = 60, key: str = KEY
) -> int | None:
    """One attempt in its own transaction: None when admitted, else its Retry-After."""
    try:
        with database.session(write=True) as session:
            rate_limit.hit(session, key, limit=limit, window_seconds=window, now=at(seconds))
    except RateLimited as refused:
        return refused.retry_after
    return None


def hit_all(database: Database, now: dt.datetime, *limits: tuple[str, int]) -> None:
    """Several limits in one transaction, as the API counts an attempt per IP and per user."""
    with database.session(write=True) as session:
        for key, limit in limits:
            rate_limit.hit(session, key, limit=limit, window_seconds=60, now=now)


def admitted(outcomes: list[int | None]) -> int:
    return sum(outcome is None for outcome in outcomes)


@pytest.fixture(autouse=True)
def no_random_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pruning is tested on its own; here it would only add noise."""
    monkeypatch.setattr(rate_limit, "PRUNE_PROBABILITY", 0.0)


def test_a_burst_across_a_minute_boundary_gets_one_windows_budget_not_two(database):
    before = [attempt(database, 59.9, limit=60) for _ in range(60)]
    after = [attempt(database, 60.1, limit=60) for _ in range(60)]
    next_window = [attempt(database, 119.9, limit=60) for _ in range(61)]

    assert admitted(before) == 60
    assert admitted(after) == 0, "the fixed window let these through: 120 within 0.2 s"
    assert set(after) == {60}, "59.9 + 60 - 60.1 = 59.8 s, rounded up"
    assert admitted(next_window) == 60


def test_no_window_long_span_ever_holds_more_than_the_limit_and_none_is_refused_needlessly(
    database,
):
    limit, window = 5, 10
    # Steady traffic every 0.7 s with bursts of 4 at every 13th tick: spans start anywhere.
    schedule = [
        round(tick * 0.7, 3) for tick in range(120) for _ in range(4 if tick % 13 == 0 else 1)
    ]
    outcomes = [(t, attempt(database, t, limit=limit, window=window)) for t in schedule]
    passed = [t for t, outcome in outcomes if outcome is None]

    for start in passed:  # the fullest spans start at an admitted attempt
        assert sum(start <= t < start + window for t in passed) <= limit, start
    for t, outcome in outcomes:
        if outcome is not None:
            assert sum(t - window < p <= t for p in passed) == limit, f"refused at {t} needlessly"
    assert len(passed) >= limit * (schedule[-1] // window)


def test_retry_after_is_the_wait_until_the_blocking_attempt_leaves_the_window(database):
    for t in (0, 10, 20):
        assert attempt(database, t, limit=3) is None

    assert attempt(database, 25, limit=3) == 35
    assert attempt(database, 59.5, limit=3) == 1, "half a second, rounded up"
    assert attempt(database, 60, limit=3) is None, "the attempt at 0 left at 60"
    assert attempt(database, 60, limit=3) == 10, "now the one at 10 blocks"
    assert attempt(database, 69.999, limit=3) == 1
    assert attempt(database, 70, limit=3) is None


def test_refused_attempts_use_up_nothing(database):
    assert [attempt(database, t, limit=2) for t in (0, 1)] == [None, None]
    refused = [attempt(database, 2 + t / 2, limit=2) for t in range(100)]

    assert admitted(refused) == 0
    assert attempt(database, 60, limit=2) is None
    assert attempt(database, 61, limit=2) is None
    assert attempt(database, 61.5, limit=2) == 59


def test_an_attempt_a_later_limit_refuses_is_not_counted_by_an_earlier_one(database):
    per_ip, per_user = rate_limit.key("login", "ip", "10.0.0.1"), rate_limit.key("login", "u")
    assert attempt(database, 0, limit=1, key=per_user) is None
    with pytest.raises(RateLimited):
        hit_all(database, at(1), (per_ip, 2), (per_user, 1))

    assert attempt(database, 2, limit=2, key=per_ip) is None
    assert attempt(database, 3, limit=2, key=per_ip) is None, "the rolled-back attempt is gone"
    assert attempt(database, 4, limit=2, key=per_ip) == 58


def test_keys_are_fixed_length_digests_whatever_their_parts(database):
    huge = rate_limit.key("login", "user", "acme", "x" * 10_000 + "@example.com")

    assert len(huge) == 64
    assert rate_limit.key("ab", "c") != rate_limit.key("a", "bc"), "parts do not run together"
    assert attempt(database, 0, limit=1, key=huge) is None
    assert attempt(database, 1, limit=1, key=huge) == 59
    with database.session() as session:
        assert session.scalars(select(RateLimitLog.key)).all() == [huge]


def test_concurrent_hits_on_one_key_admit_exactly_the_limit(database):
    threads, per_thread, limit = 12, 3, 10
    now = utcnow()
    start = threading.Barrier(threads)
    results: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                with database.session(write=True) as session:
                    rate_limit.hit(session, KEY, limit=limit, window_seconds=60, now=now)
                passed = True
            except RateLimited:
                passed = False
            with lock:
                results.append(passed)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert len(results) == threads * per_thread
    assert sum(results) == limit
    with database.session() as session:
        logged = session.scalar(select(RateLimitLog.hits).where(RateLimitLog.key == KEY))
    assert logged is not None
    assert len(logged) == limit


def test_pruning_forgets_only_keys_whose_attempts_have_all_expired(database):
    old, live = rate_limit.key("old"), rate_limit.key("live")
    attempt(database, 0, limit=5, key=old)
    attempt(database, 0, limit=5, key=live)
    attempt(database, 50, limit=5, key=live)

    with database.session(write=True) as session:
        pruned = rate_limit.prune(session, at(60))

    assert pruned == 1
    with database.session() as session:
        assert session.scalars(select(RateLimitLog.key)).all() == [live]
        assert session.scalar(select(func.count()).select_from(RateLimitLog)) == 1
    assert attempt(database, 61, limit=1, key=live) == 49, "the live key kept its attempt"
    assert attempt(database, 61, limit=1, key=old) is None, "a pruned key starts afresh"


def test_a_limit_needs_room_for_one_attempt(database):
    with pytest.raises(ValueError, match="limit >= 1"), database.session(write=True) as session:
        rate_limit.hit(session, KEY, limit=0, window_seconds=60, now=T0)
