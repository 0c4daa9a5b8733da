"""Ledger: accounts, transfers, entries, invoices, and the database's own guards

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:22:31.904487
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Invariants the database enforces on its own, whatever SQL reaches it:
# - transfers and entries are append-only (UPDATE, DELETE, TRUNCATE refused);
# - entries are only added together with their transfer, in the same transaction;
# - at commit, every transfer of the transaction balances per currency and has >= 2 entries
#   (one deferred check per transaction, set-based: a row in ledger_commit_checks triggers it);
# - an issued invoice's content is never edited.
POSTGRES_GUARDS = """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is not allowed (append-only; post a reversal instead)',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_transfers_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON ledger_transfers FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON ledger_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

ALTER TABLE ledger_transfers ALTER COLUMN txid SET DEFAULT txid_current();

CREATE FUNCTION ledger_transfers_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_transfers WHERE txid IS DISTINCT FROM txid_current()) THEN
        RAISE EXCEPTION 'ledger: a transfer must carry its own transaction id'
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO ledger_commit_checks (txid) VALUES (txid_current()) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_transfers_guard AFTER INSERT ON ledger_transfers
    REFERENCING NEW TABLE AS new_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_transfers_inserted();

CREATE FUNCTION ledger_entries_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Each transfer and each account the statement names is looked up once (DISTINCT: three
    -- entries a transfer, thousands an account), by its primary key: a LATERAL lookup cannot be
    -- turned into a scan of the whole table, whatever this cached plan was planned for.
    IF EXISTS (
        SELECT 1 FROM (SELECT DISTINCT transfer_id FROM new_entries) n
        CROSS JOIN LATERAL (
            SELECT t.txid FROM ledger_transfers t WHERE t.id = n.transfer_id LIMIT 1
        ) t
        WHERE t.txid IS DISTINCT FROM txid_current()
    ) THEN
        RAISE EXCEPTION 'ledger: entries can only be added together with their transfer'
            USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM (SELECT DISTINCT account_id, currency, tenant_id FROM new_entries) n
        CROSS JOIN LATERAL (
            SELECT a.currency, a.tenant_id FROM ledger_accounts a WHERE a.id = n.account_id LIMIT 1
        ) a
        WHERE a.currency <> n.currency OR a.tenant_id <> n.tenant_id
    ) THEN
        RAISE EXCEPTION 'ledger: an entry must match its account''s currency and tenant'
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO ledger_commit_checks (txid) VALUES (txid_current()) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_guard AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_inserted();

-- One pass over the transaction's transfers, each with its entries summed per currency. A group
-- whose sum is not zero does not balance; a transfer without entries comes out of the LEFT JOIN
-- with a NULL sum. That is the whole ">= 2 entries" rule: amounts are never zero (CHECK), so a
-- single entry cannot balance. LATERAL makes the plan one index lookup of entries per transfer
-- of the transaction, whatever the planner guesses; EXECUTE plans it for this txid (a cached
-- generic plan may not use the txid index and read every transfer ever posted).
CREATE FUNCTION ledger_check_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    EXECUTE $sql$
        SELECT t.id AS transfer_id, s.currency, s.off
        FROM ledger_transfers t
        LEFT JOIN LATERAL (
            SELECT e.currency, sum(e.amount) AS off
            FROM ledger_entries e WHERE e.transfer_id = t.id
            GROUP BY e.currency
        ) s ON true
        WHERE t.txid = $1 AND s.off IS DISTINCT FROM 0
        LIMIT 1
    $sql$ INTO bad USING NEW.txid;
    IF bad.transfer_id IS NOT NULL AND bad.off IS NULL THEN
        RAISE EXCEPTION 'ledger: transfer % has fewer than two entries', bad.transfer_id
            USING ERRCODE = 'check_violation';
    ELSIF bad.transfer_id IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: transfer % does not balance in % (off by %)',
            bad.transfer_id, bad.currency, bad.off USING ERRCODE = 'check_violation';
    END IF;
    DELETE FROM ledger_commit_checks WHERE txid = NEW.txid;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_balanced_at_commit AFTER INSERT ON ledger_commit_checks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_at_commit();

CREATE FUNCTION ledger_invoice_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger: invoices are never deleted; void them'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status <> 'draft' AND (
        NEW.lines IS DISTINCT FROM OLD.lines OR NEW.total_minor <> OLD.total_minor
        OR NEW.currency <> OLD.currency OR NEW.specialist_id <> OLD.specialist_id
        OR NEW.period <> OLD.period OR NEW.version <> OLD.version
    ) THEN
        RAISE EXCEPTION 'ledger: invoice % is %, its content cannot change; issue a correction',
            OLD.id, OLD.status USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_invoices_frozen BEFORE UPDATE OR DELETE ON ledger_invoices
    FOR EACH ROW EXECUTE FUNCTION ledger_invoice_frozen();
