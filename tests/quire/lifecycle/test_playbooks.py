"""Playbooks as data: the shipped ones, validation that reports every problem with its path,
compensations, retry policies, and the waves a DAG runs in."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quire.errors import Invalid, NotFound
from quire.lifecycle.connectors.identity import GroupsParams
from quire.lifecycle.kinds import KINDS
from quire.lifecycle.models import EVENT_TYPES as STORED_EVENT_TYPES
from quire.lifecycle.playbooks import (
    EVENT_TYPES,
    Compensation,
    Playbook,
    PlaybookInvalid,
    RetryPolicy,
    topological_layers,
    validate_playbook,
)
from quire.lifecycle.shipped import shipped_definition, shipped_playbook
from quire.lifecycle.templating import evaluate_condition, render_params, template_context

SHIPPED = ("person.onboard", "person.exit", "person.transfer")

# The smallest parameters each kind accepts, so a test names only what it is about.
MINIMAL = {
    "identity.create_user": {"user_name": "zoe"},
    "identity.add_to_groups": {"user_id": "u-1", "groups": ["writers"]},
    "identity.remove_from_groups": {"user_id": "u-1", "groups": ["writers"]},
    "identity.deactivate": {"user_name": "zoe"},
    "email.send": {"to": "zoe@example.com", "subject": "Hi", "body": "Hello"},
    "chat.post": {"text": "Hello"},
    "calendar.invite": {"to": "zoe@example.com", "summary": "Hi", "date": "2025-03-03"},
    "document.generate": {"name": "contract", "title": "Contract", "body": "..."},
    "ai.draft_message": {"prompt": "Welcome Zoe"},
    "quire.create_specialist": {"email": "zoe@example.com", "display_name": "Zoe"},
    "quire.revoke_access": {"email": "zoe@example.com"},
    "quire.hold_payouts": {"email": "zoe@example.com"},
}


def step(step_id: str, kind: str = "chat.post", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": kind, "params": dict(MINIMAL.get(kind, {})), **fields}


def playbook(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"event_type": "person.onboard", "name": "Test", "steps": list(steps), **fields}


def problems_of(data: Any, **kwargs: Any) -> list[dict[str, str]]:
    with pytest.raises(PlaybookInvalid) as caught:
        validate_playbook(data, **kwargs)
    return caught.value.problems


def paths_of(data: Any, **kwargs: Any) -> list[str]:
    return [problem["path"] for problem in problems_of(data, **kwargs)]


def message_at(data: Any, path: str) -> str:
    found = [p["message"] for p in problems_of(data) if p["path"] == path]
    assert len(found) == 1, problems_of(data)
    return found[0]


def layer_ids(book: Playbook) -> list[list[str]]:
    return [[s.id for s in layer] for layer in topological_layers(book)]


# -- the shipped playbooks ---------------------------------------------------------------------


@pytest.mark.parametrize("event_type", SHIPPED)
def test_each_shipped_playbook_validates(event_type):
    book = shipped_playbook(event_type)
    assert book.event_type == event_type
    assert validate_playbook(shipped_definition(event_type)) == book


@pytest.mark.parametrize("event_type", SHIPPED)
def test_each_shipped_playbook_runs_independent_steps_side_by_side(event_type):
    layers = topological_layers(shipped_playbook(event_type))
    assert len(layers[0]) >= 2
    assert len(layers) < len(shipped_playbook(event_type).steps)


@pytest.mark.parametrize("event_type", SHIPPED)
def test_each_shipped_playbook_lists_a_step_after_the_steps_it_needs(event_type):
    seen: set[str] = set()
    for s in shipped_playbook(event_type).steps:
        assert set(s.needs) <= seen, s.id
        seen.add(s.id)


@pytest.mark.parametrize("event_type", SHIPPED)
def test_each_shipped_playbook_survives_a_round_trip_through_json(event_type):
    book = shipped_playbook(event_type)
    assert validate_playbook(book.model_dump(mode="json")) == book


def test_the_onboarding_creates_the_account_groups_specialist_welcome_chat_meeting_contract():
    book = shipped_playbook("person.onboard")
    kinds = {s.kind for s in book.steps}
    assert kinds == {
        "identity.create_user",
        "identity.add_to_groups",
        "quire.create_specialist",
        "ai.draft_message",
        "email.send",
        "chat.post",
        "calendar.invite",
        "document.generate",
    }
    assert not book.continue_on_failure
    welcome = book.step("welcome_email")
    assert "draft" in welcome.needs
    assert "steps.draft.text | default(" in welcome.params["body"]
    assert book.continues_past(book.step("draft"))  # a failed AI draft does not undo the rest
    assert not book.continues_past(book.step("account"))


def test_the_exit_carries_on_past_failures_and_removes_every_access():
    book = shipped_playbook("person.exit")
    assert book.continue_on_failure
    assert {s.kind for s in book.steps} == {
        "quire.revoke_access",
        "quire.hold_payouts",
        "identity.remove_from_groups",
        "identity.deactivate",
        "document.generate",
        "email.send",
    }
    assert all(book.continues_past(s) for s in book.steps)


def test_the_transfer_leaves_old_groups_and_joins_new_ones_side_by_side():
    book = shipped_playbook("person.transfer")
    assert layer_ids(book)[0] == ["leave_groups", "join_groups"]
    assert {s.kind for s in book.steps} == {
        "identity.remove_from_groups",
        "identity.add_to_groups",
        "email.send",
        "chat.post",
    }


def test_quire_ships_no_playbook_for_an_update_and_knows_no_other_event_types():
    with pytest.raises(NotFound):
        shipped_playbook("person.update")
    with pytest.raises(Invalid, match="unknown event type"):
        shipped_playbook("person.promote")


def test_a_shipped_definition_is_a_copy_the_caller_may_change():
    definition = shipped_definition("person.onboard")
    definition["steps"].clear()
    assert shipped_definition("person.onboard")["steps"]


def test_the_event_types_are_the_ones_the_tables_store():
    assert EVENT_TYPES == STORED_EVENT_TYPES


# -- the shipped playbooks render for real events ---------------------------------------------

FULL_PERSON = {
    "id": "hr-17",
    "email": "zoe@example.com",
    "given_name": "Zoë",
    "family_name": "O'Brien",
    "display_name": "Zoë O'Brien",
    "user_name": "zobrien",
    "manager_email": "max@example.com",
    "title": "Senior editor",
    "department": "Editorial",
    "groups": ["writers", "de"],
    "old_groups": ["writers", "fr"],
    "skills": ["editing", "German"],
    "start_date": "2025-03-03",
    "exit_date": "2025-06-30",
    "attributes": {"identity_id": "scim-77"},
}
# What HR must send; everything else it may leave null (as the webhook's payload stores it).
MINIMAL_PERSON = {
    **dict.fromkeys(FULL_PERSON),
    "id": "hr-18",
    "email": "ann@example.com",
    "given_name": "Ann",
    "family_name": "Lee",
    "groups": [],
    "skills": [],
    "attributes": {},
}
OUTPUTS = {
    "account": {"user_id": "scim-1", "user_name": "zobrien"},
    "deactivate": {"user_id": "scim-1"},
}


def rendered(event_type: str, person: dict[str, Any]) -> dict[str, Any]:
    """Each step's parameters as the executor renders them (None: skipped by its `when`)."""
    book = shipped_playbook(event_type)
    context = template_context(
        event={
            "id": "evt-1",
            "type": event_type,
            "occurred_at": "2025-03-01T08:00:00+00:00",
            "effective_on": None,
            "data": {"person": person},
        },
        person=person,
        tenant={"id": "t-1", "slug": "acme", "name": "Acme"},
        steps=OUTPUTS,
    )
    out: dict[str, Any] = {}
    for s in book.steps:
        if s.when and not evaluate_condition(s.when, context):
            out[s.id] = None
        else:
            out[s.id] = render_params(s.params, context)
    return out


