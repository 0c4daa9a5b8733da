"""A step's parameters rendered from what the run knows, in Jinja2's sandbox.

Playbooks are written by a tenant's admins and stored as data, so their templates are untrusted
code: they run in `ImmutableSandboxedEnvironment` (no attribute starting with `_`, no Python
internals, no mutating a list or dict, no `str.format` escape), with no loader (no `include`,
`import` or `extends`: refused when the template is checked), and `*` and `**` intercepted so a
template cannot build a gigabyte string or a number with a billion digits. A `when` condition
is a Jinja expression compiled by `compile_expression`: never Python's `eval`.

The context a template reads (the executor builds it; `template_context` is a helper):

    event   the event: `id`, `type`, `occurred_at`, `effective_on` (an exit dated ahead) and
            `data`, the payload as HR sent it (`event.data.person`, ...)
    person  the person it is about (HR's fields: `id`, `email`, `given_name`, `family_name`,
            `display_name`, `user_name`, `manager_email`, `title`, `department`, `groups`,
            `old_groups` (a transfer), `skills`, `start_date`, `exit_date`, `attributes`)
    tenant  the tenant: `id`, `slug`, `name`
    steps   the output of each step done so far, by step id (`steps.account.user_id`)
    undo    (a compensation's parameters only) what the step being undone recorded

Undefined names are errors (strict), with one allowance: reading into something missing chains
(`steps.draft.text` when `draft` did not run is undefined, not an error) so that `default` can
catch it, as in `{{ steps.draft.text | default("Welcome!") }}`; printing, testing or iterating
the undefined value still fails. HR leaves fields it does not know null, so null counts as
missing too: `default` replaces it, and the test `is given` asks for a value that is neither
undefined nor null (`when: "person.manager_email is given"`). `None` prints as "".

A string that is exactly one `{{ expression }}` renders to the expression's own JSON value (a
list of groups stays a list, a number a number); any other string renders to a string.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, nodes
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.meta import find_undeclared_variables
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from quire.errors import Invalid

CONTEXT_KEYS = ("event", "person", "tenant", "steps")
UNDO_KEY = "undo"  # the extra key a compensation's parameters may read

# Bounds on what one template may build: a contract's text is far below them.
MAX_SEQUENCE = 1_000_000  # characters of a string (or items of a list) made by `*`, or rendered
MAX_EXPONENT = 1_000
MAX_BITS = 100_000  # of a number made by `*` or `**` (about 30,000 digits)
MAX_SOURCE = 100_000  # characters of one template or condition


class TemplateInvalid(Invalid):
    """A template or condition that does not compile: `line` is where Jinja stopped."""

    code = "template_invalid"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message, line=line)
        self.line = line


class TemplateFailure(Invalid):
    """A template that compiled but could not be rendered with this run's context (an
    undefined name, a refused attribute, a filter given the wrong thing). `path` names the
    parameter (`params.groups[0]`, `when`)."""

    code = "template_failure"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}", path=path)
        self.path = path
        self.detail = detail


class StrictChainableUndefined(ChainableUndefined, StrictUndefined):
    """Strict (printing, comparing, iterating or testing it fails) but chainable (reading an
    attribute of it gives it back), so `default` can rescue `steps.draft.text`."""

    __slots__ = ()


def _slug(value: Any, separator: str = "-") -> str:
    """`Zoë O'Brien` -> `zoe-obrien`: ASCII letters and digits joined by `separator` (for file
    names and handles); apostrophes do not split a word."""
    text = re.sub(r"['\u2019]", "", str(value))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", separator, text.lower()).strip(separator)


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's `default`, with null taken as missing (HR's payloads leave unknown fields
    null); `boolean=True` replaces any false value (an empty string or list) too."""
    if isinstance(value, Undefined) or value is None or (boolean and not value):
        return default_value
    return value


def _given(value: Any) -> bool:
    """`x is given`: x is defined and not null."""
    return not isinstance(value, Undefined) and value is not None


