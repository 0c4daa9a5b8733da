"""Alembic migrations: the only way Quire's schema is created or changed."""

from __future__ import annotations

from sqlalchemy import MetaData


def target_metadata() -> MetaData:
    """Every mapped table of every package (importing the model modules registers them)."""
    import ledger.models
    import quire.models

    assert ledger.models.Base is quire.models.Base
    return quire.models.Base.metadata
