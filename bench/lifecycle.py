"""Lifecycle benchmark: onboarding runs of six steps against local fake servers, and empty flow
runs, on the same warm worker; then the identity provider down, with its breaker open.

    .venv/bin/python bench/lifecycle.py                    # N=200 runs of each kind
    .venv/bin/python bench/lifecycle.py -n 50 --repeat 3

Method
------
1. Start Prefect's temporary server (its own home in a temporary directory), create a fresh
   PostgreSQL database ``quire_bench_lifecycle_<random>`` (migrated) and seed one tenant, its
   connections pointing at servers this process runs on 127.0.0.1: a SCIM 2.0 identity provider
   (scim2-server), an SMTP server (aiosmtpd) and a Slack-compatible chat webhook.
2. The tenant's onboarding playbook has six steps: the identity account, its groups, the Quire
   specialist, the welcome mail, the chat post and the contract document.
3. Start ``bench/lifecycle_worker.py``: one process serving the ``lifecycle`` deployment and an
   empty flow, ``--limit`` runs at once. Warm-up: two runs of each (not reported).
4. Each measured run:
   - **empty**: N empty flow runs created at once;
   - **onboarding**: N events recorded, then N lifecycle runs started as the outbox relay does;
   - **steps' own I/O**: the same six connector calls made directly in this process, once per
     person (no Prefect, no saga log): what the steps cost without the orchestration.
   Throughput = N / (first creation -> last completion), per minute; the cost of a run is the
   worker capacity it takes, 60 s / throughput.
5. **Breaker**: the identity provider goes down; runs are started until its breaker is open;
   then K more runs: their account step's task run time (Prefect's own timestamps) shows the
   open breaker failing the step at once instead of waiting out its retries.

Target (issue #11): an onboarding run costs at most 2x an empty flow run plus the steps' own I/O:
``cost ratio = onboarding cost / (empty cost + steps' I/O)``; with the provider down, the step
takes under 1 s. With ``--repeat R`` figures are medians over the R runs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: the project root

from bench.harness import (  # noqa: E402 - needs the path above
    Databases,
    ServerProcess,
    add_common_options,
    median,
    new_parser,
    require_positive,
)
from bench.qa_pipeline import Phase, empty_phase, measure  # noqa: E402
from deployments.demo import deployments_served, wait_for  # noqa: E402

STEPS = ("account", "groups", "specialist", "welcome_email", "announce", "contract")


@dataclass(frozen=True)
class Options:
    runs: int
    repeat: int
    limit: int
    breaker_runs: int
    admin_url: str
    keep: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = new_parser("Lifecycle onboarding runs versus empty flow runs on one warm worker.")
    parser.add_argument("--runs", "-n", type=int, default=200, help="runs of each kind")
    add_common_options(parser, repeat=1)
    parser.add_argument("--limit", type=int, default=4, help="worker: flow runs at once")
    parser.add_argument(
        "--breaker-runs", type=int, default=10, help="runs with the provider down, breaker open"
    )
    args = parser.parse_args(argv)
    require_positive(parser, args, "runs", "repeat", "limit", "breaker_runs")
    return Options(args.runs, args.repeat, args.limit, args.breaker_runs, args.admin_url, args.keep)


# -- the world ---------------------------------------------------------------------------------


@dataclass
class World:
    url: str
    tenant_id: uuid.UUID
    slug: str
    admin: Any
    connections: dict[str, dict[str, Any]]


def playbook() -> dict[str, Any]:
    """Six steps of the shipped onboarding, with quick retries (the breaker phase waits out
    nothing it need not)."""
    from quire.lifecycle.shipped import shipped_definition

    definition = shipped_definition("person.onboard")
    definition["steps"] = [s for s in definition["steps"] if s["id"] in STEPS]
    for step in definition["steps"]:
        step["needs"] = [n for n in step.get("needs", []) if n in STEPS]
        step["retry"] = {"attempts": 3, "backoff_seconds": 0.5, "max_backoff_seconds": 2}
        if step["id"] == "welcome_email":
            step["params"]["body"] = "Welcome aboard, {{ person.given_name }}!"
    return definition


def seed(url: str, idp: Any, smtp_port: int, chat_url: str) -> World:
    os.environ.setdefault("QUIRE_PASSWORD_HASH_PROFILE", "cheapest")
    from deployments.local_idp import DEFAULT_TOKEN
    from migrations.upgrade import upgrade
    from quire.db import Database
    from quire.lifecycle import connections, service
    from quire.lifecycle.secrets import Keyring
    from quire.people import service as people
    from quire.people.actor import Actor
    from quire.people.models import Role
    from quire.people.schemas import UserDraft
    from quire.settings import get_settings

    database = Database(url)
    upgrade(database)
    keyring = Keyring.from_settings(get_settings())
    settings = {
        "identity": {"base_url": idp.base_url, "bearer_token": DEFAULT_TOKEN},
        "email": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "from_address": "people@bench.test",
            "starttls": False,
        },
        "chat": {"webhook_url": chat_url},
    }
    with database.session(write=True) as session:
        tenant = people.create_tenant(session, "bench-lifecycle", "Lifecycle bench")
        session.info["tenant_id"] = tenant.id
        admin = people.add_user(
            session,
            tenant.id,
            UserDraft(
                email="a@bench.test", display_name="a", password="x" * 12, roles=[Role.ADMIN]
            ),
        )
        actor = Actor(admin.id, tenant.id, frozenset(admin.roles))
        for provider, values in settings.items():
            connections.put_connection(session, actor, keyring, provider, values)
        service.put_playbook(session, actor, "person.onboard", playbook())
    database.dispose()
    return World(url, tenant.id, "bench-lifecycle", actor, settings)


def people_for(n: int, label: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"hr-{label}-{i}",
            "email": f"p{i}.{label}@bench.test",
            "given_name": "Zoë",
            "family_name": f"Bench{i}",
            "groups": ["writers"],
            "title": "copywriter",
        }
        for i in range(n)
    ]


def record_events(w: World, people: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
    from quire.db import Database, utcnow
    from quire.lifecycle import webhooks

    database = Database(w.url)
    ids = []
    with database.session(w.tenant_id, write=True) as session:
        for person in people:
            payload = webhooks.LifecycleEventIn.model_validate(
                {
                    "type": "person.onboard",
                    "timestamp": utcnow().isoformat(),
                    "data": {"person": person},
                }
            )
            ids.append(webhooks.record_admin_event(session, w.admin, payload).id)
    database.dispose()
    return ids


def start_runs(w: World, events: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    from prefect.deployments import run_deployment

    return [
        run_deployment(
            "lifecycle/lifecycle",
            parameters={"tenant": w.slug, "event_id": str(e)},
            idempotency_key=f"bench-{e}",
            timeout=0,
        ).id
        for e in events
    ]


def onboarding_phase(w: World, n: int, label: str) -> Phase:
    events = record_events(w, people_for(n, label))
    started = time.perf_counter()
    return measure(start_runs(w, events), started)[1]


def steps_io(w: World, n: int, label: str) -> float:
    """Median seconds per person of the six connector calls made directly (no Prefect)."""
    from quire.db import Database
    from quire.lifecycle.connectors import chat, documents, email, identity, quire_access
    from quire.lifecycle.connectors.base import StepCall
    from quire.settings import get_settings

    database = Database(w.url)
    scim = identity.ScimConnection.model_validate(w.connections["identity"])
    smtp = email.SmtpConnection.model_validate(w.connections["email"])
    hook = chat.ChatConnection.model_validate(w.connections["chat"])
    docs = documents.DocumentsConnection(base_dir=get_settings().reports_dir / "bench")
    own = quire_access.QuireConnection(database)
    timings = []
    for person in people_for(n, label):
        key = f"direct-{uuid.uuid4()}"

        def call(params: dict[str, Any], step: str) -> StepCall:
            return StepCall(w.tenant_id, f"{key}:{step}", params, 10.0)  # noqa: B023

        started = time.perf_counter()
        made = identity.create_user(scim, call({"user_name": person["email"]}, "account"))
        user_id = made.output["user_id"]
        identity.add_to_groups(scim, call({"user_id": user_id, "groups": ["writers"]}, "groups"))
        quire_access.create_specialist(
            own, call({"email": person["email"], "display_name": person["family_name"]}, "sp")
        )
        email.send(smtp, call({"to": person["email"], "subject": "Welcome", "body": "Hi"}, "mail"))
        chat.post(hook, call({"text": f"Welcome {person['given_name']}"}, "chat"))
        documents.generate(
            docs,
            call({"name": f"c-{key[-12:]}.md", "title": "Agreement", "body": "..."}, "doc"),
        )
        timings.append(time.perf_counter() - started)
    database.dispose()
    return median(timings)


def breaker_phase(w: World, idp: Any, k: int) -> list[float]:
    """The account step's task run time (seconds) in K runs started once the breaker is open."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    from quire.db import Database
    from quire.lifecycle import breaker
    from quire.lifecycle.connectors.base import Provider
    from quire.lifecycle.models import BreakerState

    database = Database(w.url)
    idp.down = True
    try:
        round_ = 0
        while breaker.state_of(database, w.tenant_id, Provider.IDENTITY) != BreakerState.OPEN:
            round_ += 1
            ids = start_runs(w, record_events(w, people_for(2, f"open{round_}")))
            wait_for("runs to open the breaker", lambda ids=ids: _final(ids), 300)
        ids = start_runs(w, record_events(w, people_for(k, "down")))
        wait_for("the runs with the breaker open", lambda: _final(ids), 300)
    finally:
        idp.down = False
        database.dispose()
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="account")),
        )
    return [(t.end_time - t.start_time).total_seconds() for t in tasks if t.end_time]


