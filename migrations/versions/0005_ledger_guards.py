"""Ledger guards no session can defeat: the commit-time balance check and frozen accounts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00.000000

Supersedes the PostgreSQL guards of 0002 (issue 8). There, the insert guards queued one deferred
check per transaction with `INSERT INTO ledger_commit_checks ... ON CONFLICT DO NOTHING` and the
check trusted the queued row's `txid`: a session that inserted a row itself (any txid, then
UPDATEd to `txid_current()`), or that fired the check early with `SET CONSTRAINTS ALL IMMEDIATE`
and then added entries, committed an unbalanced transfer.

The design here, and why no session can defeat it (an attacker with the app's connection and
role, every trigger on; DDL — dropping or replacing triggers and functions — is out of reach of
any trigger and is a matter of roles, see ledger/README.md):

- The check never reads a value a session wrote: it checks every transfer whose `txid` is
  `txid_current()` (its own transaction, at the time it fires). Transfers carry their own
  transaction id (refused otherwise) and are append-only, and entries can only be added to
  transfers of the current transaction, so that set is every transfer the transaction touched.
- `ledger_commit_checks` is an append-only journal: each row is "a check is armed" (`passed`
  false; its insert queues the deferred constraint trigger, whoever inserts it) or "a check
  passed" (`passed` true, written by the check itself; it queues nothing). Its rows must carry
  the inserting transaction's id (so no transaction can pre-arm another's), and UPDATE, DELETE
  and TRUNCATE are refused.
- Every statement that inserts transfers or entries arms a check unless an armed check of this
  transaction is still pending, i.e. unless an armed row exists and no check has passed yet in
  this transaction. An armed row's check is pending until it fires, and when it passes it
  writes a passed row (rolled back, with the firing itself, if a savepoint is rolled back). So
  after a check passed early (`SET CONSTRAINTS ... IMMEDIATE`) every later write arms a new
  one; forged rows only ever add checks. The last write of a transaction is therefore always
  followed by a check of the whole transaction. In normal use (deferred) that is one armed row,
  one check and one passed row per transaction, whatever the number of statements.
- Every function runs with `search_path = pg_catalog, pg_temp` and names the ledger's tables
  and functions schema-qualified: a temporary table cannot shadow a ledger table, and no operator
  or function a session creates (in `public`, say: PostgreSQL prefers an exact-type operator
  anywhere on the path over a pg_catalog one needing a cast) is ever resolved by a guard, whose
  comparisons name exact types besides (`0::numeric`, `::text`). 0002's invoice guard is
  replaced for the same reason.
- Every guard trigger is `ENABLE ALWAYS`: `session_replication_role = replica` does not turn
  it off.

Entries are in their account's currency and tenant, and in their transfer's tenant (a transfer
balanced only across tenants is off in each).

Accounts: once an account has entries, every column but `balance` is frozen. Currency, tenant,
owner (`owner_type`, `owner_id`, `owner_key`) and `kind` say what its entries mean (an entry is
in its account's currency and tenant; `kind` decides whose money it is); `normal_side` decides
the sign its balance is shown with and `no_negative` is the rule its balance was kept under;
`id` and `created_at` are facts. Only `balance` moves, maintained by posting in the same
transaction as the entries. Before its first entry an account may still be corrected freely.
The freeze reads a flag on the account's own row, `has_entries`, which the entries insert guard
sets (once, never reset) and which the freeze itself keeps: flagging is an UPDATE of the row, so
on PostgreSQL a change racing an account's first entries conflicts with them on that row,
whatever either side's isolation level. A change that waited for them sees the flag (READ
COMMITTED re-reads the row) or fails to serialize (REPEATABLE READ, SERIALIZABLE), and so does
one whose snapshot is older than them; entries that waited for a change see it, because the
insert guard locks every account it names (in id order, as posting does) before it looks at
their currency and tenant. (A snapshot cannot see entries committed after it, so a look at
ledger_entries could not do this.) No table-wide lock: posting never waits for an account change
of another account.
"""

