"""Payroll benchmark: the payroll flow end to end through Prefect versus one aggregate and COPY.

    .venv/bin/python bench/payroll.py --repeat 3                                  # full size
    .venv/bin/python bench/payroll.py --specialists 1000 --transfers 100000      # quick look

Method
------
1. Seed (not timed; its time is printed) ``quire_bench_payroll_<random>_tpl`` on the server behind
   ``--admin-url``: migrated with Alembic, one tenant with two finance users and a payroll
   profile (Europe/Berlin), the platform's payout clearing and FX liquidity accounts (as a tenant
   that has paid before has them), then with binary ``COPY``: ``--specialists`` users with a
   specialist profile (payout currency EUR, USD, JPY in turn) and valid bank details (EUR: a
   German IBAN from schwifty; USD: a US account with a checksummed ABA routing number; JPY: a
   Zengin bank and branch code), each put through ``quire.payroll.payout_details.
   validate_account`` and stored with its fingerprint (all distinct), changed 60 days ago;
   one client receivable per currency and one payable per specialist and currency, created with
   their final balances; and ``--transfers`` earnings transfers effective in the month just ended
   (a random specialist, currency and amount each; debit the client receivable, credit the
   specialist payable: two entries, the idempotency key, fingerprint and metadata
   ``post_earnings`` writes). Transfers and entries go in with every ledger guard on, one
   transaction per ``--chunk`` transfers: the insert guards and the commit-time balance check
   accept them, so the template holds the ledger's invariants (balanced transfers, entries
   matching their accounts, the ``has_entries`` flags; maintained balance = sum of entries and
   a zero trial balance are checked after). Then ``VACUUM ANALYZE`` (the server may run without
   autovacuum).
2. Start Prefect's temporary server (its own home in a temporary directory).
3. Each run, on fresh copies of the template (``Databases.copy``, then a CHECKPOINT):

   - **ours**: ``bench/payroll_worker.py`` serves the catalog's ``payroll-run`` deployment
     on the copy (flow runs execute in a subprocess of the worker; FX rates from the offline
     ECB-format file ``deployments/demo_fx_rates.xml``). The clock starts, the bench creates a
     run of the deployment for the tenant and the period (as the Prefect UI or CLI would: no
     starter, so any finance user may approve), waits until the flow run waits for approval
     (paused in its process, the hold of ``QUIRE_PAYROLL_APPROVAL_HOLD_SECONDS``; with
     ``--hold-seconds 0`` suspended, and then until its process exited), resumes it at once
     with ``{"decision": "approve", "comment": "bench", "approver": <the second finance
     user>}``, and waits until it is Completed (posted, its files written, its payslips
     issued). The split comes from
     the Prefect task runs' start and end times; the gate's own time is the ``seconds`` the
     run stored with its gate (GX's import excluded); the flow-run starts from the flow run's
     states (scheduled or resuming -> Running, every process). Checked afterwards: the run
     is posted with its three files on disk, one payslip per paid specialist, the trial
     balance is zero in every currency, no account drifted from its entries, every line is
     payable and posted once with one transfer (same currency) or two (FX), the payables are
     empty, and the numbers of payout transfers and entries are what the lines call for.
   - **bare**: on another copy (the ledger's triggers dropped, as ``bench/ledger_post.py``'s raw
     baseline; ``--bare-guards`` keeps them), with the connection open before the clock: the
     payables-at-cutoff aggregate (the SQL of ``quire.payroll.lines.payables``), then binary
     ``COPY`` of exactly the payout transfer and entry rows the flow posted (read back from
     the ours copy before the clock), one transaction, committed.

   Peak memory: the flow-run processes' peak resident set, from ``/proc/<pid>/status`` VmHWM
   sampled every 0.1 s over the worker's process tree and from the worker's
   ``getrusage(RUSAGE_CHILDREN)`` (its reaped flow-run subprocesses), reported by the worker.
   GX's import time is measured apart: ``python -c "import great_expectations"`` less
   ``python -c pass``, once per run.

Figures are medians over ``--repeat`` runs; the ratio is the median of the per-run ratios over
the issue's span: the flow end to end up to its files (start, compute, gate, preview, approval
given at once, post, files), i.e. the wall time less the payslips task, the flow's last step,
which the issue's list leaves out and the bare path has no counterpart for. Also printed: the
ratio with the payslips, without GX's import, and in CPU seconds (which other load on the
machine disturbs less).
Targets (issue #9): ours / bare <= 3; peak memory <= 1 GiB. The exit status is 1 if a check
fails; the targets are only reported. Every database made is dropped at the end (``--keep``
keeps them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: the project root

import numpy as np  # noqa: E402 - needs the path above
import psycopg  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from bench.harness import (  # noqa: E402
    Databases,
    ServerProcess,
    add_common_options,
    cpu_snapshot,
    describe_server,
    markdown_table,
    median,
    new_parser,
    process_tree,
    read_procs,
    require_positive,
    server_settings,
)

CURRENCIES = ("EUR", "USD", "JPY")
# Earnings per transfer, minor units (inclusive): 10-500 EUR or USD, 1,500-80,000 JPY.
AMOUNTS = {"EUR": (1_000, 50_000), "USD": (1_000, 50_000), "JPY": (1_500, 80_000)}
TIME_ZONE = "Europe/Berlin"
SLUG = "bench-payroll"
FINANCE = f"finance@{SLUG}.test"
APPROVER = f"finance2@{SLUG}.test"
DEPLOYMENT = "payroll-run/payroll-run"
RATES_FILE = ROOT / "deployments" / "demo_fx_rates.xml"
DE_BANK = "37040044"  # Commerzbank Köln (schwifty's registry has it)
US_ROUTING = "021000021"  # a real ABA routing number: its 3-7-1 checksum holds
JP_BANK = "0001001"  # Zengin: bank 0001, branch 001
PAYOUT_KINDS = ("payroll_payout", "fx_out")

# Task run names (flows/payroll_run.py, tasks/payroll.py) -> the split's columns.
TASKS = {
    "Compute the lines": "compute",
    "Validate the lines (Great Expectations)": "gate",
    "Keep the lines with the run": "keep",
    "Publish the preview": "preview",
    "Post the payouts (one ledger batch)": "post",
    "Write the payout files": "files",
    "Issue the payslips": "payslips",
}

TRANSFER_COLUMNS = {
    "id": "uuid",
    "tenant_id": "uuid",
    "kind": "varchar",
    "reference": "varchar",
    "idempotency_key": "varchar",
    "fingerprint": "varchar",
    "effective_at": "timestamptz",
    "created_at": "timestamptz",
    "metadata": "jsonb",
}  # txid is left to its default, txid_current(), as posting leaves it
ENTRY_COLUMNS = {
    "tenant_id": "uuid",
    "transfer_id": "uuid",
    "account_id": "uuid",
    "currency": "varchar",
    "amount": "int8",
    "effective_at": "timestamptz",
    "created_at": "timestamptz",
}
ACCOUNT_COLUMNS = {
    "id": "uuid",
    "tenant_id": "uuid",
    "kind": "varchar",
    "owner_type": "varchar",
    "owner_id": "uuid",
    "owner_key": "varchar",
    "currency": "varchar",
    "normal_side": "varchar",
    "no_negative": "bool",
    "balance": "int8",
    "created_at": "timestamptz",
}
USER_COLUMNS = {
    "id": "uuid",
    "tenant_id": "uuid",
    "email": "varchar",
    "display_name": "varchar",
    "password_hash": "varchar",  # not a hash of anything: nobody logs in as these
    "roles": "jsonb",
    "is_active": "bool",
    "created_at": "timestamptz",
}
PROFILE_COLUMNS = {
    "user_id": "uuid",
    "tenant_id": "uuid",
    "payout_currency": "varchar",
    "skills": "jsonb",
    "rate_minor": "int8",
    "rate_currency": "varchar",
}
DETAILS_COLUMNS = {
    "user_id": "uuid",
    "tenant_id": "uuid",
    "scheme": "varchar",
    "account_holder": "varchar",
    "iban": "varchar",
    "bic": "varchar",
    "account_number": "varchar",
    "bank_code": "varchar",
    "country": "varchar",
    "account_fingerprint": "varchar",
    "details_changed_at": "timestamptz",
    "on_hold": "bool",
    "created_at": "timestamptz",
}

# quire.payroll.lines.payables as SQL (its payable_expression, and the tenant filter the session
# adds to every tenant-scoped table): credits count if effective before the cutoff, debits always.
PAYABLE_SUM = "-sum(CASE WHEN e.amount > 0 OR e.effective_at < %(cutoff)s THEN e.amount ELSE 0 END)"
PAYABLES_SQL = f"""
    SELECT a.owner_id, a.currency, {PAYABLE_SUM} AS payable
    FROM ledger_accounts a JOIN ledger_entries e ON e.account_id = a.id
    WHERE a.kind = 'specialist_payable' AND a.tenant_id = %(tenant)s AND e.tenant_id = %(tenant)s
    GROUP BY a.owner_id, a.currency
    HAVING {PAYABLE_SUM} > 0
    ORDER BY a.owner_id, a.currency
