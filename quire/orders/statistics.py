"""How the marketplace stands: orders per status (overall and per tenant) and the outbox
backlog, across every tenant, for the maintenance flow's log line and artifact."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quire.db import utcnow
from quire.events.models import Event
from quire.orders.models import Order
from quire.orders.state import OrderStatus
from quire.people.models import Tenant
from quire.tenancy import ALL_TENANTS


def marketplace_statistics(session: Session, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """How the marketplace stands, for the hourly log line and the maintenance artifact.

    JSON-ready: orders per status overall and per tenant (by slug; every status present, zeros
    included, so tables line up), and the outbox backlog: how many events wait for the relay and
    how old the oldest is. A growing backlog is the first sign the relay (or Prefect) is down.
    """
    now = now or utcnow()
    by_tenant: dict[str, dict[str, int]] = {}
    overall = _zero_counts()
    for slug, status, count in session.execute(
        select(Tenant.slug, Order.status, func.count())
        .join(Tenant, Tenant.id == Order.tenant_id)
        .group_by(Tenant.slug, Order.status)
        .order_by(Tenant.slug)
        .execution_options(**ALL_TENANTS)
    ):
        by_tenant.setdefault(slug, _zero_counts())[status] = count
        overall[status] = overall.get(status, 0) + count
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "orders": overall,
        "orders_by_tenant": by_tenant,
        "outbox": _outbox_backlog(session, now),
    }


def _zero_counts() -> dict[str, int]:
    return {status.value: 0 for status in OrderStatus}


def _outbox_backlog(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Both queries read only the `ix_events_unrelayed` partial index's rows."""
    unrelayed = Event.relayed_at.is_(None)
    waiting = session.scalar(
        select(func.count()).select_from(Event).where(unrelayed).execution_options(**ALL_TENANTS)
    )
    oldest = session.scalar(
        select(Event.created_at)
        .where(unrelayed)
        .order_by(Event.id)
        .limit(1)
        .execution_options(**ALL_TENANTS)
    )
    age = None if oldest is None else max(0.0, round((now - oldest).total_seconds(), 3))
    return {"unrelayed": waiting or 0, "oldest_unrelayed_age_seconds": age}