from collections.abc import Sequence
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column of ledger_accounts but `balance` (see the module docstring), with the type each is
# compared as: varchar has no `=` of its own in pg_catalog (it is compared as text), so it is cast
# to text, and every comparison names a type pg_catalog has an exact operator for. (A trigger's
# WHEN clause is resolved when the migration creates it, under the migration's search_path.)
FROZEN_ACCOUNT_COLUMNS = {
    "id": "",
    "tenant_id": "",
    "kind": "::text",
    "owner_type": "::text",
    "owner_id": "",
    "owner_key": "::text",
    "currency": "::text",
    "normal_side": "::text",
    "no_negative": "",
    "created_at": "",
    "has_entries": "",  # never reset once set
}
ACCOUNT_CHANGED = " OR ".join(
    f"OLD.{c}{cast} IS DISTINCT FROM NEW.{c}{cast}" for c, cast in FROZEN_ACCOUNT_COLUMNS.items()
)
SQLITE_ACCOUNT_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in FROZEN_ACCOUNT_COLUMNS)

# Triggers of this migration and 0002 that must fire whatever session_replication_role says.
ALWAYS_TRIGGERS = (
    ("ledger_transfers_append_only", "ledger_transfers"),
    ("ledger_entries_append_only", "ledger_entries"),
    ("ledger_transfers_guard", "ledger_transfers"),
    ("ledger_entries_guard", "ledger_entries"),
    ("ledger_commit_checks_own_txid", "ledger_commit_checks"),
    ("ledger_commit_checks_append_only", "ledger_commit_checks"),
    ("ledger_balanced_at_commit", "ledger_commit_checks"),
    ("ledger_accounts_frozen", "ledger_accounts"),
    ("ledger_invoices_frozen", "ledger_invoices"),
)

