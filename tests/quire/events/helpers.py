"""Events written the way the domain writes them, and ways to inspect what is left."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, update

from quire.db import Database
from quire.events import outbox
from quire.events.models import Event
from quire.tenancy import ALL_TENANTS
from tests.support.world import World


def append(
    database: Database, world: World, n: int = 1, type: str = "order.submitted"
) -> list[int]:
    """`n` events in `world`'s tenant, each its own committed transaction; returns their ids."""
    ids = []
    for i in range(n):
        with database.session(world.tenant_id, write=True) as s:
            event = outbox.record(
                s, type, aggregate_type="order", aggregate_id=uuid.uuid4(), payload={"n": i}
            )
            s.flush()
            ids.append(event.id)
    return ids


def age(database: Database, ids: list[int], created_at: dt.datetime) -> None:
    """Move events back in time (the domain always stamps them `now`)."""
    with database.session(None, write=True) as s:
        s.execute(
            update(Event)
            .where(Event.id.in_(ids))
            .values(created_at=created_at)
            .execution_options(**ALL_TENANTS)
        )


def surviving(database: Database) -> set[int]:
    with database.session(None) as s:
        return set(s.scalars(select(Event.id).execution_options(**ALL_TENANTS)))
