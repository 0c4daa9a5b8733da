"""`quire demo`: the marketplace -> QA -> ledger path, end to end, on the embedded defaults.

    migrate and seed the demo tenant (SQLite under the data directory)
    -> start `prefect server start` (API and UI; its own SQLite database under the data
       directory) and `quire worker` (every deployment, served)
    -> start the API
    -> start the tenant's identity provider (scim2-server's SCIM 2.0 app), mail server
       (aiosmtpd) and chat webhook (Slack's protocol) on local ports, as stand-ins for theirs
    -> the admin connects them through the API; the HR system's signed webhook onboards a new
       specialist: the relay starts a `lifecycle` flow run, whose steps create her account at
       the identity provider, her specialist record, her contract, her welcome mail and the
       team's announcement, printed as they finish
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

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from deployments import demo_bank, demo_hr, prefect_server
from deployments.demo_tenant import DEMO_PASSWORD, DEMO_TENANT
from deployments.local_chat import LocalChat
from deployments.local_idp import LocalIdentityProvider
from deployments.local_smtp import LocalMailbox
from deployments.net import free_port_from
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
ADMIN = "admin@demo.quire"
REVIEWER = "reviewer@demo.quire"
FINANCE = "finance@demo.quire"
APPROVER = "finance2@demo.quire"
# No FX provider is reachable offline: the demo converts with a rates file in the ECB's format.
DEMO_FX_RATES = Path(__file__).with_name("demo_fx_rates.xml")


@dataclass(frozen=True)
class TenantSystems:
    """The systems a tenant's lifecycle playbooks act on, as local stand-ins."""

    idp: LocalIdentityProvider
    mailbox: LocalMailbox
    chat: LocalChat

    def start(self) -> None:
        self.idp.start()
        self.mailbox.start()
        self.chat.start()

    def stop(self) -> None:
        self.chat.stop()
        self.mailbox.stop()
        self.idp.stop()


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
    port = int(os.environ.get("PREFECT_SERVER_API_PORT") or 0) or free_port_from(
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
    # The tenant's identity provider, mail server and chat: threads of this process.
    tenant_systems = TenantSystems(
        idp=LocalIdentityProvider(token=f"demo-idp-{uuid.uuid4().hex}"),
        mailbox=LocalMailbox(directory=data / "mail"),
        chat=LocalChat(),
    )
    for group in demo_hr.NEW_SPECIALIST["groups"]:
        tenant_systems.idp.add_group(group)
    with sigterm_as_interrupt():
        try:
            tenant_systems.start()
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
            summary = walk_through(api, tenant_systems)
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
                tenant_systems.stop()


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
        settings.lifecycle_deployment,
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


def walk_through(api: Api, systems: TenantSystems) -> dict[str, Any]:
    for email in (ADMIN, *WORK, REVIEWER, FINANCE):
        api.login(email)
    onboarding = onboard_a_specialist(api, systems)
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
        "onboarding": onboarding,
        "orders": list(claimed.values()),
        "accounts": accounts,
        "payroll": payroll,
        "reconciliations": reconciliations,
    }


