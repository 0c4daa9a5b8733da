"""Server mode, end to end: the deployments of prefect.yaml run on a real Prefect worker.

What docker-compose.yml runs, as processes on this machine:

    prefect server start                      (its own SQLite database under a temporary home)
    prefect work-pool create quire --type process ; prefect --no-prompt deploy --all
    prefect worker start --pool quire         (Quire's PostgreSQL database; started elsewhere than
                                               the repository, so only prefect.yaml's pull step
                                               and QUIRE_APP_DIR can find the entrypoints)
    quire api                                 (PREFECT_API_URL set, to resume reviews)

Then, through the HTTP API only: publish an order with one review stage, claim it, submit work;
the `outbox-relay` deployment (run on the worker) starts the submission's QA run; the run
suspends for the review; the reviewer's `POST /orders/{id}/reviews` resumes it (in a new flow
run process: the checks' persisted results are read back); the run completes and the order is
accepted.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from deployments import processes
from deployments.net import free_port
from ledger.models import Transfer
from quire.db import Database
from quire.orders.state import OrderStatus
from quire.qa.models import QARun, RunStatus
from tests.conftest import LiveServer
from tests.support.fake_languagetool import FakeLanguageTool
from tests.support.world import World, build_world, login_all, order_body

# Usually under a minute; the timeout leaves room for a loaded two-core CI machine.
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
# The `prefect` of this interpreter's environment (the .venv), not whatever is on PATH.
PREFECT = str(Path(sys.executable).with_name("prefect"))

SERVER_START_TIMEOUT = 180  # two shared cores: a cold `prefect server start` can take a while
CLI_TIMEOUT = 180
RUN_TIMEOUT = 180

ARTICLE = (
    "Quarterly planning works best when every team writes down what it will stop doing. "
    "Our editors found that a short list of commitments, reviewed each month, beats a long "
    "roadmap that nobody reads. This article explains how to run that review in one hour, "
    "which questions to ask, and how to record the answers so that finance can follow them."
)


# --- Processes -----------------------------------------------------------------------------------


class Service:
    """A long-running subprocess in its own process group (so its children go with it), started
    and stopped by `deployments/processes.py`: SIGTERM, SIGKILL after the grace, then SIGKILL to
    whatever of the group (a flow run) outlived the leader."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log: Path):
        self.name, self.log = name, log
        self.process = processes.start(argv, log, env=env, cwd=cwd)
        self._stopped = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text)

    def stop(self, grace: float = 15) -> None:
        if not self._stopped:  # once: by then the group's id may be another's
            self._stopped = True
            processes.stop([self.process], grace)


class Stack:
    """Every process the test starts. Each fixture stops its own (the worker before the database
    it uses is dropped); whatever is still running at the end is stopped in reverse order."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.services: list[Service] = []
        self.extra_logs: list[Callable[[], str]] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path) -> Service:
        service = Service(name, argv, env, cwd, self.tmp / f"{name}.log")
        self.services.append(service)
        return service

    def logs(self) -> str:
        return "\n".join([s.tail() for s in self.services] + [log() for log in self.extra_logs])

    def wait_until(self, condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for service in self.services:
                if not service.alive():
                    pytest.fail(f"{service.name} exited while waiting for {what}\n{self.logs()}")
            value = condition()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def isolated_env(**overrides: str) -> dict[str, str]:
    """os.environ without this machine's Prefect and Quire configuration, plus `overrides`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "QUIRE_")) and name != "DATABASE_URL"
    }
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", **overrides)
    return env


