"""Reconciliation benchmark: the ledger's GX invariant suites versus the same checks as SQL, and
matching a statement of 100,000 lines against 100,000 payouts versus one SQL join.

    .venv/bin/python bench/reconcile.py --repeat 3                          # the issue's size
    .venv/bin/python bench/reconcile.py --transfers 50000 --lines 10000     # a quick look

Method
------
1. Seed (not timed) a template on the server behind ``--admin-url`` with ``bench/payroll.py``'s
   seed: one tenant, ``--specialists`` specialists, ``--transfers`` earnings transfers of two
   entries each (``--transfers 500000``: a ledger of 1,000,000 entries), every ledger guard on,
   then ``VACUUM ANALYZE``.
2. **Suites**: on the template, ``quire.reconciliation.expectations.LedgerSuites`` (one GX
   context and SQL data source, built once and not timed, GX's import reported apart) runs every
   invariant for the tenant (``run``: GX builds the suites and sends each invariant's SQL to
   PostgreSQL, twice per invariant as ``UnexpectedRowsExpectation`` does), against
   ``check_by_sql``: the same queries on one connection, once each. Both must find no
   violation.
3. **Matching**: on a fresh copy per run, ``--lines`` posted payout lines (in runs of one line per
   specialist, each written to a SEPA file) and one statement of as many bank lines are inserted
   set-based by SQL: 90 % carry the line's end-to-end id, 8 % only its amount, date and the
   payee's name (upper case, as banks print it), 2 % are credits nothing explains. Ours:
   ``quire.reconciliation.runs.reconcile_statement`` in one transaction, committed — the frames,
   the rules, settling every matched payout in one ledger batch, recording the matches, the
   paid lines and runs, the exceptions — and, apart, the matching alone (frames + rules, no
   writes). Baseline: one SQL join doing the first rule (bank line = payout line by tenant,
   end-to-end id and amount), all rows fetched. Checked after each run: every payout matched,
   the noise left as exceptions, the trial balance zero.

Figures are medians of ``--repeat`` runs. Targets (issue #10): suites / SQL <= 2; matching
100,000 against 100,000 <= 10 s (and its ratio to the join). Only reported.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench import payroll as payroll_bench  # noqa: E402
from bench.harness import (  # noqa: E402
    Databases,
    add_common_options,
    describe_server,
    markdown_table,
    new_parser,
    require_positive,
    server_settings,
)


def parse_args(argv: list[str] | None = None):
    parser = new_parser(__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--specialists", type=int, default=10_000)
    parser.add_argument(
        "--transfers", type=int, default=500_000, help="earnings transfers (2 entries each)"
    )
    parser.add_argument("--lines", type=int, default=100_000, help="payout and bank lines")
    add_common_options(parser, repeat=3, seed=9)
    args = parser.parse_args(argv)
    require_positive(parser, args, "specialists", "transfers", "lines", "repeat")
    if args.lines % args.specialists and args.lines > args.specialists:
        parser.error("--lines must be a multiple of --specialists (one line per specialist a run)")
    return args


def seed_matching(url: str, tenant_id: uuid.UUID, lines: int, specialists: int) -> uuid.UUID:
    """Posted payout lines and one statement paying them, set-based; the statement's id."""
    import psycopg

    runs = max(1, lines // specialists)
    per_run = min(lines, specialists)
    statement_id = uuid.uuid4()
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            INSERT INTO payroll_runs (id, tenant_id, period, attempt, cutoff_at, payout_date,
                dry_run, status, totals, created_at, posted_at, updated_at)
            SELECT gen_random_uuid(), %(t)s, to_char(DATE '2020-01-01' + (g || ' month')::interval,
                   'YYYY-MM'), 1, now(), DATE '2026-12-03', false, 'posted', '{}', now(), now(),
                   now()
            FROM generate_series(0, %(runs)s - 1) AS g""",
            {"t": tenant_id, "runs": runs},
        )
        conn.execute(
            """
            INSERT INTO payroll_files (id, tenant_id, run_id, name, format, media_type, path,
                sha256, size_bytes, currencies, line_count, status, created_at)
            SELECT gen_random_uuid(), %(t)s, r.id, 'sepa.xml', 'pain.001.001.03',
                   'application/xml', 'x', repeat('0', 64), 0, '["EUR"]', %(n)s, 'valid', now()
            FROM payroll_runs r WHERE r.tenant_id = %(t)s""",
            {"t": tenant_id, "n": per_run},
        )
        conn.execute(
            """
            WITH s AS (
                SELECT u.id, row_number() OVER (ORDER BY u.id) - 1 AS k FROM users u
                WHERE u.tenant_id = %(t)s AND u.roles::jsonb ? 'specialist'
            ), r AS (
                SELECT id, row_number() OVER (ORDER BY period) - 1 AS j FROM payroll_runs
                WHERE tenant_id = %(t)s
            )
            INSERT INTO payroll_lines (tenant_id, run_id, specialist_id, source_currency,
                payable_minor, payout_currency, payout_minor, fx_source, status, end_to_end_id,
                payee, transfer_ids, reversal_ids, created_at, updated_at)
            SELECT %(t)s, r.id, s.id, 'EUR', a.amount, 'EUR', a.amount, 'same currency',
                   'posted', 'E2E-' || r.j || '-' || s.k,
                   jsonb_build_object('scheme', 'iban', 'country', 'DE',
                                      'creditor_name', 'Payee ' || r.j || ' ' || s.k),
                   '[]', '[]', now(), now()
            FROM s CROSS JOIN r
            CROSS JOIN LATERAL (SELECT 1000 + ((s.k * 7919 + r.j * 104729) %% 899000) AS amount) a
            WHERE s.k < %(per_run)s""",
            {"t": tenant_id, "per_run": per_run},
        )
        conn.execute(
            """
            INSERT INTO bank_statements (id, tenant_id, statement_id, account, currency, format,
                file_name, sha256, opening_minor, opening_date, closing_minor, closing_date,
                line_count, uploaded_at)
            VALUES (%(s)s, %(t)s, 'BENCH-1', 'DE89370400440532013000', 'EUR', 'camt.053.001.08',
                    'bench.xml', repeat('1', 64), 0, DATE '2026-12-03', 0, DATE '2026-12-04',
                    %(n)s, now())""",
            {"s": statement_id, "t": tenant_id, "n": lines},
        )
        conn.execute(
            """
            INSERT INTO bank_lines (tenant_id, statement_id, position, booking_date, value_date,
                amount_minor, currency, end_to_end_id, counterparty_name, returned)
            SELECT %(t)s, %(s)s, row_number() OVER (ORDER BY l.id), DATE '2026-12-03',
                   DATE '2026-12-03',
                   CASE WHEN l.id %% 50 = 49 THEN 1 + l.id %% 997 ELSE -l.payout_minor END,
                   'EUR',
                   CASE WHEN l.id %% 50 < 45 THEN l.end_to_end_id END,
                   CASE WHEN l.id %% 50 < 49 THEN upper(l.payee ->> 'creditor_name') END,
                   false
            FROM payroll_lines l WHERE l.tenant_id = %(t)s""",
            {"t": tenant_id, "s": statement_id},
        )
        conn.execute("ANALYZE")
    return statement_id


def run_suites(url: str, tenant_id: uuid.UUID, repeat: int) -> dict[str, list[float] | float]:
    from sqlalchemy import create_engine

    started = time.perf_counter()
    from quire.reconciliation.expectations import LedgerSuites, check_by_sql

    suites = LedgerSuites(url.replace("postgresql://", "postgresql+psycopg://"))
    setup = time.perf_counter() - started
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    gx, sql = [], []
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            result = suites.run(tenant_id)
            gx.append(time.perf_counter() - t)
            if not result.success:
                raise SystemExit(f"suites failed on a clean ledger: {result.to_json()['failed']}")
            t = time.perf_counter()
            with engine.connect() as conn:
                found = check_by_sql(conn, tenant_id)
            sql.append(time.perf_counter() - t)
            if any(found.values()):
                raise SystemExit(f"SQL checks found violations on a clean ledger: {found}")
            print(f"suites: GX {gx[-1]:.2f} s, SQL {sql[-1]:.2f} s", flush=True)
    finally:
        suites.close()
        engine.dispose()
    return {"gx": gx, "sql": sql, "setup": setup}


def run_matching(dbs: Databases, template: str, tenant_id: uuid.UUID, args) -> dict[str, float]:
    from ledger.balances import trial_balance
    from quire.db import Database
    from quire.reconciliation import matching, runs
    from quire.reconciliation.matching import MatchSettings

    name = dbs.copy("match", template)
    url = dbs.url(name)
    statement_id = seed_matching(url, tenant_id, args.lines, args.specialists)
    database = Database(dbs.url(name, "postgresql+psycopg"))
    try:
        with database.session(tenant_id) as session:
            t = time.perf_counter()
            proposal = matching.propose(
                runs.bank_frame(session, statement_id), runs.payout_frame(session), MatchSettings()
            )
            alone = time.perf_counter() - t
        t = time.perf_counter()
        with database.session(tenant_id, write=True) as session:
            done = runs.reconcile_statement(session, None, statement_id, MatchSettings())
            summary = dict(done.summary)
        ours = time.perf_counter() - t
        with database.engine.connect() as conn:
            t = time.perf_counter()
            joined = conn.execute(
                text(
                    "SELECT b.id, l.id FROM bank_lines b JOIN payroll_lines l"
                    " ON l.tenant_id = b.tenant_id AND l.end_to_end_id = b.end_to_end_id"
                    " AND l.payout_minor = -b.amount_minor"
                    " WHERE b.statement_id = :s AND l.status IN ('posted', 'paid')"
                ),
                {"s": statement_id},
            ).all()
            join = time.perf_counter() - t
        with database.session(tenant_id) as session:
            balanced = all(v == 0 for v in trial_balance(session).values())
        noise = args.lines // 50
        if summary["settled"] != args.lines - noise or not balanced:
            raise SystemExit(f"matching check failed: {summary}, balanced={balanced}")
        print(
            f"matching: rules alone {alone:.2f} s ({len(proposal.matches):,} matches), "
            f"reconcile_statement {ours:.2f} s ({summary['by_rule']}, "
            f"{summary['exceptions_raised']} exceptions), SQL join (rule 1) {join:.3f} s "
            f"({len(joined):,} rows)",
            flush=True,
        )
        return {"alone": alone, "ours": ours, "join": join}
    finally:
        database.dispose()
        dbs.drop(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QUIRE_PASSWORD_HASH_PROFILE", "cheapest")
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with Databases("reconcile", args.admin_url, args.keep) as dbs:
        facts = describe_server(
            server_settings(args.admin_url, ("server_version", "fsync", "shared_buffers"))
        )
        print(f"{facts}; databases {dbs.prefix}_*", flush=True)
        opts = payroll_bench.parse_args(
            [
                "--specialists",
                str(args.specialists),
                "--transfers",
                str(args.transfers),
                "--seed",
                str(args.seed),
            ]
        )
        seeded = payroll_bench.seed_template(dbs, opts)
        print(f"seeded {2 * args.transfers:,} entries in {seeded.seconds:.0f} s", flush=True)
        gx_import = payroll_bench.gx_import_seconds()
        matched = [
            run_matching(dbs, seeded.template, seeded.tenant_id, args) for _ in range(args.repeat)
        ]
        # (On a copy: GX keeps connections of its own that would block copying the template.)
        proving = dbs.copy("suites", seeded.template)
        suites = run_suites(dbs.url(proving), seeded.tenant_id, args.repeat)
    m = statistics.median
    gx, sql = m(suites["gx"]), m(suites["sql"])
    ours, alone, join = (m(r[k] for r in matched) for k in ("ours", "alone", "join"))
    print()
    print(
        markdown_table(
            ("path", "median s", "range"),
            "lrr",
            [
                [
                    f"GX invariant suites ({2 * args.transfers:,} entries)",
                    f"{gx:.2f}",
                    f"{min(suites['gx']):.2f} - {max(suites['gx']):.2f}",
                ],
                [
                    "the same checks as SQL",
                    f"{sql:.2f}",
                    f"{min(suites['sql']):.2f} - {max(suites['sql']):.2f}",
                ],
                [
                    f"reconcile_statement ({args.lines:,} x {args.lines:,}, settle, commit)",
                    f"{ours:.2f}",
                    f"{min(r['ours'] for r in matched):.2f} - "
                    f"{max(r['ours'] for r in matched):.2f}",
                ],
                ["  the rules alone (frames + joins, no writes)", f"{alone:.2f}", ""],
                ["one SQL join doing rule 1", f"{join:.3f}", ""],
            ],
        )
    )
    print()
    print(
        f"suites / SQL = {gx / sql:.2f} (target <= 2: {'met' if gx / sql <= 2 else 'MISSED'}); "
        f"GX import {gx_import:.1f} s and context setup {suites['setup']:.1f} s apart"
    )
    print(
        f"matching {args.lines:,} x {args.lines:,} (the frames and the rules): {alone:.1f} s "
        f"(target <= 10 s: {'met' if alone <= 10 else 'MISSED'}), {alone / join:.0f}x the join; "
        f"reconcile_statement with settling every match in the ledger and committing: "
        f"{ours:.1f} s ({ours / join:.0f}x the join)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
