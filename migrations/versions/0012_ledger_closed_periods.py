"""Closed accounting periods: the database refuses entries dated in one

Revision ID: 0012
Revises: 0011

`ledger_closed_periods` holds each close of a tenant's period as the instant range it covers
([starts_at, ends_at), fixed at close time from the tenant's time zone, so no trigger needs to
know about time zones). While a closure is not reopened, no entry whose `effective_at` falls in
its range may be inserted (ledger/README.md, invariant 8):

- PostgreSQL: a statement-level insert trigger on `ledger_entries` joins the statement's new
  entries (a transition table) with the tenant's open closures, once per statement, and is
  `ENABLE ALWAYS`; its function pins `search_path` and names tables by schema, like the other
  ledger guards (0005).
- SQLite: a BEFORE INSERT row trigger does the same lookup per entry.

Closures are history: they are never deleted, and the only change allowed is the reopen, once
(`reopened_at`, `reopened_by`, `reopen_reason` from NULL to set; nothing else). Both engines
refuse the rest with triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "reopened_at IS NULL"

# {s}: the ledger's schema, quoted.
POSTGRES_GUARDS = """
CREATE FUNCTION {s}.ledger_entries_in_open_period() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    closed text;
BEGIN
    SELECT p.period INTO closed
    FROM new_entries n
    JOIN {s}.ledger_closed_periods p
      ON p.tenant_id = n.tenant_id
     AND p.reopened_at IS NULL
     AND n.effective_at >= p.starts_at
     AND n.effective_at < p.ends_at
    LIMIT 1;
    IF closed IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: period % is closed: no entry dated in it may be added', closed
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_open_period AFTER INSERT ON {s}.ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_entries_in_open_period();
ALTER TABLE {s}.ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_open_period;

CREATE FUNCTION {s}.ledger_closed_period_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.reopened_at IS NULL AND NEW.reopened_at IS NOT NULL
       AND NEW.id = OLD.id AND NEW.tenant_id = OLD.tenant_id
       AND NEW.period::text = OLD.period::text
       AND NEW.starts_at = OLD.starts_at AND NEW.ends_at = OLD.ends_at
       AND NEW.closed_at = OLD.closed_at
       AND NEW.closed_by IS NOT DISTINCT FROM OLD.closed_by THEN
        RETURN NEW;  -- the reopen, once
    END IF;
    RAISE EXCEPTION 'ledger: a closed period is history: only its reopen (once) may change it'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_closed_periods_history BEFORE UPDATE OR DELETE ON {s}.ledger_closed_periods
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_closed_period_changed();
ALTER TABLE {s}.ledger_closed_periods ENABLE ALWAYS TRIGGER ledger_closed_periods_history;
CREATE FUNCTION {s}.ledger_closed_periods_no_truncate() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'ledger: TRUNCATE on ledger_closed_periods is not allowed'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_closed_periods_no_truncate BEFORE TRUNCATE ON {s}.ledger_closed_periods
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_closed_periods_no_truncate();
ALTER TABLE {s}.ledger_closed_periods ENABLE ALWAYS TRIGGER ledger_closed_periods_no_truncate;
"""

POSTGRES_GUARDS_DOWN = """
DROP TRIGGER IF EXISTS ledger_entries_open_period ON {s}.ledger_entries;
DROP FUNCTION IF EXISTS {s}.ledger_entries_in_open_period();
DROP TRIGGER IF EXISTS ledger_closed_periods_history ON {s}.ledger_closed_periods;
DROP FUNCTION IF EXISTS {s}.ledger_closed_period_changed();
DROP TRIGGER IF EXISTS ledger_closed_periods_no_truncate ON {s}.ledger_closed_periods;
DROP FUNCTION IF EXISTS {s}.ledger_closed_periods_no_truncate();
"""

SQLITE_GUARDS = [
    """CREATE TRIGGER ledger_entries_open_period BEFORE INSERT ON ledger_entries
       WHEN EXISTS (SELECT 1 FROM ledger_closed_periods p
                    WHERE p.tenant_id = NEW.tenant_id AND p.reopened_at IS NULL
                      AND NEW.effective_at >= p.starts_at AND NEW.effective_at < p.ends_at)
       BEGIN
           SELECT RAISE(ABORT, 'ledger: the period is closed: no entry dated in it may be added');
       END""",
    """CREATE TRIGGER ledger_closed_periods_history BEFORE UPDATE ON ledger_closed_periods
       WHEN NOT (OLD.reopened_at IS NULL AND NEW.reopened_at IS NOT NULL
                 AND NEW.id IS OLD.id AND NEW.tenant_id IS OLD.tenant_id
                 AND NEW.period IS OLD.period AND NEW.starts_at IS OLD.starts_at
                 AND NEW.ends_at IS OLD.ends_at AND NEW.closed_at IS OLD.closed_at
                 AND NEW.closed_by IS OLD.closed_by)
       BEGIN
           SELECT RAISE(ABORT, 'ledger: a closed period is history: only its reopen may change it');
       END""",
    """CREATE TRIGGER ledger_closed_periods_no_delete BEFORE DELETE ON ledger_closed_periods
       BEGIN
           SELECT RAISE(ABORT, 'ledger: a closed period is history: it cannot be deleted');
       END""",
]

SQLITE_GUARDS_DOWN = [
    "DROP TRIGGER IF EXISTS ledger_entries_open_period",
    "DROP TRIGGER IF EXISTS ledger_closed_periods_history",
    "DROP TRIGGER IF EXISTS ledger_closed_periods_no_delete",
]


def _schema() -> str:
    """The ledger's schema, quoted: where its tables are, whatever the search_path."""
    return op.get_bind().scalar(
        sa.text(
            "SELECT quote_ident(n.nspname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = 'ledger_entries'::regclass"
        )
    )


def upgrade() -> None:
    op.create_table(
        "ledger_closed_periods",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.Uuid(), nullable=True),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reopened_by", sa.Uuid(), nullable=True),
        sa.Column("reopen_reason", sa.String(length=500), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(reopened_at IS NULL) = (reopen_reason IS NULL)",
            name=op.f("ck_ledger_closed_periods_reopen_has_reason"),
        ),
        sa.CheckConstraint(
            "starts_at < ends_at", name=op.f("ck_ledger_closed_periods_range_ordered")
        ),
        sa.ForeignKeyConstraint(
            ["closed_by"], ["users.id"], name=op.f("fk_ledger_closed_periods_closed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["reopened_by"], ["users.id"], name=op.f("fk_ledger_closed_periods_reopened_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_closed_periods_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_closed_periods")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("ledger_closed_periods", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_closed_periods_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "uq_ledger_closed_periods_open",
            ["tenant_id", "period"],
            unique=True,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_GUARDS.format(s=_schema()))
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_GUARDS_DOWN.format(s=_schema()))
    else:
        for statement in SQLITE_GUARDS_DOWN:
            op.execute(statement)
    with op.batch_alter_table("ledger_closed_periods", schema=None) as batch_op:
        batch_op.drop_index("uq_ledger_closed_periods_open")
        batch_op.drop_index(batch_op.f("ix_ledger_closed_periods_tenant_id"))
    op.drop_table("ledger_closed_periods")