"""


def _copy_sql(table: str, columns: dict[str, str]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"


# -- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    specialists: int
    transfers: int
    repeat: int
    admin_url: str
    keep: bool
    seed: int
    chunk: int
    bare_guards: bool
    timeout: float
    hold_seconds: float | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = new_parser(__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--specialists", "-s", type=int, default=10_000, help="specialists")
    parser.add_argument(
        "--transfers", "-n", type=int, default=1_000_000, help="earnings transfers in the month"
    )
    add_common_options(parser, repeat=3, seed=9)
    parser.add_argument(
        "--chunk", type=int, default=100_000, help="seeding: transfers per COPY transaction"
    )
    parser.add_argument(
        "--bare-guards",
        action="store_true",
        help="the bare path keeps the ledger's triggers (else dropped, as ledger_post's raw)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds a flow run may take before failing"
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=None,
        help="QUIRE_PAYROLL_APPROVAL_HOLD_SECONDS for the worker (default: the setting's; "
        "0: the run is suspended at once and resumed in a new process)",
    )
    args = parser.parse_args(argv)
    require_positive(parser, args, "specialists", "transfers", "repeat", "chunk")
    return Options(
        specialists=args.specialists,
        transfers=args.transfers,
        repeat=args.repeat,
        admin_url=args.admin_url,
        keep=args.keep,
        seed=args.seed,
        chunk=args.chunk,
        bare_guards=args.bare_guards,
        timeout=args.timeout,
        hold_seconds=args.hold_seconds,
    )


# -- seeding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    template: str
    tenant_id: uuid.UUID
    period: str
    cutoff: dt.datetime
    lines: int  # (specialist, source currency) pairs with a payable: the run's lines
    fx_lines: int  # of which the source currency is not the payout currency
    payable_totals: dict[str, int]  # per source currency, minor units
    seconds: float
    size: str


def _uuids(rng: np.random.Generator, n: int) -> list[uuid.UUID]:
    raw = rng.bytes(16 * n)
    return [uuid.UUID(bytes=raw[16 * i : 16 * i + 16], version=4) for i in range(n)]


def _copy(cur: psycopg.Cursor[Any], table: str, columns: dict[str, str], rows: Any) -> None:
    with cur.copy(_copy_sql(table, columns)) as copy:  # type: ignore[arg-type]
        copy.set_types(list(columns.values()))
        for row in rows:
            copy.write_row(row)


class BankDetails:
    """Valid, distinct bank details, checked as `PUT /me/payout-details` checks them: EUR a
    German IBAN (schwifty builds its IBAN check digits; account numbers whose national check
    digit fails Commerzbank's rule are skipped), USD a US account at a checksummed ABA routing
    number, JPY a Zengin bank and branch code with a 7-digit account."""

    def __init__(self) -> None:
        self.next_german_account = 0

    def of(self, index: int, currency: str, holder: str) -> Any:
        from quire.payroll.payout_details import validate_account

        if currency == "EUR":
            return self._german(holder)
        if currency == "USD":
            return validate_account(
                scheme="local",
                account_holder=holder,
                account_number=f"{100_000_000 + index}",
                bank_code=US_ROUTING,
                country="US",
            )
        return validate_account(
            scheme="local",
            account_holder=holder,
            account_number=f"{index + 1:07d}",
            bank_code=JP_BANK,
            country="JP",
        )

    def _german(self, holder: str) -> Any:
        from schwifty import IBAN

        from quire.payroll.errors import InvalidPayoutDetails
        from quire.payroll.payout_details import validate_account

        while True:
            self.next_german_account += 1
            account = f"{self.next_german_account:010d}"
            iban = str(IBAN.generate("DE", bank_code=DE_BANK, account_code=account))
            with contextlib.suppress(InvalidPayoutDetails):
                return validate_account(scheme="iban", account_holder=holder, iban=iban)


def seed_template(dbs: Databases, opts: Options) -> Seeded:
    from ledger import chart
    from ledger.models import AccountKind
    from ledger.posting import Leg, TransferSpec
    from migrations.upgrade import upgrade
    from quire.db import Database, utcnow
    from quire.payroll import periods
    from quire.payroll.models import PayrollProfile
    from quire.people import service as people
    from quire.people.models import Role
    from quire.people.schemas import UserDraft

    started = time.perf_counter()
    name = dbs.create("tpl")
    url = dbs.url(name)
    now = utcnow()
    period = periods.previous(dt.datetime.now(periods.zone(TIME_ZONE)).date())
    year, month = periods.parse(period)
    period_start = dt.datetime(year, month, 1, tzinfo=periods.zone(TIME_ZONE)).astimezone(dt.UTC)
    cutoff = periods.cutoff(period, TIME_ZONE)

    database = Database(dbs.url(name, "postgresql+psycopg"))
    try:
        upgrade(database)
        with database.session(write=True) as session:
            tenant_id = people.create_tenant(session, SLUG, "Payroll benchmark").id
        with database.session(tenant_id, write=True) as session:
            for email, display in ((FINANCE, "Finance One"), (APPROVER, "Finance Two")):
                people.add_user(
                    session,
                    tenant_id,
                    UserDraft(
                        email=email,
                        display_name=display,
                        password="bench-payroll-password",
                        roles=[Role.FINANCE],
                    ),
                )
            session.add(
                PayrollProfile(
                    tenant_id=tenant_id,
                    debtor_name="Payroll Benchmark GmbH",
                    debtor_iban="DE02120300000000202051",
                    debtor_bic="BYLADEM1001",
                    time_zone=TIME_ZONE,
                    minimum_payouts={},
                    updated_at=now,
                )
            )
        with database.session(tenant_id, write=True) as session:
            for currency in CURRENCIES:  # a tenant that has paid before has these
                chart.account(session, AccountKind.PAYOUT_CLEARING, currency)
                chart.account(session, AccountKind.FX_LIQUIDITY, currency)
    finally:
        database.dispose()

    rng = np.random.default_rng(opts.seed)
    s, n, c = opts.specialists, opts.transfers, len(CURRENCIES)
    users = _uuids(rng, s)
    payout_of = [CURRENCIES[i % c] for i in range(s)]
    changed = now - dt.timedelta(days=60)
    bank = BankDetails()
    details = [bank.of(i, payout_of[i], f"Specialist {i:05d}") for i in range(s)]
    if len({d.fingerprint for d in details}) != s:
        raise SystemExit("seed: two specialists share a bank account")

    who = rng.integers(0, s, n)
    cur = rng.integers(0, c, n)
    low = np.array([AMOUNTS[x][0] for x in CURRENCIES], dtype=np.int64)
    high = np.array([AMOUNTS[x][1] for x in CURRENCIES], dtype=np.int64)
    amount = rng.integers(low[cur], high[cur] + 1)
    span = int((cutoff - period_start).total_seconds()) - 3600  # the last hour stays empty
    offset = rng.integers(0, span, n)
    slot = who * c + cur  # the payable account's index
    payable_balance = np.zeros(s * c, dtype=np.int64)
    np.add.at(payable_balance, slot, -amount)
    receivable_balance = np.zeros(c, dtype=np.int64)
    np.add.at(receivable_balance, cur, amount)
    receivables = _uuids(rng, c)
    payables = _uuids(rng, s * c)

    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        _copy(
            cursor,
            "users",
            USER_COLUMNS,
            (
                (
                    users[i],
                    tenant_id,
                    f"s{i:05d}@{SLUG}.test",
                    f"Specialist {i:05d}",
                    "!bench",
                    Jsonb(["specialist"]),
                    True,
                    now,
                )
                for i in range(s)
            ),
        )
        _copy(
            cursor,
            "specialist_profiles",
            PROFILE_COLUMNS,
            ((users[i], tenant_id, payout_of[i], Jsonb([]), 0, payout_of[i]) for i in range(s)),
        )
        _copy(
            cursor,
            "payout_details",
            DETAILS_COLUMNS,
            (
                (
                    users[i],
                    tenant_id,
                    str(d.scheme),
                    d.account_holder,
                    d.iban,
                    d.bic,
                    d.account_number,
                    d.bank_code,
                    d.country,
                    d.fingerprint,
                    changed,
                    False,
                    now,
                )
                for i, d in enumerate(details)
            ),
        )
        receivable_rows = [
            (
                receivables[k],
                tenant_id,
                AccountKind.CLIENT_RECEIVABLE.value,
                "client",
                None,
                "clients",
                CURRENCIES[k],
                "debit",
                False,
                int(receivable_balance[k]),
                now,
            )
            for k in range(c)
        ]
        payable_rows = (
            (
                payables[j],
                tenant_id,
                AccountKind.SPECIALIST_PAYABLE.value,
                "specialist",
                users[j // c],
                str(users[j // c]),
                CURRENCIES[j % c],
                "credit",
                True,
                int(payable_balance[j]),
                now,
            )
            for j in range(s * c)
        )
        _copy(cursor, "ledger_accounts", ACCOUNT_COLUMNS, [*receivable_rows, *payable_rows])
        conn.commit()

        for start in range(0, n, opts.chunk):
            end = min(start + opts.chunk, n)
            transfers, entries = [], []
            orders = _uuids(rng, end - start)
            ids = _uuids(rng, end - start)
            for k, i in enumerate(range(start, end)):
                x = int(cur[i])
                value = int(amount[i])
                specialist = users[int(who[i])]
                at = period_start + dt.timedelta(seconds=int(offset[i]))
                legs = [Leg.debit(receivables[x], value), Leg.credit(payables[int(slot[i])], value)]
                metadata = {
                    "order_id": str(orders[k]),
                    "specialist_id": str(specialist),
                    "fee_bps": 0,
                }
                spec = TransferSpec(
                    kind="earnings",
                    idempotency_key=f"earnings:{orders[k]}",
                    reference=f"order:{orders[k]}",
                    legs=legs,
                    effective_at=at,
                    metadata=metadata,
                )
                transfers.append(
                    (
                        ids[k],
                        tenant_id,
                        spec.kind,
                        spec.reference,
                        spec.idempotency_key,
                        spec.fingerprint(),
                        at,
                        at,
                        Jsonb(metadata),
                    )
                )
                for leg in legs:
                    entries.append(
                        (tenant_id, ids[k], leg.account_id, CURRENCIES[x], leg.amount, at, at)
                    )
            _copy(cursor, "ledger_transfers", TRANSFER_COLUMNS, transfers)
            _copy(cursor, "ledger_entries", ENTRY_COLUMNS, entries)
            conn.commit()  # the commit-time balance check runs here
            print(f"  seeded {end:,} of {n:,} transfers", end="\r", flush=True)
        print()

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        totals = dict(
            conn.execute(
                "SELECT currency, sum(balance)::bigint FROM ledger_accounts GROUP BY currency"
            ).fetchall()
        )
        drifted = conn.execute(DRIFTED_SQL).fetchone()[0]  # type: ignore[index]
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size_text = size.fetchone()[0]  # type: ignore[index]
    if any(totals.values()) or drifted:
        raise SystemExit(f"seed: trial balance {totals}, {drifted} drifted accounts")
    pairs = np.unique(slot)
    payout_index = (pairs // c) % c  # specialist i is paid in CURRENCIES[i % c]
    fx = int(np.count_nonzero(payout_index != pairs % c))
    payable_totals = {
        CURRENCIES[k]: int(receivable_balance[k]) for k in range(c) if receivable_balance[k]
    }
    return Seeded(
        template=name,
        tenant_id=tenant_id,
        period=period,
        cutoff=cutoff,
        lines=len(pairs),
        fx_lines=fx,
        payable_totals=payable_totals,
        seconds=time.perf_counter() - started,
        size=size_text,
    )


DRIFTED_SQL = """
    SELECT count(*) FROM ledger_accounts a
    LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) s
      ON s.account_id = a.id
    WHERE a.balance <> coalesce(s.total, 0)
