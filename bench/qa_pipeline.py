"""QA pipeline benchmark: QA runs on a warm worker against empty flow runs on the same worker.

    .venv/bin/python bench/qa_pipeline.py --repeat 3              # N=20 submissions per run

Method
------
1. Start Prefect's temporary server (its own home in a temporary directory), create a fresh
   PostgreSQL database ``quire_bench_qa_<random>`` (migrated with Alembic) and seed one tenant.
2. Start ``bench/qa_worker.py``: one process serving the ``qa-pipeline`` deployment and an empty
   flow (``bench-empty``), ``--limit`` runs at once, polling every second. A served flow run
   executes in a subprocess of the worker, the same way for both flows.
3. Warm-up (not reported): two runs of each.
4. Each measured run, in this order:
   - **empty**: N flow runs of the empty flow created at once; each run's turnaround is
     created -> Completed, its run time Running -> Completed (Prefect's timestamps).
   - **QA**: N orders (automated checks only: length, terms, near-duplicates, lateness; no review
     stage, no external service) are claimed and submitted through the domain services, then the
     bench starts one QA run per submission exactly as the outbox relay does (``run_deployment``
     with the event's idempotency key). Turnaround and run time as above; submit -> verdict is
     the submission's timestamp to the order's acceptance.
   - **checks' own compute**: the same checks called directly in this process on the same
     contents (median per submission): what the checks cost without Prefect.
5. Throughput = N / (last completion - first creation) for each kind, per minute; the cost of a
   run is the worker capacity it takes: 60 s / throughput (runs overlap up to ``--limit``).

Target (issue #4): a QA run costs at most 1.5x an empty flow run plus the checks' own compute:
``cost ratio = QA cost per run / (empty cost per run + checks' compute)``. Turnaround is reported
too, but it mostly measures queueing (N runs created at once, ``--limit`` at a time). With
``--repeat R`` figures are medians over the R runs.
"""

from __future__ import annotations

import datetime as dt
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
    percentile,
    require_positive,
)
from deployments.demo import deployments_served, wait_for  # noqa: E402 - needs the path above

CONTENT = (
    "Quarterly planning works best when every team writes down what it will stop doing. "
    "Our editors found that a short list of commitments, reviewed each month, beats a long "
    "roadmap that nobody reads. This piece explains how to run that review in one hour, "
    "which questions to ask, and how to record the answers so that finance can follow them. "
)


@dataclass(frozen=True)
class Options:
    submissions: int
    repeat: int
    limit: int
    admin_url: str
    keep: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = new_parser("QA pipeline runs versus empty flow runs on one warm worker.")
    parser.add_argument("--submissions", "-n", type=int, default=20, help="runs of each kind")
    add_common_options(parser, repeat=3)
    parser.add_argument("--limit", type=int, default=4, help="worker: flow runs at once")
    args = parser.parse_args(argv)
    require_positive(parser, args, "submissions", "repeat", "limit")
    return Options(args.submissions, args.repeat, args.limit, args.admin_url, args.keep)


# -- the worker ----------------------------------------------------------------------------------


def worker(limit: int, log: Path) -> ServerProcess:
    """`bench/qa_worker.py` in its own process group (its flow-run subprocesses go with it)."""
    args = [sys.executable, str(ROOT / "bench" / "qa_worker.py"), "--limit", str(limit)]
    return ServerProcess(args, log, cwd=ROOT)


# -- the two kinds of run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    turnaround: list[float]  # created -> Completed, seconds
    run_time: list[float]  # Running -> Completed, seconds
    span: float  # first creation -> last completion
    submit_to_verdict: list[float]

    @property
    def per_minute(self) -> float:
        return len(self.turnaround) * 60 / self.span

    @property
    def cost(self) -> float:
        """Seconds of worker capacity per run."""
        return self.span / len(self.turnaround)


def finished_runs(ids: Sequence[uuid.UUID]) -> list[Any] | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))), limit=len(ids)
        )
    if len(runs) < len(ids) or any(r.state is None or not r.state.is_final() for r in runs):
        return None
    failed = [r for r in runs if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) did not complete: {failed[0].state}")
    return runs


def measure(ids: Sequence[uuid.UUID], started: float) -> tuple[list[Any], Phase]:
    runs = wait_for("the flow runs to finish", lambda: finished_runs(ids), 600)
    turnaround = [(r.end_time - r.created).total_seconds() for r in runs]
    run_time = [(r.end_time - r.start_time).total_seconds() for r in runs]
    first = min(r.created for r in runs)
    last = max(r.end_time for r in runs)
    return runs, Phase(turnaround, run_time, (last - first).total_seconds(), [])


def empty_phase(n: int) -> Phase:
    from prefect.deployments import run_deployment

    started = time.perf_counter()
    ids = [run_deployment("bench-empty/bench-empty", timeout=0).id for _ in range(n)]
    return measure(ids, started)[1]


@dataclass
class Seed:
    url: str
    tenant_id: uuid.UUID
    manager: Any
    specialists: list[Any]