def test_the_onboarding_renders_for_a_full_event():
    steps = rendered("person.onboard", FULL_PERSON)
    assert steps["account"] == {
        "user_name": "zobrien",
        "given_name": "Zoë",
        "family_name": "O'Brien",
        "display_name": "Zoë O'Brien",
        "email": "zoe@example.com",
        "active": True,
    }
    assert steps["groups"] == {"user_id": "scim-1", "groups": ["writers", "de"]}
    assert steps["specialist"]["skills"] == ["editing", "German"]
    assert steps["welcome_email"]["body"].startswith("Welcome aboard, Zoë!")
    assert "Your first day: 2025-03-03" in steps["welcome_email"]["body"]
    assert steps["first_day"]["start"] == "2025-03-03T09:30:00+00:00"
    assert steps["first_day"]["organizer"] == "max@example.com"
    assert steps["contract"]["name"] == "contract-zobrien.md"


def test_the_onboarding_renders_for_an_event_with_only_what_hr_must_send():
    steps = rendered("person.onboard", MINIMAL_PERSON)
    assert steps["account"]["user_name"] == "ann@example.com"
    assert steps["account"]["display_name"] == "Ann Lee"
    assert steps["groups"] is None  # no groups: skipped
    assert steps["first_day"] is None  # no manager, no start date: skipped
    assert "a specialist" in steps["draft"]["prompt"]
    assert "None" not in str([params for params in steps.values() if params is not None])


