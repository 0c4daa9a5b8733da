"""Writing and reading the audit log.

`record` is called by the code that makes a change, inside that change's transaction: the entry
commits with it or rolls back with it, so the log never claims a change that did not happen nor
misses one that did. Values go in as JSON; callers pass what changed, never a secret (an IBAN's
last four characters, a key's id and name, never the key).

Who may read: admins see every entry of their tenant; finance sees the finance domain's entries
(payroll, payouts, bank reconciliation, ledger periods); everyone else is refused.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from quire.audit.models import AuditEntry
from quire.correlation import current_request_id
from quire.db import utcnow
from quire.errors import Forbidden, Invalid
from quire.people.actor import Actor
from quire.people.models import Role
from quire.schemas import BIGINT_MAX

# A dotted lowercase name, e.g. "payroll_run.approved": what `record` accepts and what a filter
# may ask for (plus a trailing ".*" for a prefix).
ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ACTION_FILTER = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$")
NAME_MAX = 64

FINANCE = "finance"
DOMAINS: dict[str, frozenset[str]] = {
    FINANCE: frozenset(
        {
            "payout_details",
            "payout_hold",
            "payroll_profile",
            "payroll_run",
            "payroll_line",
            "bank_statement",
            "reconciliation",
            "ledger_period",
        }
    ),
    "people": frozenset({"user"}),
    "auth": frozenset({"api_key"}),
    "lifecycle": frozenset({"playbook", "lifecycle", "connection"}),
}
OTHER = "other"

CSV_COLUMNS = (
    "id",
    "at",
    "actor_id",
    "action",
    "object_type",
    "object_id",
    "request_id",
    "before",
    "after",
)
CSV_MAX_ROWS = 100_000
PAGE_MAX = 500  # per API page
PAGE_MAX_INTERNAL = 10_000  # per page an export reads


def domain_of(action: str) -> str:
    """The domain an action belongs to, by its first dotted segment ("other" if none claims it)."""
    head = action.split(".", 1)[0]
    for domain, heads in DOMAINS.items():
        if head in heads:
            return domain
    return OTHER


def jsonable(value: Any) -> Any:
    """`value` as plain JSON: uuids, datetimes, dates, times and Decimals become strings (a
    Decimal's exact digits, never a float), enums their value, tuples and sets lists.

    Anything else that JSON cannot hold is a programming error (TypeError), found in tests rather
    than stored as a `repr` nobody can read back.
    """
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, str):
        if "\x00" in value:  # no JSON column stores one (PostgreSQL refuses it)
            raise ValueError("audit values must not contain the NUL character")
        return value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):  # not JSON (PostgreSQL refuses NaN and infinities)
            raise ValueError(f"audit values must be finite numbers, not {value}")
        return value
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    raise TypeError(f"audit values must be JSON-serialisable, not {type(value).__name__}")


def _name(value: str, what: str) -> str:
    if not value or len(value) > NAME_MAX:
        raise ValueError(f"audit {what} must be 1-{NAME_MAX} characters: {value!r}")
    return value


def record(
    session: Session,
    actor: Actor | None,
    action: str,
    object_type: str,
    object_id: str | uuid.UUID,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> AuditEntry:
    """Append one entry, in the caller's transaction (it commits or rolls back with the change).

    `actor` None (or `Actor.system(...)`) is Quire itself: a flow, maintenance. The entry's
    tenant is the session's; a session without one (a job working across tenants) takes the
    actor's, so such a job passes `Actor.system(tenant_id)`. `request_id` defaults to the
    current correlation id (the HTTP request's, or the flow run's: `quire.correlation`).
    """
    if not ACTION.match(action) or len(action) > NAME_MAX:
        raise ValueError(f"audit action must be dotted lowercase, e.g. 'user.created': {action!r}")
    tenant_id = session.info.get("tenant_id")
    if actor is not None:
        if tenant_id is None:
            tenant_id = actor.tenant_id
        elif actor.tenant_id != tenant_id:
            raise ValueError("the actor acts in another tenant than the session's")
    if tenant_id is None:
        raise ValueError("audit: the session names no tenant; pass Actor.system(tenant_id)")
    human = actor is not None and not actor.is_system
    request_id = request_id if request_id is not None else current_request_id()
    entry = AuditEntry(
        tenant_id=tenant_id,
        at=utcnow(),
        actor_id=actor.user_id if human and actor is not None else None,
        actor_roles=sorted(actor.roles) if human and actor is not None else [],
        action=action,
        object_type=_name(object_type, "object_type"),
        object_id=_name(jsonable(str(object_id)), "object_id"),
        request_id=jsonable(request_id[:128]) if request_id else None,
        before=jsonable(dict(before)) if before is not None else None,
        after=jsonable(dict(after)) if after is not None else None,
        domain=domain_of(action),
    )
    session.add(entry)
    session.flush()
    return entry


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list. Every field narrows; None leaves it open.

    `action` is exact ("payroll_run.approved") or a prefix ending in ".*" ("payroll_run.*": every
    action of payroll runs). `since` is inclusive, `until` exclusive; both aware.
    """

    actor_id: uuid.UUID | None = None
    object_type: str | None = None
    object_id: str | None = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def visibility(actor: Actor) -> ColumnElement[bool] | None:
    """The entries `actor` may read, as a condition (None: all of the tenant's), or Forbidden.

    Admins read everything; finance reads the finance domain's entries only (money moved and
    who was paid, not who was given which role); nobody else reads the log.
    """
    if actor.has(Role.ADMIN):
        return None
    if actor.has(Role.FINANCE):
        return AuditEntry.domain == FINANCE
    raise Forbidden(
        "the audit log is for admins (and finance, for the finance entries)", code="wrong_role"
    )


def _bounded_text(value: str | None, what: str) -> str | None:
    if value is not None and (len(value) > NAME_MAX or "\x00" in value):
        raise Invalid(f"{what}: at most {NAME_MAX} characters, no NUL", code="invalid_filter")
    return value


def _utc(value: dt.datetime, what: str) -> dt.datetime | None:
    """`value` in UTC, or None when it lies beyond what a datetime can hold in UTC (a year-1 or
    year-9999 time with an offset): the caller decides what such a bound means."""
    if value.utcoffset() is None:
        raise Invalid(
            f"{what} needs a time zone (e.g. 2026-01-01T00:00:00Z)", code="invalid_filter"
        )
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        return None


def _filtered(stmt: Select[Any], f: AuditFilter) -> Select[Any] | None:
    """`stmt` narrowed by `f`, or None when no entry can match (an empty time window)."""
    if f.actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == f.actor_id)
    if _bounded_text(f.object_type, "object_type") is not None:
        stmt = stmt.where(AuditEntry.object_type == f.object_type)
    if _bounded_text(f.object_id, "object_id") is not None:
        stmt = stmt.where(AuditEntry.object_id == f.object_id)
    if f.action is not None:
        if len(f.action) > NAME_MAX or not ACTION_FILTER.match(f.action):
            raise Invalid(
                "action: a dotted lowercase name, or a prefix ending in '.*'",
                code="invalid_filter",
            )
        if f.action.endswith(".*"):
            # autoescape: the underscores of "payroll_run" are literal, not LIKE wildcards.
            stmt = stmt.where(AuditEntry.action.startswith(f.action[:-1], autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == f.action)
    if f.since is not None:
        since = _utc(f.since, "since")
        if since is None and f.since.year >= dt.MAXYEAR:
            return None  # after the end of representable time: nothing
        if since is not None:
            stmt = stmt.where(AuditEntry.at >= since)
    if f.until is not None:
        until = _utc(f.until, "until")
        if until is None and f.until.year <= dt.MINYEAR:
            return None  # before the start of representable time: nothing
        if until is not None:
            stmt = stmt.where(AuditEntry.at < until)
    return stmt


def check_cursor(cursor: int | str | None) -> int | None:
    """The id a `next_cursor` names: a positive BIGINT (digits, if a string), else 422.

    Any such id is a valid position (entries older than it), whether or not it exists.
    """
    if cursor is None:
        return None
    if isinstance(cursor, str):
        if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19:
            raise Invalid("cursor is not one this API issued", code="invalid_cursor")
        cursor = int(cursor)
    if isinstance(cursor, bool) or not 1 <= cursor <= BIGINT_MAX:
        raise Invalid("cursor is not one this API issued", code="invalid_cursor")
    return cursor


def _readable(actor: Actor, filters: AuditFilter, cursor: int | str | None) -> Select[Any] | None:
    """The entries `actor` may read that match `filters`, below `cursor` (None: none can)."""
    before_id = check_cursor(cursor)
    stmt = select(AuditEntry)
    visible = visibility(actor)
    if visible is not None:
        stmt = stmt.where(visible)
    narrowed = _filtered(stmt, filters)
    if narrowed is not None and before_id is not None:
        narrowed = narrowed.where(AuditEntry.id < before_id)
    return narrowed


def list_entries(
    session: Session,
    actor: Actor,
    filters: AuditFilter,
    *,
    cursor: int | str | None = None,
    limit: int = 100,
    down_to: int | None = None,
) -> tuple[list[AuditEntry], str | None]:
    """A page of the entries `actor` may read, newest first, and the cursor of the next page.

    Keyset pagination on the id (`id < cursor`): ids only grow, so paging while entries are
    being written neither repeats nor skips one (new entries appear above the first page).
    `down_to` (an export's `ExportWindow.lowest`) ends the listing at that id, inclusive.
    """
    if not 1 <= limit <= PAGE_MAX_INTERNAL:
        raise Invalid(f"limit: 1 to {PAGE_MAX_INTERNAL}", code="invalid_filter")
    stmt = _readable(actor, filters, cursor)
    if stmt is None:
        return [], None
    if down_to is not None:
        stmt = stmt.where(AuditEntry.id >= down_to)
    rows = list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, str(rows[-1].id)
    return rows, None


@dataclass(frozen=True)
class ExportWindow:
    """The entries one export covers, fixed when it starts: from `start` (a cursor: ids below
    it) down to `lowest` (inclusive; None: to the oldest). The log is append-only, so the
    window's content cannot change while the export streams it page by page.
    `next_cursor`: where the next export continues when this one stops at its row limit."""

    start: str | None
    lowest: int | None
    next_cursor: str | None


def export_window(
    session: Session,
    actor: Actor,
    filters: AuditFilter,
    *,
    cursor: int | str | None = None,
    max_rows: int = CSV_MAX_ROWS,
) -> ExportWindow:
    """Fix what an export of at most `max_rows` entries covers (checks roles and filters first,
    so a refusal is an ordinary error before any row is sent)."""
    if not 1 <= max_rows <= CSV_MAX_ROWS:
        raise Invalid(f"limit: 1 to {CSV_MAX_ROWS}", code="invalid_filter")
    stmt = _readable(actor, filters, cursor)
    if stmt is None:
        return ExportWindow(None, None, None)
    ids = stmt.with_only_columns(AuditEntry.id).order_by(AuditEntry.id.desc())
    top = session.scalar(ids.limit(1))
    if top is None:
        return ExportWindow(None, None, None)
    edge = list(session.scalars(ids.offset(max_rows - 1).limit(2)))
    if len(edge) == 2:
        return ExportWindow(str(top + 1), edge[0], str(edge[0]))
    return ExportWindow(str(top + 1), None, None)


# Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    elif isinstance(value, dt.datetime):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(entries: Iterable[AuditEntry], *, header: bool = True) -> str:
    """Entries as CSV rows (RFC 4180, CRLF line ends), `CSV_COLUMNS` in order; before and after
    as JSON text. A cell a spreadsheet would run as a formula is prefixed with a quote mark."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow([_cell(getattr(entry, column)) for column in CSV_COLUMNS])
    return out.getvalue()
