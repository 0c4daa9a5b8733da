"""Which connector function carries out each step kind, and with which connection.

The kinds themselves (their parameters, their compensations) are data in `kinds.py`; this is
the one place that binds a kind's name to code. Connector modules are imported when a kind is
first used, so loading a playbook does not load SMTP, SCIM and iCalendar.

Connections: a tenant's own settings for the provider (`connections.py`, sealed in the
database); for email (and calendar invitations, sent by email) Quire's own SMTP settings when
the tenant has none; documents go under the reports directory; Quire's own kinds use Quire's
database. A provider with no connection: the AI draft is skipped (it is optional), any other
step fails permanently with a message that says what to configure (kinds.py: `skippable`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from quire.db import Database
from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
)
from quire.lifecycle.secrets import Keyring
from quire.settings import Settings

Connector = Callable[[Any, StepCall], StepOutcome]


@dataclass(frozen=True)
class Binding:
    provider: Provider
    module: str  # under quire.lifecycle.connectors
    function: str

    def load(self) -> Connector:
        module = importlib.import_module(f"quire.lifecycle.connectors.{self.module}")
        return getattr(module, self.function)


BINDINGS: dict[str, Binding] = {
    "identity.create_user": Binding(Provider.IDENTITY, "identity", "create_user"),
    "identity.delete_user": Binding(Provider.IDENTITY, "identity", "delete_user"),
    "identity.add_to_groups": Binding(Provider.IDENTITY, "identity", "add_to_groups"),
    "identity.remove_from_groups": Binding(Provider.IDENTITY, "identity", "remove_from_groups"),
    "identity.deactivate": Binding(Provider.IDENTITY, "identity", "deactivate"),
    "identity.reactivate": Binding(Provider.IDENTITY, "identity", "reactivate"),
    "email.send": Binding(Provider.EMAIL, "email", "send"),
    "chat.post": Binding(Provider.CHAT, "chat", "post"),
    "calendar.invite": Binding(Provider.CALENDAR, "calendar", "invite"),
    "calendar.cancel": Binding(Provider.CALENDAR, "calendar", "cancel"),
    "document.generate": Binding(Provider.DOCUMENTS, "documents", "generate"),
    "document.remove": Binding(Provider.DOCUMENTS, "documents", "remove"),
    "ai.draft_message": Binding(Provider.AI, "ai", "draft_message"),
    "quire.create_specialist": Binding(Provider.QUIRE, "quire_access", "create_specialist"),
    "quire.remove_specialist": Binding(Provider.QUIRE, "quire_access", "remove_specialist"),
    "quire.revoke_access": Binding(Provider.QUIRE, "quire_access", "revoke_access"),
    "quire.hold_payouts": Binding(Provider.QUIRE, "quire_access", "hold_payouts"),
    "quire.release_payouts": Binding(Provider.QUIRE, "quire_access", "release_payouts"),
}

# Providers on the other side of a network: their calls go through the circuit breaker.
REMOTE = frozenset(
    {Provider.IDENTITY, Provider.EMAIL, Provider.CHAT, Provider.CALENDAR, Provider.AI}
)


class NotConfigured(PermanentFailure):
    """The tenant has no connection for the step's provider."""


def skippable(kind: str) -> bool:
    """Is a step of this kind skipped (not failed) when its provider is not configured?"""
    from quire.lifecycle.kinds import kind_of

    known = kind_of(kind)
    return bool(known and known.skippable)


def binding(kind: str) -> Binding:
    try:
        return BINDINGS[kind]
    except KeyError:
        raise PermanentFailure(Provider.QUIRE, f"no connector carries out {kind!r}") from None


def connection_for(
    provider: Provider,
    session: Session,
    database: Database,
    settings: Settings,
    keyring: Keyring,
) -> Any:
    """The connection a step of `provider` runs with, or raises NotConfigured."""
    from quire.lifecycle import connections

    if provider is Provider.QUIRE:
        from quire.lifecycle.connectors.quire_access import QuireConnection

        return QuireConnection(database, settings.payout_details_cooling_days)
    if provider is Provider.DOCUMENTS:
        from quire.lifecycle.connectors.documents import DocumentsConnection

        return DocumentsConnection(base_dir=settings.reports_dir / "lifecycle")
    stored_as = Provider.EMAIL if provider is Provider.CALENDAR else provider
    stored = connections.get_connection(session, keyring, str(stored_as))
    if provider in (Provider.EMAIL, Provider.CALENDAR):
        from quire.lifecycle.connectors.email import SmtpConnection

        if stored is None and settings.smtp_host:
            stored = {
                "host": settings.smtp_host,
                "port": settings.smtp_port,
                "from_address": settings.smtp_from,
                "starttls": settings.smtp_starttls,
                "user": settings.smtp_user or None,
                "password": settings.smtp_password.get_secret_value() or None,
                "timeout": settings.smtp_timeout_seconds,
            }
        model: Any = SmtpConnection
    elif provider is Provider.IDENTITY:
        from quire.lifecycle.connectors.identity import ScimConnection

        model = ScimConnection
    elif provider is Provider.CHAT:
        from quire.lifecycle.connectors.chat import ChatConnection

        model = ChatConnection
    else:
        from quire.lifecycle.connectors.ai import AiConnection

        model = AiConnection
    if stored is None:
        raise NotConfigured(provider, f"no {stored_as} connection is configured for this tenant")
    return model.model_validate(stored)


def undo_after_failure(kind: str, idempotency_key: str) -> dict[str, Any] | None:
    """What undoes a step that failed for good but may still have acted: its last attempt's
    answer was lost (a timeout after the provider did the work). Compensation calls the kind's
    undo with this, and it finds the work by the idempotency key the attempt passed on; None
    when the kind leaves nothing to find (or nothing that lasts)."""
    if kind == "identity.create_user":
        return {"external_id": idempotency_key}  # create_user stamps its key as externalId
    return None
