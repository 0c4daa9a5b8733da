"""Alembic migrations: the only way Quire's schema is created or changed."""
