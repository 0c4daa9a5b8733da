"""The registry of step kinds: who each talks to, its parameters, and what undoes it."""

from __future__ import annotations

import pytest

from quire.lifecycle.connectors.base import Provider
from quire.lifecycle.kinds import FORWARD_KINDS, KINDS, compensation_of, kind_of

# The issue's table: kind -> (provider, its undo).
FORWARD = {
    "identity.create_user": (Provider.IDENTITY, "identity.delete_user"),
    "identity.add_to_groups": (Provider.IDENTITY, "identity.remove_from_groups"),
    "identity.remove_from_groups": (Provider.IDENTITY, "identity.add_to_groups"),
    "identity.deactivate": (Provider.IDENTITY, "identity.reactivate"),
    "email.send": (Provider.EMAIL, None),
    "chat.post": (Provider.CHAT, None),
    "calendar.invite": (Provider.CALENDAR, "calendar.cancel"),
    "document.generate": (Provider.DOCUMENTS, "document.remove"),
    "quire.create_specialist": (Provider.QUIRE, "quire.remove_specialist"),
    "quire.revoke_access": (Provider.QUIRE, None),
    "quire.hold_payouts": (Provider.QUIRE, "quire.release_payouts"),
    "ai.draft_message": (Provider.AI, None),
}

# The parameter names the connectors read: (required, optional, alternatives).
PARAMETERS = {
    "identity.create_user": (
        {"user_name"},
        {"given_name", "family_name", "display_name", "email", "emails", "active"},
        (),
    ),
    "identity.add_to_groups": ({"groups"}, set(), (("user_id",), ("user_name",))),
    "identity.remove_from_groups": ({"groups"}, set(), (("user_id",), ("user_name",))),
    "identity.deactivate": (set(), set(), (("user_id",), ("user_name",))),
    "email.send": ({"to", "subject", "body"}, {"html", "attachments"}, ()),
    "chat.post": ({"text"}, {"channel", "blocks"}, ()),
    "calendar.invite": (
        {"to", "summary"},
        {"organizer", "description", "location"},
        (("start", "end"), ("date",)),
    ),
    "document.generate": ({"name", "title", "body"}, {"subdirectory"}, ()),
    "ai.draft_message": ({"prompt"}, {"instructions", "max_tokens"}, ()),
    "quire.create_specialist": ({"email", "display_name"}, {"skills"}, ()),
    "quire.revoke_access": (set(), set(), (("email",), ("user_id",))),
    "quire.hold_payouts": (set(), {"reason"}, (("email",), ("user_id",))),
}


def test_the_forward_kinds_are_exactly_the_issues_list():
    assert set(FORWARD_KINDS) == set(FORWARD)


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_each_kind_talks_to_its_provider_and_is_undone_by_its_compensating_kind(name):
    provider, undo = FORWARD[name]
    kind = KINDS[name]
    assert (kind.provider, kind.undo) == (provider, undo)
    assert compensation_of(name) == undo


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_each_kind_takes_exactly_the_parameters_the_connectors_read(name):
    required, optional, alternatives = PARAMETERS[name]
    kind = KINDS[name]
    assert set(kind.required) == required
    assert set(kind.optional) == optional
    assert kind.one_of == alternatives
    assert kind.parameters == required | optional | {n for alt in alternatives for n in alt}


def test_every_compensating_kind_is_a_kind_of_the_same_provider():
    for name, (provider, undo) in FORWARD.items():
        if undo is not None:
            assert KINDS[undo].provider == provider, name


def test_compensating_kinds_are_not_steps_of_their_own_and_are_not_undone():
    compensation_only = {name for name, kind in KINDS.items() if not kind.forward}
    assert compensation_only == {
        "identity.delete_user",
        "identity.reactivate",
        "calendar.cancel",
        "document.remove",
        "quire.remove_specialist",
        "quire.release_payouts",
    }
    assert all(KINDS[name].undo is None for name in compensation_only)


def test_a_kind_that_must_be_compensated_has_a_default_compensation():
    for name, kind in KINDS.items():
        if kind.compensation_required:
            assert kind.undo is not None, name


def test_what_is_left_behind_matters_for_accounts_groups_specialists_and_held_pay():
    required = {name for name, kind in KINDS.items() if kind.compensation_required}
    assert required == {
        "identity.create_user",
        "identity.add_to_groups",
        "identity.remove_from_groups",
        "identity.deactivate",
        "quire.create_specialist",
        "quire.hold_payouts",
    }


def test_messages_and_revoked_sessions_have_nothing_to_undo():
    for name in ("email.send", "chat.post", "ai.draft_message", "quire.revoke_access"):
        assert KINDS[name].undo is None
        assert not KINDS[name].compensation_required


def test_only_the_ai_draft_is_skipped_when_its_provider_is_not_configured():
    assert {name for name, kind in KINDS.items() if kind.skippable} == {"ai.draft_message"}


def test_missing_names_the_required_parameters_not_given():
    assert KINDS["email.send"].missing({"to"}) == (["subject", "body"], None)
    assert KINDS["email.send"].missing({"to", "subject", "body"}) == ([], None)


def test_missing_names_the_alternatives_when_none_is_given_whole():
    deactivate = KINDS["identity.deactivate"]
    assert deactivate.missing(set()) == ([], "user_id or user_name")
    assert deactivate.missing({"user_name"}) == ([], None)
    invite = KINDS["calendar.invite"]
    assert invite.missing({"to", "summary", "start"}) == ([], "start and end or date")
    assert invite.missing({"to", "summary", "start", "end"}) == ([], None)
    assert invite.missing({"to", "summary", "date"}) == ([], None)


def test_kind_of_an_unknown_name_is_none():
    assert kind_of("identity.create_usr") is None
    assert kind_of("chat.post") is KINDS["chat.post"]
    assert compensation_of("nope") is None


def test_the_registry_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        KINDS["x"] = KINDS["chat.post"]  # type: ignore[index]
