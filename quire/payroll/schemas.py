"""Payroll's shapes: bank details, holds, the payroll profile and the runs (requests and answers).

The bounds here are structural (lengths, characters, the two schemes), so the OpenAPI schema
states them and over-long or binary input is refused before any work; what only a bank's rules
can decide (check digits, a country's formats, a BIC in the IBAN's country) is
`quire.payroll.payout_details`' to check, and comes back as a 422 naming the field as well.
"""

from __future__ import annotations

import datetime as dt
import uuid
from types import EllipsisType
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ledger.balances import PERIOD
from quire.money import MAX_AMOUNT_MINOR, CurrencyCode, whole_number
from quire.payroll.approvals import ApprovalChoice
from quire.payroll.models import PayoutScheme
from quire.schemas import Input, Output


def iban_field(default: EllipsisType | None = ...) -> Any:
    """An IBAN as people type it (required unless `default=None`); a little room over 34
    characters for the spaces and hyphens."""
    return Field(
        default,
        min_length=5,
        max_length=48,
        pattern=r"^[A-Za-z0-9 -]+$",
        description="Electronic (DE89370400440532013000) or paper form (DE89 3704 ...); stored "
        "upper case without spaces or hyphens.",
    )


BIC_INPUT_PATTERN = r"^[A-Za-z]{6}[A-Za-z0-9]{2}([A-Za-z0-9]{3})?$"
HOLDER = Field(
    min_length=1,
    max_length=140,
    description="As the bank knows the account's owner (ISO 20022 Max140Text): trimmed, no "
    "control or invisible characters.",
)
MINIMUMS_MAX = 200
# A minimum payout: 0 (none) up to the largest amount Quire handles, in minor units.
MinimumMinor = Annotated[
    int, Field(ge=0, le=MAX_AMOUNT_MINOR, strict=True), BeforeValidator(whole_number)
]

# ---------------------------------------------------------------------------------------------
# Requests


class PayoutDetailsIn(Input):
    """A specialist's bank account. `iban`: the IBAN (and the BIC outside the SEPA zone).
    `local` (countries without IBANs): `country`, `bank_code` and `account_number` (and the BIC
    if known). Fields of the other scheme are refused."""

    scheme: PayoutScheme
    account_holder: str = HOLDER
    iban: str | None = iban_field(None)
    bic: str | None = Field(
        default=None,
        pattern=BIC_INPUT_PATTERN,
        description="8 or 11 characters; a bank in the account's country.",
    )
    account_number: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9 -]+$",
        description="Local accounts: the account number (spaces and hyphens are dropped).",
    )
    bank_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9 -]+$",
        description="Local accounts: US ABA routing number (9 digits), CA routing number, AU "
        "BSB, JP bank + branch code (7 digits), IN IFSC; elsewhere 1-35 letters or digits.",
    )
    country: str | None = Field(
        default=None,
        pattern=r"^ *[A-Za-z]{2} *$",
        description="ISO 3166 alpha-2 of the account: required for local accounts; for an IBAN "
        "optional and then the IBAN's own.",
    )


class HoldIn(Input):
    reason: str = Field(
        min_length=1, max_length=500, description="Why payouts stop (shown to finance only)."
    )


class PayrollProfileIn(Input):
    """The tenant's side of payroll: the account payouts leave from, the time zone a period's
    cutoff is taken in, and the smallest payout per currency (smaller ones wait)."""

    debtor_name: str = Field(min_length=1, max_length=140)
    debtor_iban: str = iban_field()
    debtor_bic: str = Field(pattern=BIC_INPUT_PATTERN)
    time_zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+/-]+$",
        description="An IANA time zone, e.g. Europe/Berlin.",
    )
    minimum_payouts: dict[CurrencyCode, MinimumMinor] = Field(
        default_factory=dict,
        max_length=MINIMUMS_MAX,
        description="{currency: minor units}: a line under its currency's minimum is withheld "
        'until the sum reaches it, e.g. {"EUR": 5000, "JPY": 1000}.',
    )


