"""`quire demo`: the marketplace -> QA -> ledger path, end to end, on the embedded defaults.

    migrate and seed the demo tenant (SQLite under the data directory)
    -> start `prefect server start` (API and UI; its own SQLite database under the data
       directory) and `quire worker` (every deployment, served)
    -> start the API
    -> specialists log in, claim and submit through the HTTP API
    -> the outbox relay starts one QA run per submission; the checks run
    -> the demo reviewer approves through the API, which resumes the suspended runs
    -> earnings land in the ledger; print a summary
    -> keep everything running (API docs, Prefect UI) until Ctrl-C or SIGTERM, unless --exit

Everything a user would do goes through the real interfaces: HTTP for people, Prefect for runs.
The console shows the demo's steps; the server, the worker and the API log to files under
`<data>/logs`. Ctrl-C or SIGTERM stops every child (the API and the worker, then the Prefect
server) within seconds: see `deployments/processes.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deployments import prefect_server
from deployments.demo_tenant import DEMO_PASSWORD, DEMO_TENANT
from deployments.processes import sigterm_as_interrupt, start, stop, uninterrupted
from quire.money import format_minor
from quire.settings import get_settings

# `run` is `quire demo` (deployments/cli.py); bench/qa_pipeline.py uses the other two.
__all__ = ["deployments_served", "run", "wait_for"]

READY_MESSAGE = "Everything keeps running for you to explore. Ctrl-C to stop."
WORK = {
    "writer1@demo.quire": (
        "Landing page copy for a fintech launch",
        "Money that moves as fast as your business. Open an account in minutes, pay suppliers "
        "in thirty currencies, and see every transfer reconciled before your coffee cools. "
        "No branches, no paperwork, no surprises on the statement.",
    ),
    "writer2@demo.quire": (
        "Edit a 3,000-word white paper",
        "The edited white paper tightens the argument to three claims, moves the evidence "
        "next to each claim, and replaces the passive voice in the methods section. Figures "
        "were renumbered and every citation was checked against its source.",
    ),
}
REVIEWER = "reviewer@demo.quire"
FINANCE = "finance@demo.quire"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self.tokens: dict[str, str] = {}

    def ready(self) -> bool:
        try:
            return self.http.get("/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def login(self, email: str) -> None:
        body = {"tenant": DEMO_TENANT, "email": email, "password": DEMO_PASSWORD}
        response = self.http.post("/auth/login", json=body)
        response.raise_for_status()
        self.tokens[email] = response.json()["access_token"]

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.http.request(method, path, headers=headers, **kwargs)


def _alive(child: subprocess.Popen[bytes], name: str, log: Path) -> bool:
    if child.poll() is not None:
        raise RuntimeError(f"{name} exited ({child.returncode}): see {log}")
    return True


def run(*, exit_when_done: bool = False) -> int:
    """The demo; 0 once it has walked the path and been stopped (or at once with --exit)."""
    settings = get_settings()
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    home = data / "prefect"
    host = "127.0.0.1"
    port = int(os.environ.get("PREFECT_SERVER_API_PORT") or 0) or prefect_server.free_port_from(
        prefect_server.DEFAULT_PORT
    )
    # Prefect keeps its own database (runs, artifacts) and results under the data directory;
    # the worker and the API (children) inherit these, the server gets its own settings on top.
    os.environ.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://{host}:{port}/api",
        PREFECT_LOCAL_STORAGE_PATH=str(home / "results"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    os.environ.setdefault("QUIRE_DATABASE_BLOCK", "")
    api_url = os.environ["PREFECT_API_URL"]
    server_env = {**os.environ, **prefect_server.server_environment(home, host, port)}

    children: list[subprocess.Popen[bytes]] = []  # the server's clients: they stop first
    servers: list[subprocess.Popen[bytes]] = []
    with sigterm_as_interrupt():
        try:
            step(f"starting the Prefect server on port {port} (takes ~10-40 s)")
            server_log = logs / "prefect-server.log"
            server = start(prefect_server.server_command(host, port), server_log, env=server_env)
            servers.append(server)
            wait_for(
                "the Prefect server",
                lambda: (
                    _alive(server, "the Prefect server", server_log)
                    and prefect_server.healthy(api_url)
                ),
                180,
            )
            step(f"starting the API and the worker (logs in {logs})")
            worker_log, api_log = logs / "worker.log", logs / "api.log"
            children.append(start([sys.executable, "-m", "deployments.cli", "worker"], worker_log))
            worker = children[-1]
            children.append(start([sys.executable, "-m", "deployments.cli", "api"], api_log))
            api_process = children[-1]
            api = Api(f"http://{settings.api_host}:{settings.api_port}")
            wait_for(
                "the API", lambda: _alive(api_process, "the API", api_log) and api.ready(), 120
            )
            step("waiting for the worker to serve the deployments")
            wait_for(
                "the deployments",
                lambda: _alive(worker, "the worker", worker_log) and deployments_served(),
                180,
            )
            summary = walk_through(api)
            print_summary(summary, api.base_url, api_url.removesuffix("/api"))
            if exit_when_done:
                return 0
            print(READY_MESSAGE, flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nStopping the API, the worker and the Prefect server...", flush=True)
            return 0
        finally:
            with uninterrupted():
                stop(children)  # before the server: the worker pauses its schedules there
                stop(servers)


def deployments_served(*names: str) -> bool:
    """Do these deployments (default: the relay and the QA pipeline) exist on the server yet?"""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    wanted = names or ("outbox-relay/outbox-relay", get_settings().qa_deployment)
    with get_client(sync_client=True) as client:
        try:
            for name in wanted:
                client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


def walk_through(api: Api) -> dict[str, Any]:
    for email in (*WORK, REVIEWER, FINANCE):
        api.login(email)
    open_orders = api.call(REVIEWER, "GET", "/orders", params={"status": "open", "limit": 200})
    by_title = {o["title"]: o for o in open_orders.json()["items"]}

    claimed: dict[str, dict[str, Any]] = {}
    for writer, (title, content) in WORK.items():
        order = by_title.get(title)
        if order is None:
            step(f"'{title}' is not open any more (an earlier demo took it); skipping")
            continue
        step(f"{writer} claims '{title}'")
        api.call(writer, "POST", f"/orders/{order['id']}/claim").raise_for_status()
        step(f"{writer} submits the work")
        api.call(
            writer, "POST", f"/orders/{order['id']}/submissions", json={"content": content}
        ).raise_for_status()
        claimed[order["id"]] = order

    step("the outbox relay hands the submissions to Prefect (one QA run each)")
    from prefect.deployments import run_deployment

    run_deployment("outbox-relay/outbox-relay", timeout=300)

    for order_id, order in claimed.items():
        step(f"QA checks run for '{order['title']}'; the reviewer waits for the review stage")
        wait_for(
            "the review stage",
            lambda order_id=order_id: (
                api.call(
                    REVIEWER,
                    "POST",
                    f"/orders/{order_id}/reviews",
                    json={"decision": "approve", "comments": "Approved in the demo."},
                ).status_code
                == 202
            ),
        )
        step(f"{REVIEWER} approved '{order['title']}' through the API")
    for order_id, order in claimed.items():
        wait_for(
            f"'{order['title']}' to be accepted",
            lambda order_id=order_id: (
                api.call(REVIEWER, "GET", f"/orders/{order_id}").json()["status"] == "accepted"
            ),
        )
        step(f"'{order['title']}' accepted; earnings posted")
    accounts = api.call(FINANCE, "GET", "/ledger/accounts").json()
    return {"orders": list(claimed.values()), "accounts": accounts}


def print_summary(summary: dict[str, Any], api_url: str, ui_url: str) -> None:
    print("\nSummary", flush=True)
    for order in summary["orders"]:
        fee = format_minor(order["fee_minor"], order["currency"])
        print(f"  accepted  {order['title']}  (fee {fee})")
    print("  ledger balances:")
    for account in summary["accounts"]:
        if account["balance_minor"]:
            owner = f" {account['owner_id']}" if account["owner_id"] else ""
            amount = format_minor(account["balance_minor"], account["currency"])
            print(f"    {account['kind']:<20} {amount:>16}{owner}")
    print(f"\n  API docs:  {api_url}/docs\n  Prefect UI: {ui_url}\n", flush=True)
