"""Shared fixtures: real databases (SQLite always, PostgreSQL per tests/support/postgres.py), each
test's own unless a folder's conftest shares one (tests/api, tests/ledger), and live uvicorn
servers for streaming and races. The app in-process is tests/api/conftest.py's."""

from __future__ import annotations

import os
from contextlib import closing

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Same Argon2id code path, cheapest parameters: hashing dozens of test users stays fast.
os.environ.setdefault("QUIRE_PASSWORD_HASH_PROFILE", "cheapest")

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deployments.net import free_port
from migrations.upgrade import upgrade
from quire.db import Database
from quire.settings import Settings
from tests.support import postgres

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


# `./dev test` runs the suite on several processes (pytest-xdist, `--dist loadgroup`). Each file
# is one unit of work, so its module fixtures are set up once; tests/flows is one unit for the
# whole folder, so its package fixtures (a Prefect test harness, every deployment served, the
# fake services) are set up once, not again each time the process comes back to the folder from
# another one's tests (with one unit per file, 5 flow specs failed: a process that came back to
# the folder set up a second harness while the first one's runner still ran).
FLOWS = Path(__file__).parent / "flows"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = "tests/flows" if FLOWS in Path(item.path).parents else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


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


@pytest.fixture(scope="session")
def pg_copies(pg_admin_url: str, pg_template: str) -> Iterator[postgres.Copies]:
    """Copies of the template, each made while the test before it runs (see `Copies`)."""
    copies = postgres.Copies(pg_admin_url, pg_template)
    yield copies
    copies.close()


@pytest.fixture
def pg_url(pg_admin_url: str, pg_copies: postgres.Copies) -> Iterator[str]:
    """A PostgreSQL database of this test's own: migrated, empty, touched by nobody else."""
    name = pg_copies.take()
    yield postgres.with_database(pg_admin_url, name)
    pg_copies.give_back(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once; each test gets a byte-for-byte copy (migrating costs
    a tenth of a second a test, copying a millisecond)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "quire.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


def copy_sqlite(template: Path, path: Path) -> str:
    """A copy of the SQLite database `template` at `path` (SQLite's online backup: consistent
    whatever its journal holds), and the copy's URL."""
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as target:
        source.backup(target)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A SQLite database of this test's own: migrated, empty."""
    return copy_sqlite(sqlite_template, tmp_path / "quire.db")


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