"""


def checkpoint(dbs: Databases) -> None:
    """Write out dirty pages, so that no phase pays for the previous one's."""
    with contextlib.suppress(psycopg.Error):
        dbs.execute("CHECKPOINT")


# -- measuring a process tree ---------------------------------------------------------------------


def _status_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of `pid` in KiB; zeros if it is gone."""
    hwm = rss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return hwm, rss


class Sampler(threading.Thread):
    """Every `every` seconds: the peak RSS (VmHWM) of each process under `root` (the worker
    itself excluded), the largest sum of their RSS at one time, and the CPU seconds of the
    PostgreSQL backends of `databases` (a backend that disconnects keeps its last sample)."""

    def __init__(self, root: int, databases: Sequence[str], every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.databases = list(databases)
        self.every = every
        self.hwm: dict[int, int] = {}
        self.tree_rss_peak = 0
        self.pg_first: dict[int, float] = {}
        self.pg_last: dict[int, float] = {}
        self.started_at = time.perf_counter()
        self._stop_event = threading.Event()
        first = cpu_snapshot(None, self.databases)
        if first is not None:
            self.pg_first = dict(first.postgres)  # backends alive before: count from here
            self.pg_last = dict(first.postgres)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.every)

    def sample(self) -> None:
        snap = cpu_snapshot(self.root, self.databases)
        if snap is None:
            return
        total = 0
        for pid in snap.server:
            if pid == self.root:
                continue
            hwm, rss = _status_kib(pid)
            self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
            total += rss
        self.tree_rss_peak = max(self.tree_rss_peak, total)
        for pid, seconds in snap.postgres.items():
            self.pg_first.setdefault(pid, 0.0)
            self.pg_last[pid] = seconds

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()

    @property
    def postgres_cpu(self) -> float:
        return sum(self.pg_last[pid] - self.pg_first[pid] for pid in self.pg_last)

    @property
    def peak_kib(self) -> int:
        return max(self.hwm.values(), default=0)


def _machine_busy() -> float:
    snap = cpu_snapshot(None, [])
    return 0.0 if snap is None else snap.machine + snap.stolen


def _cpu_of(pid: int) -> float:
    """Own user + system CPU seconds of `pid` (0 if gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gx_import_seconds() -> float:
    """`import great_expectations` in a fresh interpreter, less the interpreter's own start."""

    def wall(code: str) -> float:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            cwd=ROOT,
            env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
        )
        return time.perf_counter() - started

    return wall("import great_expectations") - wall("pass")


