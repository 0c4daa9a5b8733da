"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

The domain is written against a synchronous `Session`; the async API runs the same functions on an
`AsyncSession` through `run_sync`, so every business rule exists once. SQLite write transactions
start with `BEGIN IMMEDIATE`: a deferred transaction that reads and then writes can fail at once
with SQLITE_BUSY instead of waiting, which would turn ordinary contention into errors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cached_property
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, DateTime, Engine, Integer, MetaData, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite drops the offset on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSONType, UUID: None}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def upsert(session: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT support (the same API on both databases)."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert


def normalize_url(url: str) -> URL:
    """Accept the URLs people paste (`postgres://`, `postgresql://`) and pick our drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the driver so that `begin` below decides the mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _install_sqlite_hooks(engine: Engine) -> None:
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)


class Database:
    """One database: lazily built sync and async engines, and sessions for reads and writes."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = normalize_url(url)
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        # Called after each successful async write transaction (the stream hub listens here).
        self.after_write: list[Callable[[], None]] = []

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    def _engine_kwargs(self) -> dict[str, Any]:
        if self.is_sqlite:
            return {}
        return {"pool_size": self.pool_size, "max_overflow": self.max_overflow}

    @cached_property
    def engine(self) -> Engine:
        engine = sa_create_engine(self.url, **self._engine_kwargs())
        if self.is_sqlite:
            _install_sqlite_hooks(engine)
        return engine

    @cached_property
    def async_engine(self) -> AsyncEngine:
        url = self.url.set(drivername="sqlite+aiosqlite") if self.is_sqlite else self.url
        engine = create_async_engine(url, **self._engine_kwargs())
        if self.is_sqlite:
            _install_sqlite_hooks(engine.sync_engine)
        return engine

    @cached_property
    def _sessions(self) -> sessionmaker[Session]:
        return sessionmaker(self.engine, expire_on_commit=False)

    @cached_property
    def _write_sessions(self) -> sessionmaker[Session]:
        bind = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        return sessionmaker(bind, expire_on_commit=False)

    @cached_property
    def _async_sessions(self) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(self.async_engine, expire_on_commit=False)

    @cached_property
    def _async_write_sessions(self) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(self._async_write_engine, expire_on_commit=False)

    @contextmanager
    def session(self, tenant_id: UUID | None = None, *, write: bool = False) -> Iterator[Session]:
        """A unit of work scoped to one tenant; commits on success, rolls back on error."""
        factory = self._write_sessions if write else self._sessions
        with factory() as session:
            session.info["tenant_id"] = tenant_id
            with session.begin():
                yield session

    @asynccontextmanager
    async def async_session(
        self, tenant_id: UUID | None = None, *, write: bool = False
    ) -> AsyncIterator[AsyncSession]:
        factory = self._async_write_sessions if write else self._async_sessions
        async with factory() as session:
            session.info["tenant_id"] = tenant_id
            async with session.begin():
                yield session
        if write:
            for listener in self.after_write:
                listener()

    @asynccontextmanager
    async def async_write_connection(
        self, *, atomic_statements: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """One write transaction on a bare Core connection: for hot paths that need no ORM.

        Statements on it are not tenant-scoped by the ORM hook; the caller names the tenant.
        `atomic_statements`: the caller's work is atomic statement by statement on PostgreSQL,
        so it runs in autocommit and saves the BEGIN and COMMIT round trips (SQLite still gets
        its IMMEDIATE transaction).
        """
        if atomic_statements and self.is_postgres:
            async with self._async_autocommit_engine.connect() as conn:
                yield conn
        else:
            async with self._async_write_engine.begin() as conn:
                yield conn
        for listener in self.after_write:
            listener()

    @cached_property
    def _async_autocommit_engine(self) -> AsyncEngine:
        return self.async_engine.execution_options(isolation_level="AUTOCOMMIT")

    @cached_property
    def _async_write_engine(self) -> AsyncEngine:
        return self.async_engine.execution_options(sqlite_begin="IMMEDIATE")

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    async def async_dispose(self) -> None:
        if "async_engine" in self.__dict__:
            await self.async_engine.dispose()
        self.dispose()