def _final(ids: Sequence[uuid.UUID]) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))), limit=len(ids)
        )
    return len(runs) == len(ids) and all(r.state and r.state.is_final() for r in runs)


# -- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from deployments.local_chat import LocalChat
    from deployments.local_idp import LocalIdentityProvider
    from deployments.local_smtp import LocalMailbox

    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quire-bench-lifecycle-") as tmp:
        os.environ.update(
            {
                "PREFECT_HOME": str(Path(tmp) / "prefect"),
                "PREFECT_LOCAL_STORAGE_PATH": str(Path(tmp) / "results"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING",
                "QUIRE_DATABASE_BLOCK": "",
                "QUIRE_DATA_DIR": str(Path(tmp) / "data"),
                "QUIRE_BREAKER_OPEN_SECONDS": "600",  # stays open through the breaker phase
            }
        )
        with (
            Databases("lifecycle", opts.admin_url, opts.keep) as dbs,
            LocalIdentityProvider() as idp,
            LocalMailbox() as mailbox,
            LocalChat() as chat,
        ):
            idp.add_group("writers")
            url = dbs.url(dbs.create(), "postgresql+psycopg")
            os.environ["DATABASE_URL"] = url
            from prefect.server.api.server import SubprocessASGIServer

            print("starting Prefect's temporary server ...", flush=True)
            server = SubprocessASGIServer()
            server.start(timeout=240)
            os.environ["PREFECT_API_URL"] = server.api_url
            try:
                w = seed(url, idp, mailbox.port, chat.url)
                args = [sys.executable, str(ROOT / "bench" / "lifecycle_worker.py")]
                args += ["--limit", str(opts.limit)]
                with ServerProcess(args, Path(tmp) / "worker.log", cwd=ROOT):
                    wait_for("the worker", deployments_ready, 240)
                    print(
                        f"worker: bench/lifecycle_worker.py --limit {opts.limit} (served, warm); "
                        f"N={opts.runs} runs of each kind, repeat={opts.repeat}; "
                        f"{os.cpu_count()} CPU(s) shared by all",
                        flush=True,
                    )
                    empty_phase(2)
                    onboarding_phase(w, 2, "warm")
                    results = []
                    for r in range(opts.repeat):
                        empty = empty_phase(opts.runs)
                        onboarding = onboarding_phase(w, opts.runs, f"r{r}")
                        io = steps_io(w, min(opts.runs, 50), f"io{r}")
                        results.append((empty, onboarding, io))
                        print_run(str(r + 1), empty, onboarding, io)
                    down = breaker_phase(w, idp, opts.breaker_runs)
                    return report(results, down)
            finally:
                server.stop()


def deployments_ready() -> bool:
    return deployments_served("bench-empty/bench-empty", "lifecycle/lifecycle")


def cost_ratio(empty: Phase, onboarding: Phase, io: float) -> float:
    return onboarding.cost / (empty.cost + io)


def print_run(label: str, empty: Phase, onboarding: Phase, io: float) -> None:
    print(
        f"run {label}: empty {empty.per_minute:.1f}/min ({empty.cost:.2f}s each) | onboarding "
        f"{onboarding.per_minute:.1f}/min ({onboarding.cost:.2f}s each), run time p50 "
        f"{median(onboarding.run_time):.2f}s | steps' I/O {io * 1000:.0f} ms | cost ratio "
        f"{cost_ratio(empty, onboarding, io):.2f}",
        flush=True,
    )


def report(results: Sequence[tuple[Phase, Phase, float]], down: Sequence[float]) -> int:
    empty_pm = median([e.per_minute for e, _, _ in results])
    empty_cost = median([e.cost for e, _, _ in results])
    run_pm = median([o.per_minute for _, o, _ in results])
    run_cost = median([o.cost for _, o, _ in results])
    run_time = median([median(o.run_time) for _, o, _ in results])
    io = median([i for _, _, i in results])
    ratio = median([cost_ratio(e, o, i) for e, o, i in results])
    step_down = median(down) if down else float("nan")
    print(
        f"\nmedians over {len(results)} run(s):\n"
        f"  empty flow runs: {empty_pm:.1f}/min = {empty_cost:.2f}s of worker per run\n"
        f"  onboarding runs (6 steps): {run_pm:.1f}/min = {run_cost:.2f}s of worker per run; "
        f"run time p50 {run_time:.2f}s\n"
        f"  the steps' own I/O per person (direct calls): {io * 1000:.0f} ms\n"
        f"  cost ratio onboarding / (empty + steps' I/O) = {ratio:.2f}   target <= 2: "
        f"{'met' if ratio <= 2 else 'MISSED'}\n"
        f"  identity provider down, breaker open: the account step takes {step_down:.2f}s "
        f"(median of {len(down)}; max {max(down, default=float('nan')):.2f}s)   target < 1 s: "
        f"{'met' if down and max(down) < 1 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