def test_the_welcome_email_uses_the_ai_draft_when_there_is_one():
    book = shipped_playbook("person.onboard")
    context = template_context(
        event={},
        person=FULL_PERSON,
        tenant={"name": "Acme"},
        steps={"draft": {"text": "Dear Zoë, a warm welcome."}},
    )
    body = render_params(book.step("welcome_email").params, context)["body"]
    assert body.startswith("Dear Zoë, a warm welcome.")


def test_the_exit_renders_for_full_and_minimal_events():
    steps = rendered("person.exit", FULL_PERSON)
    assert steps["remove_groups"] == {"user_id": "scim-1", "groups": ["writers", "de"]}
    assert steps["deactivate"] == {"user_name": "zobrien"}
    assert "2025-06-30" in steps["exit_letter"]["body"]
    assert steps["notify_manager"]["to"] == "max@example.com"
    minimal = rendered("person.exit", MINIMAL_PERSON)
    assert minimal["notify_manager"] is None
    assert "2025-03-01" in minimal["hold_payouts"]["reason"]


def test_the_transfer_moves_only_the_groups_that_change():
    steps = rendered("person.transfer", FULL_PERSON)
    assert steps["leave_groups"] == {"user_id": "scim-77", "user_name": None, "groups": ["fr"]}
    assert steps["join_groups"] == {"user_id": "scim-77", "user_name": None, "groups": ["de"]}
    assert steps["tell_manager"]["to"] == "max@example.com"
    minimal = rendered("person.transfer", MINIMAL_PERSON)
    assert minimal["leave_groups"] is None
    assert minimal["join_groups"] is None


@pytest.mark.parametrize(
    ("changes", "account"),
    [
        ({}, {"user_id": "scim-77", "user_name": None}),
        ({"attributes": {}}, {"user_id": None, "user_name": "zobrien"}),
        ({"attributes": {"identity_id": ""}}, {"user_id": None, "user_name": "zobrien"}),
        ({"attributes": {}, "user_name": None}, {"user_id": None, "user_name": "zoe@example.com"}),
    ],
    ids=["identity-id", "no-identity-id", "blank-identity-id", "no-user-name-either"],
)
def test_the_transfer_names_the_account_by_identity_id_if_hr_sends_one_else_by_user_name(
    changes: dict[str, Any], account: dict[str, Any]
):
    """HR rarely knows the account's id at the identity provider: without it the group steps
    look the account up by userName, as onboarding made it. Exactly one of the two is given,
    which is what the group steps' strict parameters accept."""
    steps = rendered("person.transfer", {**FULL_PERSON, **changes})
    for step_id in ("leave_groups", "join_groups"):
        params = steps[step_id]
        assert {k: params[k] for k in ("user_id", "user_name")} == account
        GroupsParams.model_validate(params)


