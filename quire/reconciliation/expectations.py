"""The ledger's invariants, proved by Great Expectations inside the database.

Each invariant of ledger/README.md that can be stated over stored rows is one GX expectation: an
`UnexpectedRowsExpectation` whose SQL selects the rows that break it, so it passes when the query
returns nothing and, when it fails, names the invariant and shows a handful of offending rows.
The queries run in the database (SQLite or PostgreSQL, the app's own): GX sends the SQL and reads
back at most a few hundred offending rows, never the ledger.

Scope: one tenant per run. The database is multi-tenant and GX's queries bypass the ORM's tenant
scoping (quire.tenancy), so every table every query reads is filtered by the tenant's id, written
into the SQL as a literal (a validated UUID, so nothing can be injected through it).

What GX sees: its own connections, so only committed data. Run the suites after the transaction
whose effects they should judge has committed (reconciliation: after the matching commits); rows
of a transaction still open are invisible to them, as they are to any other reader.

Cost: Great Expectations takes seconds to import, so it is imported only when suites are built;
importing this module costs nothing of it. One `LedgerSuites` holds one ephemeral GX context
and one SQL data source (one engine) for as many runs as the caller wants; each run builds its
suites once (the SQL names the tenant) and validates them through one checkpoint. Progress bars
and analytics are off. `UnexpectedRowsExpectation` runs its query twice (the offending rows, then
their count), which is the price of GX over the same checks as plain SQL (`check_by_sql`).

Data Docs HTML is written under the directory the caller names (none if it names none), for a
passing run as for a failing one.

`{batch}` in the queries below is GX's placeholder for the asset's batch (the whole table, as a
subquery). GX renders it aliased (`AS subselect`) in a query without a JOIN and bare in one with
a JOIN, so a query that joins aliases it itself (`{batch} AS e`) and one that does not names its
columns unqualified.
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
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.datasource.fluent import SQLDatasource

SUITE_NAME = "ledger-invariants"
SUITE_VERSION = 1  # bump whenever an invariant's SQL below changes
MAX_OFFENDING_ROWS = 10

DatabaseLike = str | URL | Engine | Database

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
    """One invariant: its stable key, the name and sentence a failure reads as, the table its
    GX asset is, and its offending-rows SQL for a dialect and tenant."""

    key: str
    name: str
    description: str
    table: str
    sql: Callable[[_Dialect], str]


def _balanced(d: _Dialect) -> str:
    return f"""
SELECT CAST(transfer_id AS TEXT) AS transfer_id, currency,
       CAST(SUM(amount) AS BIGINT) AS net_minor
FROM {{batch}}
WHERE tenant_id = {d.tenant}
GROUP BY transfer_id, currency
HAVING SUM(amount) <> 0
ORDER BY transfer_id, currency"""


def _trial_balance(d: _Dialect) -> str:
    return f"""
SELECT currency, CAST(SUM(balance) AS BIGINT) AS total_minor, COUNT(*) AS accounts
FROM {{batch}}
WHERE tenant_id = {d.tenant}
GROUP BY currency
HAVING SUM(balance) <> 0
ORDER BY currency"""


def _balances_match_entries(d: _Dialect) -> str:
    return f"""
SELECT CAST(a.id AS TEXT) AS account_id, a.kind, a.currency, a.balance AS balance_minor,
       CAST(COALESCE(s.total, 0) AS BIGINT) AS entries_minor
FROM {{batch}} AS a
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
FROM {{batch}}
WHERE tenant_id = {d.tenant} AND kind = 'specialist_payable' AND balance > 0
ORDER BY id"""


def _unique_keys(d: _Dialect) -> str:
    return f"""
