"""The ledger's invariants, proved by Great Expectations inside the database.

Each invariant of ledger/README.md that can be stated over stored rows is one SQL query selecting
the rows that break it (`invariant_queries`): it holds when the query returns nothing. GX runs
each one in the database (SQLite or PostgreSQL, the app's own) and reads back a count and, for a
broken invariant, a handful of offending rows, never the ledger. Two more are reconciliation's
own: each reconciled statement moves the ledger's bank account by exactly its matched lines (the
transfers that name a line, `models.bank_line_reference`), and every unmatched line is an open
exception.

Scope: one tenant per run. The database is multi-tenant and GX's queries bypass the ORM's tenant
scoping (quire.tenancy), so every table every query reads is filtered by the tenant's id, written
into the SQL as a literal (a validated UUID, so nothing can be injected through it).

What GX sees: its own connections, so only committed data. Run the suites after the transaction
whose effects they should judge has committed (reconciliation: after the matching commits); rows
of a transaction still open are invisible to them, as they are to any other reader.

How GX runs them, and why so: each invariant's query is a GX query asset. The suites, built once
per `LedgerSuites` (one ephemeral context, one SQL data source and engine), are tenant-free; a run
points the assets at the tenant's queries and validates in two passes:

1. counts: `ExpectTableRowCountToEqual(0)` per asset, one `SELECT COUNT(*)` over each query;
2. offending rows, for the broken invariants only: `UnexpectedRowsExpectation` with
   `SELECT * FROM {batch} LIMIT n` over the same asset.

A clean ledger, the usual case, so costs one execution of each query, as the same checks in plain
SQL do (`check_by_sql`). An `UnexpectedRowsExpectation` alone would run every query twice (its
rows, then their count) on every run.

Great Expectations takes seconds to import, so it is imported only when suites are built;
importing this module costs nothing of it. Progress bars and analytics are off. Data Docs HTML is
written under the directory the caller names (none if it names none), for a passing run as for a
failing one, built once per run.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from quire.db import Database, normalize_url

if TYPE_CHECKING:
    from great_expectations import Checkpoint, ValidationDefinition
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.datasource.fluent import SQLDatasource
    from great_expectations.expectations import Expectation

SUITE_NAME = "ledger-invariants"
SUITE_VERSION = 2  # bump whenever an invariant's SQL below changes
MAX_OFFENDING_ROWS = 10

DatabaseLike = str | URL | Engine | Database

# What a query asset holds until a run points it at a tenant's query.
_NO_ROWS = "SELECT 1 AS nothing WHERE 1 = 0"

# GX keeps its current project in a process-wide singleton (the stores a validation writes to):
# two runs on two threads take turns, and each run makes its own context the current one first.
# (The payroll gate has a lock of its own for the same singleton; one shared lock would also keep
# a gate and a reconciliation on two threads of one process apart.)
_GX_LOCK = threading.Lock()


# --- the SQL, per dialect ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Dialect:
    """The few places where SQLite and PostgreSQL spell the same thing differently: how a UUID
    is stored (PostgreSQL's uuid; SQLite's 32 hex digits), and JSON (jsonb; JSON text)."""

    name: str  # "postgresql" | "sqlite"
    tenant: str  # the tenant's id as a SQL literal, as its columns store it

    @classmethod
    def of(cls, dialect_name: str, tenant_id: uuid.UUID) -> _Dialect:
        if dialect_name == "postgresql":
            return cls(dialect_name, f"'{tenant_id}'")
        if dialect_name == "sqlite":
            return cls(dialect_name, f"'{tenant_id.hex}'")
        raise ValueError(f"the ledger suites run on SQLite or PostgreSQL, not {dialect_name}")

    @property
    def pg(self) -> bool:
        return self.name == "postgresql"

    def json_text(self, column: str, key: str) -> str:
        """A JSON object's member as text."""
        return f"({column} ->> '{key}')" if self.pg else f"json_extract({column}, '$.{key}')"

    def id_is(self, id_column: str, text_id: str) -> str:
        """A UUID column equals a UUID written as text (as JSON stores ids: with dashes)."""
        if self.pg:
            return f"CAST({id_column} AS TEXT) = {text_id}"
        return f"{id_column} = replace({text_id}, '-', '')"

    def each_element(self, column: str) -> str:
        """A LEFT JOIN on the elements of a JSON array column, as rows `named.value`: none when
        the column is not an array (so a line with no array at all finds no transfer either)."""
        if self.pg:
            array = f"CASE jsonb_typeof({column}) WHEN 'array' THEN {column} END"
            return f"LEFT JOIN LATERAL jsonb_array_elements_text({array}) AS named(value) ON true"
        array = f"CASE json_type({column}) WHEN 'array' THEN {column} END"
        return f"LEFT JOIN json_each({array}) AS named ON true"