# -- one problem, one path ---------------------------------------------------------------------


def test_a_valid_playbook_gives_its_model():
    book = validate_playbook(playbook(step("a"), step("b", needs=["a"])))
    assert isinstance(book, Playbook)
    assert book.step_ids == ["a", "b"]


def test_a_cycle_is_reported_on_the_need_that_closes_it_naming_its_steps():
    data = playbook(
        step("a", needs=["c"]),
        step("b", needs=["a"]),
        step("c", needs=["b"]),
        step("d"),
    )
    problems = problems_of(data)
    assert problems == [
        {
            "path": "steps[0].needs[0]",
            "message": "these steps need each other in a cycle: a needs c needs b needs a",
        }
    ]


def test_each_cycle_is_reported_once():
    data = playbook(
        step("a", needs=["b"]),
        step("b", needs=["a"]),
        step("c", needs=["d"]),
        step("d", needs=["c", "a"]),
    )
    assert paths_of(data) == ["steps[0].needs[0]", "steps[2].needs[0]"]
    assert "c needs d needs c" in message_at(data, "steps[2].needs[0]")


def test_a_step_needing_itself_is_reported():
    assert message_at(playbook(step("a", needs=["a"])), "steps[0].needs[0]") == (
        "a step cannot need itself"
    )


def test_an_unknown_kind_is_reported_with_a_suggestion():
    message = message_at(playbook(step("a", "identity.create_usr")), "steps[0].kind")
    assert "unknown step kind 'identity.create_usr'" in message
    assert "did you mean identity.create_user?" in message


def test_a_compensating_kind_is_not_a_step_of_its_own():
    message = message_at(playbook(step("a", "identity.delete_user")), "steps[0].kind")
    assert "can only be named under a step's compensate" in message


def test_a_bad_template_is_reported_at_its_parameter_with_jinjas_line():
    data = playbook(
        step("a", "email.send", params={**MINIMAL["email.send"], "to": ["ok", "{{ person.email"]})
    )
    assert paths_of(data) == ["steps[0].params.to[1]"]
    assert "line 1" in message_at(data, "steps[0].params.to[1]")


def test_an_unknown_filter_in_a_template_is_reported():
    data = playbook(step("a", params={"text": "Hi\n{{ person.email | shout }}"}))
    assert message_at(data, "steps[0].params.text") == (
        "template, line 2: No filter named 'shout'."
    )


def test_a_bad_when_is_reported():
    assert paths_of(playbook(step("a", when="person.groups |"))) == ["steps[0].when"]


def test_a_template_reading_a_name_the_context_lacks_is_reported():
    data = playbook(step("a", params={"text": "{{ evnt.type }}"}))
    message = message_at(data, "steps[0].params.text")
    assert "unknown name 'evnt'" in message
    assert "did you mean event?" in message


def test_a_template_reading_a_step_it_does_not_need_is_reported():
    data = playbook(
        step("account", "identity.create_user"),
        step(
            "groups",
            "identity.add_to_groups",
            params={"user_id": "{{ steps.account.user_id }}", "groups": ["w"]},
        ),
    )
    message = message_at(data, "steps[1].params.user_id")
    assert "does not need 'account'" in message


def test_a_template_may_read_a_step_its_needs_need():
    data = playbook(
        step("a"),
        step("b", needs=["a"]),
        step(
            "c", needs=["b"], params={"text": "{{ steps.a.response }}"}, when="steps.a.x is given"
        ),
    )
    validate_playbook(data)


def test_a_template_reading_a_step_that_does_not_exist_is_reported():
    data = playbook(step("a", params={"text": "{{ steps['nope'].x }}"}))
    assert "there is no step 'nope'" in message_at(data, "steps[0].params.text")


