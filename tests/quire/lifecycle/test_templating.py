"""Rendering a step's parameters in Jinja2's sandbox, and `when` conditions as safe
expressions: native values, strict undefined names, refused escapes, bounded operators."""

from __future__ import annotations

from typing import Any

import pytest

from quire.errors import Invalid
from quire.lifecycle.templating import (
    CONTEXT_KEYS,
    Reads,
    TemplateFailure,
    TemplateInvalid,
    check_condition,
    check_template,
    evaluate_condition,
    render_params,
    render_string,
    template_context,
)


@pytest.fixture
def context() -> dict[str, Any]:
    return template_context(
        event={"id": "evt-1", "type": "person.onboard", "previous": {"groups": ["fr"]}},
        person={
            "email": "zoe@example.com",
            "given_name": "Zoë",
            "family_name": "O'Brien",
            "groups": ["writers", "de"],
            "headcount": 3,
            "manager_email": None,
        },
        tenant={"id": "t-1", "name": "Acme"},
        steps={"account": {"user_id": "u-42"}},
        step_ids=["account", "draft"],
    )


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ person.__class__ }}",
    "{{ person['__class__'] }}",
    "{{ '{0.__class__}'.format(person) }}",
    "{{ person.groups.append('admins') }}",
    "{{ person.update({'email': 'evil@example.com'}) }}",
    "{{ range.__globals__ }}",
    "x {{ ().__class__.__base__ }} y",
]


# -- the context -------------------------------------------------------------------------------


def test_the_context_has_the_event_the_person_the_tenant_and_the_steps(context):
    assert tuple(context) == CONTEXT_KEYS == ("event", "person", "tenant", "steps")


def test_steps_that_have_not_run_read_as_empty(context):
    assert context["steps"] == {"account": {"user_id": "u-42"}, "draft": {}}


# -- rendering ---------------------------------------------------------------------------------


def test_a_string_with_text_around_a_template_renders_to_a_string(context):
    rendered = render_params({"subject": "Welcome, {{ person.given_name }}!"}, context)
    assert rendered == {"subject": "Welcome, Zoë!"}


def test_a_string_that_is_one_expression_keeps_its_native_type(context):
    rendered = render_params(
        {
            "groups": "{{ person.groups }}",
            "count": "{{ person.headcount + 1 }}",
            "active": "{{ person.headcount > 1 }}",
            "none": "{{ person.manager_email }}",
            "pair": "{{ (1, 2) }}",
            "mapping": "{{ {'id': steps.account.user_id} }}",
        },
        context,
    )
    assert rendered == {
        "groups": ["writers", "de"],
        "count": 4,
        "active": True,
        "none": None,
        "pair": [1, 2],
        "mapping": {"id": "u-42"},
    }


def test_two_expressions_in_one_string_render_to_a_string(context):
    assert render_string("{{ person.headcount }}{{ person.headcount }}", context) == "33"


def test_rendering_walks_nested_lists_and_objects_and_keeps_other_values(context):
    params = {"to": ["{{ person.email }}", "ops@example.com"], "meta": {"n": 1, "ok": True}}
    assert render_params(params, context) == {
        "to": ["zoe@example.com", "ops@example.com"],
        "meta": {"n": 1, "ok": True},
    }


def test_a_later_step_reads_an_earlier_steps_output(context):
    assert render_params({"user_id": "{{ steps.account.user_id }}"}, context) == {"user_id": "u-42"}


def test_a_step_that_did_not_run_can_be_defaulted(context):
    rendered = render_string("{{ steps.draft.text | default('Welcome aboard!') }}", context)
    assert rendered == "Welcome aboard!"


def test_a_missing_step_can_be_defaulted_even_when_absent_from_the_context(context):
    context["steps"].pop("draft")
    assert render_string("{{ steps.draft.text | default('hi') }}", context) == "hi"


def test_none_prints_as_nothing_in_text(context):
    assert render_string("manager: [{{ person.manager_email }}]", context) == "manager: []"


