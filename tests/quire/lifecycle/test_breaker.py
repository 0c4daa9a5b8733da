"""The circuit breaker, one per provider and tenant, shared through the database.

Closed, it lets calls through and counts consecutive transient failures; at the threshold it
opens and refuses calls at once; after its open period exactly one caller is the half-open
probe, whose success closes it and whose failure opens it again. A success resets the count.
Breakers of different tenants and providers are independent. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from quire.db import Database, utcnow
from quire.lifecycle import breaker
from quire.lifecycle.breaker import Admission, BreakerOpen, BreakerPolicy
from quire.lifecycle.connectors.base import Provider
from quire.lifecycle.models import BreakerState
from tests.support.world import World, build_world

POLICY = BreakerPolicy(threshold=3, open_seconds=30)
ID = Provider.IDENTITY


@pytest.fixture
def world(database: Database) -> World:
    return build_world(database, "breakers", specialists=0)


def fail(database: Database, world: World, times: int, now: dt.datetime | None = None) -> None:
    for _ in range(times):
        breaker.record_failure(database, world.tenant_id, ID, POLICY, now=now)


def test_a_closed_breaker_admits_calls(database: Database, world: World) -> None:
    assert breaker.admit(database, world.tenant_id, ID, POLICY) is Admission.CALL
    assert breaker.state_of(database, world.tenant_id, ID) is BreakerState.CLOSED


def test_it_opens_at_the_threshold_of_consecutive_failures(
    database: Database, world: World
) -> None:
    fail(database, world, 2)
    assert breaker.state_of(database, world.tenant_id, ID) is BreakerState.CLOSED
    fail(database, world, 1)
    assert breaker.state_of(database, world.tenant_id, ID) is BreakerState.OPEN
    with pytest.raises(BreakerOpen) as refused:
        breaker.admit(database, world.tenant_id, ID, POLICY)
    assert refused.value.retryable is False
    assert "open until" in str(refused.value)


def test_a_success_resets_the_count(database: Database, world: World) -> None:
    fail(database, world, 2)
    breaker.record_success(database, world.tenant_id, ID)
    fail(database, world, 2)
    assert breaker.state_of(database, world.tenant_id, ID) is BreakerState.CLOSED


def test_after_its_open_period_one_probe_goes_through_and_its_success_closes_it(
    database: Database, world: World
) -> None:
    opened = utcnow() - dt.timedelta(seconds=31)
    fail(database, world, 3, now=opened)
    assert breaker.admit(database, world.tenant_id, ID, POLICY) is Admission.PROBE
    assert breaker.state_of(database, world.tenant_id, ID) is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen):  # the probe is out: the others still fail fast
        breaker.admit(database, world.tenant_id, ID, POLICY)
    breaker.record_success(database, world.tenant_id, ID)
    assert breaker.state_of(database, world.tenant_id, ID) is BreakerState.CLOSED
    assert breaker.admit(database, world.tenant_id, ID, POLICY) is Admission.CALL


def test_a_failed_probe_opens_it_again(database: Database, world: World) -> None:
    fail(database, world, 3, now=utcnow() - dt.timedelta(seconds=31))
    assert breaker.admit(database, world.tenant_id, ID, POLICY) is Admission.PROBE
    fail(database, world, 1)
    assert breaker.state_of(database, world.tenant_id, ID) is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        breaker.admit(database, world.tenant_id, ID, POLICY)


def test_exactly_one_of_many_racing_callers_is_the_probe(database: Database, world: World) -> None:
    fail(database, world, 3, now=utcnow() - dt.timedelta(seconds=31))

    def try_once(_: int) -> str:
        try:
            return breaker.admit(database, world.tenant_id, ID, POLICY).value
        except BreakerOpen:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(try_once, range(8)))
    assert answers.count("probe") == 1
    assert answers.count("refused") == 7


def test_a_probe_that_never_answered_does_not_hold_the_breaker_forever(
    database: Database, world: World
) -> None:
    long_ago = utcnow() - dt.timedelta(seconds=120)
    fail(database, world, 3, now=long_ago)
    assert (
        breaker.admit(
            database, world.tenant_id, ID, POLICY, now=long_ago + dt.timedelta(seconds=31)
        )
        is Admission.PROBE
    )
    # that probe's worker died; an open period later, another caller probes
    assert breaker.admit(database, world.tenant_id, ID, POLICY) is Admission.PROBE


def test_breakers_of_other_providers_and_tenants_are_independent(
    database: Database, world: World
) -> None:
    other = build_world(database, "other-breakers", specialists=0)
    fail(database, world, 3)
    assert breaker.admit(database, world.tenant_id, Provider.EMAIL, POLICY) is Admission.CALL
    assert breaker.admit(database, other.tenant_id, ID, POLICY) is Admission.CALL