def test_a_when_reading_a_step_it_does_not_need_is_reported():
    data = playbook(step("a"), step("b", when="steps.a.response is given"))
    assert "does not need 'a'" in message_at(data, "steps[1].when")


def test_a_missing_required_parameter_is_reported_at_its_name():
    data = playbook(step("a", "identity.create_user", params={"given_name": "Zoe"}))
    assert problems_of(data) == [
        {
            "path": "steps[0].params.user_name",
            "message": "identity.create_user requires 'user_name'",
        }
    ]


def test_missing_alternatives_are_reported_on_the_parameters():
    data = playbook(step("a", "calendar.invite", params={"to": "x", "summary": "s", "start": "t"}))
    assert problems_of(data) == [
        {"path": "steps[0].params", "message": "calendar.invite requires start and end or date"}
    ]


def test_an_unknown_parameter_is_reported_with_a_suggestion():
    data = playbook(step("a", params={"text": "hi", "chanel": "#general"}))
    message = message_at(data, "steps[0].params.chanel")
    assert "chat.post has no parameter 'chanel'" in message
    assert "did you mean channel?" in message


def test_opting_out_of_a_compensation_the_kind_requires_is_reported():
    data = playbook(step("a", "identity.create_user", compensate=False))
    message = message_at(data, "steps[0].compensate")
    assert "identity.create_user must be compensated" in message


def test_opting_out_of_a_compensation_the_kind_does_not_require_is_allowed():
    book = validate_playbook(playbook(step("a", "document.generate", compensate=False)))
    assert book.steps[0].compensation() is None


def test_a_compensation_naming_an_unknown_kind_is_reported():
    data = playbook(step("a", "email.send", compensate={"kind": "email.unsend"}))
    assert paths_of(data) == ["steps[0].compensate.kind"]


def test_a_compensation_that_is_neither_an_object_nor_false_is_reported():
    data = playbook(step("a", compensate=True))
    assert problems_of(data) == [
        {
            "path": "steps[0].compensate",
            "message": "compensate is {kind, params}, or false for no compensation",
        }
    ]


def test_a_custom_compensations_parameters_are_checked_and_may_read_the_undo():
    good = step(
        "a",
        "email.send",
        compensate={"kind": "email.send", "params": {"subject": "Sorry", "body": "{{ undo.x }}"}},
    )
    validate_playbook(playbook(good))
    bad = step("a", "email.send", compensate={"kind": "email.send", "params": {"sujbect": "x"}})
    assert paths_of(playbook(bad)) == ["steps[0].compensate.params.sujbect"]


def test_duplicate_ids_are_reported_on_the_later_step():
    data = playbook(step("a"), step("b"), step("a"))
    assert problems_of(data) == [
        {"path": "steps[2].id", "message": "duplicate step id 'a' (also steps[0])"}
    ]


def test_an_unknown_need_is_reported():
    data = playbook(step("a"), step("b", needs=["a", "acount"]))
    assert problems_of(data) == [{"path": "steps[1].needs[1]", "message": "unknown step 'acount'"}]


def test_a_need_listed_twice_is_reported():
    data = playbook(step("a"), step("b", needs=["a", "a"]))
    assert paths_of(data) == ["steps[1].needs[1]"]


@pytest.mark.parametrize(
    ("step_id", "says"),
    [
        ("Create-User", "lowercase letters, digits and '_'"),
        ("1st", "starting with a letter"),
        ("items", "cannot read as steps.<id>"),
        ("a" * 65, "at most 64 characters"),
    ],
)
def test_a_step_id_is_a_slug_templates_can_read(step_id, says):
    assert says in message_at(playbook(step(step_id)), "steps[0].id")


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"retry": {"attempts": 11}}, "steps[0].retry.attempts"),
        ({"retry": {"jitter": 1.5}}, "steps[0].retry.jitter"),
        ({"retry": {"backoff_seconds": 10, "max_backoff_seconds": 5}}, "steps[0].retry"),
        ({"timeout_seconds": 0}, "steps[0].timeout_seconds"),
        ({"timeout_seconds": 301}, "steps[0].timeout_seconds"),
        ({"retries": 3}, "steps[0].retries"),
        ({"when": "bad\x00"}, "steps[0].when"),
        (
            {"params": {"text": "a", "blocks": [{"at": dt.date(2025, 1, 1)}]}},
            "steps[0].params.blocks[0].at",
        ),
        ({"params": {"text": float("nan")}}, "steps[0].params.text"),
    ],
)
def test_a_bad_field_is_reported_at_its_path(fields, path):
    assert paths_of(playbook(step("a", **fields))) == [path]