@dataclass(frozen=True)
class Invariant:
    """One invariant: its stable key, the name and sentence a failure reads as, and its
    offending-rows SQL for a dialect and tenant."""

    key: str
    name: str
    description: str
    sql: Callable[[_Dialect], str]


def _balanced(d: _Dialect) -> str:
    return f"""
SELECT CAST(transfer_id AS TEXT) AS transfer_id, currency,
       CAST(SUM(amount) AS BIGINT) AS net_minor
FROM ledger_entries
WHERE tenant_id = {d.tenant}
GROUP BY transfer_id, currency
HAVING SUM(amount) <> 0
ORDER BY transfer_id, currency"""


def _trial_balance(d: _Dialect) -> str:
    return f"""
SELECT currency, CAST(SUM(balance) AS BIGINT) AS total_minor, COUNT(*) AS accounts
FROM ledger_accounts
WHERE tenant_id = {d.tenant}
GROUP BY currency
HAVING SUM(balance) <> 0
ORDER BY currency"""


def _balances_match_entries(d: _Dialect) -> str:
    return f"""
SELECT CAST(a.id AS TEXT) AS account_id, a.kind, a.currency, a.balance AS balance_minor,
       CAST(COALESCE(s.total, 0) AS BIGINT) AS entries_minor
FROM ledger_accounts AS a
LEFT JOIN (
    SELECT account_id, SUM(amount) AS total
    FROM ledger_entries
    WHERE tenant_id = {d.tenant}
    GROUP BY account_id
) AS s ON s.account_id = a.id
WHERE a.tenant_id = {d.tenant} AND a.balance <> COALESCE(s.total, 0)
ORDER BY a.id"""


def _no_negative_payable(d: _Dialect) -> str:
    # Payables are credit-normal (ledger/chart.py): what is owed is -balance, so a negative
    # payable is a positive (debit) balance.
    return f"""
SELECT CAST(id AS TEXT) AS account_id, CAST(owner_id AS TEXT) AS specialist_id, currency,
       -balance AS payable_minor
FROM ledger_accounts
WHERE tenant_id = {d.tenant} AND kind = 'specialist_payable' AND balance > 0
ORDER BY id"""


def _unique_keys(d: _Dialect) -> str:
    return f"""
SELECT idempotency_key, COUNT(*) AS transfers
FROM ledger_transfers
WHERE tenant_id = {d.tenant}
GROUP BY idempotency_key
HAVING COUNT(*) > 1
ORDER BY idempotency_key"""


def _no_entry_in_closed_period(d: _Dialect) -> str:
    # An entry breaks a closure if it is dated in the closed range and was written while the
    # closure was in force (after the close, before any reopen): entries written before the
    # close are the month's own figures, and a reopened month takes corrections until it is
    # closed again (a new closure row).
    return f"""
SELECT e.id AS entry_id, CAST(e.transfer_id AS TEXT) AS transfer_id, e.effective_at,
       e.created_at, p.period, p.closed_at
FROM ledger_entries AS e
JOIN ledger_closed_periods AS p
  ON p.tenant_id = {d.tenant}
 AND e.effective_at >= p.starts_at AND e.effective_at < p.ends_at
 AND e.created_at >= p.closed_at
 AND (p.reopened_at IS NULL OR e.created_at < p.reopened_at)
WHERE e.tenant_id = {d.tenant}
ORDER BY e.id"""