def _finalize(value: Any) -> Any:
    return "" if value is None else value


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with `*` and `**` bounded (intercepted operators are also not folded at
    compile time, so checking a template cannot be made to compute them either)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                sized = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if sized and len(sequence) * times > MAX_SEQUENCE:
                    raise SecurityError(f"'*' would build more than {MAX_SEQUENCE} items")
            if _int(left) and _int(right) and _bits(left) + _bits(right) > MAX_BITS:
                raise SecurityError(f"'*' would make a number of more than {MAX_BITS} bits")
        if operator == "**" and isinstance(right, int | float):
            if abs(right) > MAX_EXPONENT:
                raise SecurityError(f"'**' is limited to exponents up to {MAX_EXPONENT}")
            if _int(left) and _bits(left) * abs(right) > MAX_BITS:
                raise SecurityError(f"'**' would make a number of more than {MAX_BITS} bits")
        return super().call_binop(context, operator, left, right)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bits(value: int) -> int:
    return abs(value).bit_length()


def _environment() -> _Sandbox:
    env = _Sandbox(
        undefined=StrictChainableUndefined,
        autoescape=False,  # plain text: emails, chat posts, documents
        loader=None,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.globals.pop("lipsum", None)  # nothing a playbook needs, and it makes text at will
    env.filters["slug"] = _slug
    env.filters["default"] = env.filters["d"] = _default
    env.tests["given"] = _given
    return env


ENV = _environment()
ALLOWED_NAMES = frozenset(CONTEXT_KEYS) | frozenset(ENV.globals)
_FORBIDDEN_TAGS = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


@dataclass(frozen=True)
class Reads:
    """What a template or condition reads: its top-level names (`event`, `person`, ...) and
    the step ids it names as `steps.<id>` or `steps["<id>"]`."""

    names: frozenset[str]
    steps: frozenset[str]


def is_template(text: str) -> bool:
    """Whether a string holds any Jinja syntax (a plain string is taken as it is)."""
    return "{{" in text or "{%" in text or "{#" in text


def _syntax_error(exc: TemplateSyntaxError, what: str) -> TemplateInvalid:
    return TemplateInvalid(f"{what}, line {exc.lineno}: {exc.message}", line=exc.lineno)


def _too_long(text: str, what: str) -> None:
    if len(text) > MAX_SOURCE:
        raise TemplateInvalid(f"{what} is longer than {MAX_SOURCE} characters", line=None)


def _reads(tree: nodes.Template) -> Reads:
    steps: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "steps"):
            continue
        if isinstance(node, nodes.Getattr):
            steps.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            steps.add(node.arg.value)
    return Reads(frozenset(find_undeclared_variables(tree)), frozenset(steps))


@lru_cache(maxsize=2048)
def _parse_template(text: str) -> tuple[Reads, Template, TemplateExpression | None]:
    """What the text reads, the text compiled and, when it is exactly one `{{ expr }}`, that
    expression compiled on its own (so it renders to its native value). Each compilation
    parses afresh: the compiler's optimizer rewrites the tree it is given."""
    _too_long(text, "the template")
    try:
        tree = ENV.parse(text)
        for tag in tree.find_all(_FORBIDDEN_TAGS):
            raise TemplateSyntaxError(
                "a template cannot include, import or extend other templates", tag.lineno
            )
        reads = _reads(tree)
        native = None
        body = tree.body
        if (
            len(body) == 1
            and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            output = ENV.parse(text).body[0]
            assert isinstance(output, nodes.Output)
            native = _expression(output.nodes[0])
        template = ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc, "template") from None
    return reads, template, native


def _expression(expr: nodes.Expr) -> TemplateExpression:
    assign = nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)
    return TemplateExpression(ENV.from_string(nodes.Template([assign], lineno=1)), False)


def _parse_expression(expr: str) -> nodes.Expr:
    """One expression and nothing after it, as `compile_expression` parses it."""
    parser = Parser(ENV, expr, state="variable")
    node = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(
            "unexpected text after the expression", parser.stream.current.lineno
        )
    node.set_environment(ENV)
    return node


@lru_cache(maxsize=2048)
def _parse_condition(expr: str) -> tuple[Reads, TemplateExpression]:
    """What the condition reads, and the condition compiled."""
    _too_long(expr, "the condition")
    if not expr.strip():
        raise TemplateInvalid("condition, line 1: the condition is empty", line=1)
    try:
        tree = nodes.Template([nodes.Output([_parse_expression(expr)])], lineno=1)
        tree.set_environment(ENV)
        reads = _reads(tree)
        compiled = _expression(_parse_expression(expr))
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc, "condition") from None
    return reads, compiled


