"""Ledger posting benchmark: ``post_batch`` on PostgreSQL versus raw COPY and per-transfer locking.

Method
------
1. Create ``quire_bench_ledger_<random>_tpl`` on the server behind ``--admin-url``, migrate it
   (Alembic, so every ledger trigger is installed), create one tenant (``create_tenant``) and a
   chart through ``ledger.chart.account``: ``--specialists`` USD specialist payables, one USD
   client receivable and one USD platform revenue account.
2. Copy it (``CREATE DATABASE ... TEMPLATE``) into ``..._plain`` and drop the ledger triggers there
   (append-only guards, insert guards, the deferred balance check): the same tables, columns,
   indexes, foreign keys and CHECK constraints, without our guards. Both baselines run on fresh
   copies of that database, as the pgledger pattern has no such triggers.
3. The workload: ``--transfers`` earnings-like transfers, each debit receivable 1000, credit a
   payable 850 (specialist drawn at random, fixed seed), credit revenue 150: three entries, a
   unique idempotency key, a reference and a small metadata object (as ``post_earnings`` writes).
   All inputs are built before the clock starts, for every phase.
4. Each run, on fresh copies of the databases (after a CHECKPOINT, so no phase pays for the
   previous one's dirty pages):

   - ours: ``post_batch`` with ``--batch`` transfers per call, one ``Database.session(tenant,
     write=True)`` (one transaction, committed) per batch, all triggers on. Afterwards: the trial
     balance is zero, no account drifted from its entries, and there are exactly N transfers and
     3N entries. Several batch sizes (``--batch 100,1000,5000``) are each measured and reported.
   - raw: the same N transfer rows and 3N entry rows (identical column values, including
     fingerprints and metadata) written with ``COPY ... FROM STDIN (FORMAT BINARY)`` through
     psycopg into the plain tables, one transaction per ``--batch`` transfers (the first batch
     size given). No balance updates, no validation, no idempotency lookup, no triggers.
   - per-transfer: the pgledger pattern with psycopg on one connection into the plain tables, one
     transaction per transfer: ``SELECT id FROM ledger_accounts WHERE id = ANY(%s) ORDER BY id
     FOR UPDATE``, one ``UPDATE ledger_accounts SET balance = balance + %s WHERE id = %s`` per
     account (id order), ``INSERT`` the transfer, ``INSERT`` its entries (executemany), COMMIT.
     It runs on the first ``--baseline-transfers`` transfers of the workload (default 10,000) and
     its rate is reported for that subset. Afterwards its trial balance must be zero.

   With ``--analyze auto`` (the default) and a server running with ``autovacuum = off``, ours
   runs ``ANALYZE`` on the ledger tables whenever they have doubled (after the first batch, then
   at 2x, 4x, ... its size: a stand-in for autovacuum), inside the timed region: without
   statistics the planner keeps planning for empty tables. ``--analyze off`` measures without,
   ``on`` always analyzes.

transfers/s = transfers / wall time of the phase (connections are opened before the clock
starts). With ``--repeat R`` every figure is the median over the R runs; a ratio is the median of
the per-run ratios. CPU seconds of this process (client), of the PostgreSQL backends connected to
the phase's database (server) and of everything else on the machine (others: a noisy run) are read
from ``/proc`` around each phase, so the table says where the time went; "at equal CPU" compares
CPU per transfer, which other load disturbs less. Every database created is dropped at the end
(``--keep`` keeps them).

    .venv/bin/python bench/ledger_post.py --repeat 3
    .venv/bin/python bench/ledger_post.py --batch 100,1000,5000 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: the project root

from bench.harness import (
    Databases,
    add_common_options,
    cpu_snapshot,
    cpu_use,
    describe_server,
    markdown_table,
    median,
    new_parser,
    require_positive,
    server_settings,
)
from ledger import chart
from ledger.balances import drifted_accounts, trial_balance
from ledger.models import AccountKind, Entry, Transfer
from ledger.posting import Leg, TransferSpec, post_batch
from migrations.upgrade import upgrade
from quire.db import Database, utcnow
from quire.people.service import create_tenant

CURRENCY = "USD"
GROSS, NET, FEE = 1000, 850, 150
FEE_BPS = 1500

# Column -> PostgreSQL type, for the raw COPY (binary) and the per-transfer INSERTs.
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
}
ENTRY_COLUMNS = {
    "tenant_id": "uuid",
    "transfer_id": "uuid",
    "account_id": "uuid",
    "currency": "varchar",
    "amount": "int8",
    "effective_at": "timestamptz",
    "created_at": "timestamptz",
}

# What the migrations install on PostgreSQL that a plain ledger does not have: every trigger of
# the ledger's tables, read from the catalog, so a guard a later migration adds is dropped too.
GUARD_TRIGGERS_SQL = """
    SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE NOT t.tgisinternal AND c.relname LIKE 'ledger\\_%'
      AND c.relnamespace = current_schema()::regnamespace
