"""The audit log over HTTP: who did what to which object, filtered, paged and exported.

Who may read what is the audit service's rule (`quire.audit.service.visibility`): admins every
entry of their tenant, finance the finance entries, anyone else 403. This module only parses the
query, calls the service and shapes the answer.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator

from api.deps import Work
from api.errors import responses
from api.schemas import Page
from quire.audit import service as audit
from quire.audit.schemas import AuditEntryOut
from quire.schemas import BIGINT_MAX

router = APIRouter(tags=["audit"])
ERRORS = responses(401, 403, 422)
EXPORT_PAGE = 1_000  # entries per read while an export streams

# RFC 3339's date-time, what `format: date-time` promises: pydantic alone would also take a
# number (seconds since 1970) or a time without a zone. A leap second (:60) is read as the last
# instant of its minute, which Python cannot otherwise represent.
RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:(?P<second>[0-9]{2})(?P<fraction>\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: Any) -> Any:
    match = RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("an RFC 3339 date-time with a time zone, e.g. 2026-01-01T00:00:00Z")
    if match["second"] == "60":
        end = match.end("fraction") if match["fraction"] else match.end("second")
        return f"{value[: match.start('second')]}59.999999{value[end:]}"
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_rfc3339)]


def audit_filter(
    actor_id: Annotated[uuid.UUID | None, Query(description="Entries by this user.")] = None,
    object_type: Annotated[
        str | None,
        Query(min_length=1, max_length=audit.NAME_MAX, description='e.g. "user", "payroll_run".'),
    ] = None,
    object_id: Annotated[
        str | None,
        Query(min_length=1, max_length=audit.NAME_MAX, description="With object_type: one object."),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=audit.NAME_MAX,
            pattern=audit.ACTION_FILTER.pattern,
            description='Exact ("payroll_run.approved") or a prefix ("payroll_run.*").',
        ),
    ] = None,
    since: Annotated[
        Timestamp | None, Query(description="Entries at or after this time (with a time zone).")
    ] = None,
    until: Annotated[
        Timestamp | None, Query(description="Entries before this time (with a time zone).")
    ] = None,
) -> audit.AuditFilter:
    return audit.AuditFilter(
        actor_id=actor_id,
        object_type=object_type,
        object_id=object_id,
        action=action,
        since=since,
        until=until,
    )


Filters = Annotated[audit.AuditFilter, Depends(audit_filter)]
Cursor = Annotated[
    int | None,
    Query(ge=1, le=BIGINT_MAX, description="The previous page's next_cursor: entries below it."),
]


@router.get("/audit-log", response_model=Page[AuditEntryOut], responses=ERRORS)
async def list_audit_log(
    work: Work,
    filters: Filters,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=audit.PAGE_MAX)] = 100,
) -> Page[AuditEntryOut]:
    """The tenant's audit log, newest first (admins; finance sees the finance entries)."""
    entries, next_cursor = await work.read(
        partial(audit.list_entries, cursor=cursor, limit=limit), filters
    )
    return Page[AuditEntryOut](
        items=[AuditEntryOut.model_validate(e) for e in entries], next_cursor=next_cursor
    )


class CSVResponse(StreamingResponse):
    media_type = "text/csv"


@router.get(
    "/audit-log.csv",
    response_class=CSVResponse,
    responses={
        200: {
            "description": "One row per entry, newest first: "
            + ", ".join(audit.CSV_COLUMNS)
            + " (before and after as JSON text).",
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "headers": {
                "Content-Disposition": {
                    "description": "attachment; filename=audit-log.csv",
                    "schema": {"type": "string"},
                },
                "X-Next-Cursor": {
                    "description": "Present when more entries match than `limit`: pass it as "
                    "?cursor= to export the rest.",
                    "schema": {"type": "string"},
                },
            },
        },
        **ERRORS,
    },
)
async def export_audit_log(
    work: Work,
    filters: Filters,
    cursor: Cursor = None,
    limit: Annotated[
        int, Query(ge=1, le=audit.CSV_MAX_ROWS, description="At most this many rows.")
    ] = audit.CSV_MAX_ROWS,
) -> CSVResponse:
    """The same entries as `GET /audit-log`, as a CSV download streamed page by page."""
    # Roles and filters are checked here, before the first byte: a refusal is a problem body.
    window = await work.read(partial(audit.export_window, cursor=cursor, max_rows=limit), filters)

    async def rows() -> AsyncIterator[str]:
        yield audit.render_csv([], header=True)
        position = window.start
        while position is not None:
            page, position = await work.read(
                partial(
                    audit.list_entries, cursor=position, limit=EXPORT_PAGE, down_to=window.lowest
                ),
                filters,
            )
            yield audit.render_csv(page, header=False)

    headers = {"Content-Disposition": 'attachment; filename="audit-log.csv"'}
    if window.next_cursor is not None:
        headers["X-Next-Cursor"] = window.next_cursor
    return CSVResponse(rows(), headers=headers)
