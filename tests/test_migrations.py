"""Alembic is the only way the schema is made: it runs on both databases and matches the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from migrations import target_metadata
from quire.db import Database


def test_migrations_build_exactly_the_schema_the_models_describe(db_url):
    database = Database(db_url)  # db_url fixtures are migrated with migrations.upgrade.upgrade
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, target_metadata())
    database.dispose()
    assert diff == []


def test_every_table_is_created(db_url):
    database = Database(db_url)
    tables = set(inspect(database.engine).get_table_names())
    database.dispose()
    assert set(target_metadata().tables) <= tables
    assert "alembic_version" in tables