# -- ours: the flow through Prefect ---------------------------------------------------------------


@dataclass
class Ours:
    wall: float
    split: dict[str, float]  # task-run seconds per column of TASKS, and "other tasks"
    gate_own: float  # the gate's stored seconds (GX validation and Data Docs, no import)
    first_leg: float  # start -> paused (seen by the bench)
    approval: float  # paused seen (-> a suspended run's process gone) -> resumed
    starts: float  # every flow-run process: scheduled -> Running (runner pick-up, spawn, imports)
    second_leg: float  # resumed -> Completed seen
    flow_cpu: float  # the flow-run processes (reaped children of the worker)
    prefect_cpu: float  # the worker (Prefect's runner) and Prefect's server
    postgres_cpu: float
    others_cpu: float
    peak_kib: int  # largest VmHWM of a flow-run process (sampled)
    rusage_kib: int  # the worker's RUSAGE_CHILDREN ru_maxrss
    tree_peak_kib: int  # largest sum of the worker's descendants' RSS at one time
    lines: int = 0
    transfers: int = 0
    entries: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def span(self) -> float:
        """The issue's span: start -> files written (the payslips task is the last step)."""
        return self.wall - self.split["payslips"]

    @property
    def cpu(self) -> float:
        """Everything the path kept busy: flow-run processes, Prefect, PostgreSQL."""
        return self.flow_cpu + self.prefect_cpu + self.postgres_cpu

    @property
    def prefect(self) -> float:
        """What no task run accounts for: flow-run processes starting (imports, the flow
        run's setup), Prefect's orchestration and the pause/resume round trip."""
        return max(0.0, self.wall - sum(self.split.values()))


