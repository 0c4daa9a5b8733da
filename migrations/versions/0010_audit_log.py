"""The audit log: one append-only table, guarded by the database

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 04:34:23.669155

`audit_log` rows are only ever inserted. As for the ledger (ledger/README.md, invariant 2), the
database refuses the rest, whatever session asks: on PostgreSQL statement-level triggers refuse
UPDATE, DELETE and TRUNCATE (statement level, so even an UPDATE or DELETE matching no row is
refused, and TRUNCATE, which fires no row trigger, is covered), `ENABLE ALWAYS` so that
`session_replication_role = replica` does not switch them off; their function searches
pg_catalog only and names the table's schema explicitly. On SQLite, triggers refuse UPDATE and
DELETE (it has no TRUNCATE). Dropping the triggers is DDL: a matter of roles, not of triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# {s}: the audit log's schema, quoted.
POSTGRES_GUARDS = """
CREATE FUNCTION {s}.audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'audit log: % on % is not allowed (append-only)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {s}.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_log_refuse_change();
ALTER TABLE {s}.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
"""

POSTGRES_GUARDS_DOWN = """
DROP TRIGGER IF EXISTS audit_log_append_only ON {s}.audit_log;
DROP FUNCTION IF EXISTS {s}.audit_log_refuse_change();
"""

SQLITE_GUARDS = [
    f"""CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log
        BEGIN
            SELECT RAISE(ABORT, 'audit log: {verb} on audit_log is not allowed (append-only)');
        END"""
    for verb in ("UPDATE", "DELETE")
]

SQLITE_GUARDS_DOWN = [
    "DROP TRIGGER IF EXISTS audit_log_no_update",
    "DROP TRIGGER IF EXISTS audit_log_no_delete",
]


def _schema() -> str:
    """The audit log's schema, quoted: where the table is, whatever the search_path."""
    return op.get_bind().scalar(
        sa.text(
            "SELECT quote_ident(n.nspname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = 'audit_log'::regclass"
        )
    )


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_roles", JSON, nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.Column("domain", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_log_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_audit_log_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index(
            "ix_audit_log_tenant_object",
            ["tenant_id", "object_type", "object_id", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_audit_log_tenant_actor", ["tenant_id", "actor_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_audit_log_tenant_action", ["tenant_id", "action", "id"], unique=False
        )
        batch_op.create_index(
            "ix_audit_log_tenant_domain", ["tenant_id", "domain", "id"], unique=False
        )
        batch_op.create_index("ix_audit_log_tenant_at", ["tenant_id", "at"], unique=False)

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
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_tenant_at")
        batch_op.drop_index("ix_audit_log_tenant_domain")
        batch_op.drop_index("ix_audit_log_tenant_action")
        batch_op.drop_index("ix_audit_log_tenant_actor")
        batch_op.drop_index("ix_audit_log_tenant_object")
        batch_op.drop_index("ix_audit_log_tenant_id_id")
        batch_op.drop_index(batch_op.f("ix_audit_log_tenant_id"))
    op.drop_table("audit_log")