def prefect_cli(*args: str, env: Mapping[str, str]) -> str:
    """Run the `prefect` CLI from the repository root (where prefect.yaml is); its output."""
    done = subprocess.run(
        [PREFECT, *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"prefect {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


# --- What prefect.yaml declares ------------------------------------------------------------------


def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def work_pool_name() -> str:
    [pool] = {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]}
    return pool


# --- The Prefect REST API ------------------------------------------------------------------------


def api_get(api_url: str, path: str) -> Any:
    response = httpx.get(f"{api_url}{path}", timeout=30)
    response.raise_for_status()
    return response.json()


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def run_state(api_url: str, flow_run_id: uuid.UUID | str) -> str | None:
    state = api_get(api_url, f"/flow_runs/{flow_run_id}").get("state")
    return state["type"] if state else None


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def prefect_home(tmp_path: Path) -> Path:
    home = tmp_path / "prefect-home"
    home.mkdir()
    return home


@pytest.fixture
def scheduler_loop_seconds() -> str:
    """Prefect's default pass interval; the scheduler's own test parametrizes a short one (its
    passes write to the server's SQLite database, which the other tests need for their runs)."""
    return "60"


@pytest.fixture
def prefect_server(stack: Stack, prefect_home: Path, scheduler_loop_seconds: str) -> Iterator[str]:
    """`prefect server start` on a free port; its API URL once /api/health answers."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server = stack.start(
        "prefect-server",
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        isolated_env(
            PREFECT_HOME=str(prefect_home),
            PREFECT_UI_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=scheduler_loop_seconds,
        ),
        cwd=stack.tmp,
    )
    stack.wait_until(
        lambda: healthy(api_url), timeout=SERVER_START_TIMEOUT, what="the Prefect server"
    )
    yield api_url
    server.stop()


@pytest.fixture
def deployed(prefect_server: str, prefect_home: Path) -> str:
    """The work pool, then every deployment of prefect.yaml, exactly as ops would create them."""
    env = isolated_env(PREFECT_HOME=str(prefect_home), PREFECT_API_URL=prefect_server)
    prefect_cli("work-pool", "create", work_pool_name(), "--type", "process", env=env)
    prefect_cli("--no-prompt", "deploy", "--all", env=env)
    for deployment in prefect_yaml()["deployments"]:
        flow_name = _flow_name(deployment["entrypoint"].rsplit(":", 1)[1])
        found = httpx.get(
            f"{prefect_server}/deployments/name/{flow_name}/{deployment['name']}", timeout=30
        )
        assert found.status_code == 200, f"{deployment['name']} not deployed: {found.text}"
        assert found.json()["work_pool_name"] == work_pool_name()
    return prefect_server


def _flow_name(function: str) -> str:
    """The flow's name (`@flow(name=...)`) for the function an entrypoint names."""
    from deployments.catalog import CATALOG

    [flow_name] = {d.flow.name for d in CATALOG if d.entrypoint.endswith(f":{function}")}
    return flow_name


@pytest.fixture
def grammar_service() -> Iterator[FakeLanguageTool]:
    with FakeLanguageTool() as server:
        yield server


@pytest.fixture
def worker_env_extra() -> dict[str, str]:
    """More environment for the worker (a test module overrides this fixture)."""
    return {}


@pytest.fixture
def worker(
    stack: Stack,
    deployed: str,
    prefect_home: Path,
    pg_url: str,
    grammar_service: FakeLanguageTool,
    worker_env_extra: dict[str, str],
) -> Iterator[str]:
    """`prefect worker start --pool quire`, with the environment docker-compose.yml gives it."""
    results = stack.tmp / "prefect-results"
    elsewhere = stack.tmp / "worker-cwd"
    elsewhere.mkdir()
    service = stack.start(
        "prefect-worker",
        [PREFECT, "worker", "start", "--pool", work_pool_name()],
        isolated_env(
            PREFECT_HOME=str(prefect_home),
            PREFECT_API_URL=deployed,
            # Suspend/resume runs the flow again in a new process: results must be readable there.
            PREFECT_LOCAL_STORAGE_PATH=str(results),
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_WORKER_PREFETCH_SECONDS="5",
            DATABASE_URL=pg_url,
            QUIRE_APP_DIR=str(ROOT),
            QUIRE_DATABASE_BLOCK="",
            QUIRE_GRAMMAR_CHECK_URL=grammar_service.url,
            QUIRE_QA_RETRY_BACKOFF_SECONDS="0.2",
            **worker_env_extra,
        ),
        cwd=elsewhere,
    )
    pool = work_pool_name()
    stack.wait_until(
        lambda: api_get(deployed, f"/work_pools/{pool}").get("status") == "READY",
        timeout=SERVER_START_TIMEOUT,
        what="the worker to report to the work pool",
    )
    yield deployed
    service.stop()  # before the database and the grammar service go away


@pytest.fixture
def api(
    stack: Stack,
    worker: str,
    prefect_home: Path,
    pg_url: str,
    live_server: Callable[..., LiveServer],
) -> LiveServer:
    server = live_server(pg_url, PREFECT_API_URL=worker, PREFECT_HOME=str(prefect_home))
    stack.extra_logs.append(lambda: f"--- api ({server.log}) ---\n{server.log.read_text()[-4000:]}")
    return server


# --- The test ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler_loop_seconds", ["2"])  # a pass within seconds, not a minute
def test_the_scheduler_creates_runs_of_every_scheduled_deployment(
    stack: Stack, deployed: str
) -> None:
    """Each cron schedule of prefect.yaml becomes scheduled flow runs on the server: what makes the
    relay run every minute and maintenance every hour. (With SQLAlchemy 2.1 Prefect 3.8's scheduler
    failed on every pass, so nothing ever ran on a schedule; hence the 2.0 pin.)"""
    scheduled = {d["name"] for d in prefect_yaml()["deployments"] if d.get("schedules")}
    assert scheduled, "prefect.yaml schedules nothing"
    deployments = httpx.post(f"{deployed}/deployments/filter", json={}, timeout=30).json()
    names = {d["id"]: d["name"] for d in deployments if d["name"] in scheduled}
    assert set(names.values()) == scheduled

    def every_schedule_has_runs() -> bool:
        query = {
            "flow_runs": {
                "deployment_id": {"any_": list(names)},
                "state": {"type": {"any_": ["SCHEDULED"]}},
            }
        }
        runs = httpx.post(f"{deployed}/flow_runs/filter", json=query, timeout=30).json()
        return {names[run["deployment_id"]] for run in runs} == scheduled

    stack.wait_until(every_schedule_has_runs, timeout=90, what="the scheduler's runs")


def test_an_order_goes_through_qa_on_a_prefect_worker_and_is_accepted(
    stack: Stack,
    worker: str,
    api: LiveServer,
    pg_url: str,
    prefect_home: Path,
    grammar_service: FakeLanguageTool,
) -> None:
    started = time.monotonic()
    prefect_api = worker
    database = Database(pg_url)
    try:
        world = build_world(database, f"smoke{uuid.uuid4().hex[:6]}", specialists=1)
        asyncio.run(_log_in(api.base_url, world))
        http = httpx.Client(base_url=api.base_url, timeout=60)

        # Publish, claim, submit: all through the API.
        body = order_body(title="Planning article", currency="EUR", qa={"review_stages": 1})
        published = http.post("/orders", json=body, headers=world.manager.auth)
        assert published.status_code == 201, published.text
        order_id = published.json()["id"]
        claimed = http.post(f"/orders/{order_id}/claim", headers=world.specialist.auth)
        assert claimed.status_code == 200, claimed.text
        submitted = http.post(
            f"/orders/{order_id}/submissions",
            json={"content": ARTICLE},
            headers=world.specialist.auth,
        )
        assert submitted.status_code == 201, submitted.text
        submission_id = uuid.UUID(submitted.json()["id"])

        def order_status() -> str:
            answer = http.get(f"/orders/{order_id}", headers=world.manager.auth)
            assert answer.status_code == 200, answer.text
            return answer.json()["status"]

        # The relay runs on the worker (as its every-minute schedule would), not in this process.
        env = isolated_env(PREFECT_API_URL=prefect_api, PREFECT_HOME=str(prefect_home))
        out = prefect_cli("deployment", "run", "outbox-relay/outbox-relay", env=env)
        [relay_run_id] = re.findall(r"UUID: ([0-9a-f-]{36})", out) or [None]
        assert relay_run_id, out
        stack.wait_until(
            lambda: run_state(prefect_api, relay_run_id) == "COMPLETED",
            timeout=RUN_TIMEOUT,
            what="the outbox relay run",
        )
        relay_run = api_get(prefect_api, f"/flow_runs/{relay_run_id}")
        assert relay_run["work_pool_name"] == work_pool_name()

        def awaiting_review() -> QARun | None:
            with database.session(world.tenant_id) as session:
                run = session.get(QARun, submission_id, populate_existing=True)
            return run if run is not None and run.status == RunStatus.AWAITING_REVIEW else None

        run = stack.wait_until(
            awaiting_review, timeout=RUN_TIMEOUT, what="the QA run to wait for a reviewer"
        )
        assert run.flow_run_id is not None
        stack.wait_until(
            lambda: run_state(prefect_api, run.flow_run_id) == "PAUSED",
            timeout=RUN_TIMEOUT,
            what="the QA run to suspend",
        )
        qa_flow_run = api_get(prefect_api, f"/flow_runs/{run.flow_run_id}")
        qa_deployment = api_get(prefect_api, f"/deployments/{qa_flow_run['deployment_id']}")
        assert qa_deployment["name"] == "qa-pipeline"
        assert qa_flow_run["work_pool_name"] == work_pool_name()
        assert qa_flow_run["idempotency_key"].startswith("quire-event-")
        assert order_status() == OrderStatus.IN_REVIEW

        # The reviewer's decision, through the API, resumes the suspended run.
        answer = http.post(
            f"/orders/{order_id}/reviews",
            json={"decision": "approve", "comments": "Reads well."},
            headers=world.reviewer.auth,
        )
        assert answer.status_code == 202, answer.text
        assert uuid.UUID(answer.json()["flow_run_id"]) == run.flow_run_id

        stack.wait_until(
            lambda: run_state(prefect_api, run.flow_run_id) == "COMPLETED",
            timeout=RUN_TIMEOUT,
            what="the QA run to complete",
        )
        assert order_status() == OrderStatus.ACCEPTED
        # The resumed run (a new process) read the grammar check's persisted result back.
        assert grammar_service.request_count == 1
        reviews = http.get(f"/orders/{order_id}/reviews", headers=world.manager.auth).json()
        assert [(r["stage"], r["decision"]) for r in reviews] == [(1, "approve")]
        with database.session(world.tenant_id) as session:
            assert session.scalar(select(func.count()).select_from(Transfer)) == 1  # earnings
        http.close()
    finally:
        database.dispose()
    print(f"smoke path took {time.monotonic() - started:.1f}s after the stack was up")


async def _log_in(base_url: str, world: World) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await login_all(client, world)