def test_the_slug_filter_makes_ascii_names(context):
    rendered = render_string("{{ (person.given_name ~ ' ' ~ person.family_name) | slug }}", context)
    assert rendered == "zoe-obrien"
    typographic = "Zo\u00eb  O\u2019Brien!"
    assert render_string("{{ name | slug('_') }}", {"name": typographic}) == "zoe_obrien"


def test_built_in_filters_people_need_work(context):
    assert render_string("{{ person.groups | join(', ') | upper }}", context) == "WRITERS, DE"
    assert render_string("{{ person.nickname | default(person.given_name) | lower }}", context) == (
        "zoë"
    )
    kept = render_string("{{ person.groups | reject('in', ['de']) | list }}", context)
    assert kept == ["writers"]


def test_text_is_not_html_escaped(context):
    assert render_string("{{ person.family_name }} & <co>", context) == "O'Brien & <co>"


def test_a_string_without_template_syntax_is_taken_as_it_is(context):
    assert render_string("50% off {braces}", context) == "50% off {braces}"


# -- failures while rendering --------------------------------------------------------------------


def test_an_undefined_name_fails_with_the_parameters_path(context):
    with pytest.raises(TemplateFailure) as caught:
        render_params({"to": ["ok@example.com", "{{ person.nickname }}"]}, context)
    assert caught.value.path == "params.to[1]"
    assert "nickname" in caught.value.detail


def test_an_undefined_name_in_text_fails_too(context):
    with pytest.raises(TemplateFailure) as caught:
        render_params({"body": {"text": "Hi {{ persn.given_name }}"}}, context)
    assert caught.value.path == "params.body.text"
    assert "persn" in caught.value.detail


def test_an_undefined_step_output_printed_without_a_default_fails(context):
    with pytest.raises(TemplateFailure, match="text"):
        render_string("{{ steps.draft.text }}", context, "params.body")


def test_testing_or_iterating_an_undefined_value_fails(context):
    for text in ("{% if person.nickname %}x{% endif %}", "{% for g in person.roles %}{% endfor %}"):
        with pytest.raises(TemplateFailure):
            render_string(text, context)


def test_a_template_failure_is_an_invalid_domain_error(context):
    with pytest.raises(Invalid) as caught:
        render_string("{{ nope }}", context, "params.x")
    assert caught.value.code == "template_failure"
    assert caught.value.details == {"path": "params.x"}


def test_an_expression_whose_value_is_not_json_fails(context):
    with pytest.raises(TemplateFailure, match="not a JSON value"):
        render_string("{{ range }}", context)


def test_a_filter_given_the_wrong_thing_fails_cleanly(context):
    with pytest.raises(TemplateFailure, match=r"params\.n"):
        render_params({"n": "{{ person.headcount / 0 }}"}, context)


@pytest.mark.parametrize("text", ESCAPES)
def test_sandbox_escapes_are_refused(text, context):
    with pytest.raises(TemplateFailure) as caught:
        render_params({"body": text}, context)
    assert caught.value.path == "params.body"
    assert context["person"]["groups"] == ["writers", "de"]  # nothing was changed either
    assert context["person"]["email"] == "zoe@example.com"


def test_a_refused_attribute_says_the_sandbox_refused_it(context):
    with pytest.raises(TemplateFailure, match="refused by the sandbox"):
        render_string("{{ ''.__class__.__mro__ }}", context)


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'a' * 100000000 }}",
        "{{ [0] * 100000000 }}",
        "{{ 9 ** 99999 }}",
        "{{ (10 ** 900) ** 900 }}",
    ],
)
def test_operators_cannot_build_huge_values(text, context):
    with pytest.raises(TemplateFailure, match="refused by the sandbox"):
        render_string(text, context)


def test_ordinary_arithmetic_still_works(context):
    assert render_string("{{ 2 ** 10 * 3 }}", context) == 3072
    assert render_string("{{ '-' * 5 }}", context) == "-----"


# -- checking without rendering ------------------------------------------------------------------