def test_a_date_left_unquoted_in_yaml_is_explained():
    data = playbook(
        step(
            "a",
            "calendar.invite",
            params={**MINIMAL["calendar.invite"], "date": dt.date(2025, 3, 3)},
        )
    )
    assert "quote it to make it a string" in message_at(data, "steps[0].params.date")


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (playbook(step("a"), event_type="person.promote"), "event_type"),
        (playbook(step("a"), name=""), "name"),
        (playbook(step("a"), owner="me"), "owner"),
        (playbook(), "steps"),
        (playbook(*[step(f"s{i}") for i in range(51)]), "steps"),
        ([], ""),
        ("steps: []", ""),
    ],
)
def test_a_bad_playbook_field_is_reported_at_its_path(data, path):
    assert path in paths_of(data)


def test_a_playbook_that_is_not_an_object_says_what_one_is():
    assert problems_of(None)[0]["message"].startswith("a playbook is an object")


def test_a_playbook_stored_for_another_event_type_is_reported():
    data = playbook(step("a"))
    assert problems_of(data, event_type="person.exit") == [
        {"path": "event_type", "message": "says person.onboard, but is stored for person.exit"}
    ]
    validate_playbook(data, event_type="person.onboard")


def test_several_problems_are_all_reported_at_once_in_path_order():
    data = playbook(
        step("account", "identity.create_usr"),
        step(
            "groups",
            "identity.add_to_groups",
            needs=["acount", "welcome"],
            params={"groups": ["w"]},
        ),
        step(
            "welcome",
            "email.send",
            needs=["groups"],
            params={"to": "{{ person.email", "subject": "s", "body": "b"},
        ),
        step("account", "chat.post", when="and"),
        step("contract", "identity.create_user", compensate=False, retry={"attempts": 99}),
        step("letter", "document.generate", compensate={"kind": "document.shred"}),
        name="",
    )
    assert paths_of(data) == [
        "name",
        "steps[0].kind",
        "steps[1].needs[0]",
        "steps[1].needs[1]",
        "steps[1].params",
        "steps[2].params.to",
        "steps[3].id",
        "steps[3].when",
        "steps[4].compensate",
        "steps[4].retry.attempts",
        "steps[5].compensate.kind",
    ]
    assert "groups needs welcome needs groups" in message_at(data, "steps[1].needs[1]")


def test_a_step_with_a_bad_field_still_has_its_other_problems_reported():
    data = playbook(
        step("a", "chat.post", timeout_seconds=-1, params={"text": "{{ oops", "chanel": "x"})
    )
    assert paths_of(data) == [
        "steps[0].params.chanel",
        "steps[0].params.text",
        "steps[0].timeout_seconds",
    ]


def test_the_exception_is_an_invalid_domain_error_carrying_the_problems():
    with pytest.raises(Invalid) as caught:
        validate_playbook(playbook(step("a", "nope.kind"), step("a")))
    error = caught.value
    assert isinstance(error, PlaybookInvalid)
    assert error.code == "playbook_invalid"
    assert error.details == {"problems": error.problems}
    assert error.message.startswith("the playbook has 2 problems: steps[0].kind: unknown step")
    assert all(set(p) == {"path", "message"} for p in error.problems)


def test_validation_does_not_change_what_it_is_given():
    data = shipped_definition("person.exit")
    before = copy.deepcopy(data)
    validate_playbook(data)
    assert data == before


# -- compensations and retries ----------------------------------------------------------------