def _posted_lines_have_transfers(d: _Dialect) -> str:
    # A line whose money moved (posted; paid; reversed, which was posted first) names the
    # transfers that moved it, and each is a transfer of this tenant. A line naming none shows
    # once with transfer_id NULL; a line naming a missing one shows that id.
    return f"""
SELECT l.id AS line_id, CAST(l.run_id AS TEXT) AS run_id,
       CAST(l.specialist_id AS TEXT) AS specialist_id, l.status, named.value AS transfer_id
FROM payroll_lines AS l
{d.each_element("l.transfer_ids")}
LEFT JOIN ledger_transfers AS t
  ON t.tenant_id = {d.tenant} AND {d.id_is("t.id", "named.value")}
WHERE l.tenant_id = {d.tenant} AND l.status IN ('posted', 'paid', 'reversed') AND t.id IS NULL
ORDER BY l.id"""


def _paid_runs_clearing_empty(d: _Dialect) -> str:
    # A transfer belongs to the payroll run its metadata names (`payroll_run`: the payouts
    # ledger.business.post_payouts posts, and their settlements), a reversal to its original's
    # run. For a paid run, what those transfers put into payout clearing they took out again,
    # in every currency. Read from the clearing accounts' entries (an index range per account),
    # not from every transfer of the tenant.
    run_ref = f"COALESCE({d.json_text('o.metadata', 'payroll_run')}, "
    run_ref += f"{d.json_text('t.metadata', 'payroll_run')})"
    return f"""
WITH clearing AS (
    SELECT a.currency, e.amount, {run_ref} AS run_ref
    FROM ledger_accounts AS a
    JOIN ledger_entries AS e ON e.account_id = a.id AND e.tenant_id = {d.tenant}
    JOIN ledger_transfers AS t ON t.id = e.transfer_id AND t.tenant_id = {d.tenant}
    LEFT JOIN ledger_transfers AS o ON o.id = t.reverses_id AND o.tenant_id = {d.tenant}
    WHERE a.tenant_id = {d.tenant} AND a.kind = 'payout_clearing'
)
SELECT CAST(r.id AS TEXT) AS run_id, r.period, r.attempt, c.currency,
       CAST(-SUM(c.amount) AS BIGINT) AS held_minor
FROM payroll_runs AS r
JOIN clearing AS c ON {d.id_is("r.id", "c.run_ref")}
WHERE r.tenant_id = {d.tenant} AND r.status = 'paid'
GROUP BY r.id, r.period, r.attempt, c.currency
HAVING SUM(c.amount) <> 0
ORDER BY r.period, r.attempt, c.currency"""


def _reconciled_lines(d: _Dialect) -> str:
    """The tenant's bank lines on statements a reconciliation has run over."""
    return f"""
    SELECT l.id, l.statement_id, l.currency, l.amount_minor
    FROM bank_lines AS l
    WHERE l.tenant_id = {d.tenant}
      AND EXISTS (
          SELECT 1 FROM reconciliations AS r
          WHERE r.tenant_id = {d.tenant} AND r.statement_id = l.statement_id
      )"""


def _live_match(d: _Dialect, line: str) -> str:
    """A live (not undone) match of the bank line `line` exists."""
    return f"""EXISTS (
          SELECT 1 FROM bank_matches AS m
          WHERE m.tenant_id = {d.tenant} AND m.bank_line_id = {line} AND NOT m.undone
      )"""