SELECT idempotency_key, COUNT(*) AS transfers
FROM {{batch}}
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
FROM {{batch}} AS e
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
FROM {{batch}} AS l
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
FROM {{batch}} AS r
JOIN clearing AS c ON {d.id_is("r.id", "c.run_ref")}
WHERE r.tenant_id = {d.tenant} AND r.status = 'paid'
GROUP BY r.id, r.period, r.attempt, c.currency
HAVING SUM(c.amount) <> 0
ORDER BY r.period, r.attempt, c.currency"""


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        "transfers_balanced",
        "Every transfer balances in each currency",
        "The entries of each transfer add up to zero in every currency (invariant 1).",
        "ledger_entries",
        _balanced,
    ),
    Invariant(
        "trial_balance_zero",
        "Trial balance is zero in each currency",
        "The maintained balances of all accounts add up to zero per currency.",
        "ledger_accounts",
        _trial_balance,
    ),
    Invariant(
        "balances_match_entries",
        "Every account's balance is the sum of its entries",
        "The maintained balance of each account equals the sum of its entries (invariant 4): "
        "a balance changed by anything but posting shows here.",
        "ledger_accounts",
        _balances_match_entries,
    ),
    Invariant(
        "no_negative_payable",
        "No specialist payable is negative",
        "No specialist is owed less than nothing: a payable (credit-normal) never has a debit "
        "balance (invariant 5).",
        "ledger_accounts",
        _no_negative_payable,
    ),
    Invariant(
        "unique_idempotency_keys",
        "Idempotency keys are unique",
        "No two transfers of the tenant share an idempotency key (invariant 6).",
        "ledger_transfers",
        _unique_keys,
    ),
    Invariant(
        "no_entry_in_closed_period",
        "No entry was added to a closed period",
        "No entry dated in a closed period was written while it was closed (invariant 8).",
        "ledger_entries",
        _no_entry_in_closed_period,
    ),
    Invariant(
        "posted_lines_have_transfers",
        "Every posted payroll line has its transfers",
        "Each payroll line whose money moved names at least one transfer, and every transfer it "
        "names exists.",
        "payroll_lines",
        _posted_lines_have_transfers,
    ),
    Invariant(
        "paid_runs_clearing_empty",
        "Payout clearing is empty for paid payroll runs",
        "For every paid payroll run, the transfers of the run (payouts, settlements, reversals) "
        "leave nothing in payout clearing, in any currency.",
        "payroll_runs",
        _paid_runs_clearing_empty,
    ),
    # Extension point (issue 10, section 3): "over each statement's dates the ledger's bank
    # account moves by exactly the sum of that statement's matched lines, and every unmatched
    # line is an open exception". It needs the bank statement and exception tables
    # (quire/reconciliation/statements.py), which do not exist yet; add one Invariant per
    # statement rule here, on the statement lines' table, when they do.
)


def _tenant(tenant_id: uuid.UUID | str) -> uuid.UUID:
    """The tenant as a UUID: anything else is refused before it can reach the SQL."""
    return tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(str(tenant_id))


def invariant_queries(dialect_name: str, tenant_id: uuid.UUID | str) -> dict[str, str]:
    """Every invariant's offending-rows SQL for one tenant, `{batch}` left for GX."""
    dialect = _Dialect.of(dialect_name, _tenant(tenant_id))
    return {inv.key: inv.sql(dialect).strip() for inv in INVARIANTS}


def check_by_sql(connection: Connection, tenant_id: uuid.UUID | str) -> dict[str, int]:
    """The same checks without GX, on the caller's connection: each invariant's query run once
    with `{batch}` read as its table; the number of offending rows per invariant. What the GX
    suites are measured against (GX runs each query twice, and builds and records its results)."""
    queries = invariant_queries(connection.dialect.name, tenant_id)
    tables = {inv.key: inv.table for inv in INVARIANTS}
    return {
        key: len(connection.execute(text(sql.replace("{batch}", tables[key]))).all())
        for key, sql in queries.items()
    }


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


