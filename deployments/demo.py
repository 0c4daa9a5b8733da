"""`quire demo`: the marketplace -> QA -> ledger path, end to end, on the embedded defaults.

    migrate and seed the demo tenant (SQLite under the data directory)
    -> start `prefect server start` (API and UI; its own SQLite database under the data
       directory) and `quire worker` (every deployment, served)
    -> start the API
    -> specialists log in, claim and submit through the HTTP API
    -> the outbox relay starts one QA run per submission; the checks run
    -> the demo reviewer approves through the API, which resumes the suspended runs
    -> earnings land in the ledger
    -> finance starts the month's payroll through the API; Prefect computes it, the Great
       Expectations gate passes, the run waits for approval; a second finance user approves;
       the payouts are posted and the bank's files written
    -> the demo's bank answers the files with its camt.053 statement (one payment returned);
       finance uploads it through the API; ops runs `reconcile-ledger` (as from its form):
       the payouts are matched and settled, the returned one reversed, the ledger proved by
       Great Expectations (Data Docs); print a summary
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from deployments import demo_bank, prefect_server
from deployments.demo_tenant import DEMO_PASSWORD, DEMO_TENANT
from deployments.processes import sigterm_as_interrupt, start, stop, uninterrupted
from quire.db import Database
from quire.money import format_minor
from quire.payroll.files import files_of
from quire.people.models import Tenant
from quire.reconciliation.models import Reconciliation
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
APPROVER = "finance2@demo.quire"
# No FX provider is reachable offline: the demo converts with a rates file in the ECB's format.
DEMO_FX_RATES = Path(__file__).with_name("demo_fx_rates.xml")


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
    os.environ.setdefault("QUIRE_FX_RATES_URL", "")
    os.environ.setdefault("QUIRE_FX_RATES_FILE", str(DEMO_FX_RATES))
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
            walk_started = time.monotonic()
            summary = walk_through(api)
            summary["seconds"] = time.monotonic() - walk_started
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
    """Do these deployments (default: the relay and the QA pipeline) exist on the server yet?

    Asked with one plain HTTP request per deployment rather than through Prefect's client:
    the demo asks every second while it waits, and a Ctrl-C or SIGTERM landing inside the
    client's own threads and event loop could leave the demo hanging instead of stopping."""
    from urllib.parse import quote

    settings = get_settings()
    wanted = names or (
        "outbox-relay/outbox-relay",
        settings.qa_deployment,
        settings.payroll_deployment,
        settings.reconciliation_deployment,
    )
    api_url = os.environ["PREFECT_API_URL"].rstrip("/")
    with httpx.Client(timeout=10) as http:
        for name in wanted:
            flow_name, _, deployment = name.partition("/")
            path = f"/deployments/name/{quote(flow_name, safe='')}/{quote(deployment, safe='')}"
            try:
                answer = http.get(api_url + path)
            except httpx.HTTPError:
                return False
            if answer.status_code != 200:
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
    payroll = pay_the_month(api)
    reconciliations = reconcile_the_month(api, payroll)
    accounts = api.call(FINANCE, "GET", "/ledger/accounts").json()
    return {
        "orders": list(claimed.values()),
        "accounts": accounts,
        "payroll": payroll,
        "reconciliations": reconciliations,
    }


def pay_the_month(api: Api) -> dict[str, Any]:
    """Finance starts this month's payroll; a second finance user approves the preview."""
    api.login(APPROVER)
    period = time.strftime("%Y-%m", time.gmtime())
    step(f"{FINANCE} starts the payroll for {period} through the API (a Prefect flow run)")
    started = api.call(FINANCE, "POST", "/payroll-runs", json={"period": period})
    if started.status_code == 409 and started.json().get("code") == "period_already_paid":
        step(f"{period} is already paid (an earlier demo); showing that run")
        return api.call(FINANCE, "GET", f"/payroll-runs/{started.json()['run_id']}").json()
    started.raise_for_status()
    run_id = started.json()["id"]

    def run() -> dict[str, Any]:
        body = api.call(FINANCE, "GET", f"/payroll-runs/{run_id}").json()
        if body["status"] == "failed":
            raise RuntimeError(f"the payroll run failed: {body['failure_reason']}")
        return body

    shown = wait_for(
        "the payroll preview", lambda: run()["status"] == "awaiting_approval" and run()
    )
    step(
        "lines computed, the Great Expectations gate passed, the preview is published; "
        f"the run waits for approval ({shown['flow_run_url'] or 'see the Prefect UI'})"
    )
    refused = api.call(
        FINANCE, "POST", f"/payroll-runs/{run_id}/approval", json={"decision": "approve"}
    )
    step(f"{FINANCE} may not approve their own run: {refused.status_code} {refused.json()['code']}")
    api.call(
        APPROVER,
        "POST",
        f"/payroll-runs/{run_id}/approval",
        json={"decision": "approve", "comment": "Preview checked in the demo."},
    ).raise_for_status()
    step(f"{APPROVER} approved; the payouts are posted in one ledger batch")
    return wait_for("the payout files", lambda: (body := run())["files"] and body)


