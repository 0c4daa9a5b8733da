"""Alembic is the only way the schema is made: it runs on both databases and matches the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

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


@pytest.mark.postgres
def test_no_trigger_function_resolves_names_through_the_sessions_search_path(pg_url):
    """A function that searched `public` would let any role that may create objects there shadow
    an operator or function it calls (the ledger's guards, the event NOTIFY)."""
    database = Database(pg_url)
    with database.engine.connect() as conn:
        unpinned = conn.execute(
            text(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = current_schema() AND p.prorettype = 'trigger'::regtype"
                " AND (p.proconfig IS NULL"
                "      OR NOT 'search_path=pg_catalog, pg_temp' = ANY(p.proconfig))"
            )
        ).scalars()
        found = sorted(unpinned)
    database.dispose()
    assert found == []