"""

ANALYZE_SQL = "ANALYZE ledger_accounts, ledger_transfers, ledger_entries, ledger_commit_checks"
LOCK_SQL = "SELECT id FROM ledger_accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
UPDATE_SQL = "UPDATE ledger_accounts SET balance = balance + %s WHERE id = %s"
INSERT_TRANSFER_SQL = (
    f"INSERT INTO ledger_transfers ({', '.join(TRANSFER_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(TRANSFER_COLUMNS))})"
)
INSERT_ENTRY_SQL = (
    f"INSERT INTO ledger_entries ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(ENTRY_COLUMNS))})"
)


# -- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    transfers: int
    batches: tuple[int, ...]
    repeat: int
    baseline_transfers: int
    specialists: int
    admin_url: str
    seed: int
    keep: bool
    analyze: str  # auto | on | off


def _batch_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("batch sizes are positive integers, e.g. 1000 or 100,1000")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = new_parser(__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--transfers", "-n", type=int, default=100_000, help="transfers per run")
    parser.add_argument(
        "--batch",
        "-b",
        type=_batch_sizes,
        default="1000",
        help="transfers per post_batch call (and per raw COPY transaction); a comma-separated "
        "list measures each size",
    )
    add_common_options(parser, repeat=3, seed=7)
    parser.add_argument(
        "--baseline-transfers",
        type=int,
        default=10_000,
        help="transfers of the per-transfer baseline (0: as many as --transfers)",
    )
    parser.add_argument("--specialists", type=int, default=1000, help="specialist payables")
    parser.add_argument(
        "--analyze",
        choices=("auto", "on", "off"),
        default="auto",
        help="ours: ANALYZE the ledger tables whenever they have doubled (after the first batch,"
        " then 2x, 4x, ... its size), as a stand-in for autovacuum (inside the timed region);"
        " auto = only if the server runs with autovacuum off",
    )
    args = parser.parse_args(argv)
    require_positive(parser, args, "transfers", "repeat", "specialists")
    baseline = args.baseline_transfers or args.transfers
    return Options(
        transfers=args.transfers,
        batches=args.batch,
        repeat=args.repeat,
        baseline_transfers=min(baseline, args.transfers),
        specialists=args.specialists,
        admin_url=args.admin_url,
        seed=args.seed,
        keep=args.keep,
        analyze=args.analyze,
    )


# -- the server ---------------------------------------------------------------------------------


def checkpoint(dbs: Databases) -> None:
    """Write out dirty pages, so that no phase pays for the previous one's."""
    with contextlib.suppress(psycopg.Error):  # needs superuser or pg_checkpoint
        dbs.execute("CHECKPOINT")


SETTINGS = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "autovacuum")


# -- the chart and the workload -----------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    tenant_id: uuid.UUID
    receivable: uuid.UUID
    revenue: uuid.UUID
    payables: list[uuid.UUID]
    specialists: list[uuid.UUID]