def _statement_moves_matched(d: _Dialect) -> str:
    # Every transfer reconciliation posts because of a bank line carries that line's reference
    # (models.bank_line_reference: 'bank-line:<id>'), whichever way it was matched (a rule, by
    # hand, a write-off, a return after settlement). Its bank entries (debit-positive, as the
    # statement's credits are) must add up, per statement and currency, to the lines that are
    # matched: a match undone with its transfer left, or a settlement for another amount, shows.
    # A returned payment and its original debit are matched (rule `return`) and post nothing:
    # they net to zero on both sides. One row per line side and per entry side, then summed, so
    # a currency present on one side only is compared with zero (no FULL JOIN needed).
    reference = "'bank-line:' || CAST(l.id AS TEXT)"
    return f"""
WITH lines AS ({_reconciled_lines(d)}
),
moves AS (
    SELECT l.statement_id, e.currency, e.amount AS ledger_minor, 0 AS matched_minor
    FROM lines AS l
    JOIN ledger_transfers AS t ON t.tenant_id = {d.tenant} AND t.reference = {reference}
    JOIN ledger_entries AS e ON e.transfer_id = t.id AND e.tenant_id = {d.tenant}
    JOIN ledger_accounts AS a
      ON a.id = e.account_id AND a.tenant_id = {d.tenant} AND a.kind = 'bank'
    UNION ALL
    SELECT l.statement_id, l.currency, 0 AS ledger_minor, l.amount_minor AS matched_minor
    FROM lines AS l
    WHERE {_live_match(d, "l.id")}
)
SELECT CAST(statement_id AS TEXT) AS statement_id, currency,
       CAST(SUM(ledger_minor) AS BIGINT) AS ledger_minor,
       CAST(SUM(matched_minor) AS BIGINT) AS matched_minor
FROM moves
GROUP BY statement_id, currency
HAVING SUM(ledger_minor) <> SUM(matched_minor)
ORDER BY statement_id, currency"""


def _unmatched_lines_open(d: _Dialect) -> str:
    # What reconciliation could not explain waits for finance: a line without a live match has
    # an open exception (a resolution closes it only together with a match: by hand, a
    # write-off, a later statement's rule).
    return f"""
WITH lines AS ({_reconciled_lines(d)}
)
SELECT l.id AS bank_line_id, CAST(l.statement_id AS TEXT) AS statement_id, l.currency,
       l.amount_minor
FROM lines AS l
WHERE NOT {_live_match(d, "l.id")}
  AND NOT EXISTS (
      SELECT 1 FROM reconciliation_exceptions AS x
      WHERE x.tenant_id = {d.tenant} AND x.bank_line_id = l.id AND x.status = 'open'
  )
ORDER BY l.id"""


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        "transfers_balanced",
        "Every transfer balances in each currency",
        "The entries of each transfer add up to zero in every currency (invariant 1).",
        _balanced,
    ),
    Invariant(
        "trial_balance_zero",
        "Trial balance is zero in each currency",
        "The maintained balances of all accounts add up to zero per currency.",
        _trial_balance,
    ),
    Invariant(
        "balances_match_entries",
        "Every account's balance is the sum of its entries",
        "The maintained balance of each account equals the sum of its entries (invariant 4): "
        "a balance changed by anything but posting shows here.",
        _balances_match_entries,
    ),
    Invariant(
        "no_negative_payable",
        "No specialist payable is negative",
        "No specialist is owed less than nothing: a payable (credit-normal) never has a debit "
        "balance (invariant 5).",
        _no_negative_payable,
    ),
    Invariant(
        "unique_idempotency_keys",
        "Idempotency keys are unique",
        "No two transfers of the tenant share an idempotency key (invariant 6).",
        _unique_keys,
    ),
    Invariant(
        "no_entry_in_closed_period",
        "No entry was added to a closed period",
        "No entry dated in a closed period was written while it was closed (invariant 8).",
        _no_entry_in_closed_period,
    ),
    Invariant(
        "posted_lines_have_transfers",
        "Every posted payroll line has its transfers",
        "Each payroll line whose money moved names at least one transfer, and every transfer it "
        "names exists.",
        _posted_lines_have_transfers,
    ),
    Invariant(
        "paid_runs_clearing_empty",
        "Payout clearing is empty for paid payroll runs",
        "For every paid payroll run, the transfers of the run (payouts, settlements, reversals) "
        "leave nothing in payout clearing, in any currency.",
        _paid_runs_clearing_empty,
    ),
    Invariant(
        "statement_moves_matched",
        "Each reconciled statement moves the bank account by its matched lines",
        "For every reconciled bank statement, per currency, the bank account's entries of the "
        "transfers that name one of its lines equal the sum of its lines with a live match.",
        _statement_moves_matched,
    ),
    Invariant(
        "unmatched_lines_open",
        "Every unmatched line of a reconciled statement is an open exception",
        "A line of a reconciled statement that no live match explains waits in finance's queue "
        "as an open exception.",
        _unmatched_lines_open,
    ),
)