def onboard_a_specialist(api: Api, systems: TenantSystems) -> dict[str, Any]:
    """The admin connects the tenant's identity provider, mail server and chat and gives HR its
    webhook secret; HR's signed `person.onboard` arrives; the relay starts the lifecycle run,
    whose steps are printed as they finish. The run's final state, as the API shows it."""
    person = demo_hr.NEW_SPECIALIST
    idp, mailbox, chat = systems.idp, systems.mailbox, systems.chat
    step(
        f"{ADMIN} connects the identity provider (SCIM 2.0 at {idp.base_url}), the mail server "
        f"(SMTP on {mailbox.host}:{mailbox.port}) and the chat webhook through the API; their "
        "secrets are sealed"
    )
    api.call(
        ADMIN,
        "PUT",
        "/lifecycle/connections/identity",
        json={"base_url": idp.base_url, "bearer_token": idp.token},
    ).raise_for_status()
    api.call(
        ADMIN,
        "PUT",
        "/lifecycle/connections/email",
        json={
            "host": mailbox.host,
            "port": mailbox.port,
            "from_address": "people@demo.quire",
            "starttls": False,
        },
    ).raise_for_status()
    api.call(
        ADMIN, "PUT", "/lifecycle/connections/chat", json={"webhook_url": chat.url}
    ).raise_for_status()
    made = api.call(ADMIN, "POST", "/lifecycle/connections/hr_webhook/secret")
    made.raise_for_status()
    secret = made.json()["secret"]
    step(f"{ADMIN} generates the HR webhook's signing secret and hands it to the HR system")

    today = dt.date.today()
    event = demo_hr.onboarding(person, start_date=today + dt.timedelta(days=7 - today.weekday()))
    forged = demo_hr.deliver(api.http, DEMO_TENANT, "whsec_" + "A" * 44, event, "msg_forged")
    step(
        f"a delivery signed with any other secret is refused: {forged.status_code}, nothing stored"
    )
    answer = demo_hr.deliver(api.http, DEMO_TENANT, secret, event, demo_hr.WEBHOOK_ID)
    answer.raise_for_status()
    receipt = answer.json()
    name = f"{person['given_name']} {person['family_name']}"
    if receipt["status"] == "duplicate":
        step(
            f"HR's person.onboard for {name} was delivered before (an earlier demo): "
            f"{answer.status_code}, acknowledged, not run again; showing that run"
        )
    else:
        step(
            f"the HR system signs and sends person.onboard for {name}: "
            f"{answer.status_code} {receipt['status']}"
        )
        step("the outbox relay starts one `lifecycle` flow run for the event")
        from prefect.deployments import run_deployment

        run_deployment("outbox-relay/outbox-relay", timeout=300)

    def the_run() -> dict[str, Any] | None:
        runs = api.call(ADMIN, "GET", "/lifecycle/runs", params={"limit": 50}).json()
        return next((r for r in runs if r["event_id"] == receipt["event_id"]), None)

    shown: set[str] = set()
    finished = {"completed", "completed_with_failures", "compensated", "dead_lettered", "cancelled"}

    def show_steps() -> dict[str, Any] | None:
        run = the_run()
        for item in (run or {}).get("steps", []):
            if item["status"] in ("pending", "running") or item["step_id"] in shown:
                continue
            shown.add(item["step_id"])
            print(
                f"    {item['step_id']:<14} {item['kind']:<26} {item['status']}"
                f"{_step_detail(item)}",
                flush=True,
            )
        return run if run and run["status"] in finished else None

    run = wait_for("the onboarding run", show_steps, 300)
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    where = f"{ui}/runs/flow-run/{run['flow_run_id']}" if run.get("flow_run_id") else "Prefect"
    step(f"the onboarding run is {run['status']} (its graph and artifacts: {where})")
    accounts = [u for u in idp.users() if u["userName"] == person["email"]]
    for account in accounts:
        groups = [g["displayName"] for g in idp.groups() if account["id"] in g["members"]]
        step(
            f"the identity provider holds {account['userName']}'s account "
            f"({'active' if account['active'] else 'inactive'}; groups: {', '.join(groups)})"
        )
    for message, path in zip(mailbox.messages, mailbox.files, strict=False):
        step(f"the mail server received '{message['Subject']}' for {message['To']} ({path})")
    for posted in chat.messages:
        step(f"the team's chat received: {posted.get('text', '')}")
    return {"run": run, "accounts": accounts, "mails": [str(p) for p in mailbox.files]}


def _step_detail(item: dict[str, Any]) -> str:
    """What a person wants to see of a finished step: the account, the file, why skipped."""
    output = item.get("output") or {}
    for key, label in (
        ("user_name", "account"),
        ("groups", "joined"),
        ("path", "file"),
        ("message_id", "message"),
        ("skipped", "skipped"),
    ):
        value = output.get(key)
        if value:
            return f"  ({label}: {', '.join(value) if isinstance(value, list) else value})"
    return f"  ({item['error']})" if item.get("error") else ""


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
    onboarding = summary.get("onboarding")
    if onboarding:
        run = onboarding["run"]
        done = sum(s["status"] == "succeeded" for s in run["steps"])
        print(
            f"  onboarded {demo_hr.NEW_SPECIALIST['email']}: run {run['status']}, "
            f"{done} of {len(run['steps'])} steps done"
        )
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
