"""Event retention: relayed events past the cutoff go; unrelayed and recent ones stay."""

from __future__ import annotations

import datetime as dt

import pytest

from quire.db import Database, utcnow
from quire.events import relay, retention
from quire.settings import Settings
from tests.quire.events.helpers import age, append, surviving

DAY = dt.timedelta(days=1)


def relayed(database: Database, ids: list[int]) -> None:
    with database.session(None, write=True) as s:
        relay.mark_relayed(s, ids, utcnow())


def prune(database: Database, older_than: dt.datetime, limit: int = 1000) -> int:
    with database.session(None, write=True) as s:
        return retention.prune_events(s, older_than, limit)


def test_only_relayed_events_past_the_cutoff_are_pruned(database, acme, globex):
    old_relayed = append(database, acme, 2) + append(database, globex, 1)
    old_unrelayed = append(database, acme, 1) + append(database, globex, 1)
    recent_relayed = append(database, acme, 1)
    recent_unrelayed = append(database, globex, 1)
    age(database, old_relayed + old_unrelayed, utcnow() - 40 * DAY)
    relayed(database, old_relayed + recent_relayed)

    assert prune(database, utcnow() - 30 * DAY) == 3

    assert surviving(database) == set(old_unrelayed + recent_relayed + recent_unrelayed)


def test_an_unrelayed_event_survives_any_retention(database, acme):
    """Never lose work: a stuck relay's backlog waits, however long."""
    ids = append(database, acme, 2)
    age(database, ids, utcnow() - 3650 * DAY)

    assert prune(database, utcnow()) == 0
    assert surviving(database) == set(ids)


def test_pruning_goes_in_bounded_batches_oldest_first(database, acme):
    ids = append(database, acme, 5)
    age(database, ids, utcnow() - 40 * DAY)
    relayed(database, ids)
    cutoff = utcnow() - 30 * DAY

    assert prune(database, cutoff, limit=2) == 2
    assert surviving(database) == set(ids[2:])
    assert prune(database, cutoff, limit=2) == 2
    assert prune(database, cutoff, limit=2) == 1
    assert prune(database, cutoff, limit=2) == 0
    with pytest.raises(ValueError, match="limit"):
        prune(database, cutoff, limit=0)


def test_pruning_never_rewinds_the_stream_position(database, acme):
    """Event ids are Last-Event-ID positions: after pruning the newest, ids keep growing."""
    ids = append(database, acme, 2)
    relayed(database, ids)
    assert prune(database, utcnow() + DAY) == 2

    (after,) = append(database, acme)
    assert after > max(ids)


def test_the_cutoff_comes_from_the_retention_setting(monkeypatch):
    monkeypatch.delenv("QUIRE_EVENT_RETENTION_DAYS", raising=False)
    assert Settings(_env_file=None).event_retention_days == 30
    monkeypatch.setenv("QUIRE_EVENT_RETENTION_DAYS", "7")
    days = Settings(_env_file=None).event_retention_days
    now = dt.datetime(2030, 1, 31, 12, tzinfo=dt.UTC)
    assert retention.retention_cutoff(now, days) == dt.datetime(2030, 1, 24, 12, tzinfo=dt.UTC)
    monkeypatch.setenv("QUIRE_EVENT_RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="QUIRE_EVENT_RETENTION_DAYS"):
        Settings(_env_file=None)
