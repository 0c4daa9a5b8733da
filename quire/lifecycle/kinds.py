"""The step kinds a playbook may use, as data: who each talks to, what parameters it takes, and
how its work is undone.

Validation (`playbooks.py`), the executor and the connectors all read this one table, so a kind's
parameters are named once. A kind's `undo` is the kind the executor calls, with the `undo` the
step's connector recorded in the saga log, when a later step fails for good or the run is
cancelled. `compensation_required` marks the kinds whose work must not be left behind (an
account, a group membership, a hold on someone's pay): a playbook cannot opt out of undoing them.

The compensating kinds are kinds too (a connector implements them), but they are not steps a
playbook may list on its own: their parameters are what the forward step's connector recorded
(`identity.delete_user` is called with the account `identity.create_user` made), which a
playbook's author does not know. They may be named under a step's `compensate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from quire.lifecycle.connectors.base import Provider


@dataclass(frozen=True)
class Kind:
    """One kind of step.

    `required`: parameters a step of this kind must give. `optional`: those it may give.
    `one_of`: alternatives of which at least one must be given whole (`(("start", "end"),
    ("date",))`: a start and an end, or a date). Any other parameter name is a mistake.
    `forward`: usable as a playbook's step (False: only as a compensation). `skippable`: the
    step is skipped, not failed, when the tenant has not configured its provider.
    """

    name: str
    provider: Provider
    summary: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    undo: str | None = None
    compensation_required: bool = False
    forward: bool = True
    skippable: bool = False

    @property
    def parameters(self) -> frozenset[str]:
        """Every parameter name a step of this kind may give."""
        names = set(self.required) | set(self.optional)
        for alternative in self.one_of:
            names.update(alternative)
        return frozenset(names)

    def missing(self, given: Iterable[str]) -> tuple[list[str], str | None]:
        """The required parameters not in `given`, and, when no alternative of `one_of` is
        given whole, a sentence naming the alternatives ("user_id or user_name")."""
        names = set(given)
        absent = [name for name in self.required if name not in names]
        if self.one_of and not any(set(alt) <= names for alt in self.one_of):
            return absent, " or ".join(" and ".join(alt) for alt in self.one_of)
        return absent, None


_KINDS: list[Kind] = [
    # Identity (SCIM 2.0)
    Kind(
        "identity.create_user",
        Provider.IDENTITY,
        "create the person's account at the identity provider",
        required=("user_name",),
        optional=("given_name", "family_name", "display_name", "email", "emails", "active"),
        undo="identity.delete_user",
        compensation_required=True,
    ),
    Kind(
        "identity.add_to_groups",
        Provider.IDENTITY,
        "add the account to groups",
        required=("groups",),
        one_of=(("user_id",), ("user_name",)),
        undo="identity.remove_from_groups",
        compensation_required=True,
    ),
    Kind(
        "identity.remove_from_groups",
        Provider.IDENTITY,
        "remove the account from groups",
        required=("groups",),
        one_of=(("user_id",), ("user_name",)),
        undo="identity.add_to_groups",
        compensation_required=True,
    ),
    Kind(
        "identity.deactivate",
        Provider.IDENTITY,
        "deactivate the account (it can no longer sign in)",
        one_of=(("user_id",), ("user_name",)),
        undo="identity.reactivate",
        compensation_required=True,
    ),
    # Messages: once sent, nothing can take them back.
    Kind(
        "email.send",
        Provider.EMAIL,
        "send an email",
        required=("to", "subject", "body"),
        optional=("html", "attachments"),
    ),
    Kind(
        "chat.post",
        Provider.CHAT,
        "post a message to a chat channel",
        required=("text",),
        optional=("channel", "blocks"),
    ),
    Kind(
        "calendar.invite",
        Provider.CALENDAR,
        "send a calendar invitation",
        required=("to", "summary"),
        optional=("organizer", "description", "location"),
        one_of=(("start", "end"), ("date",)),
        undo="calendar.cancel",
    ),
    Kind(
        "document.generate",
        Provider.DOCUMENTS,
        "render a document (a contract, an exit letter) into a file",
        required=("name", "title", "body"),
        optional=("subdirectory",),
        undo="document.remove",
    ),
    Kind(
        "ai.draft_message",
        Provider.AI,
        "draft a personal text with an AI model (skipped when none is configured)",
        required=("prompt",),
        optional=("instructions", "max_tokens"),
        skippable=True,
    ),
    # Quire's own records
    Kind(
        "quire.create_specialist",
        Provider.QUIRE,
        "create the person as a specialist in Quire",
        required=("email", "display_name"),
        optional=("skills",),
        undo="quire.remove_specialist",
        compensation_required=True,
    ),
    Kind(
        "quire.revoke_access",
        Provider.QUIRE,
        "end the person's Quire sessions and revoke their API keys",
        one_of=(("email",), ("user_id",)),
        # None: a revoked session stays revoked (signing in again is the way back).
    ),
    Kind(
        "quire.hold_payouts",
        Provider.QUIRE,
        "hold the person's payouts",
        optional=("reason",),
        one_of=(("email",), ("user_id",)),
        undo="quire.release_payouts",
        compensation_required=True,
    ),
    # Compensations only: called with what the forward step's connector recorded as its undo.
    Kind(
        "identity.delete_user",
        Provider.IDENTITY,
        "delete the account identity.create_user made",
        forward=False,
    ),
    Kind(
        "identity.reactivate",
        Provider.IDENTITY,
        "reactivate the account identity.deactivate deactivated",
        forward=False,
    ),
    Kind(
        "calendar.cancel",
        Provider.CALENDAR,
        "cancel the invitation calendar.invite sent",
        forward=False,
    ),
    Kind(
        "document.remove",
        Provider.DOCUMENTS,
        "remove the file document.generate wrote",
        forward=False,
    ),
    Kind(
        "quire.remove_specialist",
        Provider.QUIRE,
        "remove the specialist quire.create_specialist created",
        forward=False,
    ),
    Kind(
        "quire.release_payouts",
        Provider.QUIRE,
        "release the payouts quire.hold_payouts held",
        forward=False,
    ),
]

KINDS: Mapping[str, Kind] = MappingProxyType({kind.name: kind for kind in _KINDS})
FORWARD_KINDS: tuple[str, ...] = tuple(k.name for k in _KINDS if k.forward)


def kind_of(name: str) -> Kind | None:
    """The kind called `name`, or None when there is none."""
    return KINDS.get(name)


def compensation_of(name: str) -> str | None:
    """The kind that undoes a step of kind `name` when its playbook names none."""
    kind = KINDS.get(name)
    return kind.undo if kind else None
