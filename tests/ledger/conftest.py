"""Fixtures for the ledger's domain tests.

`database` is overridden here with a *package*-scoped one (still on SQLite and PostgreSQL): a
migrated database per dialect for the whole folder, and a fresh tenant per test (`tenant`) or
per hypothesis example. Every ledger table is tenant-scoped, so tests share nothing they can see,
and the folder stays fast (copying a PostgreSQL template per test costs seconds on a busy box).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from migrations.upgrade import upgrade
from quire.db import Database
from tests.ledger.support import new_tenant
from tests.support import postgres


@pytest.fixture(scope="package")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'quire.db'}")
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture(scope="package")
def pg_database(pg_admin_url: str, pg_template: str) -> Iterator[Database]:
    name = postgres.create_database(pg_admin_url, template=pg_template)
    db = Database(postgres.with_database(pg_admin_url, name), pool_size=10, max_overflow=10)
    yield db
    db.dispose()
    postgres.drop_database(pg_admin_url, name)


@pytest.fixture(
    scope="package", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database(request: pytest.FixtureRequest) -> Database:
    """Every test that takes this runs on both databases (shared by the whole folder)."""
    return request.getfixturevalue(
        "sqlite_database" if request.param == "sqlite" else "pg_database"
    )


@pytest.fixture
def tenant(database: Database) -> uuid.UUID:
    """A tenant of its own: a clean ledger inside the shared database."""
    return new_tenant(database)