def poll_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _worker_env(url: str, tmp: Path, run: int, hold_seconds: float | None) -> dict[str, str]:
    hold = (
        {} if hold_seconds is None else {"QUIRE_PAYROLL_APPROVAL_HOLD_SECONDS": f"{hold_seconds}"}
    )
    return {
        **os.environ,
        **hold,
        "DATABASE_URL": url,
        "QUIRE_DATABASE_BLOCK": "",
        "QUIRE_FX_RATES_URL": "",  # no provider: the rates file is the source (offline)
        "QUIRE_FX_RATES_FILE": str(RATES_FILE),
        "QUIRE_REPORTS_DIR": str(tmp / f"reports{run}"),
        "QUIRE_DATA_DIR": str(tmp / f"data{run}"),
        "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def _polled_since(since: dt.datetime) -> bool:
    """Has a runner polled for the deployment's runs since `since` (the worker is serving)?"""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            return False
    return deployment.last_polled is not None and deployment.last_polled > since


def _read_rusage(path: Path, after: float) -> dict[str, float]:
    """The worker's latest report written after `after` (epoch seconds)."""

    def fresh() -> dict[str, float] | None:
        with contextlib.suppress(OSError, ValueError):
            body = json.loads(path.read_text())
            if body["at"] > after:
                return body
        return None

    return poll_until("the worker's rusage report", fresh, 10)


def run_ours(
    dbs: Databases, seeded: Seeded, opts: Options, tmp: Path, run: int, server_pid: int | None
) -> tuple[Ours, str]:
    """The flow on a fresh copy; returns the measurement and the copy's name (still there)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.deployments import run_deployment

    name = dbs.copy("ours", seeded.template)
    checkpoint(dbs)
    rusage_file = tmp / f"rusage{run}.json"
    args = [sys.executable, str(ROOT / "bench" / "payroll_worker.py")]
    args += ["--rusage-file", str(rusage_file)]
    env = _worker_env(dbs.url(name, "postgresql+psycopg"), tmp, run, opts.hold_seconds)
    since = dt.datetime.now(dt.UTC)
    with (
        ServerProcess(args, tmp / f"worker{run}.log", env=env, cwd=ROOT) as worker,
        get_client(sync_client=True) as client,
    ):

        def serving() -> bool:
            if worker.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
            return _polled_since(since)

        poll_until("the worker to serve payroll-run", serving, 240, every=0.5)
        before = _read_rusage(rusage_file, 0)
        idle = _descendants(worker.process.pid)

        def state_of(flow_run_id: uuid.UUID) -> Any:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final() and not state.is_completed():
                raise SystemExit(
                    f"ours: the flow run ended {state.type.value}: {state.message}\n"
                    f"{worker.log_tail(40)}"
                )
            return state

        sampler = Sampler(worker.process.pid, [name])
        machine0, server0 = _machine_busy(), _cpu_of(server_pid) if server_pid else 0.0
        worker0 = _cpu_of(worker.process.pid)
        client0 = time.process_time()
        sampler.start()
        started = time.perf_counter()
        flow_run = run_deployment(
            DEPLOYMENT, parameters={"tenant": SLUG, "period": seeded.period}, timeout=0
        )
        poll_until(
            "the run to wait for approval",
            lambda: (s := state_of(flow_run.id)) is not None and s.type == StateType.PAUSED,
            opts.timeout,
        )
        paused = time.perf_counter()
        if state_of(flow_run.id).name == "Suspended":
            # Suspended means the flow-run process exits; finance decides after that.
            # (Resuming while it is still writing its last states makes the SQLite of
            # Prefect's temporary server report "database is locked" and its client retry.)
            poll_until(
                "the suspended flow-run process to exit",
                lambda: _descendants(worker.process.pid) <= idle,
                60,
                every=0.05,
            )
        answer = client.resume_flow_run(
            flow_run.id,
            run_input={"decision": "approve", "comment": "bench", "approver": APPROVER},
        )
        if answer.status != SetStateStatus.ACCEPT:
            raise SystemExit(f"ours: Prefect refused the approval: {answer}")
        resumed = time.perf_counter()
        poll_until(
            "the run to be posted and its files written",
            lambda: (s := state_of(flow_run.id)) is not None and s.is_completed(),
            opts.timeout,
        )
        ended = time.perf_counter()
        # The flow run is Completed a moment before its process exits and is reaped.
        poll_until(
            "the flow-run process to exit",
            lambda: _descendants(worker.process.pid) <= idle,
            60,
            every=0.05,
        )
        sampler.stop()
        machine = _machine_busy() - machine0
        server = (_cpu_of(server_pid) if server_pid else 0.0) - server0
        server += _cpu_of(worker.process.pid) - worker0
        bench_cpu = time.process_time() - client0
        after = _read_rusage(rusage_file, time.time())
        split = task_split(client, flow_run.id)
        starts = start_seconds(client.read_flow_run_states(flow_run.id))

    flow_cpu = after["cpu_seconds"] - before["cpu_seconds"]
    measured = Ours(
        wall=ended - started,
        split=split,
        gate_own=0.0,
        first_leg=paused - started,
        approval=resumed - paused,
        starts=starts,
        second_leg=ended - resumed,
        flow_cpu=flow_cpu,
        prefect_cpu=server,
        postgres_cpu=sampler.postgres_cpu,
        others_cpu=max(0.0, machine - flow_cpu - sampler.postgres_cpu - server - bench_cpu),
        peak_kib=sampler.peak_kib,
        rusage_kib=int(after["maxrss_kib"]),
        tree_peak_kib=sampler.tree_rss_peak,
    )
    verify_ours(dbs.url(name), seeded, measured, tmp / f"reports{run}")
    return measured, name


def _descendants(root: int) -> set[int]:
    """The processes under `root` (not `root` itself)."""
    return set(process_tree(read_procs(), root)[1:])


def start_seconds(states: Sequence[Any]) -> float:
    """Seconds the flow run spent becoming Running, over both of its processes: from created
    (or Resuming) to Running, i.e. the runner's pick-up, the spawn and the imports."""
    from prefect.client.schemas.objects import StateType

    total, since = 0.0, None
    for state in sorted(states, key=lambda st: st.timestamp):
        if state.type in (StateType.SCHEDULED, StateType.PENDING) and since is None:
            since = state.timestamp
        elif state.type == StateType.RUNNING and since is not None:
            total += (state.timestamp - since).total_seconds()
            since = None
    return total


def task_split(client: Any, flow_run_id: uuid.UUID) -> dict[str, float]:
    """Seconds per column of TASKS (summed over both flow-run processes), the rest of the task
    runs as "other tasks"."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    split = {column: 0.0 for column in [*TASKS.values(), "other tasks"]}
    for task_run in found:
        if task_run.start_time is None or task_run.end_time is None:
            continue
        seconds = (task_run.end_time - task_run.start_time).total_seconds()
        split[TASKS.get(task_run.name.rsplit("-", 1)[0], "other tasks")] += seconds
    return split


def verify_ours(url: str, seeded: Seeded, ours: Ours, reports: Path) -> None:
    """The run is posted with its files; the ledger balances; every line paid exactly once."""
    problems: list[str] = []
    with psycopg.connect(url) as conn:
        run = conn.execute(
            "SELECT id, status, gate FROM payroll_runs WHERE period = %s", (seeded.period,)
        ).fetchall()
        if len(run) != 1 or run[0][1] != "posted":
            raise SystemExit(f"ours: expected one posted run, found {[r[:2] for r in run]}")
        run_id, _, gate = run[0]
        ours.gate_own = float((gate or {}).get("seconds") or 0.0)
        if not (gate or {}).get("success"):
            problems.append(f"the gate did not pass: {gate}")
        totals = dict(
            conn.execute(
                "SELECT currency, sum(balance)::bigint FROM ledger_accounts GROUP BY currency"
            ).fetchall()
        )
        if any(totals.values()):
            problems.append(f"trial balance is not zero: {totals}")
        drifted = conn.execute(DRIFTED_SQL).fetchone()[0]  # type: ignore[index]
        if drifted:
            problems.append(f"{drifted} accounts drifted from their entries")
        by_status = dict(
            conn.execute(
                "SELECT status, count(*) FROM payroll_lines WHERE run_id = %s GROUP BY status",
                (run_id,),
            ).fetchall()
        )
        if by_status != {"posted": seeded.lines}:
            problems.append(f"lines {by_status}, expected {seeded.lines} posted")
        wrong_shape = conn.execute(
            "SELECT count(*) FROM payroll_lines WHERE run_id = %s AND jsonb_array_length("
            "transfer_ids) <> CASE WHEN source_currency = payout_currency THEN 1 ELSE 2 END",
            (run_id,),
        ).fetchone()[0]  # type: ignore[index]
        if wrong_shape:
            problems.append(f"{wrong_shape} lines without their one transfer (two for FX)")
        posted_totals = dict(
            conn.execute(
                "SELECT source_currency, sum(payable_minor)::bigint FROM payroll_lines"
                " WHERE run_id = %s GROUP BY source_currency",
                (run_id,),
            ).fetchall()
        )
        if posted_totals != seeded.payable_totals:
            problems.append(f"lines pay {posted_totals}, payables were {seeded.payable_totals}")
        left = conn.execute(
            "SELECT count(*) FROM ledger_accounts WHERE kind = 'specialist_payable'"
            " AND balance <> 0"
        ).fetchone()[0]  # type: ignore[index]
        if left:
            problems.append(f"{left} specialist payables still hold money")
        expected = seeded.lines + seeded.fx_lines
        transfers, keys, entries = conn.execute(
            "SELECT count(*), count(DISTINCT t.idempotency_key),"
            " (SELECT count(*) FROM ledger_entries e JOIN ledger_transfers u"
            "  ON u.id = e.transfer_id WHERE u.kind = ANY(%(kinds)s))"
            " FROM ledger_transfers t WHERE t.kind = ANY(%(kinds)s)",
            {"kinds": list(PAYOUT_KINDS)},
        ).fetchone()  # type: ignore[misc]
        if not transfers == keys == expected or entries != 2 * expected:
            problems.append(
                f"{transfers} payout transfers ({keys} keys), {entries} entries; expected "
                f"{expected} and {2 * expected}"
            )
        files = conn.execute(
            "SELECT format, path FROM payroll_files WHERE run_id = %s ORDER BY format", (run_id,)
        ).fetchall()
        paid, payslips, versions = conn.execute(
            "SELECT (SELECT count(DISTINCT specialist_id) FROM payroll_lines WHERE run_id = %(r)s"
            "   AND status = 'posted'),"
            " count(*), count(DISTINCT (specialist_id, version)) FROM ledger_invoices"
            " WHERE period = %(p)s AND status = 'issued'",
            {"r": run_id, "p": seeded.period},
        ).fetchone()  # type: ignore[misc]
        if not paid == payslips == versions:
            problems.append(f"{payslips} payslips issued for {paid} paid specialists")
    formats = sorted(fmt for fmt, _ in files)
    if formats != ["csv", "pain.001.001.03", "pain.001.001.09"]:
        problems.append(f"files {formats}")
    missing = [path for _, path in files if not (reports / path).is_file()]
    if missing:
        problems.append(f"files missing on disk: {missing}")
    if problems:
        raise SystemExit("ours: " + "; ".join(problems))
    ours.lines, ours.transfers, ours.entries = seeded.lines, transfers, entries
    ours.files = [Path(path).name for _, path in files]


@dataclass(frozen=True)
class PayoutRows:
    transfers: list[tuple[Any, ...]]
    entries: list[tuple[Any, ...]]


def payout_rows(url: str) -> PayoutRows:
    """The payout transfers and entries the flow posted, as rows to COPY."""
    with psycopg.connect(url) as conn:
        transfers = [
            (*row[:-1], Jsonb(row[-1]))
            for row in conn.execute(
                f"SELECT {', '.join(TRANSFER_COLUMNS)} FROM ledger_transfers"
                " WHERE kind = ANY(%s) ORDER BY txid, id",
                (list(PAYOUT_KINDS),),
            )
        ]
        entries = conn.execute(
            f"SELECT {', '.join('e.' + c for c in ENTRY_COLUMNS)} FROM ledger_entries e"
            " JOIN ledger_transfers t ON t.id = e.transfer_id WHERE t.kind = ANY(%s)"
            " ORDER BY e.id",
            (list(PAYOUT_KINDS),),
        ).fetchall()
    return PayoutRows(transfers, entries)


# -- bare: one aggregate and COPY ---------------------------------------------------------------


@dataclass(frozen=True)
class Bare:
    wall: float
    aggregate: float
    copy: float
    client_cpu: float
    postgres_cpu: float
    others_cpu: float
    lines: int


def run_bare(dbs: Databases, seeded: Seeded, opts: Options, rows: PayoutRows) -> Bare:
    from bench.ledger_post import make_plain

    name = dbs.copy("bare", seeded.template)
    url = dbs.url(name)
    if not opts.bare_guards:
        make_plain(url)
    checkpoint(dbs)
    try:
        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1")
            conn.commit()
            before = cpu_snapshot(None, [name])
            started = time.perf_counter()
            client0 = time.process_time()
            with conn.cursor() as cur:
                payables = cur.execute(
                    PAYABLES_SQL, {"cutoff": seeded.cutoff, "tenant": seeded.tenant_id}
                ).fetchall()
                aggregated = time.perf_counter()
                _copy(cur, "ledger_transfers", TRANSFER_COLUMNS, rows.transfers)
                _copy(cur, "ledger_entries", ENTRY_COLUMNS, rows.entries)
            conn.commit()
            ended = time.perf_counter()
            client_cpu = time.process_time() - client0
            after = cpu_snapshot(None, [name])
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM ledger_transfers WHERE kind = ANY(%(k)s)),"
                " (SELECT count(*) FROM ledger_entries e JOIN ledger_transfers t"
                "  ON t.id = e.transfer_id WHERE t.kind = ANY(%(k)s))",
                {"k": list(PAYOUT_KINDS)},
            ).fetchone()
    finally:
        dbs.drop(name)
    if len(payables) != seeded.lines:
        raise SystemExit(f"bare: {len(payables)} payables, expected {seeded.lines}")
    if counts != (len(rows.transfers), len(rows.entries)):
        raise SystemExit(f"bare: {counts} rows, expected {len(rows.transfers), len(rows.entries)}")
    postgres_cpu = others = 0.0
    if before is not None and after is not None:
        postgres_cpu = sum(
            after.postgres.get(p, 0.0) - before.postgres.get(p, 0.0) for p in after.postgres
        )
        busy = (after.machine + after.stolen) - (before.machine + before.stolen)
        others = max(0.0, busy - postgres_cpu - (after.client - before.client))
    return Bare(
        wall=ended - started,
        aggregate=aggregated - started,
        copy=ended - aggregated,
        client_cpu=client_cpu,
        postgres_cpu=postgres_cpu,
        others_cpu=others,
        lines=len(payables),
    )


# -- report -------------------------------------------------------------------------------------


def _gib(kib: float) -> str:
    return f"{kib / 1024 / 1024:.2f} GiB"


def print_run(run: int, ours: Ours, bare: Bare, gx_import: float) -> None:
    split = ", ".join(f"{k} {v:.1f}" for k, v in ours.split.items())
    print(
        f"run {run}: ours {ours.span:.1f} s to the files, {ours.wall:.1f} s in all (to the "
        f"pause {ours.first_leg:.1f}, approval "
        f"{ours.approval:.2f}, after {ours.second_leg:.1f}; tasks: {split}; gate's own "
        f"{ours.gate_own:.1f}; Prefect and processes {ours.prefect:.1f}, of which flow-run "
        f"starts {ours.starts:.1f}) | bare {bare.wall:.2f} s "
        f"(aggregate {bare.aggregate:.2f}, COPY {bare.copy:.2f}) | ratio "
        f"{ours.span / bare.wall:.1f} | peak {_gib(ours.peak_kib)} (rusage "
        f"{_gib(ours.rusage_kib)}) | GX import {gx_import:.1f} s",
        flush=True,
    )


def report(
    results: Sequence[tuple[Ours, Bare, float]],
    seeded: Seeded,
    opts: Options,
    command: str,
    facts: str,
) -> None:
    ours = [o for o, _, _ in results]
    bare = [b for _, b, _ in results]
    gx = median(g for _, _, g in results)
    ratio = median(o.span / b.wall for o, b, _ in results)
    ratio_no_gx = median((o.span - g) / b.wall for o, b, g in results)
    ratio_with_slips = median(o.wall / b.wall for o, b, _ in results)
    peak = max(max(o.peak_kib, o.rusage_kib) for o in ours)

    def m(values: Any) -> float:
        return median(list(values))

    def rng(values: Sequence[float]) -> str:
        return f"{min(values):.1f} - {max(values):.1f}"

    print()
    print(f"command: {command}")
    print(f"server:  {facts}; {os.cpu_count()} CPUs shared by the worker, PostgreSQL and the rest")
    print(
        f"data:    1 tenant, {opts.specialists:,} specialists (EUR/USD/JPY payouts), "
        f"{opts.transfers:,} earnings transfers in {seeded.period} ({2 * opts.transfers:,} "
        f"entries); template {seeded.size}, seeded in {seeded.seconds:.0f} s"
    )
    print(
        f"run:     {seeded.lines:,} lines ({seeded.fx_lines:,} FX) -> "
        f"{ours[0].transfers:,} payout transfers, {ours[0].entries:,} entries; "
        f"{opts.repeat} run(s), medians (range = min - max)"
    )
    print()
    headers = (
        "path",
        "wall s",
        "range",
        "CPU s: flow runs / client",
        "Prefect (worker, server)",
        "PostgreSQL",
        "others",
    )
    rows = [
        [
            "ours: payroll-run through Prefect (start, compute, gate, preview, approve, post, "
            "files)",
            f"{m(o.span for o in ours):.1f}",
            rng([o.span for o in ours]),
            "",
            "",
            "",
            "",
        ],
        [
            "ours, the whole flow run (and then the payslips)",
            f"{m(o.wall for o in ours):.1f}",
            rng([o.wall for o in ours]),
            f"{m(o.flow_cpu for o in ours):.1f}",
            f"{m(o.prefect_cpu for o in ours):.1f}",
            f"{m(o.postgres_cpu for o in ours):.1f}",
            f"{m(o.others_cpu for o in ours):.1f}",
        ],
        [
            "bare: payables aggregate + COPY of the same payout rows"
            + (" (guards on)" if opts.bare_guards else ""),
            f"{m(b.wall for b in bare):.2f}",
            f"{min(b.wall for b in bare):.2f} - {max(b.wall for b in bare):.2f}",
            f"{m(b.client_cpu for b in bare):.2f}",
            "-",
            f"{m(b.postgres_cpu for b in bare):.2f}",
            f"{m(b.others_cpu for b in bare):.2f}",
        ],
    ]
    print(markdown_table(headers, "lrrrrrr", rows))
    print()
    wall = m(o.wall for o in ours)
    parts = [
        ("compute the lines (task)", m(o.split["compute"] for o in ours)),
        ("gate (task, GX import included)", m(o.split["gate"] for o in ours)),
        ("  of which the gate's own time (stored `seconds`)", m(o.gate_own for o in ours)),
        (
            "keep the lines + publish the preview",
            m(o.split["keep"] + o.split["preview"] for o in ours),
        ),
        ("post (one ledger batch)", m(o.split["post"] for o in ours)),
        ("write the payout files", m(o.split["files"] for o in ours)),
        (
            "issue the payslips (one statement per paid specialist)",
            m(o.split["payslips"] for o in ours),
        ),
        ("other tasks (open, rates, approval steps)", m(o.split["other tasks"] for o in ours)),
        ("Prefect and processes (outside any task)", m(o.prefect for o in ours)),
        ("  of which flow-run starts (scheduled -> Running)", m(o.starts for o in ours)),
        ("  of which the approval (paused seen -> resumed)", m(o.approval for o in ours)),
    ]
    print(
        markdown_table(
            ("ours, where the time went", "s", "% of wall"),
            "lrr",
            [[label, f"{s:.2f}", f"{100 * s / wall:.0f} %"] for label, s in parts],
        )
    )
    print()
    bare_parts = [
        ("payables aggregate", m(b.aggregate for b in bare)),
        ("COPY transfers + entries, commit", m(b.copy for b in bare)),
    ]
    print(markdown_table(("bare", "s"), "lr", [[k, f"{v:.2f}"] for k, v in bare_parts]))
    print()
    print(
        f"ratio ours / bare = {ratio:.1f} (start -> files)   target <= 3: "
        f"{'met' if ratio <= 3 else 'MISSED'}   (without GX's import: {ratio_no_gx:.1f}; the "
        f"whole flow run with its payslips, which the bare path has no counterpart for: "
        f"{ratio_with_slips:.1f})"
    )
    cpu_ratio = median(o.cpu / (b.client_cpu + b.postgres_cpu) for o, b, _ in results)
    print(
        f"CPU seconds ours / bare = {cpu_ratio:.1f} (flow runs + Prefect + PostgreSQL over "
        "client + PostgreSQL: the ratio with the machine to themselves, less disturbed by others)"
    )
    print(
        f"GX import (python -c 'import great_expectations' less python -c pass): {gx:.1f} s; "
        f"the gate's own time: {m(o.gate_own for o in ours):.1f} s"
    )
    print(
        f"peak memory of a flow-run process: {_gib(peak)} (VmHWM sampled: "
        f"{_gib(max(o.peak_kib for o in ours))}, RUSAGE_CHILDREN: "
        f"{_gib(max(o.rusage_kib for o in ours))}; worker's descendants at once: "
        f"{_gib(max(o.tree_peak_kib for o in ours))})   target <= 1 GiB: "
        f"{'met' if peak <= 1024 * 1024 else 'MISSED'}"
    )
    print(
        "checked after each run: one posted run, gate passed, three files on disk, one payslip "
        "per paid specialist, trial balance "
        "zero per currency, no drifted account, every line posted once (1 transfer, 2 for FX), "
        "payables empty, payout transfers and entries as many as the lines call for."
    )
    summary = {
        "specialists": opts.specialists,
        "transfers": opts.transfers,
        "repeat": opts.repeat,
        "lines": seeded.lines,
        "payout_transfers": ours[0].transfers,
        "seed_s": round(seeded.seconds, 1),
        "ours_s": round(m(o.span for o in ours), 2),
        "ours_with_payslips_s": round(wall, 2),
        "bare_s": round(m(b.wall for b in bare), 3),
        "ratio": round(ratio, 2),
        "ratio_without_gx_import": round(ratio_no_gx, 2),
        "ratio_with_payslips": round(ratio_with_slips, 2),
        "cpu_ratio": round(cpu_ratio, 2),
        "gx_import_s": round(gx, 2),
        "gate_own_s": round(m(o.gate_own for o in ours), 2),
        "split_s": {k: round(m(o.split[k] for o in ours), 2) for k in ours[0].split},
        "prefect_s": round(m(o.prefect for o in ours), 2),
        "flow_run_starts_s": round(m(o.starts for o in ours), 2),
        "peak_mib": round(peak / 1024, 1),
    }
    print(json.dumps(summary))


# -- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def prefect_server(tmp: Path) -> Iterator[int | None]:
    """Prefect's temporary server with its own home; yields its process id."""
    os.environ.update(
        {
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_LOCAL_STORAGE_PATH": str(tmp / "results"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=240)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        process = getattr(server, "server_process", None)
        yield getattr(process, "pid", None)
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/payroll.py", *sys.argv[1:]])
    os.environ.setdefault("QUIRE_PASSWORD_HASH_PROFILE", "cheapest")
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with (
        tempfile.TemporaryDirectory(prefix="quire-bench-payroll-") as tmp_name,
        Databases("payroll", opts.admin_url, opts.keep) as dbs,
    ):
        tmp = Path(tmp_name)
        facts = describe_server(
            server_settings(
                opts.admin_url,
                ("server_version", "fsync", "synchronous_commit", "shared_buffers", "autovacuum"),
            )
        )
        print(f"{facts}; databases {dbs.prefix}_*", flush=True)
        print(
            f"seeding {opts.specialists:,} specialists and {opts.transfers:,} transfers ...",
            flush=True,
        )
        seeded = seed_template(dbs, opts)
        print(
            f"seeded in {seeded.seconds:.1f} s: {seeded.size}, period {seeded.period}, "
            f"{seeded.lines:,} payable lines expected ({seeded.fx_lines:,} FX)",
            flush=True,
        )
        print("starting Prefect's temporary server ...", flush=True)
        results = []
        with prefect_server(tmp) as server_pid:
            for run in range(1, opts.repeat + 1):
                gx_import = gx_import_seconds()
                ours, name = run_ours(dbs, seeded, opts, tmp, run, server_pid)
                rows = payout_rows(dbs.url(name))
                dbs.drop(name)
                bare = run_bare(dbs, seeded, opts, rows)
                results.append((ours, bare, gx_import))
                print_run(run, ours, bare, gx_import)
        report(results, seeded, opts, command, facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
