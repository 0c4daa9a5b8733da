"""A demo tenant with one person per role and a few orders, for trying the API by hand."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from quire.db import Database, utcnow
from quire.orders import service as orders
from quire.orders.models import OrderMode
from quire.orders.schemas import OrderDraft
from quire.payroll import payout_details
from quire.payroll.models import PayoutDetails, PayrollProfile
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
    ("finance2@demo.quire", "Fiona Controller", [Role.FINANCE], None),  # the second pair of eyes
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

# Where the specialists are paid (kept long enough ago that no cooling period holds them), and
# the account the consultancy pays from.
BANK_DETAILS = {
    "writer1@demo.quire": {"scheme": "iban", "iban": "DE89370400440532013000"},
    "writer2@demo.quire": {
        "scheme": "local",
        "country": "JP",
        "bank_code": "0001001",
        "account_number": "1234567",
    },
}
DEBTOR = ("Demo Consultancy GmbH", "DE02120300000000202051", "BYLADEM1001")

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
        for email, details in BANK_DETAILS.items():
            user = users[email]
            account = payout_details.validate_account(account_holder=user.display_name, **details)
            row = PayoutDetails(tenant_id=tenant.id, user_id=user.id, created_at=utcnow())
            payout_details.apply(row, account, now=utcnow() - dt.timedelta(days=90))
            session.add(row)
        name, iban, bic = DEBTOR
        session.add(
            PayrollProfile(
                tenant_id=tenant.id,
                debtor_name=name,
                debtor_iban=iban,
                debtor_bic=bic,
                time_zone="Europe/Berlin",
                minimum_payouts={"EUR": 1_000, "JPY": 1_000},
                updated_at=utcnow(),
            )
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
