"""Writing and reading the audit log.

`record` is called by the code that makes a change, inside that change's transaction: the entry
commits with it or rolls back with it, so the log never claims a change that did not happen nor
misses one that did. Values go in as JSON; callers pass what changed, never a secret (an IBAN's
last four characters, a key's id and name, never the key).

Who may read: admins see every entry of their tenant; finance sees the finance domain's entries
(payroll, payouts, bank reconciliation, ledger periods); everyone else is refused.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from quire.audit.models import AuditEntry
from quire.correlation import current_request_id
from quire.db import utcnow
from quire.people.actor import Actor

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
PAGE_MAX = 500


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
    if value is None or isinstance(value, bool | int | float | str):
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
        object_id=_name(str(object_id), "object_id"),
        request_id=request_id[:128] if request_id else None,
        before=jsonable(dict(before)) if before is not None else None,
        after=jsonable(dict(after)) if after is not None else None,
        domain=domain_of(action),
    )
    session.add(entry)
    session.flush()
    return entry