def test_check_template_says_what_a_template_reads():
    reads = check_template(
        "{{ steps.account.user_id }} {{ steps['draft'].text }} {{ person.email }}"
    )
    assert reads == Reads(
        names=frozenset({"steps", "person"}), steps=frozenset({"account", "draft"})
    )


def test_names_a_template_declares_itself_are_not_read_from_the_context():
    reads = check_template("{% for g in person.groups %}{{ g }}{% endfor %}{% set x = 1 %}{{ x }}")
    assert reads.names == {"person"}


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("{{ person.email", 1, "unexpected end of template"),
        ("Hello\n\n{% if person.email %}x", 3, "endif"),
        ("{{ person.email | no_such_filter }}", 1, "No filter named 'no_such_filter'"),
        ("first\n{{ x is no_such_test }}", 2, "No test named 'no_such_test'"),
        ("{% include 'secrets.txt' %}", 1, "cannot include, import or extend"),
        ("\n{% extends 'base.html' %}", 2, "cannot include, import or extend"),
        ("{% import 'macros' as m %}", 1, "cannot include, import or extend"),
    ],
)
def test_a_bad_template_gives_jinjas_message_and_line(text, line, says):
    with pytest.raises(TemplateInvalid) as caught:
        check_template(text)
    assert caught.value.line == line
    assert says in caught.value.message
    assert f"line {line}" in caught.value.message


def test_checking_a_template_does_not_compute_it():
    check_template("{{ 9 ** 9 ** 9 ** 9 }}")  # folded at compile time, this would never end


def test_rendering_a_template_that_does_not_compile_is_a_failure_with_its_path(context):
    with pytest.raises(TemplateFailure) as caught:
        render_params({"body": "{{ oops"}, context)
    assert caught.value.path == "params.body"


# -- conditions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("person.groups | length > 1", True),
        ("'admins' in person.groups", False),
        ("person.manager_email is defined", True),
        ("person.nickname is defined", False),
        ("person.nickname is not defined and tenant.name == 'Acme'", True),
        ("steps.draft.text is defined", False),
        ("steps.account.user_id", True),
        ("person.headcount >= 3 and event.type == 'person.onboard'", True),
        ("not person.groups", False),
    ],
)
def test_a_condition_is_true_or_false(expr, expected, context):
    assert evaluate_condition(expr, context) is expected


def test_a_condition_on_an_undefined_name_fails_rather_than_being_false(context):
    with pytest.raises(TemplateFailure) as caught:
        evaluate_condition("person.nickname", context, path="steps[3].when")
    assert caught.value.path == "steps[3].when"


@pytest.mark.parametrize(
    "expr",
    [
        "''.__class__.__mro__[1].__subclasses__()",
        "cycler.__init__.__globals__['os'].system('true')",
        "person.update({'email': 'x'})",
        "range.__globals__",
    ],
)
def test_a_condition_cannot_call_arbitrary_code(expr, context):
    with pytest.raises(TemplateFailure, match="refused by the sandbox"):
        evaluate_condition(expr, context)
    assert context["person"]["email"] == "zoe@example.com"


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "import os",
        "open('/etc/passwd').read()",
    ],
)
def test_pythons_builtins_and_statements_are_out_of_a_conditions_reach(expr, context):
    with pytest.raises(TemplateFailure):
        evaluate_condition(expr, context)


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("person.email ==", "line 1"),
        ("person.email }} {{ person.name", "unexpected"),
        ("a b", "unexpected text after the expression"),
        ("   ", "empty"),
        ("person.email | nope", "No filter named 'nope'"),
    ],
)
def test_a_bad_condition_is_refused_when_checked(expr, says):
    with pytest.raises(TemplateInvalid, match=says):
        check_condition(expr)


def test_check_condition_says_what_a_condition_reads():
    reads = check_condition("steps.draft.text is defined and person.groups")
    assert reads == Reads(names=frozenset({"steps", "person"}), steps=frozenset({"draft"}))
