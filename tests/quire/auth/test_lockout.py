"""Lockout, as quire.auth.service.login and quire.auth.lockout promise it (SQLite and PostgreSQL).

- Whether an account exists cannot be learnt from logging in: a wrong password, an unknown
  email, an unknown tenant, another tenant's user and a deactivated user are refused with the
  same 401, locked with the same 423 after the same number of failures, for the same time.
- Nor from timing: every attempt that is not locked out runs the same SQL statements and exactly
  one Argon2 verification (measured too, with real Argon2 parameters).
- Failures are counted in the database, one attempt after another even when they arrive at
  once, so parallel guesses cannot slip in under the limit.
- A success ends the streak; a streak is forgotten a day after its last failure.
"""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event, func, select, update

from quire.auth import lockout, passwords
from quire.auth import service as auth
from quire.auth.access_tokens import TokenConfig
from quire.auth.models import LoginFailure
from quire.db import Database
from quire.errors import Locked, Unauthenticated
from quire.people.models import User
from quire.tenancy import ALL_TENANTS
from tests.support.world import PASSWORD, World, build_world

T0 = dt.datetime(2031, 5, 6, 7, 8, tzinfo=dt.UTC)
TOKENS = TokenConfig(
    secret="test-secret-that-is-long-enough-for-hs256-0123456789",
    issuer="quire",
    audience="quire-api",
    ttl_seconds=900,
)
POLICY = auth.LoginPolicy(max_failures=5, lockout_seconds=900, refresh_ttl_seconds=3600)
WRONG = "not the password"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def attempt(
    database: Database,
    tenant: str,
    email: str,
    password: str = WRONG,
    *,
    now: dt.datetime = T0,
    policy: auth.LoginPolicy = POLICY,
) -> auth.Granted | auth.Denied:
    with database.session(write=True) as session:
        return auth.login(session, tenant, email, password, tokens=TOKENS, policy=policy, now=now)


def answer(outcome: auth.Granted | auth.Denied, now: dt.datetime) -> tuple[Any, ...]:
    """What a client learns from an outcome (times relative to the attempt)."""
    if isinstance(outcome, auth.Granted):
        return ("granted",)
    error = outcome.error
    details = dict(error.details)
    if "locked_until" in details:
        details["locked_until"] = dt.datetime.fromisoformat(details["locked_until"]) - now
    return type(error).__name__, error.code, error.message, details


