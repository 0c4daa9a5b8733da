"""QA: near-duplicate signatures and their LSH bands

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 22:51:51.402213
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qa_signatures",
        sa.Column("submission_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("shingles", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_qa_signatures_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_qa_signatures_submission_id_submissions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_qa_signatures_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("submission_id", name=op.f("pk_qa_signatures")),
    )
    with op.batch_alter_table("qa_signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qa_signatures_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "qa_signature_bands",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("submission_id", sa.Uuid(), nullable=False),
        sa.Column("band", sa.SmallInteger(), nullable=False),
        sa.Column("band_hash", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["qa_signatures.submission_id"],
            name=op.f("fk_qa_signature_bands_submission_id_qa_signatures"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_qa_signature_bands_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("submission_id", "band", name=op.f("pk_qa_signature_bands")),
    )
    with op.batch_alter_table("qa_signature_bands", schema=None) as batch_op:
        # The near-duplicate lookup: tenant, then band hash; covering, so no table access.
        batch_op.create_index(
            "ix_qa_signature_bands_lookup",
            ["tenant_id", "band_hash", "submission_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("qa_signature_bands", schema=None) as batch_op:
        batch_op.drop_index("ix_qa_signature_bands_lookup")

    op.drop_table("qa_signature_bands")
    with op.batch_alter_table("qa_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qa_signatures_tenant_id"))

    op.drop_table("qa_signatures")