def seed(url: str) -> Seed:
    os.environ.setdefault("QUIRE_PASSWORD_HASH_PROFILE", "cheapest")
    from migrations.upgrade import upgrade
    from quire.db import Database
    from quire.people import service as people
    from quire.people.actor import Actor
    from quire.people.models import Role
    from quire.people.schemas import ProfileDraft, UserDraft

    database = Database(url)
    upgrade(database)
    with database.session(write=True) as session:
        tenant = people.create_tenant(session, "bench-qa", "QA bench")
        session.info["tenant_id"] = tenant.id
        manager = people.add_user(
            session,
            tenant.id,
            UserDraft(
                email="m@bench.test", display_name="m", password="x" * 12, roles=[Role.MANAGER]
            ),
        )
        specialist = people.add_user(
            session,
            tenant.id,
            UserDraft(
                email="s@bench.test",
                display_name="s",
                password="x" * 12,
                roles=[Role.SPECIALIST],
                profile=ProfileDraft(payout_currency="EUR"),
            ),
        )
    database.dispose()
    return Seed(
        url,
        tenant.id,
        Actor(manager.id, tenant.id, frozenset(manager.roles)),
        [Actor(specialist.id, tenant.id, frozenset(specialist.roles))],
    )


def contents(n: int, label: str) -> list[str]:
    """Distinct texts (no near-duplicates among them), so every run reaches acceptance."""
    return [" ".join(f"{label}{i}w{j}" for j in range(60)) + " " + CONTENT for i in range(n)]


def submit_all(
    s: Seed, texts: Sequence[str]
) -> list[tuple[uuid.UUID, uuid.UUID, int, dt.datetime]]:
    from sqlalchemy import select

    from quire.db import Database, utcnow
    from quire.events.models import Event
    from quire.orders import claims
    from quire.orders import service as orders
    from quire.orders.schemas import OrderDraft, SubmissionDraft
    from quire.qa.config import Check, QAConfig

    qa = QAConfig(
        checks=[Check.LENGTH, Check.TERMS, Check.DUPLICATE, Check.LATENESS],
        review_stages=0,
        min_words=50,
        banned_terms=["lorem ipsum"],
    )
    database = Database(s.url)
    out = []
    with database.session(s.tenant_id, write=True) as session:
        for text in texts:
            order = orders.create_order(
                session,
                s.manager,
                OrderDraft(
                    title="Bench article",
                    brief="An article.",
                    fee_minor=10_000,
                    currency="EUR",
                    deadline=utcnow() + dt.timedelta(days=2),
                    qa=qa,
                    publish=True,
                ),
            )
            claims.claim(session.connection(), s.specialists[0], order.id)
            submission = orders.submit(
                session, s.specialists[0], order.id, SubmissionDraft(content=text)
            )
            event_id = session.scalar(
                select(Event.id)
                .where(Event.type == "order.submitted", Event.aggregate_id == order.id)
                .order_by(Event.id.desc())
                .limit(1)
            )
            out.append((order.id, submission.id, event_id, submission.created_at))
    database.dispose()
    return out


def qa_phase(s: Seed, texts: Sequence[str]) -> Phase:
    from prefect.deployments import run_deployment
    from sqlalchemy import select

    from quire.db import Database
    from quire.qa.models import QARun

    submitted = submit_all(s, texts)
    started = time.perf_counter()
    ids = [
        run_deployment(
            "qa-pipeline/qa-pipeline",
            parameters={
                "request": {
                    "tenant_id": str(s.tenant_id),
                    "submission_id": str(submission_id),
                    "event_id": event_id,
                }
            },
            idempotency_key=f"quire-event-{event_id}",
            timeout=0,
        ).id
        for _, submission_id, event_id, _ in submitted
    ]
    _, phase = measure(ids, started)
    database = Database(s.url)
    with database.session(s.tenant_id) as session:
        verdicts = {
            r.submission_id: (r.status, r.updated_at)
            for r in session.scalars(
                select(QARun).where(QARun.submission_id.in_([x[1] for x in submitted]))
            )
        }
    database.dispose()
    bad = [sid for _, sid, _, _ in submitted if verdicts.get(sid, ("?",))[0] != "accepted"]
    if bad:
        raise RuntimeError(f"{len(bad)} submission(s) were not accepted: {verdicts.get(bad[0])}")
    phase.submit_to_verdict.extend(
        (verdicts[sid][1] - at).total_seconds() for _, sid, _, at in submitted
    )
    return phase


def checks_compute(s: Seed, texts: Sequence[str]) -> float:
    """Median seconds per submission of the same checks, called directly (no Prefect)."""
    from quire.db import Database, utcnow
    from quire.qa import checks, similarity
    from quire.qa.config import QAConfig

    qa = QAConfig(min_words=50, banned_terms=["lorem ipsum"])
    database = Database(s.url)
    timings = []
    order_id = uuid.uuid4()
    for text in texts:
        started = time.perf_counter()
        checks.check_length(text, qa)
        checks.check_terms(text, qa)
        checks.check_lateness(utcnow(), utcnow() + dt.timedelta(days=1))
        sig = similarity.signature(text)
        with database.session(s.tenant_id) as session:
            similarity.check_duplicate(session, order_id, sig)
        timings.append(time.perf_counter() - started)
    database.dispose()
    return median(timings)


