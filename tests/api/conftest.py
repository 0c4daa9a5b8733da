"""The app for the API tests: one migrated database and one running app per backend (SQLite and
PostgreSQL) for the whole folder, and a tenant of its own for every test.

Tenants isolate everything a request can see, so tests that share the database share nothing
they can observe, and the folder does not pay, per test, for a database and for FastAPI
building an app's routes on its first requests (tenths of a second each on a busy two-core
box). What belongs to no tenant is kept apart as well: each test's client calls from an address
of its own (the per-IP rate limits count by it), each world's tenant slug is new (lockouts and
per-user limits count by slug and email), and tests that count rows across tenants compare
after with before, never with a fixed number.

A module or test marked `own_database` gets a fresh database and app per test instead, as the
rest of the suite does: for tests that drive the login limits and lockouts themselves
(test_auth.py, test_forwarded_headers.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from api.app import create_app
from api.deps import token_config
from quire.db import Database
from quire.settings import Settings
from tests.conftest import copy_sqlite, make_settings
from tests.support import postgres
from tests.support.world import World, build_world, sign_in_all, unique_slug

OWN_DATABASE = "own_database"
FRESH = {"sqlite": "sqlite_url", "postgresql": "pg_url"}  # the root conftest's per-test ones
SITE = pytest.StashKey["Site"]()
# One client address per test, from the range set aside for benchmarking (RFC 2544): nobody's,
# and apart from the documentation addresses tests pick themselves.
_client_addresses = ipaddress.ip_network("198.18.0.0/15").hosts()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{OWN_DATABASE}: a fresh database and app per test")


@dataclass
class Site:
    """One backend's database, shared by the folder, with the app running on it."""

    url: str
    database: Database
    settings: Settings
    app: FastAPI


@asynccontextmanager
async def running(settings: Settings, database: Database) -> AsyncIterator[FastAPI]:
    """The app on `database`, started and stopped as uvicorn does it (its lifespan)."""
    app = create_app(settings, database=database)
    async with LifespanManager(app, startup_timeout=30):
        yield app


@asynccontextmanager
async def site_on(url: str, data_dir: Path) -> AsyncIterator[Site]:
    database = Database(url, pool_size=40, max_overflow=10)
    settings = make_settings(url, data_dir)
    try:
        async with running(settings, database) as app:
            yield Site(url, database, settings, app)
    finally:
        await database.async_dispose()
        database.dispose()


@pytest.fixture(scope="package")
async def sqlite_site(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> AsyncIterator[Site]:
    root = tmp_path_factory.mktemp("api-sqlite")
    async with site_on(copy_sqlite(sqlite_template, root / "quire.db"), root) as site:
        yield site


@pytest.fixture(scope="package")
async def postgresql_site(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str, pg_copies: postgres.Copies
) -> AsyncIterator[Site]:
    name = pg_copies.take()
    try:
        url = postgres.with_database(pg_admin_url, name)
        async with site_on(url, tmp_path_factory.mktemp("api-postgresql")) as site:
            yield site
    finally:
        pg_copies.give_back(name)


def shared_site(request: pytest.FixtureRequest) -> Site | None:
    """The folder's site this test runs on, or None if it has its own database."""
    return request.node.stash.get(SITE, None)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every test that takes this runs on both databases: the folder's, or its own if marked."""
    if request.node.get_closest_marker(OWN_DATABASE) is not None:
        return request.getfixturevalue(FRESH[request.param])
    site: Site = request.getfixturevalue(f"{request.param}_site")
    request.node.stash[SITE] = site
    return site.url


@pytest.fixture
async def database(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Database]:
    site = shared_site(request)
    if site is not None:
        yield site.database
        return
    own = Database(db_url, pool_size=40, max_overflow=10)
    yield own
    await own.async_dispose()
    own.dispose()


@pytest.fixture
def settings(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Settings:
    site = shared_site(request)
    return site.settings if site is not None else make_settings(db_url, tmp_path)


@pytest.fixture
async def client(
    request: pytest.FixtureRequest, settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over real HTTP semantics (httpx's ASGI transport), called from this
    test's own client address: the folder's running app, or one of its own if marked."""
    site = shared_site(request)
    if site is not None:
        async with calling(site.app) as c:
            yield c
        return
    async with running(settings, database) as app, calling(app) as c:
        yield c


@asynccontextmanager
async def calling(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    address = (str(next(_client_addresses)), 40_000)
    transport = httpx.ASGITransport(app=app, client=address)
    async with httpx.AsyncClient(transport=transport, base_url="http://quire.test") as c:
        yield c


@pytest.fixture
def world(database: Database, settings: Settings) -> World:
    """A new tenant ('acme-…') with one user per role, each holding an access token."""
    return sign_in_all(build_world(database, unique_slug("acme")), token_config(settings))


@pytest.fixture
def rival(database: Database, settings: Settings) -> World:
    """A second new tenant ('globex-…'), for isolation tests."""
    return sign_in_all(build_world(database, unique_slug("globex")), token_config(settings))
