"""Alembic migrations: the only way Quire's schema is created or changed."""

from __future__ import annotations

from sqlalchemy import MetaData

# Every package that maps tables: the kernel's, then each domain's. A new domain adds its models
# module here (the migrations are the one place that must see every table at once).
MODEL_MODULES = (
    "quire.auth.models",
    "quire.events.models",
    "quire.audit.models",
    "quire.idempotency",
    "quire.people.models",
    "quire.orders.models",
    "quire.qa.models",
    "quire.payroll.models",
    "quire.reconciliation.models",
    "quire.lifecycle.models",
    "ledger.models",
)


def target_metadata() -> MetaData:
    """Every mapped table of every package (importing the model modules registers them)."""
    import importlib

    from quire.db import Base

    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata
