"""Two tenants for the outbox tests (helpers that write events live in `helpers`)."""

from __future__ import annotations

import pytest

from quire.db import Database
from tests.support.world import World, build_world


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, "acme", specialists=0)


@pytest.fixture
def globex(database: Database) -> World:
    return build_world(database, "globex", specialists=0)
