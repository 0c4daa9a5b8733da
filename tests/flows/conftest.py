"""Flows against a real Prefect API (Prefect's test harness: a temporary server), on SQLite.

One harness, one Quire database and one fake grammar service for the whole folder: starting a
Prefect server costs tens of seconds. Every test builds its own tenant, so tests share nothing
they can see. Settings reach the flows through the environment, as they do in production: flow
runs of served deployments execute in subprocesses, which inherit it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from migrations.upgrade import upgrade
from quire.db import Database
from quire.settings import get_settings

# The lifecycle specs' servers and connected tenant (requested by those specs only).
from tests.flows.lifecycle_cast import (  # noqa: F401
    chat,
    healthy_idp,
    idp,
    mailbox,
    tenant,
)
from tests.support.fake_ecb import FakeEcb
from tests.support.fake_languagetool import FakeLanguageTool
from tests.support.world import Person, World, build_world

HARNESS_STARTUP_TIMEOUT = 240


@pytest.fixture(scope="package")
def grammar_service() -> Iterator[FakeLanguageTool]:
    with FakeLanguageTool() as server:
        yield server


@pytest.fixture(scope="package")
def fx_provider() -> Iterator[FakeEcb]:
    """The ECB's daily rates, plus KWD (three decimals) which the ECB does not publish."""
    with FakeEcb(extra_rates={"KWD": "0.3321"}) as server:
        yield server


@pytest.fixture(scope="package")
def flow_env(
    tmp_path_factory: pytest.TempPathFactory,
    grammar_service: FakeLanguageTool,
    fx_provider: FakeEcb,
) -> Iterator[Database]:
    """The environment a worker would have: DATABASE_URL, the grammar service and the FX
    provider, quick retries."""
    root = tmp_path_factory.mktemp("flows")
    env = {
        "QUIRE_FX_RATES_URL": fx_provider.daily_url,
        "QUIRE_FX_RETRY_BACKOFF_SECONDS": "0.2",
        "QUIRE_FX_TIMEOUT_SECONDS": "3",
        "QUIRE_REPORTS_DIR": str(root / "reports"),
        "DATABASE_URL": f"sqlite:///{root / 'quire.db'}",
        "QUIRE_DATA_DIR": str(root / "data"),
        "QUIRE_DATABASE_BLOCK": "",
        "QUIRE_GRAMMAR_CHECK_URL": grammar_service.url,
        "QUIRE_QA_RETRY_BACKOFF_SECONDS": "0.2",
        "QUIRE_BREAKER_THRESHOLD": "5",
        "QUIRE_BREAKER_OPEN_SECONDS": "5",
        "QUIRE_LIFECYCLE_UNDO_RETRY_SECONDS": "[0.1, 0.3]",
        "PREFECT_LOCAL_STORAGE_PATH": str(root / "prefect-results"),
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    _forget_settings()
    database = Database(env["DATABASE_URL"])
    upgrade(database)
    yield database
    database.dispose()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _forget_settings()


def _forget_settings() -> None:
    from tasks.database import flow_database

    get_settings.cache_clear()
    flow_database.cache_clear()


@pytest.fixture(scope="package")
def prefect_api(flow_env: Database) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=HARNESS_STARTUP_TIMEOUT):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url  # for served flow runs' subprocesses
        yield url
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="package")
def served(prefect_api: str) -> Iterator[None]:
    """Every deployment served from a background thread, as `quire worker` serves them, and
    stopped (as SIGTERM stops the worker) when the folder's tests are done."""
    from deployments import worker

    runners: list[worker.QuireRunner] = []

    def serve() -> None:
        runners.append(runner := worker.build(poll_seconds=1.0, schedules=False))
        worker.serve(runner)

    thread = threading.Thread(target=serve, name="quire-worker", daemon=True)
    thread.start()
    wait_until(lambda: _deployments_exist(prefect_api), timeout=120, what="deployments served")
    yield
    wait_until(lambda: runners and runners[0].stop_soon(), timeout=30, what="the runner to run")
    thread.join(30)


def _deployments_exist(_: str) -> bool:
    from prefect.client.orchestration import get_client

    from deployments.catalog import CATALOG

    with get_client(sync_client=True) as client:
        return len(client.read_deployments()) >= len(CATALOG)


@pytest.fixture
def world(flow_env: Database) -> World:
    return build_world(flow_env, f"t{uuid.uuid4().hex[:8]}", specialists=2)


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 120, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def api(flow_env: Database, prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    """`quire api` in a subprocess on the flows' database, talking to the same Prefect API."""
    from tests.conftest import LiveServer

    server = LiveServer(str(flow_env.url), tmp_path_factory.mktemp("api"))
    server.wait_ready()
    yield server
    server.stop()


def bearer(person: Person) -> dict[str, str]:
    """An access token as `/auth/login` would issue it (signed with the test secret)."""
    from quire.auth import access_tokens
    from quire.auth.access_tokens import AccessClaims, TokenConfig
    from tests.conftest import JWT_SECRET

    config = TokenConfig(JWT_SECRET, "quire", "quire-api", 3600)
    claims = AccessClaims(person.id, person.tenant_id, frozenset(person.roles))
    return {"Authorization": f"Bearer {access_tokens.issue(config, claims)}"}


def drain_outbox(database: Database) -> None:
    """Mark every waiting event relayed: a test's relay pass then sees only its own events."""
    from quire.db import utcnow
    from quire.events import relay

    with database.session(write=True) as session:
        relay.mark_relayed(session, [e.id for e in relay.pending(session, 10_000)], utcnow())
