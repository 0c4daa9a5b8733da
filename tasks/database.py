"""How flows reach Quire's database.

In server mode ops configure a prefect-sqlalchemy `SqlAlchemyConnector` block in the Prefect UI
(named by `QUIRE_DATABASE_BLOCK`, "quire-database" by default): credentials live with Prefect,
not in each worker's environment. Without that block (the embedded mode, tests) the
environment's `DATABASE_URL` decides, exactly as for the API.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from prefect.exceptions import ObjectNotFound
from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy.engine import make_url

from quire.db import Database
from quire.settings import get_settings

log = logging.getLogger("quire.flows")


def connector_url(connector: SqlAlchemyConnector) -> str:
    """The SQLAlchemy URL a connector block holds (our drivers are picked by `Database`)."""
    info = connector.connection_info
    url = info.create_url() if isinstance(info, ConnectionComponents) else make_url(str(info))
    return url.render_as_string(hide_password=False)


def database_url() -> str:
    settings = get_settings()
    if settings.database_block:
        try:
            connector = SqlAlchemyConnector.load(settings.database_block)
        except (ObjectNotFound, ValueError):
            pass  # no such block: the environment decides
        else:
            log.info("using the database of block %r", settings.database_block)
            return connector_url(connector)
    return settings.effective_database_url


@lru_cache(maxsize=1)
def flow_database() -> Database:
    """One `Database` (engine and pool) per worker process, shared by every task run in it."""
    settings = get_settings()
    return Database(database_url(), pool_size=settings.db_pool_size, max_overflow=0)
