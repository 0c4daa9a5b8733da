"""The event NOTIFY trigger function resolves nothing through the session's search_path

`quire_notify_event` (0001) ran with the caller's search_path, so a role allowed to create
objects in a schema on that path could shadow `pg_notify` for every event insert. Like the
ledger's functions since 0005, it now looks in pg_catalog only (PostgreSQL; SQLite has no
such trigger).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION quire_notify_event() SET search_path = pg_catalog, pg_temp")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION quire_notify_event() RESET search_path")
