"""Sliding-window rate limits and account-independent login failure streaks

The fixed-window `rate_limit_counters` (VARCHAR(300) keys that a long email overflowed) become
`rate_limit_logs`: one row per SHA-256 key holding the expiry of each admitted attempt still in
its window. `login_failures` counts failed logins per hashed (tenant, email), real or not, so an
unknown account locks exactly like a real one. Both hold only short-lived state: nothing is
carried over (at worst a client gets one fresh window and one fresh failure streak).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rate_limit_counters", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_limit_counters_window")
    op.drop_table("rate_limit_counters")

    op.create_table(
        "rate_limit_logs",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column(
            "hits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_logs")),
    )
    with op.batch_alter_table("rate_limit_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rate_limit_logs_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_failures_last_failure_at"), ["last_failure_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failures_last_failure_at"))
    op.drop_table("login_failures")

    with op.batch_alter_table("rate_limit_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rate_limit_logs_expires_at"))
    op.drop_table("rate_limit_logs")

    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_rate_limit_counters")),
    )
    with op.batch_alter_table("rate_limit_counters", schema=None) as batch_op:
        batch_op.create_index("ix_rate_limit_counters_window", ["window_start"], unique=False)
