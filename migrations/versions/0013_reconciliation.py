"""Reconciliation: bank statements and their lines, reconciliation runs, matches, exceptions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 14:52:50.119485

A statement is stored once per tenant (by the bank's id for its account; the file's sha256
finds a re-upload); a bank line has at most one live match and at most one open exception,
and a payout line at most one open exception: partial unique indexes on both engines.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bank_statements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("statement_id", sa.String(length=35), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("format", sa.String(length=24), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("opening_minor", sa.BigInteger(), nullable=False),
        sa.Column("opening_date", sa.Date(), nullable=False),
        sa.Column("closing_minor", sa.BigInteger(), nullable=False),
        sa.Column("closing_date", sa.Date(), nullable=False),
        sa.Column("created_by_bank_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_bank_statements_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["users.id"], name=op.f("fk_bank_statements_uploaded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_statements")),
        sa.UniqueConstraint(
            "tenant_id",
            "account",
            "statement_id",
            name=op.f("uq_bank_statements_tenant_id_account_statement_id"),
        ),
    )
    with op.batch_alter_table("bank_statements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bank_statements_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "ix_bank_statements_tenant_sha256", ["tenant_id", "sha256"], unique=False
        )

    op.create_table(
        "bank_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("statement_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=True),
        sa.Column("bank_reference", sa.String(length=64), nullable=True),
        sa.Column("customer_reference", sa.String(length=64), nullable=True),
        sa.Column("counterparty_name", sa.String(length=140), nullable=True),
        sa.Column("counterparty_account", sa.String(length=64), nullable=True),
        sa.Column("remittance", sa.Text(), nullable=True),
        sa.Column("transaction_code", sa.String(length=64), nullable=True),
        sa.Column("returned", sa.Boolean(), nullable=False),
        sa.Column("return_reason", sa.String(length=64), nullable=True),
        sa.Column("raw_reference", sa.String(length=140), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("amount_minor <> 0", name=op.f("ck_bank_lines_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["bank_statements.id"],
            name=op.f("fk_bank_lines_statement_id_bank_statements"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_bank_lines_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_lines")),
        sa.UniqueConstraint(
            "statement_id", "position", name=op.f("uq_bank_lines_statement_id_position")
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("bank_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bank_lines_statement_id"), ["statement_id"], unique=False
        )
        batch_op.create_index(
            "ix_bank_lines_tenant_amount", ["tenant_id", "currency", "amount_minor"], unique=False
        )
        batch_op.create_index(
            "ix_bank_lines_tenant_end_to_end", ["tenant_id", "end_to_end_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_bank_lines_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "reconciliations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=True),
        sa.Column("statement_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "suites",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("flow_run_id", sa.Uuid(), nullable=True),
        sa.Column("started_by", sa.Uuid(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'clean', 'exceptions', 'failed')",
            name=op.f("ck_reconciliations_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["started_by"], ["users.id"], name=op.f("fk_reconciliations_started_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["bank_statements.id"],
            name=op.f("fk_reconciliations_statement_id_bank_statements"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_reconciliations_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliations")),
    )
    with op.batch_alter_table("reconciliations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliations_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "bank_matches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("reconciliation_id", sa.Uuid(), nullable=False),
        sa.Column(
            "bank_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("rule", sa.String(length=20), nullable=False),
        sa.Column(
            "payroll_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("payroll_file_id", sa.Uuid(), nullable=True),
        sa.Column("reference", sa.String(length=140), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column(
            "transfer_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("matched_by", sa.Uuid(), nullable=True),
        sa.Column("undone", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_line_id"],
            ["bank_lines.id"],
            name=op.f("fk_bank_matches_bank_line_id_bank_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["matched_by"], ["users.id"], name=op.f("fk_bank_matches_matched_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["payroll_file_id"],
            ["payroll_files.id"],
            name=op.f("fk_bank_matches_payroll_file_id_payroll_files"),
        ),
        sa.ForeignKeyConstraint(
            ["payroll_line_id"],
            ["payroll_lines.id"],
            name=op.f("fk_bank_matches_payroll_line_id_payroll_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["reconciliation_id"],
            ["reconciliations.id"],
            name=op.f("fk_bank_matches_reconciliation_id_reconciliations"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_bank_matches_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_matches")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("bank_matches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bank_matches_payroll_line", ["tenant_id", "payroll_line_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_bank_matches_reconciliation_id"), ["reconciliation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_bank_matches_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "uq_bank_matches_live_line",
            ["bank_line_id"],
            unique=True,
            postgresql_where=sa.text("NOT undone"),
            sqlite_where=sa.text("NOT undone"),
        )

    op.create_table(
        "reconciliation_exceptions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("reconciliation_id", sa.Uuid(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column(
            "bank_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "payroll_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("resolution", sa.String(length=500), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(bank_line_id IS NULL) <> (payroll_line_id IS NULL)",
            name=op.f("ck_reconciliation_exceptions_one_side"),
        ),
        sa.ForeignKeyConstraint(
            ["bank_line_id"],
            ["bank_lines.id"],
            name=op.f("fk_reconciliation_exceptions_bank_line_id_bank_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["payroll_line_id"],
            ["payroll_lines.id"],
            name=op.f("fk_reconciliation_exceptions_payroll_line_id_payroll_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["reconciliation_id"],
            ["reconciliations.id"],
            name=op.f("fk_reconciliation_exceptions_reconciliation_id_reconciliations"),
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"],
            ["users.id"],
            name=op.f("fk_reconciliation_exceptions_resolved_by_users"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_reconciliation_exceptions_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_exceptions")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_exceptions_reconciliation_id"),
            ["reconciliation_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_reconciliation_exceptions_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "uq_reconciliation_exceptions_open_bank_line",
            ["bank_line_id"],
            unique=True,
            postgresql_where=sa.text("status = 'open' AND bank_line_id IS NOT NULL"),
            sqlite_where=sa.text("status = 'open' AND bank_line_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_reconciliation_exceptions_open_payroll_line",
            ["payroll_line_id"],
            unique=True,
            postgresql_where=sa.text("status = 'open' AND payroll_line_id IS NOT NULL"),
            sqlite_where=sa.text("status = 'open' AND payroll_line_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_reconciliation_exceptions_open_payroll_line",
            postgresql_where=sa.text("status = 'open' AND payroll_line_id IS NOT NULL"),
            sqlite_where=sa.text("status = 'open' AND payroll_line_id IS NOT NULL"),
        )
        batch_op.drop_index(
            "uq_reconciliation_exceptions_open_bank_line",
            postgresql_where=sa.text("status = 'open' AND bank_line_id IS NOT NULL"),
            sqlite_where=sa.text("status = 'open' AND bank_line_id IS NOT NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_reconciliation_id"))

    op.drop_table("reconciliation_exceptions")
    with op.batch_alter_table("bank_matches", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_bank_matches_live_line",
            postgresql_where=sa.text("NOT undone"),
            sqlite_where=sa.text("NOT undone"),
        )
        batch_op.drop_index(batch_op.f("ix_bank_matches_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_bank_matches_reconciliation_id"))
        batch_op.drop_index("ix_bank_matches_payroll_line")

    op.drop_table("bank_matches")
    with op.batch_alter_table("reconciliations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliations_tenant_id"))

    op.drop_table("reconciliations")
    with op.batch_alter_table("bank_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bank_lines_tenant_id"))
        batch_op.drop_index("ix_bank_lines_tenant_end_to_end")
        batch_op.drop_index("ix_bank_lines_tenant_amount")
        batch_op.drop_index(batch_op.f("ix_bank_lines_statement_id"))

    op.drop_table("bank_lines")
    with op.batch_alter_table("bank_statements", schema=None) as batch_op:
        batch_op.drop_index("ix_bank_statements_tenant_sha256")
        batch_op.drop_index(batch_op.f("ix_bank_statements_tenant_id"))

    op.drop_table("bank_statements")
