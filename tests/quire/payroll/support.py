"""A payroll-ready tenant: specialists with payout currencies, bank details, earnings in
several currencies, the tenant's payroll profile, and one day's ECB rates."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from ledger import business
from quire.db import Database, utcnow
from quire.payroll.fx_rates import RateTable
from quire.payroll.models import PayoutDetails, PayrollProfile
from quire.people import service as people
from quire.people.models import Role, SpecialistProfile
from quire.people.schemas import UserDraft
from tests.support.world import PASSWORD, Person, World, build_world

# One day's rates, as the ECB publishes them (units per EUR); KWD is not an ECB currency but the
# provider format carries any code, and it has 3 decimals.
RATES = RateTable(
    provider="www.ecb.europa.eu",
    rate_date=dt.date(2026, 11, 30),
    per_eur={
        "USD": Decimal("1.0812"),
        "JPY": Decimal("162.35"),
        "GBP": Decimal("0.8531"),
        "KWD": Decimal("0.3321"),
    },
)

IBANS = {
    "DE": "DE89370400440532013000",
    "FR": "FR1420041010050500013M02606",
    "NL": "NL91ABNA0417164300",
    "KW": "KW81CBKU0000000000001234560101",
    "GB": "GB29NWBK60161331926819",
    "ES": "ES9121000418450200051332",
    "IT": "IT60X0542811101000000123456",
    "BE": "BE68539007547034",
}


@dataclass
class PayrollWorld:
    world: World
    database: Database
    specialists: dict[str, Person] = field(default_factory=dict)

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.world.tenant_id

    def id(self, name: str) -> uuid.UUID:
        return self.specialists[name].id


def fingerprint(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()


def add_specialist(pw: PayrollWorld, name: str, payout_currency: str) -> Person:
    with pw.database.session(pw.tenant_id, write=True) as session:
        email = f"{name}@{pw.world.slug}.test"
        user = people.add_user(
            session,
            pw.tenant_id,
            UserDraft(
                email=email,
                display_name=name.title(),
                password=PASSWORD,
                roles=[Role.SPECIALIST],
                profile={"payout_currency": payout_currency, "skills": ["copywriting"]},
            ),
        )
        person = Person(user.id, email, list(user.roles), pw.tenant_id, pw.world.slug)
    pw.specialists[name] = person
    pw.world.people[name] = person
    return person


def bank_details(
    pw: PayrollWorld,
    name: str,
    *,
    iban: str | None = None,
    account_number: str | None = None,
    bank_code: str | None = None,
    country: str = "DE",
    on_hold: bool = False,
    hold_reason: str | None = None,
    changed_days_ago: int = 60,
) -> None:
    scheme = "iban" if iban else "local"
    identifier = iban or f"{country}:{bank_code}:{account_number}"
    with pw.database.session(pw.tenant_id, write=True) as session:
        session.add(
            PayoutDetails(
                tenant_id=pw.tenant_id,
                user_id=pw.id(name),
                scheme=scheme,
                account_holder=name.title(),
                iban=iban,
                bic=None,
                account_number=account_number,
                bank_code=bank_code,
                country=(iban or country)[:2],
                account_fingerprint=fingerprint(identifier),
                details_changed_at=utcnow() - dt.timedelta(days=changed_days_ago),
                on_hold=on_hold,
                hold_reason=hold_reason,
                created_at=utcnow(),
            )
        )


def earn(pw: PayrollWorld, name: str, amount_minor: int, currency: str) -> None:
    """An accepted order's earnings (no platform fee): the specialist's payable grows."""
    with pw.database.session(pw.tenant_id, write=True) as session:
        business.post_earnings(
            session,
            order_id=uuid.uuid4(),
            specialist_id=pw.id(name),
            gross_minor=amount_minor,
            currency=currency,
        )


def payroll_profile(pw: PayrollWorld, minimums: dict[str, int] | None = None) -> None:
    with pw.database.session(pw.tenant_id, write=True) as session:
        existing = session.scalar(select(PayrollProfile))
        if existing is not None:
            existing.minimum_payouts = minimums or {}
            return
        session.add(
            PayrollProfile(
                tenant_id=pw.tenant_id,
                debtor_name=f"{pw.world.slug.title()} Consulting GmbH",
                debtor_iban="DE02120300000000202051",
                debtor_bic="BYLADEM1001",
                time_zone="Europe/Berlin",
                minimum_payouts=minimums or {},
                updated_at=utcnow(),
            )
        )


def set_payout_currency(pw: PayrollWorld, name: str, currency: str) -> None:
    with pw.database.session(pw.tenant_id, write=True) as session:
        session.execute(
            update(SpecialistProfile)
            .where(SpecialistProfile.user_id == pw.id(name))
            .values(payout_currency=currency)
        )


def build_payroll_world(database: Database, slug: str) -> PayrollWorld:
    """The standard cast:

    - ana (EUR, DE IBAN): 1,200.00 EUR and 300.00 USD earned -> two lines, both paid in EUR;
    - ken (JPY, a local JP account): 500.00 EUR -> JPY, 0 decimals;
    - fatima (KWD, KW IBAN): 250.00 USD -> KWD through EUR, 3 decimals;
    - holly (EUR): on hold by finance;
    - chris (EUR): changed bank details 3 days ago (cooling period);
    - nadia (EUR): no bank details;
    - tim (EUR): 3.00 EUR, under a 5.00 EUR minimum.
    """
    world = build_world(database, slug, specialists=0)
    with database.session(world.tenant_id, write=True) as session:
        people.add_user(
            session,
            world.tenant_id,
            UserDraft(
                email=f"finance2@{slug}.test",
                display_name="Second Finance",
                password=PASSWORD,
                roles=[Role.FINANCE],
            ),
        )
    pw = PayrollWorld(world, database)
    for name, currency in [
        ("ana", "EUR"),
        ("ken", "JPY"),
        ("fatima", "KWD"),
        ("holly", "EUR"),
        ("chris", "EUR"),
        ("nadia", "EUR"),
        ("tim", "EUR"),
    ]:
        add_specialist(pw, name, currency)
    bank_details(pw, "ana", iban=IBANS["DE"])
    bank_details(pw, "ken", account_number="1234567", bank_code="0001001", country="JP")
    bank_details(pw, "fatima", iban=IBANS["KW"])
    bank_details(pw, "holly", iban=IBANS["FR"], on_hold=True, hold_reason="contract dispute")
    bank_details(pw, "chris", iban=IBANS["NL"], changed_days_ago=3)
    bank_details(pw, "tim", iban=IBANS["BE"])
    earn(pw, "ana", 120_000, "EUR")
    earn(pw, "ana", 30_000, "USD")
    earn(pw, "ken", 50_000, "EUR")
    earn(pw, "fatima", 25_000, "USD")
    earn(pw, "holly", 40_000, "EUR")
    earn(pw, "chris", 10_000, "EUR")
    earn(pw, "nadia", 7_000, "EUR")
    earn(pw, "tim", 300, "EUR")
    payroll_profile(pw, {"EUR": 500})
    return pw


def this_period() -> str:
    """The current month: its cutoff is after every entry the tests post 'now'."""
    today = dt.datetime.now(dt.UTC).date()
    return f"{today.year:04d}-{today.month:02d}"


def line_of(frame: Any, name: str, pw: PayrollWorld, source: str) -> dict[str, Any]:
    rows = frame[
        (frame["specialist_id"] == str(pw.id(name))) & (frame["source_currency"] == source)
    ]
    assert len(rows) == 1, rows
    return rows.iloc[0].to_dict()