def test_a_step_without_compensate_is_undone_by_its_kinds_default():
    book = validate_playbook(playbook(step("a", "identity.create_user"), step("b")))
    assert book.steps[0].compensation() == Compensation(kind="identity.delete_user")
    assert book.steps[1].compensation() is None  # a chat post: nothing to undo


def test_a_custom_compensation_replaces_the_default():
    custom = {"kind": "chat.post", "params": {"text": "Sorry, {{ undo.user_id }} is gone"}}
    book = validate_playbook(playbook(step("a", "identity.create_user", compensate=custom)))
    assert book.steps[0].compensation() == Compensation(**custom)


def test_retries_back_off_exponentially_up_to_the_cap():
    policy = RetryPolicy(attempts=5, backoff_seconds=1, backoff_factor=3, max_backoff_seconds=20)
    assert policy.delays() == [1, 3, 9, 20, 20]
    assert RetryPolicy(attempts=0).delays() == []


def test_a_step_has_sensible_defaults():
    book = validate_playbook(playbook(step("a")))
    s = book.steps[0]
    assert (s.retry.attempts, s.retry.jitter, s.timeout_seconds, s.needs, s.when) == (
        3,
        0.2,
        30.0,
        [],
        None,
    )
    assert not book.continue_on_failure
    assert not book.continues_past(s)


def test_a_step_may_carry_on_past_its_own_failure_and_an_exit_step_may_stop():
    book = validate_playbook(
        playbook(
            step("a", continue_on_failure=True), step("b", continue_on_failure=False), step("c")
        )
    )
    assert [book.continues_past(s) for s in book.steps] == [True, False, False]
    exit_book = validate_playbook(
        playbook(step("a", continue_on_failure=False), step("b"), continue_on_failure=True)
    )
    assert [exit_book.continues_past(s) for s in exit_book.steps] == [False, True]


# -- waves ------------------------------------------------------------------------------------


def test_layers_put_steps_whose_needs_are_met_together_in_playbook_order():
    book = validate_playbook(
        playbook(
            step("notify", needs=["groups", "letter"]),
            step("letter"),
            step("account"),
            step("groups", needs=["account"]),
        )
    )
    assert layer_ids(book) == [["letter", "account"], ["groups"], ["notify"]]


def test_a_diamond_runs_its_middle_together():
    book = validate_playbook(
        playbook(
            step("a"), step("b", needs=["a"]), step("c", needs=["a"]), step("d", needs=["b", "c"])
        )
    )
    assert layer_ids(book) == [["a"], ["b", "c"], ["d"]]


def test_layers_of_a_cyclic_playbook_that_skipped_validation_are_refused():
    book = Playbook.model_validate(playbook(step("a", needs=["b"]), step("b", needs=["a"])))
    with pytest.raises(PlaybookInvalid, match="can never start: a, b"):
        topological_layers(book)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=12))
    order = draw(st.permutations(list(range(count))))
    steps = []
    for position, n in enumerate(order):
        earlier = [f"s{m}" for m in order[:position]]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        steps.append(step(f"s{n}", needs=needs))
    shuffled = draw(st.permutations(steps))
    return playbook(*shuffled)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_every_step_runs_in_exactly_one_wave_after_all_it_needs(data):
    book = validate_playbook(data)
    wave_of = {s.id: n for n, layer in enumerate(topological_layers(book)) for s in layer}
    assert sorted(wave_of) == sorted(book.step_ids)
    for s in book.steps:
        assert all(wave_of[need] < wave_of[s.id] for need in s.needs)
        if s.needs:  # as early as it can be
            assert wave_of[s.id] == 1 + max(wave_of[need] for need in s.needs)
        else:
            assert wave_of[s.id] == 0


def test_every_kind_with_its_minimal_parameters_is_a_valid_step():
    forward = [name for name, kind in KINDS.items() if kind.forward]
    assert set(forward) == set(MINIMAL)
    validate_playbook(playbook(*[step(f"s{i}", name) for i, name in enumerate(forward)]))