def _tenant(tenant_id: uuid.UUID | str) -> uuid.UUID:
    """The tenant as a UUID: anything else is refused before it can reach the SQL."""
    return tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(str(tenant_id))


def invariant_queries(dialect_name: str, tenant_id: uuid.UUID | str) -> dict[str, str]:
    """Every invariant's offending-rows SQL for one tenant, by key."""
    dialect = _Dialect.of(dialect_name, _tenant(tenant_id))
    return {inv.key: inv.sql(dialect).strip() for inv in INVARIANTS}


def check_by_sql(connection: Connection, tenant_id: uuid.UUID | str) -> dict[str, int]:
    """The same checks without GX, on the caller's connection: each invariant's query run once;
    the number of offending rows per invariant. What the GX suites are measured against."""
    queries = invariant_queries(connection.dialect.name, tenant_id)
    return {key: len(connection.execute(text(sql)).all()) for key, sql in queries.items()}


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationOutcome:
    """One invariant's verdict: whether it held, and if not how many rows break it and the
    first `MAX_OFFENDING_ROWS` of them (JSON-safe); `error` if its query could not run."""

    key: str
    name: str
    description: str
    success: bool
    count: int
    offending: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "description": self.description,
            "success": self.success,
            "count": self.count,
            "offending": self.offending,
            "error": self.error,
        }


@dataclass(frozen=True)
class SuiteResult:
    success: bool
    suite: str  # name@version
    tenant_id: uuid.UUID
    run_name: str
    results: list[ExpectationOutcome]
    data_docs_index: Path | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.results if not outcome.success]

    def to_json(self) -> dict[str, Any]:
        """What a reconciliation stores and its artifact shows (plain JSON types only)."""
        return {
            "success": self.success,
            "suite": self.suite,
            "tenant_id": str(self.tenant_id),
            "run_name": self.run_name,
            "evaluated": len(self.results),
            "failed": [outcome.key for outcome in self.failed],
            "results": [outcome.to_json() for outcome in self.results],
            "data_docs_index": str(self.data_docs_index) if self.data_docs_index else None,
            "seconds": round(self.seconds, 3),
        }


def _json_safe(column: str, value: Any) -> Any:
    """Money and counts as ints, instants as ISO text, ids as UUID text (SQLite stores them as
    32 hex digits), anything else as text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if column.endswith("_id") and isinstance(value, str) and len(value) == 32:
        try:
            return str(uuid.UUID(hex=value))
        except ValueError:
            return value
    return str(value)


def _errors(validation: Any) -> list[str]:
    """Why GX could not evaluate an expectation (its query failed), if it could not."""
    exception = validation.exception_info or {}
    # GX reports a failed metric under the metric's id, or flat; either way, its messages.
    raised = [exception] if "raised_exception" in exception else list(exception.values())
    return [str(e.get("exception_message")) for e in raised if e.get("raised_exception")]


def _outcome(invariant: Invariant, count: Any, rows: Any | None) -> ExpectationOutcome:
    """An invariant's outcome from its count validation and, if it failed, its rows one."""
    errors = _errors(count) + (_errors(rows) if rows is not None else [])
    found = ((rows.result or {}).get("details") or {}).get("unexpected_rows") if rows else None
    return ExpectationOutcome(
        key=invariant.key,
        name=invariant.name,
        description=invariant.description,
        success=bool(count.success) and not errors,
        count=int((count.result or {}).get("observed_value") or 0),
        offending=[
            {column: _json_safe(column, value) for column, value in dict(row).items()}
            for row in (found or [])[:MAX_OFFENDING_ROWS]
        ],
        error=errors[0] if errors else None,
    )


