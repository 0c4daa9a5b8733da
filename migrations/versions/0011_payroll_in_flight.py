"""One payroll run in flight per tenant

Two unposted runs of two periods would compute the same payables and pay them twice (or fail
the second): at most one run per tenant may be draft, awaiting approval or approved (dry runs
aside), a partial unique index on both engines.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FLIGHT = "NOT dry_run AND status IN ('draft', 'awaiting_approval', 'approved')"


def upgrade() -> None:
    with op.batch_alter_table("payroll_runs", schema=None) as batch_op:
        batch_op.create_index(
            "uq_payroll_runs_in_flight",
            ["tenant_id"],
            unique=True,
            postgresql_where=sa.text(IN_FLIGHT),
            sqlite_where=sa.text(IN_FLIGHT),
        )


def downgrade() -> None:
    with op.batch_alter_table("payroll_runs", schema=None) as batch_op:
        batch_op.drop_index("uq_payroll_runs_in_flight")