# -- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quire-bench-qa-") as tmp:
        os.environ.update(
            {
                "PREFECT_HOME": str(Path(tmp) / "prefect"),
                "PREFECT_LOCAL_STORAGE_PATH": str(Path(tmp) / "results"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING",
                "QUIRE_DATABASE_BLOCK": "",
                "QUIRE_GRAMMAR_CHECK_URL": "",
                "QUIRE_DATA_DIR": str(Path(tmp) / "data"),
            }
        )
        with Databases("qa", opts.admin_url, opts.keep) as dbs:
            url = dbs.url(dbs.create(), "postgresql+psycopg")
            os.environ["DATABASE_URL"] = url
            from prefect.server.api.server import SubprocessASGIServer

            print("starting Prefect's temporary server ...", flush=True)
            server = SubprocessASGIServer()
            server.start(timeout=240)
            os.environ["PREFECT_API_URL"] = server.api_url
            try:
                s = seed(url)
                with worker(opts.limit, Path(tmp) / "worker.log"):
                    wait_for("the worker", deployments_ready, 240)
                    print(
                        f"worker: bench/qa_worker.py --limit {opts.limit} (served, warm); "
                        f"N={opts.submissions} runs of each kind, repeat={opts.repeat}; "
                        f"{os.cpu_count()} CPU(s) shared by all",
                        flush=True,
                    )
                    empty_phase(2)
                    qa_phase(s, contents(2, "warm"))
                    results = []
                    for r in range(opts.repeat):
                        empty = empty_phase(opts.submissions)
                        texts = contents(opts.submissions, f"r{r}x")
                        qa = qa_phase(s, texts)
                        compute = checks_compute(s, contents(opts.submissions, f"c{r}x"))
                        results.append((empty, qa, compute))
                        print_run(str(r + 1), empty, qa, compute)
                    return report(results)
            finally:
                server.stop()


def deployments_ready() -> bool:
    return deployments_served("bench-empty/bench-empty", "qa-pipeline/qa-pipeline")


def cost_ratio(empty: Phase, qa: Phase, compute: float) -> float:
    return qa.cost / (empty.cost + compute)


def print_run(label: str, empty: Phase, qa: Phase, compute: float) -> None:
    print(
        f"run {label}: empty {empty.per_minute:.1f}/min ({empty.cost:.2f}s each), turnaround "
        f"p50 {median(empty.turnaround):.2f}s, run {median(empty.run_time):.2f}s | QA "
        f"{qa.per_minute:.1f}/min ({qa.cost:.2f}s each), turnaround p50 "
        f"{median(qa.turnaround):.2f}s, run {median(qa.run_time):.2f}s, submit->verdict p50 "
        f"{median(qa.submit_to_verdict):.2f}s | checks {compute * 1000:.1f} ms | cost ratio "
        f"{cost_ratio(empty, qa, compute):.2f}",
        flush=True,
    )


def report(results: Sequence[tuple[Phase, Phase, float]]) -> int:
    empty_t = median([median(e.turnaround) for e, _, _ in results])
    empty_r = median([median(e.run_time) for e, _, _ in results])
    empty_pm = median([e.per_minute for e, _, _ in results])
    qa_t = median([median(q.turnaround) for _, q, _ in results])
    qa_r = median([median(q.run_time) for _, q, _ in results])
    qa_pm = median([q.per_minute for _, q, _ in results])
    qa_p95 = median([percentile(sorted(q.turnaround), 0.95, "lower") for _, q, _ in results])
    s2v = median([median(q.submit_to_verdict) for _, q, _ in results])
    compute = median([c for _, _, c in results])
    ratio = median([cost_ratio(e, q, c) for e, q, c in results])
    empty_cost = median([e.cost for e, _, _ in results])
    qa_cost = median([q.cost for _, q, _ in results])
    print(
        f"\nmedians over {len(results)} run(s):\n"
        f"  empty flow runs: {empty_pm:.1f}/min = {empty_cost:.2f}s of worker per run; "
        f"turnaround p50 {empty_t:.2f}s, run time p50 {empty_r:.2f}s\n"
        f"  QA runs (automated checks only): {qa_pm:.1f}/min = {qa_cost:.2f}s of worker per run; "
        f"turnaround p50 {qa_t:.2f}s (p95 {qa_p95:.2f}s), run time p50 {qa_r:.2f}s, "
        f"submit->verdict p50 {s2v:.2f}s\n"
        f"  checks' own compute per submission: {compute * 1000:.1f} ms\n"
        f"  cost ratio QA / (empty + checks) = {ratio:.2f}   target <= 1.5: "
        f"{'met' if ratio <= 1.5 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
