"""How the marketplace stands, counted across tenants, and how people read it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from quire.db import utcnow
from quire.events.models import Event
from quire.events.relay import mark_relayed
from quire.orders import report, statistics
from tests.quire.orders.test_maintenance import acme, claimed_order, globex, new_order

__all__ = ["acme", "globex"]  # fixtures


def test_statistics_count_orders_per_status_per_tenant_and_the_outbox_backlog(
    database, acme, globex
):
    held = claimed_order(database, acme)
    new_order(database, acme)
    new_order(database, globex, publish=False)
    with database.session(None, write=True) as s:
        everything = s.scalars(select(Event.id).execution_options(all_tenants=True)).all()
        held_events = s.scalars(
            select(Event.id).where(Event.aggregate_id == held).execution_options(all_tenants=True)
        ).all()
        mark_relayed(s, set(everything) - set(held_events), utcnow())

    with database.session(None) as s:
        stats = statistics.marketplace_statistics(s, now=utcnow() + dt.timedelta(minutes=5))

    assert stats["orders"]["open"] == 1
    assert stats["orders"]["claimed"] == 1
    assert stats["orders"]["draft"] == 1
    assert stats["orders"]["expired"] == 0
    assert stats["orders_by_tenant"]["acme"] == {
        **dict.fromkeys(stats["orders"], 0),
        "open": 1,
        "claimed": 1,
    }
    assert stats["orders_by_tenant"]["globex"]["draft"] == 1
    assert stats["outbox"]["unrelayed"] == len(held_events) == 3  # created, published, claimed
    assert 300 <= stats["outbox"]["oldest_unrelayed_age_seconds"] < 360
    line = report.statistics_line(stats)
    assert line.startswith("orders: draft=1 open=1 claimed=1; outbox: 3 unrelayed (oldest ")
    markdown = report.statistics_markdown(stats)
    assert "| acme | 0 | 1 | 1 |" in markdown
    assert "| **all** | 1 | 1 | 1 |" in markdown


def test_statistics_of_an_empty_marketplace(database):
    with database.session(None) as s:
        stats = statistics.marketplace_statistics(s)
    assert set(stats["orders"].values()) == {0}
    assert stats["orders_by_tenant"] == {}
    assert stats["outbox"] == {"unrelayed": 0, "oldest_unrelayed_age_seconds": None}
    assert report.statistics_line(stats) == "orders: none; outbox: 0 unrelayed"