"""

POSTGRES_GUARDS_DOWN = """
DROP TRIGGER IF EXISTS ledger_invoices_frozen ON ledger_invoices;
DROP TRIGGER IF EXISTS ledger_balanced_at_commit ON ledger_commit_checks;
DROP TRIGGER IF EXISTS ledger_entries_guard ON ledger_entries;
DROP TRIGGER IF EXISTS ledger_transfers_guard ON ledger_transfers;
DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries;
DROP TRIGGER IF EXISTS ledger_transfers_append_only ON ledger_transfers;
DROP FUNCTION IF EXISTS ledger_invoice_frozen();
DROP FUNCTION IF EXISTS ledger_check_at_commit();
DROP FUNCTION IF EXISTS ledger_entries_inserted();
DROP FUNCTION IF EXISTS ledger_transfers_inserted();
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""

# SQLite has no deferred triggers: balance at commit is the application's job there.
SQLITE_GUARDS = [
    *(
        f"""CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
            BEGIN
                SELECT RAISE(ABORT, 'ledger: {op} on {table} is not allowed (append-only)');
            END"""
        for table in ("ledger_transfers", "ledger_entries")
        for op in ("UPDATE", "DELETE")
    ),
    """CREATE TRIGGER ledger_entries_match_account BEFORE INSERT ON ledger_entries
       WHEN (SELECT currency FROM ledger_accounts WHERE id = NEW.account_id) IS NOT NEW.currency
       BEGIN SELECT RAISE(ABORT, 'ledger: an entry must match its account''s currency'); END""",
    """CREATE TRIGGER ledger_invoices_frozen BEFORE UPDATE ON ledger_invoices
       WHEN OLD.status <> 'draft' AND (
           NEW.lines IS NOT OLD.lines OR NEW.total_minor <> OLD.total_minor
           OR NEW.currency <> OLD.currency OR NEW.specialist_id <> OLD.specialist_id
           OR NEW.period <> OLD.period OR NEW.version <> OLD.version)
       BEGIN
           SELECT RAISE(ABORT, 'ledger: an issued invoice cannot change; issue a correction');
       END""",
    """CREATE TRIGGER ledger_invoices_no_delete BEFORE DELETE ON ledger_invoices
       BEGIN SELECT RAISE(ABORT, 'ledger: invoices are never deleted; void them'); END""",
]


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("owner_key", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("normal_side", sa.String(length=6), nullable=False),
        sa.Column("no_negative", sa.Boolean(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "NOT no_negative OR "
            "(CASE WHEN normal_side = 'debit' THEN balance ELSE -balance END) >= 0",
            name=op.f("ck_ledger_accounts_no_negative_balance"),
        ),
        sa.CheckConstraint(
            "normal_side IN ('debit', 'credit')", name=op.f("ck_ledger_accounts_normal_side_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_accounts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint(
            "tenant_id",
            "kind",
            "owner_key",
            "currency",
            name=op.f("uq_ledger_accounts_tenant_id_kind_owner_key_currency"),
        ),
    )
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_accounts_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reverses_id", sa.Uuid(), nullable=True),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_transfers_reverses_id_ledger_transfers"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_transfers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_ledger_transfers_reverses_id")),
        sa.UniqueConstraint(
            "tenant_id",
            "idempotency_key",
            name=op.f("uq_ledger_transfers_tenant_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("ledger_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_transfers_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ledger_transfers_txid"), ["txid"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_entries_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_entries_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_entries_transfer_id_ledger_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entries_account_time", ["account_id", "effective_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_transfer_id"), ["transfer_id"], unique=False
        )

    op.create_table(
        "ledger_commit_checks",
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("txid", name=op.f("pk_ledger_commit_checks")),
    )
    op.create_table(
        "ledger_invoices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("specialist_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "lines",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("supersedes_id", sa.Uuid(), nullable=True),
        sa.Column("lock_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'issued', 'paid', 'void')",
            name=op.f("ck_ledger_invoices_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["specialist_id"], ["users.id"], name=op.f("fk_ledger_invoices_specialist_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["ledger_invoices.id"],
            name=op.f("fk_ledger_invoices_supersedes_id_ledger_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_invoices_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_invoices")),
        sa.UniqueConstraint(
            "tenant_id",
            "specialist_id",
            "period",
            "version",
            name=op.f("uq_ledger_invoices_tenant_id_specialist_id_period_version"),
        ),
    )
    with op.batch_alter_table("ledger_invoices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_invoices_specialist_id"), ["specialist_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_invoices_tenant_id"), ["tenant_id"], unique=False
        )

    # ### end Alembic commands ###
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_GUARDS)
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_GUARDS_DOWN)
    op.drop_table("ledger_commit_checks")
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("ledger_invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_invoices_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_invoices_specialist_id"))

    op.drop_table("ledger_invoices")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_transfer_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_tenant_id"))
        batch_op.drop_index("ix_ledger_entries_account_time")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("ledger_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_transfers_txid"))
        batch_op.drop_index(batch_op.f("ix_ledger_transfers_tenant_id"))

    op.drop_table("ledger_transfers")
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_accounts_tenant_id"))

    op.drop_table("ledger_accounts")
    # ### end Alembic commands ###
