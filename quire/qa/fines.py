"""The late-fine policy: how much of a late order's fee the specialist forfeits.

Rule: lateness is `submitted_at - deadline`. Within the grace period there is no fine. Past it,
every *started* day of lateness, counted from the deadline itself (grace forgives a little
lateness; it does not move the deadline), costs `percent_per_day` of the fee, up to `cap_percent`.
Amounts are integers in minor units; the arithmetic is Decimal with banker's rounding, never float.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from quire.money import validate_amount, validate_currency
from quire.settings import Settings

DAY = dt.timedelta(days=1)
HUNDRED = Decimal(100)


class LateFinePolicy(BaseModel):
    """Configurable per deployment (settings) and shown in the Prefect UI as a typed form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grace: dt.timedelta = Field(
        default=dt.timedelta(0), description="Lateness forgiven entirely (no fine within it)."
    )
    percent_per_day: Decimal = Field(
        default=Decimal(5), ge=0, le=100, description="Percent of the fee per started day late."
    )
    cap_percent: Decimal = Field(
        default=Decimal(50), ge=0, le=100, description="The fine never exceeds this percent."
    )

    @model_validator(mode="after")
    def _non_negative_grace(self) -> LateFinePolicy:
        if self.grace < dt.timedelta(0):
            raise ValueError("grace cannot be negative")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> LateFinePolicy:
        """The policy a deployment's settings describe (`QUIRE_LATE_FINE_*`)."""
        grace_seconds = (settings.late_fine_grace_hours * 3600).to_integral_value(ROUND_HALF_EVEN)
        return cls(
            grace=dt.timedelta(seconds=int(grace_seconds)),
            percent_per_day=settings.late_fine_percent_per_day,
            cap_percent=settings.late_fine_cap_percent,
        )


class LateFine(BaseModel):
    """How a fine came about, for the ledger's description and the QA report."""

    model_config = ConfigDict(frozen=True)

    amount_minor: int
    currency: str
    days_late: int
    percent: Decimal

    @property
    def applies(self) -> bool:
        return self.amount_minor > 0


def days_late(submitted_at: dt.datetime, deadline: dt.datetime) -> int:
    """Started days past the deadline: one second late is one day, 24h01m late is two."""
    if submitted_at.tzinfo is None or deadline.tzinfo is None:
        raise ValueError("submitted_at and deadline must be timezone-aware")
    late = submitted_at - deadline
    if late <= dt.timedelta(0):
        return 0
    whole_days, rest = divmod(late, DAY)
    return whole_days + (1 if rest else 0)


def assess_late_fine(
    fee_minor: int,
    currency: str,
    submitted_at: dt.datetime,
    deadline: dt.datetime,
    policy: LateFinePolicy,
) -> LateFine:
    """The fine with its reasons (days late, percent applied)."""
    validate_amount(fee_minor)
    validate_currency(currency)
    days = days_late(submitted_at, deadline)
    if days == 0 or submitted_at - deadline <= policy.grace:
        return LateFine(amount_minor=0, currency=currency, days_late=days, percent=Decimal(0))
    percent = min(policy.percent_per_day * days, policy.cap_percent)
    amount = (Decimal(fee_minor) * percent / HUNDRED).quantize(Decimal(1), ROUND_HALF_EVEN)
    return LateFine(amount_minor=int(amount), currency=currency, days_late=days, percent=percent)