def seed_template(url: str, opts: Options) -> Chart:
    database = Database(url)
    try:
        upgrade(database)
        with database.session(write=True) as session:
            tenant_id = create_tenant(session, "bench-ledger", "Ledger benchmark").id
        specialists = [uuid.uuid4() for _ in range(opts.specialists)]
        with database.session(tenant_id, write=True) as session:
            receivable = chart.account(session, AccountKind.CLIENT_RECEIVABLE, CURRENCY).id
            revenue = chart.account(session, AccountKind.PLATFORM_REVENUE, CURRENCY).id
            payables = [
                chart.account(session, AccountKind.SPECIALIST_PAYABLE, CURRENCY, owner).id
                for owner in specialists
            ]
    finally:
        database.dispose()
    return Chart(tenant_id, receivable, revenue, payables, specialists)


def make_plain(url: str) -> None:
    """Drop our guards: what is left is a plain ledger schema with the same tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        guards = conn.execute(GUARD_TRIGGERS_SQL).fetchall()  # type: ignore[arg-type]
        assert guards, "no ledger triggers found: is the database migrated?"
        for trigger, table in guards:
            conn.execute(f'DROP TRIGGER "{trigger}" ON "{table}"')  # type: ignore[arg-type]


@dataclass(frozen=True)
class Workload:
    specs: list[TransferSpec]
    # The same content as rows: one transfer tuple and three entry tuples per transfer.
    transfers: list[tuple[Any, ...]]
    entries: list[list[tuple[Any, ...]]]
    legs: list[list[tuple[uuid.UUID, int]]]  # (account, signed amount), sorted by account id


def build_workload(c: Chart, opts: Options) -> Workload:
    rng = random.Random(opts.seed)
    now = utcnow()
    specs: list[TransferSpec] = []
    transfers: list[tuple[Any, ...]] = []
    entries: list[list[tuple[Any, ...]]] = []
    legs_sorted: list[list[tuple[uuid.UUID, int]]] = []
    for _ in range(opts.transfers):
        order_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        who = rng.randrange(len(c.payables))
        legs = [
            Leg.debit(c.receivable, GROSS),
            Leg.credit(c.payables[who], NET),
            Leg.credit(c.revenue, FEE),
        ]
        metadata = {
            "order_id": str(order_id),
            "specialist_id": str(c.specialists[who]),
            "fee_bps": FEE_BPS,
        }
        spec = TransferSpec(
            kind="earnings",
            idempotency_key=f"earnings:{order_id}",
            reference=f"order:{order_id}",
            legs=legs,
            metadata=metadata,
        )
        specs.append(spec)
        transfer_id = uuid.uuid4()
        transfers.append(
            (
                transfer_id,
                c.tenant_id,
                spec.kind,
                spec.reference,
                spec.idempotency_key,
                spec.fingerprint(),
                now,
                now,
                Jsonb(metadata),
            )
        )
        entries.append(
            [
                (c.tenant_id, transfer_id, leg.account_id, CURRENCY, leg.amount, now, now)
                for leg in legs
            ]
        )
        legs_sorted.append(sorted((leg.account_id, leg.amount) for leg in legs))
    return Workload(specs, transfers, entries, legs_sorted)


# -- time and CPU of a phase -------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    transfers: int
    wall: float
    client_cpu: float  # this process
    server_cpu: float  # the PostgreSQL backends of the phase's database
    other_cpu: float  # everything else on the machine (other workloads make a run noisy)

    @property
    def rate(self) -> float:
        return self.transfers / self.wall


def timed(database: str, transfers: int, body: Callable[[], None]) -> Phase:
    """Run `body` with its connections already open, and account for time and CPU (from /proc:
    CPU seconds of this process, of the backends of `database`, of the whole machine)."""
    before = cpu_snapshot(None, [database])
    wall0 = time.perf_counter()
    body()
    wall = time.perf_counter() - wall0
    cpu = cpu_use(before, cpu_snapshot(None, [database]))
    if cpu is None:
        raise SystemExit("CPU accounting needs /proc (Linux)")
    # time the hypervisor stole counts as "others" too: a noisy run either way
    others = max(0.0, cpu.machine + cpu.stolen - cpu.client - cpu.postgres)
    return Phase(transfers, wall, cpu.client, cpu.postgres, others)


# -- the three phases ---------------------------------------------------------------------------


def run_ours(url: str, c: Chart, work: Workload, batch: int, analyze: bool) -> Phase:
    database = Database(url)
    specs = work.specs
    try:
        with database.engine.connect() as conn:  # open the pooled connection before the clock
            conn.exec_driver_sql("SELECT 1")

        def body() -> None:
            analyzed = 0  # transfers in the tables at the last ANALYZE
            for start in range(0, len(specs), batch):
                with database.session(c.tenant_id, write=True) as session:
                    post_batch(session, specs[start : start + batch])
                done = min(start + batch, len(specs))
                # stand-in for autovacuum: fresh statistics whenever the tables have doubled
                if analyze and done >= 2 * analyzed:
                    with database.engine.begin() as conn:
                        conn.exec_driver_sql(ANALYZE_SQL)
                    analyzed = done

        phase = timed(make_url(url).database or "", len(specs), body)
        verify_ours(database, c, len(specs))
    finally:
        database.dispose()
    return phase


def verify_ours(database: Database, c: Chart, n: int) -> None:
    with database.session(c.tenant_id) as session:
        totals = trial_balance(session)
        drifted = drifted_accounts(session)
        transfers = session.scalar(select(func.count()).select_from(Transfer))
        entries = session.scalar(select(func.count()).select_from(Entry))
    problems = []
    if any(totals.values()):
        problems.append(f"trial balance is not zero: {totals}")
    if drifted:
        problems.append(f"{len(drifted)} accounts drifted from their entries")
    if transfers != n or entries != 3 * n:
        problems.append(f"{transfers} transfers and {entries} entries, expected {n} and {3 * n}")
    if problems:
        raise SystemExit("ours: " + "; ".join(problems))


def run_raw(url: str, work: Workload, batch: int) -> Phase:
    n = len(work.transfers)
    copy_transfers = (
        f"COPY ledger_transfers ({', '.join(TRANSFER_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    )
    copy_entries = f"COPY ledger_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
        conn.commit()

        def body() -> None:
            for start in range(0, n, batch):
                with conn.cursor() as cur:
                    with cur.copy(copy_transfers) as copy:  # type: ignore[arg-type]
                        copy.set_types(list(TRANSFER_COLUMNS.values()))
                        for row in work.transfers[start : start + batch]:
                            copy.write_row(row)
                    with cur.copy(copy_entries) as copy:  # type: ignore[arg-type]
                        copy.set_types(list(ENTRY_COLUMNS.values()))
                        for rows in work.entries[start : start + batch]:
                            for row in rows:
                                copy.write_row(row)
                conn.commit()

        phase = timed(make_url(url).database or "", n, body)
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM ledger_transfers), (SELECT count(*) FROM ledger_entries)"
        ).fetchone()
    if counts != (n, 3 * n):
        raise SystemExit(f"raw: {counts} rows, expected ({n}, {3 * n})")
    return phase


def run_per_transfer(url: str, work: Workload, n: int) -> Phase:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
        conn.commit()

        def body() -> None:
            for i in range(n):
                legs = work.legs[i]
                with conn.cursor() as cur:
                    cur.execute(LOCK_SQL, ([account for account, _ in legs],))
                    cur.fetchall()
                    for account, amount in legs:
                        cur.execute(UPDATE_SQL, (amount, account))
                    cur.execute(INSERT_TRANSFER_SQL, work.transfers[i])
                    cur.executemany(INSERT_ENTRY_SQL, work.entries[i])
                conn.commit()

        phase = timed(make_url(url).database or "", n, body)
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ledger_transfers), (SELECT count(*) FROM ledger_entries),"
            " (SELECT sum(balance) FROM ledger_accounts),"
            " (SELECT count(*) FROM ledger_accounts a WHERE a.balance <> coalesce("
            "   (SELECT sum(amount) FROM ledger_entries e WHERE e.account_id = a.id), 0))"
        ).fetchone()
    if row != (n, 3 * n, 0, 0):
        raise SystemExit(f"per-transfer: (transfers, entries, trial balance, drifted) = {row}")
    return phase


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Results:
    ours: dict[int, list[Phase]] = field(default_factory=dict)
    raw: list[Phase] = field(default_factory=list)
    per_transfer: list[Phase] = field(default_factory=list)


def measure(
    dbs: Databases,
    opts: Options,
    template: str,
    plain: str,
    c: Chart,
    work: Workload,
    analyze: bool,
) -> Results:
    results = Results(ours={batch: [] for batch in opts.batches})
    for run in range(1, opts.repeat + 1):
        for batch in opts.batches:
            name = dbs.copy("ours", template)
            checkpoint(dbs)
            phase = run_ours(dbs.url(name), c, work, batch, analyze)
            dbs.drop(name)
            results.ours[batch].append(phase)
            report_phase(run, f"ours, batch {batch}", phase)

        name = dbs.copy("raw", plain)
        checkpoint(dbs)
        phase = run_raw(dbs.url(name), work, opts.batches[0])
        dbs.drop(name)
        results.raw.append(phase)
        report_phase(run, f"raw COPY, batch {opts.batches[0]}", phase)

        name = dbs.copy("per_transfer", plain)
        checkpoint(dbs)
        phase = run_per_transfer(dbs.url(name), work, opts.baseline_transfers)
        dbs.drop(name)
        results.per_transfer.append(phase)
        report_phase(run, "per-transfer", phase)
    return results


def report_phase(run: int, label: str, phase: Phase) -> None:
    print(
        f"  run {run}: {label:<24} {phase.transfers:>7} transfers in {phase.wall:6.2f} s"
        f" = {phase.rate:>7,.0f}/s   CPU s: client {phase.client_cpu:5.2f},"
        f" PostgreSQL {phase.server_cpu:5.2f}, others {phase.other_cpu:5.2f}",
        flush=True,
    )


def cpu_ms(phase: Phase) -> float:
    """Client + PostgreSQL CPU milliseconds per transfer."""
    return (phase.client_cpu + phase.server_cpu) * 1000 / phase.transfers


@dataclass(frozen=True)
class Ratios:
    vs_per_transfer: float
    vs_raw: float
    cpu_vs_raw: float  # raw's CPU per transfer / ours: the ratio with equal CPU, less noisy


def ratios(results: Results, batch: int) -> Ratios:
    ours = results.ours[batch]
    pairs = list(zip(ours, results.raw, results.per_transfer, strict=True))
    return Ratios(
        median(o.rate / p.rate for o, _, p in pairs),
        median(o.rate / r.rate for o, r, _ in pairs),
        median(cpu_ms(r) / cpu_ms(o) for o, r, _ in pairs),
    )


PHASE_COLUMNS = (
    "path",
    "transfers",
    "transfers/s",
    "range",
    "wall s",
    "CPU s: client",
    "PostgreSQL",
    "others",
    "CPU ms/transfer",
)
RATIO_COLUMNS = (
    "batch",
    "ours / per-transfer (target >= 4)",
    "ours / raw (target >= 0.3)",
    "same ratio at equal CPU",
)


def print_table(results: Results, opts: Options, command: str, facts: str) -> None:
    def row(label: str, phases: list[Phase]) -> list[str]:
        rates = [p.rate for p in phases]
        return [
            label,
            f"{phases[0].transfers:,}",
            f"{median(rates):,.0f}",
            f"{min(rates):,.0f} - {max(rates):,.0f}",
            *(
                f"{median(getattr(p, name) for p in phases):.2f}"
                for name in ("wall", "client_cpu", "server_cpu", "other_cpu")
            ),
            f"{median(cpu_ms(p) for p in phases):.3f}",
        ]

    print()
    print(f"command: {command}")
    print(f"server:  {facts}; {os.cpu_count()} CPUs shared by client, server and anything else")
    print(f"runs:    {opts.repeat}, medians (range = min - max over the runs)")
    phases_table = [
        *(
            row(f"ours: post_batch x {b}, triggers on", phases)
            for b, phases in results.ours.items()
        ),
        row(f"raw: COPY transfers + entries x {opts.batches[0]}", results.raw),
        row("per-transfer: lock, 3 UPDATEs, INSERTs", results.per_transfer),
    ]
    print()
    print(markdown_table(PHASE_COLUMNS, "lrrrrrrrr", phases_table))
    print()
    ratio_rows = []
    summary: dict[str, Any] = {
        "transfers": opts.transfers,
        "per_transfer_transfers": opts.baseline_transfers,
        "repeat": opts.repeat,
        "raw_per_s": round(median(p.rate for p in results.raw), 1),
        "per_transfer_per_s": round(median(p.rate for p in results.per_transfer), 1),
        "ours": {},
    }
    for batch, phases in results.ours.items():
        r = ratios(results, batch)
        ratio_rows.append(
            [
                str(batch),
                f"{r.vs_per_transfer:.2f} ({'met' if r.vs_per_transfer >= 4 else 'missed'})",
                f"{r.vs_raw:.2f} ({'met' if r.vs_raw >= 0.3 else 'missed'})",
                f"{r.cpu_vs_raw:.2f}",
            ]
        )
        summary["ours"][str(batch)] = {
            "per_s": round(median(p.rate for p in phases), 1),
            "vs_per_transfer": round(r.vs_per_transfer, 3),
            "vs_raw": round(r.vs_raw, 3),
            "cpu_vs_raw": round(r.cpu_vs_raw, 3),
        }
    print(markdown_table(RATIO_COLUMNS, "rrrr", ratio_rows))
    print()
    print(
        "ours: trial balance zero, no drifted account, N transfers and 3N entries (checked after"
        " each run). raw: the same transfer rows and 3 entry rows per transfer, binary COPY, one"
        " transaction per batch, no balance updates, no checks. per-transfer: one transaction per"
        f" transfer, first {opts.baseline_transfers:,} transfers only. Both baselines run on"
        " fresh copies of the migrated schema with our ledger triggers dropped (same tables,"
        " indexes, FKs, CHECKs); ours runs with them. Ratios: medians of per-run ratios. CPU"
        " 'others': the rest of the machine during the phase (high = a noisy run); 'at equal"
        " CPU' = raw's CPU ms/transfer over ours (client + PostgreSQL)."
    )
    print(json.dumps(summary))


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/ledger_post.py", *sys.argv[1:]])
    with Databases("ledger", opts.admin_url, opts.keep) as dbs:
        settings = server_settings(opts.admin_url, SETTINGS)
        facts = describe_server(settings)
        analyze = opts.analyze == "on" or (
            opts.analyze == "auto" and settings["autovacuum"] == "off"
        )
        if analyze:
            facts += "; ours ANALYZEs its tables whenever they have doubled (--analyze)"
        print(f"{facts}; databases {dbs.prefix}_*")
        started = time.perf_counter()
        template = dbs.create("tpl")
        c = seed_template(dbs.url(template), opts)
        plain = dbs.copy("plain", template)
        make_plain(dbs.url(plain))
        work = build_workload(c, opts)
        print(
            f"seeded {len(c.payables) + 2} accounts and built {opts.transfers:,} transfers"
            f" in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        results = measure(dbs, opts, template, plain, c, work, analyze)
        print_table(results, opts, command, facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