# ---------------------------------------------------------------------------------------------
# Responses


class OwnPayoutDetailsOut(Output):
    """A specialist's own bank details, in full (they typed them and must be able to check)."""

    user_id: uuid.UUID
    scheme: str
    account_holder: str
    iban: str | None
    bic: str | None
    account_number: str | None
    bank_code: str | None
    country: str
    payout_currency: str | None = Field(description="From the specialist's profile.")
    details_changed_at: dt.datetime = Field(description="When the account itself last changed.")
    cooling_until: dt.datetime | None = Field(
        description="Payroll runs whose cutoff is before this hold payouts to a new account."
    )
    on_hold: bool
    created_at: dt.datetime


class PayoutDetailsView(Output):
    """Bank details as finance sees them: the numbers masked (`DE89…3000`, `****1234`), with the
    hold, the cooling period and the other specialists of the tenant paid into the same
    account."""

    user_id: uuid.UUID
    scheme: str
    account_holder: str
    iban: str | None
    bic: str | None
    account_number: str | None
    bank_code: str | None
    country: str
    payout_currency: str | None
    details_changed_at: dt.datetime
    cooling_until: dt.datetime | None
    on_hold: bool
    hold_reason: str | None
    hold_set_by: uuid.UUID | None
    hold_set_at: dt.datetime | None
    shared_with: list[uuid.UUID] = Field(
        description="Other specialists of the tenant whose details name the same account."
    )
    created_at: dt.datetime


class PayrollProfileOut(Output):
    id: uuid.UUID
    debtor_name: str
    debtor_iban: str
    debtor_bic: str
    time_zone: str
    minimum_payouts: dict[str, int]
    updated_at: dt.datetime


# ---------------------------------------------------------------------------------------------
# Payroll runs


class RunStart(Input):
    period: str = Field(pattern=PERIOD.pattern, description="The month paid, YYYY-MM.")
    payout_date: dt.date | None = Field(
        default=None,
        description="When the bank should pay (default: the first banking day after the month).",
    )
    dry_run: bool = Field(default=False, description="Stop after the preview; post nothing.")


class ApprovalIn(Input):
    decision: ApprovalChoice
    comment: str = Field(default="", max_length=2000, description="Required to reject.")


class ReverseIn(Input):
    reason: str = Field(min_length=1, max_length=500)


class FileOut(Output):
    name: str
    format: str
    media_type: str
    sha256: str
    size_bytes: int
    message_id: str | None
    currencies: list[str]
    line_count: int
    status: str
    created_at: dt.datetime


class RunOut(Output):
    id: uuid.UUID
    period: str
    attempt: int
    status: str
    dry_run: bool
    cutoff_at: dt.datetime
    payout_date: dt.date
    started_by: uuid.UUID | None
    decided_by: uuid.UUID | None
    decision_comment: str | None
    decided_at: dt.datetime | None
    flow_run_id: uuid.UUID | None
    flow_run_url: str | None = Field(default=None, description="The run in the Prefect UI.")
    fx_rates: dict[str, Any] | None
    totals: dict[str, Any] = Field(description="Per payout currency and withheld per source.")
    gate: dict[str, Any] | None = Field(description="The Great Expectations gate's outcome.")
    data_docs_url: str | None = Field(default=None, description="The gate's Data Docs.")
    failure_reason: str | None
    created_at: dt.datetime
    posted_at: dt.datetime | None
    files: list[FileOut] = []


class LineOut(Output):
    id: int
    specialist_id: uuid.UUID
    source_currency: str
    payable_minor: int
    payout_currency: str
    payout_minor: int | None
    fx_rate: str | None
    fx_source: str | None
    status: str
    hold_reason: str | None
    end_to_end_id: str | None
    transfer_ids: list[str]
    reversal_ids: list[str]
