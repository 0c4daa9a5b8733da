"""A demo tenant with one person per role and a few orders, for trying the API by hand."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from quire.db import Database, utcnow
from quire.orders import service as orders
from quire.orders.models import OrderMode
from quire.orders.schemas import OrderDraft
from quire.people import service as people
from quire.people.actor import Actor
from quire.people.models import Role, Tenant
from quire.people.schemas import UserDraft

DEMO_TENANT = "demo"
DEMO_PASSWORD = "quire-demo-password"

PEOPLE = [
    ("admin@demo.quire", "Ada Admin", [Role.ADMIN, Role.MANAGER], None),
    ("manager@demo.quire", "Max Manager", [Role.MANAGER], None),
    ("reviewer@demo.quire", "Rae Reviewer", [Role.REVIEWER], None),
    ("finance@demo.quire", "Fin Finance", [Role.FINANCE], None),
    (
        "writer1@demo.quire",
        "Sam Writer",
        [Role.SPECIALIST],
        {"payout_currency": "EUR", "skills": ["copywriting"]},
    ),
    (
        "writer2@demo.quire",
        "Kim Editor",
        [Role.SPECIALIST],
        {"payout_currency": "JPY", "skills": ["editing"]},
    ),
]

ORDERS = [
    ("Landing page copy for a fintech launch", "copywriting", 45_000, "USD", OrderMode.CLAIM),
    ("Edit a 3,000-word white paper", "editing", 30_000, "EUR", OrderMode.CLAIM),
    ("Product descriptions, 40 SKUs", "copywriting", 1_200_000, "JPY", OrderMode.BIDDING),
]


def seed_demo(database: Database) -> bool:
    """Create the demo tenant unless it exists. Returns True when something was created."""
    with database.session(write=True) as session:
        if session.scalar(select(Tenant.id).where(Tenant.slug == DEMO_TENANT)) is not None:
            return False
        tenant = people.create_tenant(session, DEMO_TENANT, "Demo Consultancy")
        session.info["tenant_id"] = tenant.id
        users = {}
        for email, name, roles, profile in PEOPLE:
            users[email] = people.add_user(
                session,
                tenant.id,
                UserDraft(
                    email=email,
                    display_name=name,
                    password=DEMO_PASSWORD,
                    roles=roles,
                    profile=profile,
                ),
            )
        manager = users["manager@demo.quire"]
        actor = Actor(manager.id, tenant.id, frozenset(manager.roles))
        for title, skill, fee, currency, mode in ORDERS:
            orders.create_order(
                session,
                actor,
                OrderDraft(
                    title=title,
                    brief=f"{title}. Tone: clear, confident, no jargon.",
                    skill=skill,
                    fee_minor=fee,
                    currency=currency,
                    mode=mode,
                    deadline=utcnow() + dt.timedelta(days=7),
                    publish=True,
                ),
            )
    return True
