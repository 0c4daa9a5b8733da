"""What every flow's tasks need to act inside one tenant: its id from its slug, and the request
id the audit log records for a flow's actions."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from quire.people.models import Tenant
from tasks.database import flow_database


def tenant_id_of(slug: str) -> uuid.UUID:
    with flow_database().session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if tenant_id is None:
        raise ValueError(f"no tenant {slug!r}")
    return tenant_id


def this_flow_run() -> str | None:
    """`flow-run:<id>`: what the audit log records as the request id of a flow's actions."""
    from prefect.runtime import flow_run

    return f"flow-run:{flow_run.get_id()}" if flow_run.get_id() else None
