"""Alembic environment. The URL comes from the caller (migrations.upgrade) or DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from migrations import target_metadata as _metadata
from quire.db import Database
from quire.settings import get_settings

target_metadata = _metadata()


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().effective_database_url
    database = Database(url)
    with database.engine.connect() as conn:
        run(conn)
    database.dispose()
