"""Tenant isolation in one place.

Every ORM statement run through a Session gets `tenant_id = <the session's tenant>` added to each
tenant-owned entity it touches (SELECT, UPDATE and DELETE, joins and relationship loads included).
Code never writes that filter by hand, so no route can forget it: another tenant's row is simply
not there, and looks exactly like a missing one. A session without a tenant refuses to touch
tenant-owned data unless the statement opts out with `ALL_TENANTS` (system jobs such as
maintenance and the outbox relay, which act across tenants on purpose).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import ForeignKey, event
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, with_loader_criteria
from sqlalchemy.sql.util import find_tables

ALL_TENANTS = {"all_tenants": True}


class TenantScopeMissing(RuntimeError):
    """A tenant-owned table was queried from a session that names no tenant."""


class TenantScoped:
    """Mixin for every table that belongs to a tenant."""

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), index=True)


def _all_mappers() -> list[Any]:
    from quire.db import Base

    return list(Base.registry.mappers)


def _touches_tenant_data(state: ORMExecuteState) -> bool:
    """Does the statement read or write a tenant-owned table anywhere (FROM, joins, subqueries)?"""
    if any(issubclass(mapper.class_, TenantScoped) for mapper in state.all_mappers):
        return True
    tenant_tables = {
        mapper.local_table for mapper in _all_mappers() if issubclass(mapper.class_, TenantScoped)
    }
    found = find_tables(
        state.statement, check_columns=True, include_aliases=True, include_crud=True
    )
    return any(table in tenant_tables for table in found)


@event.listens_for(Session, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    options = state.execution_options
    if options.get("all_tenants") or state.is_column_load or state.is_relationship_load:
        return
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None:
        if _touches_tenant_data(state):
            raise TenantScopeMissing("this session has no tenant; pass one or use ALL_TENANTS")
        return
    # Applied to every statement: it only adds criteria where a tenant-owned entity appears.
    state.statement = state.statement.options(_criteria_for(tenant_id))


@lru_cache(maxsize=4096)
def _criteria_for(tenant_id: UUID) -> Any:
    """The scoping option for one tenant, built once: building it costs more than applying it."""
    return with_loader_criteria(
        TenantScoped,
        lambda cls: cls.tenant_id == tenant_id,
        include_aliases=True,
        track_closure_variables=True,
    )


def tenant_of(session: Session) -> UUID:
    tenant_id: Any = session.info.get("tenant_id")
    if tenant_id is None:
        raise TenantScopeMissing("this session has no tenant")
    return tenant_id
