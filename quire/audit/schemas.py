"""The audit log's shapes: one entry as the API shows it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import Field

from quire.schemas import Output


class AuditEntryOut(Output):
    id: int = Field(description="Grows with every entry; the list's cursor.")
    at: dt.datetime
    actor_id: uuid.UUID | None = Field(description="Who acted; null when Quire itself did.")
    actor_roles: list[str] = Field(description="The actor's roles when they acted.")
    action: str = Field(description='Dotted, e.g. "user.created", "payroll_run.approved".')
    object_type: str
    object_id: str
    request_id: str | None = Field(
        description="The X-Request-ID of the request (or flow-run:<id>) that made the change."
    )
    before: dict[str, Any] | None = Field(description="What changed, as it was.")
    after: dict[str, Any] | None = Field(description="What changed, as it became.")
    domain: str = Field(description="finance, people, auth, lifecycle or other.")