# {s} is the ledger's schema, quoted; every table and function is named with it. Every function
# pins `search_path = pg_catalog, pg_temp`: no schema a session can create objects in is searched
# (pg_temp is never searched for operators or functions, and its tables cannot shadow the
# schema-qualified names), so every operator and function resolves in pg_catalog. Comparisons
# name exact types all the same (`0::numeric`, `::text`): an exact match in pg_catalog is never
# passed over for one elsewhere.
POSTGRES_GUARDS = """
CREATE OR REPLACE FUNCTION {s}.ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is not allowed (%)', TG_OP, TG_TABLE_NAME,
        coalesce(TG_ARGV[0], 'append-only; post a reversal instead')
        USING ERRCODE = 'restrict_violation';
END $$;

-- Arm a check of this transaction unless one is already pending (see the module docstring).
CREATE FUNCTION {s}.ledger_arm_commit_check() RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    armed boolean;
    passed boolean;
BEGIN
    SELECT bool_or(NOT c.passed), bool_or(c.passed) INTO armed, passed
    FROM {s}.ledger_commit_checks c WHERE c.txid = txid_current();
    IF armed IS NOT TRUE OR passed THEN
        INSERT INTO {s}.ledger_commit_checks (txid, passed) VALUES (txid_current(), false);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION {s}.ledger_transfers_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_transfers WHERE txid IS DISTINCT FROM txid_current()) THEN
        RAISE EXCEPTION 'ledger: a transfer must carry its own transaction id'
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM {s}.ledger_arm_commit_check();
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION {s}.ledger_entries_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stale boolean;
    foreign_tenant boolean;
    mismatched boolean;
    fresh uuid[];
BEGIN
    -- Each transfer and each account the statement names is looked up once (DISTINCT: three
    -- entries a transfer, thousands an account), by its primary key: a LATERAL lookup cannot be
    -- turned into a scan of the whole table, whatever this cached plan was planned for. A
    -- transfer that does not exist is left to the foreign key.
    SELECT bool_or(t.txid IS DISTINCT FROM txid_current()), bool_or(t.tenant_id <> n.tenant_id)
    INTO stale, foreign_tenant
    FROM (SELECT DISTINCT transfer_id, tenant_id FROM new_entries) n
    CROSS JOIN LATERAL (
        SELECT t.txid, t.tenant_id FROM {s}.ledger_transfers t WHERE t.id = n.transfer_id LIMIT 1
    ) t;
    IF stale THEN
        RAISE EXCEPTION 'ledger: entries can only be added together with their transfer'
            USING ERRCODE = 'check_violation';
    ELSIF foreign_tenant THEN
        RAISE EXCEPTION 'ledger: an entry must be in its transfer''s tenant'
            USING ERRCODE = 'check_violation';
    END IF;
    -- Every account the statement names is locked, in id order (the order posting locks them
    -- in, right after: one order, no deadlock), and looked at as it is now: a change of its
    -- currency or tenant committed while this waited is seen (READ COMMITTED: the lock returns
    -- the newest version) or fails to serialize (REPEATABLE READ, SERIALIZABLE). An account's
    -- first entries flag it (has_entries, an UPDATE of its row), and the flag freezes it (see
    -- ledger_accounts_frozen): a change racing them waits for this transaction and then sees
    -- the flag, or fails to serialize. The flag is written once per account, ever.
    SELECT bool_or(a.currency::text <> n.currency::text OR a.tenant_id <> n.tenant_id),
           array_agg(a.id) FILTER (WHERE NOT a.has_entries)
    INTO mismatched, fresh
    FROM (SELECT DISTINCT account_id, currency, tenant_id FROM new_entries ORDER BY account_id) n
    CROSS JOIN LATERAL (
        SELECT a.id, a.currency, a.tenant_id, a.has_entries FROM {s}.ledger_accounts a
        WHERE a.id = n.account_id
        FOR NO KEY UPDATE
    ) a;
    IF mismatched THEN
        RAISE EXCEPTION 'ledger: an entry must match its account''s currency and tenant'
            USING ERRCODE = 'check_violation';
    END IF;
    IF fresh IS NOT NULL THEN
        UPDATE {s}.ledger_accounts a SET has_entries = true WHERE a.id = ANY (fresh);
    END IF;
    PERFORM {s}.ledger_arm_commit_check();
    RETURN NULL;
END $$;

-- A journal row belongs to the transaction that writes it: no transaction can arm (or fake a
-- passed check for) another one's txid.
CREATE FUNCTION {s}.ledger_commit_check_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.txid IS DISTINCT FROM txid_current() THEN
        RAISE EXCEPTION 'ledger: a commit check must carry its own transaction id'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

-- One pass over the transaction's transfers, each with its entries summed per currency. A group
-- whose sum is not zero does not balance; a transfer without entries comes out of the LEFT JOIN
-- with a NULL sum. That is the whole ">= 2 entries" rule: amounts are never zero (CHECK), so a
-- single entry cannot balance. LATERAL makes the plan one index lookup of entries per transfer
-- of the transaction, whatever the planner guesses; EXECUTE plans it for this txid (a cached
-- generic plan may not use the txid index and read every transfer ever posted). The txid is the
-- transaction's own, never the row's: nothing a session writes decides what is checked. (The
-- sum is numeric: it is compared with a numeric zero, an operator pg_catalog has exactly.)
CREATE OR REPLACE FUNCTION {s}.ledger_check_at_commit() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad record;
BEGIN
    EXECUTE $sql$
        SELECT t.id AS transfer_id, s.currency, s.off
        FROM {s}.ledger_transfers t
        LEFT JOIN LATERAL (
            SELECT e.currency, sum(e.amount) AS off
            FROM {s}.ledger_entries e WHERE e.transfer_id = t.id
            GROUP BY e.currency
        ) s ON true
        WHERE t.txid = $1 AND s.off IS DISTINCT FROM 0::numeric
        LIMIT 1
    $sql$ INTO bad USING txid_current();
    IF bad.transfer_id IS NOT NULL AND bad.off IS NULL THEN
        RAISE EXCEPTION 'ledger: transfer % has fewer than two entries', bad.transfer_id
            USING ERRCODE = 'check_violation';
    ELSIF bad.transfer_id IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: transfer % does not balance in % (off by %)',
            bad.transfer_id, bad.currency, bad.off USING ERRCODE = 'check_violation';
    END IF;
    -- From here on, a write of this transaction must arm a new check.
    INSERT INTO {s}.ledger_commit_checks (txid, passed) VALUES (txid_current(), true);
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_commit_checks_own_txid BEFORE INSERT ON {s}.ledger_commit_checks
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_commit_check_inserted();
CREATE TRIGGER ledger_commit_checks_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON {s}.ledger_commit_checks FOR EACH STATEMENT
    EXECUTE FUNCTION {s}.ledger_refuse_change('the commit-check journal is append-only');
CREATE CONSTRAINT TRIGGER ledger_balanced_at_commit AFTER INSERT ON {s}.ledger_commit_checks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NOT NEW.passed) EXECUTE FUNCTION {s}.ledger_check_at_commit();

-- Fires only for a flagged account whose frozen columns (the flag among them) change. OLD is the
-- row as it is now, locked (under READ COMMITTED, the version a concurrent posting committed):
-- flagging is an UPDATE of the row, so a change racing an account's first entries either waits
-- for them and sees the flag, or fails to serialize (REPEATABLE READ, SERIALIZABLE).
CREATE FUNCTION {s}.ledger_account_frozen() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'ledger: account % has entries; only its balance can change',
        OLD.id USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_accounts_frozen BEFORE UPDATE ON {s}.ledger_accounts
    FOR EACH ROW WHEN (OLD.has_entries AND ({changed}))
    EXECUTE FUNCTION {s}.ledger_account_frozen();

-- 0002's, with its search_path pinned and its comparisons exact (varchar as text).
CREATE OR REPLACE FUNCTION {s}.ledger_invoice_frozen() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger: invoices are never deleted; void them'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status::text <> 'draft'::text AND (
        NEW.lines IS DISTINCT FROM OLD.lines OR NEW.total_minor <> OLD.total_minor
        OR NEW.currency::text <> OLD.currency::text OR NEW.specialist_id <> OLD.specialist_id
        OR NEW.period::text <> OLD.period::text OR NEW.version <> OLD.version
    ) THEN
        RAISE EXCEPTION 'ledger: invoice % is %, its content cannot change; issue a correction',
            OLD.id, OLD.status USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
"""