def reconcile_the_month(api: Api, payroll: dict[str, Any]) -> list[dict[str, Any]]:
    """The bank executes the payout files and sends its statement (the last payment comes back:
    account closed); finance uploads it; ops reconciles, as from the deployment's form."""
    files = [path for path in payout_file_paths(payroll) if path.suffix == ".xml"]
    transfers = demo_bank.transfers_in(files)
    if not transfers:
        return []
    returned = transfers[-1]
    content = demo_bank.statement_for(
        transfers,
        returned=returned.end_to_end_id,
        booked_on=max(t.execution_date for t in transfers),
    )
    statement_file = get_settings().data_dir.resolve() / "bank" / f"camt053-{payroll['period']}.xml"
    statement_file.parent.mkdir(parents=True, exist_ok=True)
    statement_file.write_bytes(content)
    step(
        f"the bank executes {len(transfers)} payment(s) and sends its camt.053 statement "
        f"({statement_file}); it returns {returned.creditor}'s: account closed (AC04)"
    )
    uploaded = api.call(
        FINANCE,
        "POST",
        "/bank-statements",
        files={"file": (statement_file.name, content, "application/xml")},
    )
    uploaded.raise_for_status()
    stored = {s["id"] for s in uploaded.json()}
    step(f"{FINANCE} uploads it through the API: {len(stored)} statement(s) stored")
    step("ops runs reconcile-ledger for the tenant, as from its form: match, settle, prove")
    from prefect.deployments import run_deployment

    run_deployment(
        get_settings().reconciliation_deployment, parameters={"tenant": DEMO_TENANT}, timeout=300
    )
    found = api.call(FINANCE, "GET", "/reconciliations", params={"limit": 20}).json()
    latest: dict[str, dict[str, Any]] = {}
    for item in found:  # newest first: the latest reconciliation of each statement
        if item["statement_id"] in stored:
            latest.setdefault(item["statement_id"], item)
    return list(latest.values())


def data_docs_index(reconciliation_id: str) -> str | None:
    """Where the run's Data Docs are on disk (the API serves them to finance too)."""
    database = Database(get_settings().effective_database_url)
    try:
        with database.session() as session:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == DEMO_TENANT))
        with database.session(tenant_id) as session:
            found = session.get(Reconciliation, uuid.UUID(reconciliation_id))
            return (found.suites or {}).get("data_docs_index") if found else None
    finally:
        database.dispose()


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
    payroll = summary.get("payroll")
    if payroll:
        print(f"  payroll {payroll['period']} (attempt {payroll['attempt']}): {payroll['status']}")
        for currency, total in sorted(payroll["totals"].get("payout", {}).items()):
            amount = format_minor(total["amount_minor"], currency)
            print(f"    pays     {amount:>16}  to {total['specialists']} specialist(s)")
        for path in payout_file_paths(payroll):
            print(f"    file     {path}")
    for item in summary.get("reconciliations") or []:
        counts = item["summary"]
        suites = item.get("suites") or {}
        print(
            f"  reconciliation {item['period']}: {item['status']}: "
            f"matched {counts['matched']}, settled {counts['settled']}, "
            f"returned {counts['returned']}, exceptions {counts['exceptions_open']}; "
            f"ledger invariants {'proved' if suites.get('success') else 'FAILED'}"
        )
        docs = data_docs_index(item["id"])
        if docs:
            print(f"    data docs {docs}")
    if "seconds" in summary:
        print(f"  walked through in {summary['seconds']:.0f} s")
    print(f"\n  API docs:  {api_url}/docs\n  Prefect UI: {ui_url}\n", flush=True)


def payout_file_paths(payroll: dict[str, Any]) -> list[Path]:
    """Where the run's files are on disk (the API serves them; people may want to open them)."""
    settings = get_settings()
    database = Database(settings.effective_database_url)
    try:
        with database.session() as session:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == DEMO_TENANT))
        with database.session(tenant_id) as session:
            found = files_of(session, uuid.UUID(payroll["id"]))
            return [settings.reports_dir.resolve() / f.path for f in found]
    finally:
        database.dispose()
