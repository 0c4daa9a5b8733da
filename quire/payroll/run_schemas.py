"""Request and response shapes of payroll runs (the API's and the CLI's)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import Field

from ledger.balances import PERIOD
from quire.payroll.approvals import ApprovalChoice
from quire.schemas import Input, Output


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