# --- running them ------------------------------------------------------------------------------


def _url(database: DatabaseLike) -> URL:
    """The database's URL with its password (GX opens its own engine from it)."""
    if isinstance(database, Database | Engine):
        url = database.url
    else:
        url = normalize_url(
            database.render_as_string(hide_password=False)
            if isinstance(database, URL)
            else database
        )
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ValueError("GX opens its own connections: give a SQLite file, not :memory:")
    return url


def _context(data_docs_dir: Path | None) -> EphemeralDataContext:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if data_docs_dir is not None:
        sites[SUITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(data_docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites=sites,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


class LedgerSuites:
    """The ledger's invariant suites over one database, ready to validate any of its tenants.

    Building this imports GX (seconds, once per process) and makes one ephemeral context with
    one SQL data source (its own engine, so: committed data only), one query asset per
    invariant, and the two tenant-free suites per invariant (its count, its offending rows).
    `run` can then be called for tenant after tenant; `close` disposes of the engine (its
    connections to PostgreSQL)."""

    def __init__(self, database: DatabaseLike, *, data_docs_dir: Path | None = None) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        self.url = _url(database)
        self.data_docs_dir = data_docs_dir
        if data_docs_dir is not None:
            data_docs_dir.mkdir(parents=True, exist_ok=True)
        with _GX_LOCK:
            self._context = _context(data_docs_dir)
            self._source = self._add_source()
            self._assets = {
                inv.key: self._source.add_query_asset(inv.key, query=_NO_ROWS) for inv in INVARIANTS
            }
            self._counts = self._definitions("", self._count_expectation)
            self._rows = self._definitions("-offending", self._rows_expectation)
            self._count_checkpoint = self._context.checkpoints.add(
                self._checkpoint("", list(self._counts.values()))
            )

    def _add_source(self) -> SQLDatasource:
        connection_string = self.url.render_as_string(hide_password=False)
        if self.url.get_backend_name() == "postgresql":
            return self._context.data_sources.add_postgres(
                SUITE_NAME, connection_string=connection_string
            )
        return self._context.data_sources.add_sqlite(
            SUITE_NAME, connection_string=connection_string
        )

    @staticmethod
    def _count_expectation(invariant: Invariant) -> Expectation:
        import great_expectations as gx

        return gx.expectations.ExpectTableRowCountToEqual(
            value=0,
            description=f"{invariant.name}: no row breaks it",
            notes=invariant.description,
            meta={"quire_check": invariant.key},
            catch_exceptions=True,
        )

    @staticmethod
    def _rows_expectation(invariant: Invariant) -> Expectation:
        import great_expectations as gx

        return gx.expectations.UnexpectedRowsExpectation(
            unexpected_rows_query=f"SELECT * FROM {{batch}} LIMIT {MAX_OFFENDING_ROWS}",
            description=f"{invariant.name}: the first rows that break it",
            notes=invariant.description,
            meta={"quire_check": invariant.key},
            catch_exceptions=True,
        )

    def _definitions(
        self, suffix: str, expectation: Callable[[Invariant], Expectation]
    ) -> dict[str, ValidationDefinition]:
        """Per invariant, a one-expectation suite over its asset and its validation."""
        import great_expectations as gx

        definitions = {}
        for invariant in INVARIANTS:
            name = f"{SUITE_NAME}-v{SUITE_VERSION}-{invariant.key}{suffix}"
            suite = gx.ExpectationSuite(
                name=name,
                expectations=[expectation(invariant)],
                meta={"quire_suite": SUITE_NAME, "quire_suite_version": SUITE_VERSION},
            )
            batch = self._assets[invariant.key].add_batch_definition_whole_table(name)
            definitions[invariant.key] = self._context.validation_definitions.add(
                gx.ValidationDefinition(
                    name=name, data=batch, suite=self._context.suites.add(suite)
                )
            )
        return definitions

    @staticmethod
    def _checkpoint(suffix: str, definitions: list[ValidationDefinition]) -> Checkpoint:
        import great_expectations as gx

        return gx.Checkpoint(
            name=f"{SUITE_NAME}-v{SUITE_VERSION}{suffix}",
            validation_definitions=definitions,
            result_format={"result_format": "COMPLETE"},
        )

    @property
    def dialect_name(self) -> str:
        return self.url.get_backend_name()

    def run(self, tenant_id: uuid.UUID | str, *, run_name: str | None = None) -> SuiteResult:
        """Validate every invariant for one tenant; write Data Docs if a directory was given.

        Returns success False with each broken invariant, its count and its first offending rows
        rather than raising. `seconds` covers the run (not GX's import nor the context)."""
        tenant = _tenant(tenant_id)
        run_name = run_name or f"ledger-{tenant}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        started = time.perf_counter()
        queries = invariant_queries(self.dialect_name, tenant)
        with _GX_LOCK:
            counts, rows = self._validate(queries, run_name)
        outcomes = [_outcome(inv, counts[inv.key], rows.get(inv.key)) for inv in INVARIANTS]
        index = self.data_docs_dir / "index.html" if self.data_docs_dir else None
        return SuiteResult(
            success=all(outcome.success for outcome in outcomes),
            suite=f"{SUITE_NAME}@{SUITE_VERSION}",
            tenant_id=tenant,
            run_name=run_name,
            results=outcomes,
            data_docs_index=index if index is not None and index.exists() else None,
            seconds=time.perf_counter() - started,
        )

    def _validate(
        self, queries: Mapping[str, str], run_name: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The counts of every invariant, then the rows of the broken ones; Data Docs of both
        built once. Returns each pass's expectation results by invariant key."""
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context import set_context

        set_context(self._context)  # another GX user in this process may have replaced it
        for key, sql in queries.items():
            # A query asset must start with SELECT: the clearing invariant starts with WITH.
            self._assets[key].query = f"SELECT * FROM ({sql}) AS offending"
        run_id = RunIdentifier(run_name=run_name)
        passes = [self._count_checkpoint.run(run_id=run_id)]
        counts = _by_check(passes[0])
        broken = [key for key, count in counts.items() if not count.success and not _errors(count)]
        rows: dict[str, Any] = {}
        if broken:
            checkpoint = self._context.checkpoints.add_or_update(
                self._checkpoint("-offending", [self._rows[key] for key in broken])
            )
            passes.append(checkpoint.run(run_id=run_id))
            rows = _by_check(passes[1])
        if self.data_docs_dir is not None:
            # One build for the run's validation results (and the index), not one per suite
            # as UpdateDataDocsAction does: each build compiles GX's page templates again.
            self._context.build_data_docs(
                site_names=[SUITE_NAME],
                resource_identifiers=[key for done in passes for key in done.run_results],
            )
        return counts, rows

    def close(self) -> None:
        """Dispose of the data source's engine (GX keeps one per data source)."""
        with _GX_LOCK:
            self._source.get_engine().dispose()

    def __enter__(self) -> LedgerSuites:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _by_check(result: CheckpointResult) -> dict[str, Any]:
    """A checkpoint's expectation results by the invariant each checks."""
    return {
        (validation.expectation_config.meta or {})["quire_check"]: validation
        for suite_result in result.run_results.values()
        for validation in suite_result.results
    }


def run_ledger_suites(
    database: DatabaseLike,
    tenant_id: uuid.UUID | str,
    data_docs_dir: Path | None = None,
    run_name: str | None = None,
) -> SuiteResult:
    """Validate one tenant's ledger once: a fresh GX context, the suites, Data Docs under
    `data_docs_dir` if given. To validate many tenants, keep one `LedgerSuites` instead.

    GX reads only committed data: call this after the transaction to judge has committed."""
    with LedgerSuites(database, data_docs_dir=data_docs_dir) as suites:
        return suites.run(tenant_id, run_name=run_name)
