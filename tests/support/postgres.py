"""Where the PostgreSQL tests get a server, and the databases they (and the benchmarks) make.

- `QUIRE_TEST_DATABASE_URL` if set (an admin URL; each run creates its own databases there);
- in CI (`CI=true`) the server at 127.0.0.1:5432, user postgres: its absence FAILS the run;
- elsewhere a throwaway cluster from `initdb`/`pg_ctl` if the binaries are found;
- otherwise the PostgreSQL tests are skipped, with the reason shown.

`create_database` / `drop_database` are the one implementation of making and removing a database
on an admin URL: the test fixtures and `bench/harness.py` both use them; `Copies` hands the tests
fresh copies of the migrated template, made ahead in the background.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from deployments.net import free_port

CI_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Availability:
    admin_url: str | None
    reason: str = ""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return f"cannot connect to {url}: {exc}".strip()


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    return None


def _throwaway_cluster() -> Availability:
    bindir = _bindir()
    if bindir is None:
        return Availability(
            None, "no PostgreSQL: set QUIRE_TEST_DATABASE_URL or put initdb on PATH"
        )
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Availability(
            None, "initdb refuses to run as root: set QUIRE_TEST_DATABASE_URL to a server"
        )
    root = Path(tempfile.mkdtemp(prefix="quire-pg-"))
    port = free_port()
    subprocess.run(
        [bindir / "initdb", "-D", root / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            bindir / "pg_ctl",
            "-D",
            root / "data",
            "-l",
            root / "log",
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    atexit.register(
        lambda: subprocess.run(
            [bindir / "pg_ctl", "-D", root / "data", "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
    )
    return Availability(f"postgresql://postgres@127.0.0.1:{port}/postgres")


def locate() -> Availability:
    url = os.environ.get("QUIRE_TEST_DATABASE_URL")
    if url or in_ci():
        url = url or CI_DEFAULT
        problem = _reachable(url)
        return Availability(None if problem else url, problem or "")
    return _throwaway_cluster()


def with_database(admin_url: str, name: str, driver: str | None = None) -> str:
    """`admin_url` pointing at database `name`; `driver` respells it (`postgresql` for libpq and
    psycopg, `postgresql+psycopg` for SQLAlchemy), else it keeps the admin URL's."""
    url = make_url(admin_url).set(database=name)
    if driver is not None:
        url = url.set(drivername=driver)
    return url.render_as_string(hide_password=False)


def admin_dsn(admin_url: str) -> str:
    """The admin URL as libpq reads it (an SQLAlchemy spelling such as `postgresql+psycopg://`
    works too), on its own database or `postgres`."""
    return with_database(admin_url, make_url(admin_url).database or "postgres", "postgresql")


def admin_execute(admin_url: str, *statements: str) -> None:
    """Run statements that cannot run in a transaction (CREATE/DROP DATABASE, CHECKPOINT)."""
    with psycopg.connect(admin_dsn(admin_url), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def create_database(admin_url: str, template: str | None = None, *, name: str | None = None) -> str:
    """Create a database (a random `quire_test_...` name unless given; a copy of `template` if
    given, which is how a migrated schema is reused without migrating again) and return its name."""
    name = name or f"quire_test_{uuid.uuid4().hex[:12]}"
    clause = f" TEMPLATE {template}" if template else ""
    admin_execute(admin_url, f"CREATE DATABASE {name}{clause}")
    return name


def drop_database(admin_url: str, name: str) -> None:
    """Drop it even while clients are still connected (a server under test may linger)."""
    admin_execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Copies:
    """Fresh copies of a template database, made one ahead and dropped behind, off the test's
    critical path.

    `CREATE DATABASE .. TEMPLATE` and `DROP DATABASE` are server-side work (tenths of a second
    each on a busy two-core box); one background thread does them in order while the tests run,
    so a test that takes a copy usually finds it already made. Every copy is still a database
    nobody else has touched.
    """

    def __init__(self, admin_url: str, template: str) -> None:
        self.admin_url = admin_url
        self.template = template
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-copies")
        self._next: Future[str] | None = None

    def _make(self) -> Future[str]:
        return self._worker.submit(create_database, self.admin_url, self.template)

    def take(self) -> str:
        """A new database's name (the one made ahead, if any), and the next one started."""
        made = (self._next or self._make()).result()
        self._next = self._make()
        return made

    def give_back(self, name: str) -> None:
        """Drop it in the background (forcefully: a server under test may linger)."""
        self._worker.submit(drop_database, self.admin_url, name)

    def close(self) -> None:
        """Drop the copy made ahead and wait for every drop."""
        if self._next is not None:
            self.give_back(self._next.result())
            self._next = None
        self._worker.shutdown(wait=True)
