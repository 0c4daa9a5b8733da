"""Every shape the ledger accepts or returns, in one module.

Request models are domain inputs (`quire.schemas.Input`: no unknown fields, no NUL characters):
`ledger.service` and `ledger.invoices` take them as they are, so the HTTP layer and any other
caller (flows, the command line) are held to the same rules. Response models are the API's view
of ledger rows; like every domain's, they live in its `schemas.py`, so that one file describes the
ledger's whole contract (and its OpenAPI constraints), and they are plain pydantic, so the domain
can import this module without importing the web framework.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, Field

from ledger.balances import PERIOD, normal_balance
from ledger.models import Account
from quire.money import AmountMinor, CurrencyCode, MinorUnits
from quire.schemas import Input, Output

# ---------------------------------------------------------------------------------------------
# Requests


class LegIn(Input):
    account_id: uuid.UUID
    amount_minor: MinorUnits = Field(description="Positive debits, negative credits (minor units).")
    currency: CurrencyCode | None = Field(
        default=None, description="If given, must be the account's currency (a guard)."
    )


class TransferIn(Input):
    """A manual journal entry (adjustments, opening balances). Business events have helpers."""

    kind: str = Field(default="adjustment", min_length=1, max_length=32)
    reference: str = Field(default="", max_length=200)
    idempotency_key: str = Field(min_length=1, max_length=200)
    effective_at: dt.datetime | None = None
    legs: list[LegIn] = Field(min_length=2, max_length=100)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)


class ReverseIn(Input):
    reason: str = Field(min_length=1, max_length=500)


class InvoiceLine(Input):
    description: str = Field(min_length=1, max_length=500)
    amount_minor: AmountMinor
    order_id: uuid.UUID | None = None


class InvoiceDraft(Input):
    specialist_id: uuid.UUID
    period: str = Field(pattern=PERIOD.pattern, description="The month billed, YYYY-MM.")
    currency: CurrencyCode
    lines: list[InvoiceLine] = Field(min_length=1, max_length=1000)


class InvoiceChange(Input):
    lines: list[InvoiceLine] = Field(min_length=1, max_length=1000)


# ---------------------------------------------------------------------------------------------
# Responses


class AccountOut(Output):
    id: uuid.UUID
    kind: str
    owner_type: str
    owner_id: uuid.UUID | None
    currency: str
    normal_side: str
    no_negative: bool
    balance_minor: int = Field(description="On the account's normal side.")

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        """The account with its balance as the account's owner reads it (normal side)."""
        return cls(
            id=account.id,
            kind=account.kind,
            owner_type=account.owner_type,
            owner_id=account.owner_id,
            currency=account.currency,
            normal_side=account.normal_side,
            no_negative=account.no_negative,
            balance_minor=normal_balance(account, account.balance),
        )


class StatementLineOut(BaseModel):
    entry_id: int
    transfer_id: uuid.UUID
    kind: str
    reference: str
    effective_at: dt.datetime
    amount_minor: int
    running_balance_minor: int


class StatementOut(BaseModel):
    account: AccountOut
    start: dt.datetime
    end: dt.datetime
    opening_balance_minor: int
    closing_balance_minor: int
    lines: list[StatementLineOut]
    next_cursor: int | None


class EntryOut(Output):
    account_id: uuid.UUID
    currency: str
    amount: int


class TransferOut(Output):
    id: uuid.UUID
    kind: str
    reference: str
    idempotency_key: str
    effective_at: dt.datetime
    created_at: dt.datetime
    reverses_id: uuid.UUID | None
    meta: dict[str, Any] = Field(serialization_alias="metadata")


class InvoiceOut(Output):
    id: uuid.UUID
    specialist_id: uuid.UUID
    period: str
    version: int
    status: str
    currency: str
    lines: list[dict[str, Any]]
    total_minor: int
    supersedes_id: uuid.UUID | None
    lock_version: int
    created_at: dt.datetime
    issued_at: dt.datetime | None
    paid_at: dt.datetime | None
    voided_at: dt.datetime | None