def _outcome(invariant: Invariant, validation: Any) -> ExpectationOutcome:
    details = validation.result or {}
    exception = validation.exception_info or {}
    # GX reports a failed metric under the metric's id, or flat; either way, one message.
    raised = [exception] if "raised_exception" in exception else list(exception.values())
    errors = [str(e.get("exception_message")) for e in raised if e.get("raised_exception")]
    rows = (details.get("details") or {}).get("unexpected_rows") or []
    return ExpectationOutcome(
        key=invariant.key,
        name=invariant.name,
        description=invariant.description,
        success=bool(validation.success) and not errors,
        count=int(details.get("observed_value") or 0),
        offending=[
            {column: _json_safe(column, value) for column, value in dict(row).items()}
            for row in rows[:MAX_OFFENDING_ROWS]
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
    one SQL data source (its own engine, so: committed data only) and one table asset per
    table the invariants read. `run` can then be called for tenant after tenant; `close`
    disposes of the engine (its connections to PostgreSQL)."""

    def __init__(self, database: DatabaseLike, *, data_docs_dir: Path | None = None) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        self.url = _url(database)
        self.data_docs_dir = data_docs_dir
        if data_docs_dir is not None:
            data_docs_dir.mkdir(parents=True, exist_ok=True)
        with _GX_LOCK:
            self._context = _context(data_docs_dir)
            self._source = self._add_source()
            self._batches = {
                table: self._source.add_table_asset(
                    table, table_name=table
                ).add_batch_definition_whole_table(table)
                for table in dict.fromkeys(inv.table for inv in INVARIANTS)
            }

    def _add_source(self) -> SQLDatasource:
        connection_string = self.url.render_as_string(hide_password=False)
        if self.url.get_backend_name() == "postgresql":
            return self._context.data_sources.add_postgres(
                SUITE_NAME, connection_string=connection_string
            )
        return self._context.data_sources.add_sqlite(
            SUITE_NAME, connection_string=connection_string
        )

    @property
    def dialect_name(self) -> str:
        return self.url.get_backend_name()

    def run(self, tenant_id: uuid.UUID | str, *, run_name: str | None = None) -> SuiteResult:
        """Validate every invariant for one tenant; write Data Docs if a directory was given.

        Returns success False with each broken invariant and its offending rows rather than
        raising. `seconds` covers building and running the suites (not GX's import)."""
        tenant = _tenant(tenant_id)
        run_name = run_name or f"ledger-{tenant}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        started = time.perf_counter()
        dialect = _Dialect.of(self.dialect_name, tenant)
        with _GX_LOCK:
            result = self._validate(dialect, run_name)
        outcomes = self._outcomes(result)
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

    def _validate(self, dialect: _Dialect, run_name: str) -> CheckpointResult:
        """One suite per table asset, each expectation one invariant; one checkpoint over them
        (and, with a Data Docs site, the action that renders this run's results)."""
        import great_expectations as gx
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context import set_context

        set_context(self._context)  # another GX user in this process may have replaced it
        definitions = []
        for table, batch in self._batches.items():
            name = f"{SUITE_NAME}-v{SUITE_VERSION}-{table}"
            suite = gx.ExpectationSuite(
                name=name, meta={"quire_suite": SUITE_NAME, "quire_suite_version": SUITE_VERSION}
            )
            for invariant in (inv for inv in INVARIANTS if inv.table == table):
                suite.add_expectation(
                    gx.expectations.UnexpectedRowsExpectation(
                        unexpected_rows_query=invariant.sql(dialect),
                        description=invariant.name,
                        notes=invariant.description,
                        meta={"quire_check": invariant.key},
                        catch_exceptions=True,
                    )
                )
            suite = self._context.suites.add_or_update(suite)
            definitions.append(
                self._context.validation_definitions.add_or_update(
                    gx.ValidationDefinition(name=name, data=batch, suite=suite)
                )
            )
        checkpoint = self._context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{SUITE_NAME}-v{SUITE_VERSION}",
                validation_definitions=definitions,
                result_format={"result_format": "COMPLETE"},
            )
        )
        result = checkpoint.run(run_id=RunIdentifier(run_name=run_name))
        if self.data_docs_dir is not None:
            # One build for the run's validation results (and the index), not one per suite
            # as UpdateDataDocsAction does: each build compiles GX's page templates again.
            self._context.build_data_docs(
                site_names=[SUITE_NAME], resource_identifiers=list(result.run_results)
            )
        return result

    @staticmethod
    def _outcomes(result: CheckpointResult) -> list[ExpectationOutcome]:
        """Each invariant's outcome, in the order of INVARIANTS."""
        by_key: Mapping[str, Invariant] = {inv.key: inv for inv in INVARIANTS}
        found = {}
        for suite_result in result.run_results.values():
            for validation in suite_result.results:
                key = (validation.expectation_config.meta or {})["quire_check"]
                found[key] = _outcome(by_key[key], validation)
        return [found[inv.key] for inv in INVARIANTS]

    def close(self) -> None:
        """Dispose of the data source's engine (GX keeps one per data source)."""
        with _GX_LOCK:
            self._source.get_engine().dispose()

    def __enter__(self) -> LedgerSuites:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


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