@pytest.fixture(autouse=True)
def no_random_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pruning is tested on its own; at random it would change which statements run."""
    monkeypatch.setattr(lockout, "PRUNE_PROBABILITY", 0.0)


@pytest.fixture
def acme(database: Database) -> World:
    world = build_world(database, "acme", specialists=1)
    build_world(database, "globex", specialists=0)
    with database.session(write=True) as session:
        session.execute(
            update(User)
            .where(User.email == world.specialist.email)
            .values(is_active=False)
            .execution_options(**ALL_TENANTS)
        )
    return world


def accounts(acme: World) -> dict[str, tuple[str, str]]:
    """(tenant, email) pairs: one real account and every kind of account that is not there."""
    return {
        "real account": ("acme", acme.manager.email),
        "unknown email": ("acme", "nobody@acme.test"),
        "unknown tenant": ("no-such-tenant", acme.manager.email),
        "another tenant's user": ("acme", "admin@globex.test"),
        "deactivated user": ("acme", acme.specialist.email),
    }


def test_an_account_that_does_not_exist_is_refused_and_locked_exactly_like_a_real_one(
    database, acme
):
    # Five failures, three attempts while locked, one after the lock ends (which relocks), one
    # more while locked again: every kind of account must give the same answers.
    times = [0, 1, 2, 3, 4, 5, 100, 899, 905, 906]
    transcripts = {}
    for name, (tenant, email) in accounts(acme).items():
        transcripts[name] = [
            answer(attempt(database, tenant, email, now=at(t)), at(t)) for t in times
        ]

    real = transcripts["real account"]
    assert [a[0] for a in real] == ["Unauthenticated"] * 5 + ["Locked"] * 3 + [
        "Unauthenticated",
        "Locked",
    ]
    locked = real[5]
    assert locked[3] == {
        "locked_until": dt.timedelta(seconds=900 - 5 + 4),
        "retry_after": 899,
    }, "locked for lockout_seconds from the fifth failure"
    for name, transcript in transcripts.items():
        assert transcript == real, name


def test_the_right_password_does_not_open_a_locked_account(database, acme):
    tenant, email = accounts(acme)["real account"]
    for t in range(5):
        attempt(database, tenant, email, now=at(t))

    during = attempt(database, tenant, email, PASSWORD, now=at(10))
    after = attempt(database, tenant, email, PASSWORD, now=at(4 + 900))

    assert isinstance(during, auth.Denied)
    assert isinstance(during.error, Locked)
    assert isinstance(after, auth.Granted), "the lock lifts on time"


def test_a_success_ends_the_streak_and_a_day_without_failures_forgets_it(database, acme):
    tenant, email = accounts(acme)["real account"]
    unknown = accounts(acme)["unknown email"]
    for t in range(4):
        attempt(database, tenant, email, now=at(t))
        attempt(database, *unknown, now=at(t))
    assert isinstance(attempt(database, tenant, email, PASSWORD, now=at(5)), auth.Granted)
    day_later = 3 + 24 * 3600

    fresh = [attempt(database, tenant, email, now=at(6 + t)) for t in range(4)]
    forgotten = [attempt(database, *unknown, now=at(day_later + t)) for t in range(5)]

    assert all(isinstance(o, auth.Denied) and isinstance(o.error, Unauthenticated) for o in fresh)
    assert all(
        isinstance(o, auth.Denied) and isinstance(o.error, Unauthenticated) for o in forgotten
    ), "the four failures a day ago no longer count"
    sixth = attempt(database, *unknown, now=at(day_later + 5))
    assert isinstance(sixth, auth.Denied)
    assert isinstance(sixth.error, Locked)


def test_pruning_deletes_only_streaks_that_would_be_forgotten(database, acme):
    short_memory = lockout.LockoutPolicy(max_failures=5, lockout_seconds=900, memory_seconds=10)
    old, locked, recent = "old@acme.test", "locked@acme.test", "recent@acme.test"
    attempt(database, "acme", old, now=at(0))
    for t in range(5):
        attempt(database, "acme", locked, now=at(t))
    attempt(database, "acme", recent, now=at(95))

    with database.session(write=True) as session:
        pruned = lockout.prune(session, policy=short_memory, now=at(100))

    assert pruned == 1
    with database.session() as session:
        kept = set(session.scalars(select(LoginFailure.key)))
    assert kept == {lockout.key("acme", locked), lockout.key("acme", recent)}, "locked stays"


# --- same work, same time ---------------------------------------------------------------------


class Work:
    """The SQL statements and Argon2 verifications one attempt performs."""

    def __init__(self, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        self.verifications = 0
        original = PasswordHasher.verify

        def counting(hasher: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
            self.verifications += 1
            return original(hasher, hash, password)

        monkeypatch.setattr(PasswordHasher, "verify", counting)

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.statements.append(statement)

        event.listen(database.engine, "before_cursor_execute", record)

    def of(self, run: Callable[[], object]) -> tuple[list[str], int]:
        self.statements, self.verifications = [], 0
        run()
        return self.statements, self.verifications


def test_every_attempt_that_is_not_locked_out_does_the_same_work(database, acme, monkeypatch):
    work = Work(database, monkeypatch)
    refused, locked = {}, {}
    for name, (tenant, email) in accounts(acme).items():
        refused[name] = [
            work.of(lambda t=t, e=email, n=tenant: attempt(database, n, e, now=at(t)))
            for t in range(5)
        ]
        locked[name] = work.of(lambda e=email, n=tenant: attempt(database, n, e, now=at(6)))

    real_statements, real_verifications = refused["real account"][0]
    assert real_verifications == 1
    assert any("login_failures" in s for s in real_statements)
    for name in refused:
        assert refused[name] == [(real_statements, 1)] * 5, name
        assert locked[name] == locked["real account"], name
    assert locked["real account"][1] == 0, "a locked attempt checks no password at all"


@pytest.fixture
def real_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[PasswordHasher]:
    """Production Argon2id parameters instead of the test suite's cheapest ones."""
    hasher = PasswordHasher()
    monkeypatch.setattr(passwords, "_hasher", lambda: hasher)
    passwords._dummy_hash.cache_clear()
    yield hasher
    passwords._dummy_hash.cache_clear()


def test_refusing_an_account_that_does_not_exist_takes_as_long_as_refusing_a_real_one(
    database, acme, real_argon2
):
    with database.session(write=True) as session:
        session.execute(
            update(User)
            .where(User.email == acme.manager.email)
            .values(password_hash=real_argon2.hash(PASSWORD))
            .execution_options(**ALL_TENANTS)
        )
    patient = auth.LoginPolicy(max_failures=10**6, lockout_seconds=900, refresh_ttl_seconds=60)
    kinds = {k: v for k, v in accounts(acme).items() if k != "another tenant's user"}
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(7):  # interleaved, so a burst of load elsewhere hits every kind alike
        for name, (tenant, email) in kinds.items():
            started = time.perf_counter()
            attempt(database, tenant, email, policy=patient)
            samples[name].append(time.perf_counter() - started)

    medians = {name: statistics.median(times) for name, times in samples.items()}
    real = medians["real account"]
    started = time.perf_counter()
    passwords.verify_password(None, WRONG)
    one_verification = time.perf_counter() - started
    assert real >= 0.5 * one_verification, medians
    for median in medians.values():
        # Skipping the Argon2 verification would make a path ~50x faster; noise on a busy
        # 2-core machine stays well inside a factor of two.
        assert 0.5 * real <= median <= 2 * real, medians


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["real account", "unknown email"])
def test_parallel_guesses_are_counted_one_by_one(database, acme, kind):
    tenant, email = accounts(acme)[kind]
    guesses = 12
    start = threading.Barrier(guesses)
    outcomes: list[auth.Granted | auth.Denied] = []
    lock = threading.Lock()
    now = T0

    def guess() -> None:
        start.wait()
        outcome = attempt(database, tenant, email, now=now)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    kinds = sorted(type(o.error).__name__ for o in outcomes if isinstance(o, auth.Denied))
    assert kinds == ["Locked"] * 7 + ["Unauthenticated"] * 5
    with database.session() as session:
        row = session.scalar(
            select(LoginFailure).where(LoginFailure.key == lockout.key(tenant, email))
        )
        assert row is not None
        assert row.failures == 5
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1