POSTGRES_GUARDS_DOWN = """
DROP TRIGGER IF EXISTS ledger_accounts_frozen ON {s}.ledger_accounts;
DROP FUNCTION IF EXISTS {s}.ledger_account_frozen();
DROP FUNCTION IF EXISTS {s}.ledger_commit_check_inserted();
DROP FUNCTION IF EXISTS {s}.ledger_arm_commit_check();
"""

SQLITE_GUARDS = [
    f"""CREATE TRIGGER ledger_accounts_frozen BEFORE UPDATE ON ledger_accounts
        WHEN OLD.has_entries AND ({SQLITE_ACCOUNT_CHANGED})
        BEGIN
            SELECT RAISE(ABORT, 'ledger: the account has entries; only its balance can change');
        END""",
    # (One writer at a time: the flag is set before any other transaction can look.)
    """CREATE TRIGGER ledger_entries_flag_account AFTER INSERT ON ledger_entries
       BEGIN
           UPDATE ledger_accounts SET has_entries = 1 WHERE id = NEW.account_id AND NOT has_entries;
       END""",
    "DROP TRIGGER ledger_entries_match_account",
    """CREATE TRIGGER ledger_entries_match_account BEFORE INSERT ON ledger_entries
       WHEN (SELECT currency FROM ledger_accounts WHERE id = NEW.account_id) IS NOT NEW.currency
         OR (SELECT tenant_id FROM ledger_accounts WHERE id = NEW.account_id) IS NOT NEW.tenant_id
       BEGIN
           SELECT RAISE(ABORT, 'ledger: an entry must match its account''s currency and tenant');
       END""",
    # A transfer that does not exist is left to the foreign key.
    """CREATE TRIGGER ledger_entries_match_transfer BEFORE INSERT ON ledger_entries
       WHEN EXISTS (SELECT 1 FROM ledger_transfers
                    WHERE id = NEW.transfer_id AND tenant_id IS NOT NEW.tenant_id)
       BEGIN
           SELECT RAISE(ABORT, 'ledger: an entry must be in its transfer''s tenant');
       END""",
    *(
        f"""CREATE TRIGGER ledger_commit_checks_no_{op.lower()} BEFORE {op} ON ledger_commit_checks
            BEGIN
                SELECT RAISE(ABORT, 'ledger: {op} on ledger_commit_checks is not allowed');
            END"""
        for op in ("UPDATE", "DELETE")
    ),
]

