"""Lifecycle's answers: a playbook in force, a run with its saga log, a dead letter.

The inputs live with the code that validates them: a playbook is `playbooks.Playbook`
(validated whole by `validate_playbook`), an event `webhooks.LifecycleEventIn`, a connection
the connector's own settings model.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from quire.schemas import Output


class PlaybookOut(Output):
    event_type: str
    version: int  # 0: Quire's shipped playbook (the tenant stored none)
    source: Literal["shipped", "tenant"]
    playbook: dict[str, Any]


class StepOut(Output):
    step_id: str
    kind: str
    status: str
    attempts: int
    output: dict[str, Any] | None = None
    error: str | None = None
    compensation_kind: str | None = None
    compensation_attempts: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    compensated_at: dt.datetime | None = None


class RunOut(Output):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    person_key: str
    playbook_version: int
    status: str
    flow_run_id: uuid.UUID | None = None
    error: str | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    steps: list[StepOut] = []


class DeadLetterOut(Output):
    id: int
    run_id: uuid.UUID
    step_id: str
    kind: str
    error: str
    inputs: dict[str, Any] | None = None
    attempts: int
    status: str
    created_at: dt.datetime
