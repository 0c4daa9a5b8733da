"""`quire payroll run|show`: payroll for operators, with the run's progress on screen.

`run` opens the run in Quire's database (as the API does, so the period's one-live-run rule
decides) and creates its flow run on the Prefect server the environment names (the `payroll-run`
deployment must be served or deployed); `--wait` follows it step by step until it waits for
approval, is posted, or ends. `show` prints a run's state, totals and files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid

from sqlalchemy import select

from quire.db import Database
from quire.errors import DomainError
from quire.money import format_minor
from quire.payroll import files, runs
from quire.payroll.models import PayrollRun, RunStatus
from quire.people.models import Tenant
from quire.settings import get_settings

# Where a run stands, in the order it gets there: what the progress display counts.
STEPS = ("opened", "lines computed", "validated", "awaiting approval", "posted", "files written")
SETTLED = (RunStatus.FAILED, RunStatus.REJECTED, RunStatus.REVERSED, RunStatus.PAID)


def _tenant_id(database: Database, slug: str) -> uuid.UUID:
    with database.session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if tenant_id is None:
        raise SystemExit(f"no tenant {slug!r}")
    return tenant_id


def step_of(database: Database, tenant_id: uuid.UUID, run: PayrollRun) -> int:
    """How many of STEPS the run has done."""
    with database.session(tenant_id) as session:
        written = bool(files.files_of(session, run.id))
        has_lines = runs.has_lines(session, run.id)
    if written:
        return 6
    if run.status in (RunStatus.POSTED, RunStatus.PAID):
        return 5
    if run.status in (RunStatus.AWAITING_APPROVAL, RunStatus.APPROVED):
        return 4
    if run.gate is not None:
        return 3
    return 2 if has_lines else 1


def cmd_run(args: argparse.Namespace, database: Database) -> int:
    from prefect.deployments import run_deployment

    tenant_id = _tenant_id(database, args.tenant)
    try:
        with database.session(tenant_id, write=True) as session:
            run = runs.open_run(
                session,
                None,
                period=args.period,
                payout_date=args.payout_date,
                dry_run=args.dry_run,
            )
    except DomainError as refused:
        print(f"refused: {refused.message}")
        return 2
    try:
        flow_run = run_deployment(
            get_settings().payroll_deployment,
            parameters={
                "tenant": args.tenant,
                "period": run.period,
                "payout_date": run.payout_date.isoformat(),
                "dry_run": run.dry_run,
                "run_id": str(run.id),
            },
            idempotency_key=f"payroll:{run.tenant_id}:{run.period}:{run.attempt}",
            timeout=0,
            as_subflow=False,
            tags=["quire", "payroll"],
        )
    except Exception as exc:  # the run is open: fail it so it does not hold the period
        with database.session(tenant_id, write=True) as session:
            runs.fail(session, run.id, f"could not be started: {exc}")
        print(f"could not start the run's flow run: {exc}")
        return 3
    with database.session(tenant_id, write=True) as session:
        runs.attach_flow_run(session, run.id, flow_run.id)
    print(f"payroll run {run.id}: {run.period} attempt {run.attempt}, flow run {flow_run.id}")
    if args.wait:
        return follow(database, tenant_id, run.id, timeout=args.timeout)
    return 0


def follow(database: Database, tenant_id: uuid.UUID, run_id: uuid.UUID, *, timeout: float) -> int:
    """A progress bar over STEPS until the run waits for a person or ends."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]payroll[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    ) as progress:
        bar = progress.add_task("opened", total=len(STEPS))
        while time.monotonic() < deadline:
            with database.session(tenant_id) as session:
                run = runs.get_run(session, run_id)
            done = step_of(database, tenant_id, run)
            progress.update(bar, completed=done, description=STEPS[done - 1])
            if run.status in SETTLED or done == len(STEPS):
                break
            if run.status == RunStatus.AWAITING_APPROVAL:
                break
            if run.dry_run and run.gate is not None:
                break
            time.sleep(0.5)
    print(describe(database, tenant_id, run_id))
    return 1 if run.status == RunStatus.FAILED else 0


def describe(database: Database, tenant_id: uuid.UUID, run_id: uuid.UUID) -> str:
    with database.session(tenant_id) as session:
        run = runs.get_run(session, run_id)
        written = files.files_of(session, run_id)
    lines = [
        f"run {run.id}  {run.period} attempt {run.attempt}{' (dry run)' if run.dry_run else ''}",
        f"  status      {run.status}" + (f" — {run.failure_reason}" if run.failure_reason else ""),
        f"  cutoff      {run.cutoff_at:%Y-%m-%d %H:%M} UTC, payout date {run.payout_date}",
    ]
    for currency, total in sorted((run.totals or {}).get("payout", {}).items()):
        lines.append(
            f"  pays        {format_minor(total['amount_minor'], currency):>16}  "
            f"{total['lines']} line(s), {total['specialists']} specialist(s)"
        )
    for currency, total in sorted((run.totals or {}).get("withheld", {}).items()):
        lines.append(
            f"  withholds   {format_minor(total['amount_minor'], currency):>16}  "
            f"{total['lines']} line(s)"
        )
    if run.gate is not None:
        verdict = "passed" if run.gate.get("success") else "FAILED"
        lines.append(f"  gate        {verdict} ({run.gate.get('suite', '')})")
        if run.gate.get("data_docs_index"):
            lines.append(f"  data docs   {run.gate['data_docs_index']}")
    reports = get_settings().reports_dir
    for found in written:
        lines.append(f"  file        {reports / found.path}  ({found.format}, {found.status})")
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace, database: Database) -> int:
    tenant_id = _tenant_id(database, args.tenant)
    with database.session(tenant_id) as session:
        if args.run:
            found = [runs.get_run(session, uuid.UUID(args.run))]
        else:
            statement = select(PayrollRun).order_by(PayrollRun.period.desc(), PayrollRun.attempt)
            if args.period:
                statement = statement.where(PayrollRun.period == args.period)
            found = list(session.scalars(statement.limit(20)))
    if not found:
        print("no payroll runs")
        return 0
    print("\n\n".join(describe(database, tenant_id, run.id) for run in found))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    payroll = sub.add_parser("payroll", help="payroll runs: start one, follow it, show them")
    payroll_sub = payroll.add_subparsers(dest="payroll_command", required=True)
    run = payroll_sub.add_parser("run", help="start a tenant's payroll for a month")
    run.add_argument("--tenant", required=True, help="the tenant's slug")
    run.add_argument("--period", required=True, help="YYYY-MM")
    run.add_argument("--payout-date", type=_date, default=None, help="YYYY-MM-DD")
    run.add_argument("--dry-run", action="store_true", help="stop after the preview")
    run.add_argument("--wait", action="store_true", help="follow the run's progress")
    run.add_argument("--timeout", type=float, default=600, help="seconds to follow it")
    run.set_defaults(payroll_func=cmd_run)
    show = payroll_sub.add_parser("show", help="a tenant's runs (or one) with totals and files")
    show.add_argument("--tenant", required=True)
    show.add_argument("--period", default=None)
    show.add_argument("--run", default=None, help="a run id")
    show.set_defaults(payroll_func=cmd_show)


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