SQLITE_GUARDS_DOWN = [
    "DROP TRIGGER IF EXISTS ledger_accounts_frozen",
    "DROP TRIGGER IF EXISTS ledger_entries_flag_account",
    "DROP TRIGGER IF EXISTS ledger_entries_match_transfer",
    "DROP TRIGGER IF EXISTS ledger_commit_checks_no_update",
    "DROP TRIGGER IF EXISTS ledger_commit_checks_no_delete",
    "DROP TRIGGER ledger_entries_match_account",
]


def _schema() -> str:
    """The ledger's schema, quoted: where ledger_transfers is, whatever the search_path."""
    return op.get_bind().scalar(
        sa.text(
            "SELECT quote_ident(n.nspname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = 'ledger_transfers'::regclass"
        )
    )


def _create_journal() -> None:
    op.create_table(
        "ledger_commit_checks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_commit_checks")),
    )
    with op.batch_alter_table("ledger_commit_checks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_commit_checks_txid"), ["txid"], unique=False)


def _ledger_0002() -> ModuleType:
    """Migration 0002, whose guards the downgrade puts back as they were."""
    spec = spec_from_file_location("ledger_0002", Path(__file__).with_name("0002_ledger.py"))
    assert spec is not None
    assert spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # 0002's queue (empty between transactions) becomes the append-only journal.
    op.drop_table("ledger_commit_checks")  # on PostgreSQL, with its trigger
    _create_journal()
    # The freeze's flag, set on the accounts that already have entries (no guard is on yet).
    op.add_column(
        "ledger_accounts",
        sa.Column("has_entries", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE ledger_accounts SET has_entries = true WHERE EXISTS"
        " (SELECT 1 FROM ledger_entries e WHERE e.account_id = ledger_accounts.id)"
    )
    if postgres:
        s = _schema()
        op.execute(POSTGRES_GUARDS.format(s=s, changed=ACCOUNT_CHANGED))
        for trigger, table in ALWAYS_TRIGGERS:
            op.execute(f"ALTER TABLE {s}.{table} ENABLE ALWAYS TRIGGER {trigger}")
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    ledger_0002 = _ledger_0002()
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        s = _schema()
        op.drop_table("ledger_commit_checks")  # with its triggers
        op.execute(POSTGRES_GUARDS_DOWN.format(s=s))
        op.execute(ledger_0002.POSTGRES_GUARDS_DOWN)
    else:
        for statement in SQLITE_GUARDS_DOWN:
            op.execute(statement)
        op.drop_table("ledger_commit_checks")
    op.execute("ALTER TABLE ledger_accounts DROP COLUMN has_entries")
    op.create_table(
        "ledger_commit_checks",
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("txid", name=op.f("pk_ledger_commit_checks")),
    )
    if postgres:
        op.execute(ledger_0002.POSTGRES_GUARDS)
    else:
        op.execute(
            next(g for g in ledger_0002.SQLITE_GUARDS if "ledger_entries_match_account" in g)
        )