def check_template(text: str) -> Reads:
    """Compile `text` without rendering it: raise `TemplateInvalid` (Jinja's message and line)
    when it does not compile (bad syntax, an unknown filter or test, an `include`), else
    return what it reads."""
    if not is_template(text):
        return Reads(frozenset(), frozenset())
    reads, _, _ = _parse_template(text)
    return reads


def check_condition(expr: str) -> Reads:
    """Compile a `when` condition without evaluating it: `TemplateInvalid` when it is not one
    well-formed expression, else what it reads."""
    reads, _ = _parse_condition(expr)
    return reads


def template_context(
    *,
    event: Mapping[str, Any],
    person: Mapping[str, Any],
    tenant: Mapping[str, Any],
    steps: Mapping[str, Mapping[str, Any] | None],
    step_ids: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """The context templates read (see the module's docstring). Every id in `step_ids` (the
    playbook's steps) is present in `steps`: those with no output yet read as `{}`."""
    outputs: dict[str, Any] = {step_id: {} for step_id in step_ids}
    outputs.update({k: dict(v or {}) for k, v in steps.items()})
    return {"event": dict(event), "person": dict(person), "tenant": dict(tenant), "steps": outputs}


def _fail(path: str, exc: Exception) -> TemplateFailure:
    if isinstance(exc, SecurityError):
        return TemplateFailure(path, f"refused by the sandbox: {exc}")
    message = getattr(exc, "message", None) or str(exc)
    return TemplateFailure(path, f"{type(exc).__name__}: {message}")


def _json_value(value: Any, path: str) -> Any:
    """The expression's value as JSON (tuples become lists); an undefined or non-JSON value
    (a function, a cycler) is a failure."""
    if isinstance(value, Undefined):
        str(value)  # raises the strict error: what is undefined, or what was refused
        raise TypeError("the expression is undefined")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, f"{path}.{k}") for k, v in value.items()}
    raise TypeError(f"the expression gives a {type(value).__name__}, not a JSON value")


def render_string(text: str, context: Mapping[str, Any], path: str = "value") -> Any:
    """One string rendered: its native value when it is exactly one `{{ expr }}`, else text."""
    if not is_template(text):
        return text
    try:
        _, template, native = _parse_template(text)
    except TemplateInvalid as exc:
        raise TemplateFailure(path, exc.message) from None
    try:
        if native is not None:
            return _json_value(native(**context), path)
        rendered = template.render(**context)
    except Exception as exc:  # the template's own failure, whatever a filter raised
        raise _fail(path, exc) from None
    if len(rendered) > MAX_SEQUENCE:
        raise TemplateFailure(path, f"renders to more than {MAX_SEQUENCE} characters")
    return rendered


def render_value(value: Any, context: Mapping[str, Any], path: str = "value") -> Any:
    """A JSON value with every string in it rendered (dict keys are taken as they are)."""
    if isinstance(value, str):
        return render_string(value, context, path)
    if isinstance(value, Mapping):
        return {k: render_value(v, context, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def render_params(
    params: Mapping[str, Any], context: Mapping[str, Any], *, path: str = "params"
) -> dict[str, Any]:
    """A step's parameters rendered from the run's context; `TemplateFailure` names the
    parameter that could not be (`params.groups[1]`)."""
    return {k: render_value(v, context, f"{path}.{k}") for k, v in params.items()}


def evaluate_condition(expr: str, context: Mapping[str, Any], *, path: str = "when") -> bool:
    """Whether a `when` condition holds for this run. An undefined name is a failure, not
    False: write `person.manager_email is defined` to ask."""
    try:
        _, compiled = _parse_condition(expr)
    except TemplateInvalid as exc:
        raise TemplateFailure(path, exc.message) from None
    try:
        value = compiled(**context)
        if isinstance(value, Undefined):
            str(value)  # raises the strict error
        return bool(value)
    except Exception as exc:
        raise _fail(path, exc) from None
