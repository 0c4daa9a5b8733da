"""`kill -9` of the worker in the middle of posting, on PostgreSQL: nothing is half-posted, and
re-running the run posts every payout exactly once (the trial balance stays zero throughout).

The flow runs in a subprocess of its own against the package's Prefect API. To stop it *inside*
the posting transaction, the test holds a row lock on one specialist's payable account: the
batch's transfers are inserted, then its entries wait for that lock. The process is killed there;
PostgreSQL rolls its transaction back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import psycopg
import pytest
from sqlalchemy import func, select

from ledger.balances import trial_balance
from ledger.models import Account, AccountKind, Transfer
from migrations.upgrade import upgrade
from quire.db import Database
from quire.payroll import runs
from quire.payroll.models import PayrollRun, RunStatus
from tests.flows.conftest import project_root, wait_until
from tests.quire.payroll.support import build_payroll_world
from tests.quire.payroll.test_runs import open_and_compute, second_finance

pytestmark = pytest.mark.postgres


def start_flow(db_url: str, tenant: str, run: PayrollRun, data_dir: str) -> subprocess.Popen:
    code = (
        "from flows.payroll_run import payroll_run;"
        f"payroll_run(tenant={tenant!r}, period={run.period!r}, run_id={str(run.id)!r})"
    )
    env = {**os.environ, "DATABASE_URL": db_url, "QUIRE_DATA_DIR": data_dir}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=project_root(),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def payouts(database: Database, tenant_id: uuid.UUID) -> int:
    with database.session(tenant_id) as session:
        return session.scalar(
            select(func.count())
            .select_from(Transfer)
            .where(Transfer.kind.in_(["payroll_payout", "fx_out"]))
        )


def waiting_on_a_lock(admin: psycopg.Connection, db_name: str) -> bool:
    return bool(
        admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (db_name,),
        ).fetchone()[0]
    )


def test_a_worker_killed_mid_posting_leaves_nothing_and_the_rerun_posts_once(
    prefect_api, pg_url, tmp_path
):
    database = Database(pg_url)
    upgrade(database)
    pw = build_payroll_world(database, "crashco")
    run_id = open_and_compute(pw)
    with database.session(pw.tenant_id, write=True) as session:
        runs.decide(session, run_id, second_finance(pw), approve=True, comment="go")
    with database.session(pw.tenant_id) as session:
        run = runs.get_run(session, run_id)
        ana = session.scalar(
            select(Account.id).where(
                Account.kind == AccountKind.SPECIALIST_PAYABLE,
                Account.owner_id == pw.id("ana"),
                Account.currency == "EUR",
            )
        )
    plain_url = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
    db_name = database.url.database

    with psycopg.connect(plain_url, autocommit=True) as admin, psycopg.connect(plain_url) as lock:
        lock.execute("SELECT 1 FROM ledger_accounts WHERE id = %s FOR UPDATE", (ana,))
        worker = start_flow(pg_url, "crashco", run, str(tmp_path))
        wait_until(
            lambda: waiting_on_a_lock(admin, db_name),
            timeout=120,
            what="the posting to wait inside its transaction",
        )
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
        lock.rollback()
        wait_until(lambda: not waiting_on_a_lock(admin, db_name), timeout=60, what="the rollback")

    assert payouts(database, pw.tenant_id) == 0
    with database.session(pw.tenant_id) as session:
        assert runs.get_run(session, run_id).status == RunStatus.APPROVED
        assert all(v == 0 for v in trial_balance(session).values())

    for _ in range(2):  # the re-run posts; running it once more posts nothing new
        rerun = start_flow(pg_url, "crashco", run, str(tmp_path))
        assert rerun.wait(180) == 0
        assert payouts(database, pw.tenant_id) == 7  # 1 same-currency line + 3 FX lines x 2
    with database.session(pw.tenant_id) as session:
        assert runs.get_run(session, run_id).status == RunStatus.POSTED
        assert all(v == 0 for v in trial_balance(session).values())
    database.dispose()
