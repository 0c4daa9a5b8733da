"""Reconciliation's request and response shapes (the HTTP API's and the CLI's)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import Field

from quire.schemas import Input, Output


class StatementOut(Output):
    id: uuid.UUID
    statement_id: str
    account: str
    currency: str
    format: str
    file_name: str
    sha256: str
    opening_minor: int
    opening_date: dt.date
    closing_minor: int
    closing_date: dt.date
    line_count: int
    uploaded_at: dt.datetime


class ReconciliationOut(Output):
    id: uuid.UUID
    period: str | None
    statement_id: uuid.UUID | None
    status: str
    summary: dict[str, Any]
    suites: dict[str, Any] | None = None
    data_docs_url: str | None = None
    flow_run_id: uuid.UUID | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class ExceptionOut(Output):
    id: int
    reconciliation_id: uuid.UUID
    side: str
    bank_line_id: int | None
    payroll_line_id: int | None
    reason: str
    amount_minor: int
    currency: str
    status: str
    resolution: str | None
    resolved_at: dt.datetime | None


class MatchOut(Output):
    id: int
    bank_line_id: int
    rule: str
    payroll_line_id: int | None
    amount_minor: int
    transfer_ids: list[str]
    reason: str | None


# The largest integer a JSON number carries exactly (clients parse JSON numbers as doubles).
JSON_SAFE_MAX = 2**53 - 1


# A reason says something: a character that is not white space, and (as every string) no NUL.
SAID = r"^[^\x00]*[^\s\x00][^\x00]*$"


class ManualMatchIn(Input):
    payroll_line_id: int = Field(ge=1, le=JSON_SAFE_MAX)
    reason: str = Field(min_length=1, max_length=500, pattern=SAID)


class ReasonIn(Input):
    reason: str = Field(min_length=1, max_length=500, pattern=SAID)


class ClosedPeriodOut(Output):
    period: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    closed_at: dt.datetime
    closed_by: uuid.UUID | None
    reopened_at: dt.datetime | None
    reopen_reason: str | None
