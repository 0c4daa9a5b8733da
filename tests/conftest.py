"""Shared fixtures: real databases (SQLite always, PostgreSQL per tests/support/postgres.py),
the app over httpx's ASGI transport, and live uvicorn servers for streaming and races."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Same Argon2id code path, cheapest parameters: hashing dozens of test users stays fast.
os.environ.setdefault("QUIRE_PASSWORD_HASH_PROFILE", "cheapest")

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from api.app import create_app
from migrations.upgrade import upgrade
from quire.db import Database
from quire.settings import Settings
from tests.support import postgres
from tests.support.net import free_port
from tests.support.world import World, build_world, login_all

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    found = postgres.locate()
    if found.admin_url is None:
        if postgres.in_ci():
            pytest.fail(f"PostgreSQL is required in CI: {found.reason}")
        pytest.skip(f"PostgreSQL tests skipped: {found.reason}")
    return found.admin_url


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    """A database migrated once; each test copies it (CREATE DATABASE .. TEMPLATE is fast)."""
    name = postgres.create_database(pg_admin_url)
    database = Database(postgres.with_database(pg_admin_url, name))
    upgrade(database)
    database.dispose()
    yield name
    postgres.drop_database(pg_admin_url, name)


@pytest.fixture
def pg_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    name = postgres.create_database(pg_admin_url, template=pg_template)
    yield postgres.with_database(pg_admin_url, name)
    postgres.drop_database(pg_admin_url, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'quire.db'}"
    database = Database(url)
    upgrade(database)
    database.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every test that takes this runs on both databases."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url, pool_size=40, max_overflow=10)
    yield db
    db.dispose()


def make_settings(db_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "DATABASE_URL": db_url,
        "QUIRE_DATA_DIR": str(tmp_path),
        "QUIRE_JWT_SECRET": JWT_SECRET,
        "QUIRE_COOKIE_SECURE": False,
        "QUIRE_STREAM_POLL_SECONDS": 0.2,
    }
    values.update({k: v for k, v in overrides.items()})
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
async def client(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over real HTTP semantics (httpx's ASGI transport)."""
    app = create_app(settings, database=database)
    async with LifespanManager(app, startup_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quire.test") as c:
            yield c
    await database.async_dispose()


@pytest.fixture
async def world(database: Database, client: httpx.AsyncClient) -> World:
    """Tenant 'acme' with one user per role, all logged in."""
    return await login_all(client, build_world(database, "acme"))


@pytest.fixture
async def rival(database: Database, client: httpx.AsyncClient) -> World:
    """A second tenant, 'globex', for isolation tests."""
    return await login_all(client, build_world(database, "globex"))


class LiveServer:
    """`quire api` in a subprocess: real uvicorn, real sockets."""

    def __init__(self, db_url: str, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"api-{self.port}.log"
        environment = {
            **os.environ,
            "DATABASE_URL": db_url,
            "QUIRE_DATA_DIR": str(data_dir),
            "QUIRE_JWT_SECRET": JWT_SECRET,
            "QUIRE_COOKIE_SECURE": "false",
            "QUIRE_LOG_LEVEL": "WARNING",
            **env,
        }
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "api", "--port", str(self.port)],
            env=environment,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"API not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log_file.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start any number of API processes on one database: `live_server(db_url)`."""
    started: list[LiveServer] = []

    def start(db_url: str, **env: str) -> LiveServer:
        server = LiveServer(db_url, tmp_path, **env)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
