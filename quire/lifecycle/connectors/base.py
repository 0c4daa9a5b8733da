"""The contract between a playbook step and the connector that carries it out.

A connector is called with a `StepCall` (the step's rendered parameters, its idempotency key,
its time budget) and answers a `StepOutcome`: what later steps may read (`output`) and what its
compensating step needs to undo it (`undo`), which the executor records in the saga log before
anything else runs, so an undo survives the process that did the work.

Failures are classified by the connector, the one place that knows the protocol:
`TransientFailure` (a 5xx, a timeout, a refused connection, a 429: worth retrying, and counted
by the provider's circuit breaker) and `PermanentFailure` (a 4xx the same request will get
again: retrying is pointless). Anything else a connector raises is a bug and is treated as
permanent.

Idempotency: `call.idempotency_key` is the same on every attempt and every replay of one step
of one run. A connector passes it on where the protocol allows (SCIM: `externalId` and a
lookup before create; SMTP: the Message-ID; iCalendar: the event's UID) so that an attempt
that succeeded but whose answer was lost does not act twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Provider(StrEnum):
    """Who a step talks to: one circuit breaker per provider and tenant."""

    IDENTITY = "identity"  # SCIM 2.0
    EMAIL = "email"  # SMTP
    CHAT = "chat"  # a Slack-compatible incoming webhook
    CALENDAR = "calendar"  # iCalendar invitations, sent by email
    DOCUMENTS = "documents"  # files rendered under the reports directory
    AI = "ai"  # an OpenAI-compatible chat completions endpoint
    QUIRE = "quire"  # Quire's own database (specialists, access, payouts)


@dataclass(frozen=True)
class StepCall:
    """One attempt at one step of one lifecycle run."""

    tenant_id: uuid.UUID
    idempotency_key: str  # "<run id>:<step id>": stable across attempts and replays
    params: Mapping[str, Any]  # the step's parameters, rendered from the event
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class StepOutcome:
    """What a step did. `output` is JSON-serialisable and readable by later steps' templates
    (`steps.<id>.<key>`); `undo` is JSON-serialisable and is what the step's compensating
    kind is called with (None: nothing to undo)."""

    output: dict[str, Any] = field(default_factory=dict)
    undo: dict[str, Any] | None = None


class ConnectorFailure(Exception):
    """A step could not be carried out. `retryable` says whether the same call may succeed
    later; `detail` is safe to show an admin (never a secret)."""

    retryable: bool = False

    def __init__(self, provider: Provider, detail: str) -> None:
        super().__init__(f"{provider}: {detail}")
        self.provider = provider
        self.detail = detail


class TransientFailure(ConnectorFailure):
    """A 5xx, a 429, a timeout or a refused connection: retry, and count it in the breaker."""

    retryable = True


class PermanentFailure(ConnectorFailure):
    """The provider refused the request itself (a 4xx other than 429, bad parameters)."""

    retryable = False
