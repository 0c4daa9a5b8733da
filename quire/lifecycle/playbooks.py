"""Playbooks: what to do when a person joins, leaves or moves, as data a tenant's admin edits.

A playbook is a DAG of steps. Each step has a kind (`kinds.py`), parameters templated from the
event (`templating.py`), the steps it `needs` (it starts when they are done, and may read their
output as `steps.<id>`), an optional `when` condition, a retry policy, a timeout and how it is
undone (`compensate`: None takes the kind's default undo, `false` opts out where the kind allows
it, `{kind, params}` names another).

`validate_playbook` is the one gate: the pydantic models check the shapes, then the graph and
the templates are checked, and every problem is reported at once with its path
(`steps[2].needs[0]`), so an admin fixes a playbook in one round trip, not one error at a time.
A `Playbook` built with `model_validate` alone has its shapes checked, not its graph.

Semantics the executor follows (documented here because the playbook's author relies on them):
a step whose `when` is false, or whose provider is not configured (a skippable kind), is
skipped and counts as done for the steps that need it; they read its output as `{}`. With
`continue_on_failure` (exit playbooks) a step that fails for good is parked and the run carries
on, steps that need it included, so access is removed everywhere it can be; otherwise the run
stops and what was done is compensated in reverse order. A step may say otherwise for itself
(its own `continue_on_failure`; `Playbook.continues_past(step)` decides).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from quire.errors import Invalid
from quire.lifecycle.kinds import FORWARD_KINDS, KINDS, Kind
from quire.lifecycle.templating import (
    ALLOWED_NAMES,
    CONTEXT_KEYS,
    UNDO_KEY,
    Reads,
    TemplateInvalid,
    check_condition,
    check_template,
)
from quire.schemas import Input

EventType = Literal["person.onboard", "person.exit", "person.transfer", "person.update"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__

MAX_STEPS = 50
MAX_DEPTH = 32  # nesting of a parameter's lists and objects
STEP_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
# A template reads `steps.<id>`: an id that is also a dict method (`steps.items`) would read
# the method, not the step.
RESERVED_IDS = frozenset(name for name in dir(dict) if not name.startswith("_"))
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Problem(TypedDict):
    """One thing wrong with a playbook: where (`steps[2].params.to`; "" is the playbook
    itself) and what."""

    path: str
    message: str


class PlaybookInvalid(Invalid):
    """A playbook that cannot be stored or run. `problems` lists every problem found."""

    code = "playbook_invalid"

    def __init__(self, problems: list[Problem]) -> None:
        count = len(problems)
        shown = "; ".join(f"{p['path'] or 'playbook'}: {p['message']}" for p in problems[:5])
        more = f" (and {count - 5} more)" if count > 5 else ""
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"the playbook has {count} {noun}: {shown}{more}", problems=problems)
        self.problems = problems


def _json_problem(value: Any, at: tuple[str | int, ...] = ()) -> tuple[list[str | int], str] | None:
    """Where in `value` something is not a JSON value (the keys and indexes leading to it),
    and what it is; None when all of it is JSON."""
    if len(at) > MAX_DEPTH:
        return list(at), f"nested deeper than {MAX_DEPTH} levels"
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (list(at), f"{value} is not a JSON number")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if found := _json_problem(item, (*at, i)):
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return list(at), f"the key {key!r} is not a string"
            if found := _json_problem(item, (*at, key)):
                return found
        return None
    what = type(value).__name__
    hint = " (quote it to make it a string)" if what in ("date", "datetime", "time") else ""
    return list(at), f"a {what} is not a JSON value{hint}"


def _json_params(value: dict[str, Any]) -> dict[str, Any]:
    """Parameters are JSON (they are stored as JSON, and PostgreSQL refuses NaN): the error
    carries where the offending value is, for its path."""
    if found := _json_problem(value):
        at, what = found
        raise PydanticCustomError("json_value", "{what}", {"at": at, "what": what})
    return value


class RetryPolicy(Input):
    """How often a failed attempt is tried again, and how long to wait between attempts.

    `attempts` counts the retries after the first try (0: one try only), as Prefect's
    `retries` does. The n-th retry waits `backoff_seconds * backoff_factor ** (n - 1)`, at
    most `max_backoff_seconds`, varied at random by up to `jitter` of itself (Prefect's
    `retry_jitter_factor`) so that runs failing together do not retry together."""

    attempts: int = Field(default=3, ge=0, le=10)
    backoff_seconds: float = Field(default=2.0, ge=0, le=3600)
    backoff_factor: float = Field(default=2.0, ge=1, le=10)
    max_backoff_seconds: float = Field(default=60.0, ge=0, le=3600)
    jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _max_covers_first(self) -> RetryPolicy:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise PydanticCustomError(
                "backoff_bounds", "max_backoff_seconds must be at least backoff_seconds"
            )
        return self

    def delays(self) -> list[float]:
        """The wait before each retry, without jitter (Prefect's `retry_delay_seconds`)."""
        return [
            min(self.backoff_seconds * self.backoff_factor**n, self.max_backoff_seconds)
            for n in range(self.attempts)
        ]


class Compensation(Input):
    """A step's undo when it is not the kind's default. Called with the undo the step's
    connector recorded, merged with these `params` (templates; they may also read `undo`)."""

    kind: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_params(value)


def _compensate_tag(value: Any) -> str:
    return "off" if value is False else "on"


CompensateField = Annotated[
    Annotated[Compensation, Tag("on")] | Annotated[Literal[False], Tag("off")],
    Discriminator(_compensate_tag),
]


class Step(Input):
    """One step of a playbook."""

    id: str = Field(max_length=64)
    kind: str = Field(min_length=1, max_length=64)
    needs: list[str] = Field(default_factory=list, max_length=MAX_STEPS)
    params: dict[str, Any] = Field(default_factory=dict)
    when: str | None = Field(default=None, max_length=4000)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    compensate: CompensateField | None = None
    # None: as the playbook says. True: a failure of this step is parked and the run goes on
    # (a nicety such as an AI-drafted text); False: it stops the run even in an exit.
    continue_on_failure: bool | None = None

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not STEP_ID.fullmatch(value):
            raise PydanticCustomError(
                "step_id",
                "a step id is lowercase letters, digits and '_', starting with a letter "
                "(templates read it as steps.<id>)",
            )
        if value in RESERVED_IDS:
            raise PydanticCustomError(
                "step_id", "'{id}' is a name templates cannot read as steps.<id>", {"id": value}
            )
        return value

    @field_validator("params")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_params(value)

    def compensation(self) -> Compensation | None:
        """What undoes this step: its own `compensate`, else its kind's default undo (called
        with the recorded undo alone), else None (nothing to undo, or opted out)."""
        if isinstance(self.compensate, Compensation):
            return self.compensate
        kind = KINDS.get(self.kind)
        if self.compensate is False or kind is None or kind.undo is None:
            return None
        return Compensation(kind=kind.undo)


class Playbook(Input):
    """What to do for one event type: steps (1 to 50) forming a DAG."""

    event_type: EventType
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    continue_on_failure: bool = False
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    def step(self, step_id: str) -> Step:
        """The step called `step_id` (KeyError when there is none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def step_ids(self) -> list[str]:
        return [step.id for step in self.steps]

    def continues_past(self, step: Step) -> bool:
        """Whether a failure of `step`, out of retries, is parked while the run goes on (True)
        or stops the run and compensates what was done (False)."""
        if step.continue_on_failure is not None:
            return step.continue_on_failure
        return self.continue_on_failure


# -- paths ------------------------------------------------------------------------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}["{escaped}"]'


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        # The discriminated union's tag ("on"/"off") is not a place in the document.
        if "compensate" in loc:
            at = loc.index("compensate")
            if at + 1 < len(loc) and loc[at + 1] in ("on", "off"):
                del loc[at + 1]
        ctx = error.get("ctx") or {}
        if error["type"] == "json_value":  # where in the parameters the bad value is
            loc += ctx.get("at", [])
        path = ""
        for part in loc:
            path = _join(path, part)
        message = error["msg"]
        if not loc and error["type"] == "model_type":
            message = "a playbook is an object: event_type, name, description, steps, ..."
        elif loc[-1:] == ["compensate"] and error["type"] == "model_type":
            message = "compensate is {kind, params}, or false for no compensation"
        problems.append({"path": path, "message": message})
    return problems


def _sort_key(problem: Problem) -> tuple[Any, ...]:
    tokens = re.findall(r"\[(\d+)\]|([^.\[\]]+)", problem["path"])
    return tuple((0, int(i), "") if i else (1, 0, name) for i, name in tokens)


# -- the checks -------------------------------------------------------------------------------


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from _strings(item, _join(path, key))


@dataclass(frozen=True)
class _Scope:
    """What one step's templates may read: the context's names (`allowed`), the playbook's
    step ids, and the steps that finish before this one (`upstream`; None: any of them, as
    for a compensation, which runs after the run's steps)."""

    step_id: str
    step_ids: frozenset[str]
    allowed: frozenset[str] = ALLOWED_NAMES
    upstream: frozenset[str] | None = None

    def problems(self, reads: Reads, path: str) -> list[Problem]:
        """What is wrong with what a template or condition at `path` reads."""
        problems: list[Problem] = []
        readable = ", ".join(k for k in (*CONTEXT_KEYS, UNDO_KEY) if k in self.allowed)
        for name in sorted(reads.names - self.allowed):
            problems.append(
                {
                    "path": path,
                    "message": f"unknown name '{name}'{_suggest(name, self.allowed)}: a "
                    f"template reads {readable}",
                }
            )
        for read in sorted(reads.steps):
            message = None
            if read not in self.step_ids:
                message = (
                    f"reads steps.{read}, but there is no step '{read}'"
                    f"{_suggest(read, self.step_ids)}"
                )
            elif read == self.step_id:
                message = "a step cannot read its own output"
            elif self.upstream is not None and read not in self.upstream:
                message = (
                    f"reads steps.{read}, but step '{self.step_id}' does not need '{read}' "
                    "(directly or through its needs), so it may not have run yet"
                )
            if message:
                problems.append({"path": path, "message": message})
        return problems

    def template_problems(self, value: Any, path: str) -> list[Problem]:
        """Every string in `value` compiles and reads only what this step may read."""
        problems: list[Problem] = []
        for at, text in _strings(value, path):
            try:
                reads = check_template(text)
            except TemplateInvalid as exc:
                problems.append({"path": at, "message": exc.message})
            else:
                problems += self.problems(reads, at)
        return problems


def _param_name_problems(kind: Kind, params: Mapping[str, Any], path: str) -> list[Problem]:
    problems: list[Problem] = []
    for name in params:
        if name not in kind.parameters:
            takes = ", ".join(sorted(kind.parameters)) or "no parameters"
            problems.append(
                {
                    "path": _join(path, name),
                    "message": f"{kind.name} has no parameter '{name}'"
                    f"{_suggest(name, kind.parameters)}; it takes {takes}",
                }
            )
    return problems


def _kind_problems(step: Step, at: str) -> list[Problem]:
    """The step's kind exists and may be a step; its parameters are the kind's."""
    kind = KINDS.get(step.kind)
    if kind is None:
        return [
            {
                "path": f"{at}.kind",
                "message": f"unknown step kind '{step.kind}'{_suggest(step.kind, FORWARD_KINDS)}"
                f"; the kinds are {', '.join(FORWARD_KINDS)}",
            }
        ]
    if not kind.forward:
        return [
            {
                "path": f"{at}.kind",
                "message": f"{kind.name} undoes another step's work: it can only be named "
                "under a step's compensate",
            }
        ]
    problems = _param_name_problems(kind, step.params, f"{at}.params")
    absent, alternatives = kind.missing(step.params)
    for name in absent:
        problems.append(
            {"path": f"{at}.params.{name}", "message": f"{kind.name} requires '{name}'"}
        )
    if alternatives:
        problems.append({"path": f"{at}.params", "message": f"{kind.name} requires {alternatives}"})
    return problems


def _compensation_problems(step: Step, at: str) -> list[Problem]:
    kind = KINDS.get(step.kind)
    if kind is None or not kind.forward:
        return []  # reported as the step's kind
    if isinstance(step.compensate, Compensation):
        undo = KINDS.get(step.compensate.kind)
        if undo is None:
            return [
                {
                    "path": f"{at}.compensate.kind",
                    "message": f"unknown step kind '{step.compensate.kind}'"
                    f"{_suggest(step.compensate.kind, KINDS)}",
                }
            ]
        if undo.forward:  # a compensation-only kind takes what the step recorded
            return _param_name_problems(undo, step.compensate.params, f"{at}.compensate.params")
        return []
    if kind.compensation_required and (step.compensate is False or kind.undo is None):
        default = f" (its default is {kind.undo})" if kind.undo else ""
        return [
            {
                "path": f"{at}.compensate",
                "message": f"{kind.name} must be compensated: what it does must not be left "
                f"behind when the run fails{default}",
            }
        ]
    return []


def _needs_problems(step: Step, at: str, ids: frozenset[str]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for j, need in enumerate(step.needs):
        path = f"{at}.needs[{j}]"
        if need == step.id:
            problems.append({"path": path, "message": "a step cannot need itself"})
        elif need not in ids:
            problems.append(
                {
                    "path": path,
                    "message": f"unknown step '{need}'{_suggest(need, ids)}",
                }
            )
        elif need in seen:
            problems.append({"path": path, "message": f"'{need}' is listed twice"})
        seen.add(need)
    return problems


def _graph(unique: list[tuple[int, Step]]) -> dict[str, list[str]]:
    """Each step's needs that name another step (unknown needs are reported on their own)."""
    known = {step.id for _, step in unique}
    return {
        step.id: [n for n in dict.fromkeys(step.needs) if n in known and n != step.id]
        for _, step in unique
    }


def _upstream(graph: Mapping[str, list[str]], step: Step) -> frozenset[str]:
    """The steps that finish before `step` starts: its needs and theirs."""
    found: set[str] = set()
    for need in step.needs:
        if need in graph and need not in found:
            found |= {need} | _reachable(graph, need)
    return frozenset(found)


def _reachable(graph: Mapping[str, list[str]], start: str) -> set[str]:
    """Every step `start` needs, directly or through its needs."""
    found: set[str] = set()
    queue = deque(graph.get(start, ()))
    while queue:
        node = queue.popleft()
        if node not in found:
            found.add(node)
            queue.extend(graph.get(node, ()))
    return found


def _cycles(graph: Mapping[str, list[str]], order: list[str]) -> list[list[str]]:
    """One cycle per set of steps that need each other, each starting at its first-declared
    step: ["a", "b", "a"] for a needs b needs a."""
    upstream = {node: _reachable(graph, node) for node in order}
    cycles: list[list[str]] = []
    placed: set[str] = set()
    for node in order:
        if node in placed or node not in upstream[node]:
            continue
        component = {n for n in upstream[node] if node in upstream[n]}
        placed |= component
        # The shortest way back to `node`, through the component only.
        previous: dict[str, str] = {}
        queue = deque([node])
        while queue:
            current = queue.popleft()
            for need in graph[current]:
                if need == node:
                    path = [node]
                    while current != node:
                        path.append(current)
                        current = previous[current]
                    path.append(node)
                    cycles.append([path[0], *reversed(path[1:-1]), node])
                    queue.clear()
                    break
                if need in component and need not in previous:
                    previous[need] = current
                    queue.append(need)
    return cycles


def _cycle_problems(
    unique: list[tuple[int, Step]], graph: Mapping[str, list[str]]
) -> list[Problem]:
    index = {step.id: (i, step) for i, step in unique}
    problems: list[Problem] = []
    for cycle in _cycles(graph, [step.id for _, step in unique]):
        i, first = index[cycle[0]]
        j = first.needs.index(cycle[1])
        problems.append(
            {
                "path": f"steps[{i}].needs[{j}]",
                "message": "these steps need each other in a cycle: " + " needs ".join(cycle),
            }
        )
    return problems


def _check(steps: list[tuple[int, Step]], declared: list[tuple[int, str]]) -> list[Problem]:
    """The checks pydantic cannot make: duplicate ids, kinds, parameters, compensations,
    needs, the graph, the templates and conditions. `steps` are those that parsed (or could be
    salvaged), with their positions; `declared` every step's id as written, also of steps
    that did not parse (a need naming one is not "unknown")."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for i, step_id in declared:
        if step_id in first:
            problems.append(
                {
                    "path": f"steps[{i}].id",
                    "message": f"duplicate step id '{step_id}' (also steps[{first[step_id]}])",
                }
            )
        else:
            first[step_id] = i
    ids = frozenset(first)
    seen: set[str] = set()
    unique: list[tuple[int, Step]] = []
    for i, step in steps:
        if step.id not in seen:
            seen.add(step.id)
            unique.append((i, step))
    graph = _graph(unique)
    problems += _cycle_problems(unique, graph)
    for i, step in steps:
        at = f"steps[{i}]"
        problems += _kind_problems(step, at)
        problems += _compensation_problems(step, at)
        problems += _needs_problems(step, at, ids)
        scope = _Scope(step.id, ids, upstream=_upstream(graph, step))
        problems += scope.template_problems(step.params, f"{at}.params")
        if step.when is not None:
            try:
                problems += scope.problems(check_condition(step.when), f"{at}.when")
            except TemplateInvalid as exc:
                problems.append({"path": f"{at}.when", "message": exc.message})
        if isinstance(step.compensate, Compensation):
            # A compensation runs after the run's steps: it may read any of them, and `undo`.
            undoing = _Scope(step.id, ids, allowed=ALLOWED_NAMES | {UNDO_KEY})
            problems += undoing.template_problems(step.compensate.params, f"{at}.compensate.params")
    return problems


def _salvaged(item: Any) -> Step | None:
    """A step that does not parse, with its bad fields dropped (a bad parameter's value
    nulled, its name kept), so the rest of it is checked too; None when its id or kind is
    what is wrong, or it cannot be mended."""
    if not isinstance(item, Mapping):
        return None
    fixed = dict(item)
    for _ in range(MAX_STEPS):  # each pass mends what the last one reported
        try:
            return Step.model_validate(fixed)
        except ValidationError as exc:
            for error in exc.errors():
                loc = list(error["loc"])
                if not loc or loc[0] in ("id", "kind"):
                    return None
                if error["type"] == "json_value":  # the bad value is at ctx["at"]
                    loc += (error.get("ctx") or {}).get("at", [])[:1]
                params = fixed.get("params")
                if loc[0] == "params" and len(loc) > 1 and isinstance(params, dict):
                    if params.get(loc[1], 0) is None:
                        return None  # already nulled: something else is wrong with it
                    fixed["params"] = {**params, loc[1]: None}
                else:
                    fixed.pop(str(loc[0]), None)
    return None


def _raw_steps(data: Any) -> tuple[list[tuple[int, Step]], list[tuple[int, str]]]:
    """When the playbook as a whole did not parse: the steps that can be checked (so their
    problems are reported too), and every step's id as written."""
    raw = data.get("steps") if isinstance(data, Mapping) else None
    if not isinstance(raw, list):
        return [], []
    steps: list[tuple[int, Step]] = []
    declared: list[tuple[int, str]] = []
    for i, item in enumerate(raw[:MAX_STEPS]):
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            declared.append((i, item["id"]))
        if (step := _salvaged(item)) is not None:
            steps.append((i, step))
    return steps, declared


def validate_playbook(data: Any, *, event_type: str | None = None) -> Playbook:
    """`data` (a dict as stored or as an admin sent it) as a `Playbook`, or `PlaybookInvalid`
    listing every problem. `event_type`, when given, is the type the playbook is stored for:
    the playbook must say the same."""
    problems: list[Problem] = []
    playbook: Playbook | None = None
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems += _pydantic_problems(exc)
        steps, declared = _raw_steps(data)
    else:
        steps = list(enumerate(playbook.steps))
        declared = [(i, step.id) for i, step in steps]
    problems += _check(steps, declared)
    given = data.get("event_type") if isinstance(data, Mapping) else None
    if playbook is not None:
        given = playbook.event_type
    if event_type is not None and isinstance(given, str) and given != event_type:
        problems.append(
            {"path": "event_type", "message": f"says {given}, but is stored for {event_type}"}
        )
    if problems:
        unique = {(p["path"], p["message"]): p for p in problems}
        raise PlaybookInvalid(sorted(unique.values(), key=_sort_key))
    assert playbook is not None
    return playbook


def topological_layers(playbook: Playbook) -> list[list[Step]]:
    """The steps in waves: each wave's steps need only steps of earlier waves, so they may run
    together. Within a wave, steps keep the playbook's order (deterministic). A cycle (in a
    playbook that did not pass `validate_playbook`) is `PlaybookInvalid`."""
    remaining = list(playbook.steps)
    done: set[str] = set()
    layers: list[list[Step]] = []
    while remaining:
        layer = [step for step in remaining if set(step.needs) <= done]
        if not layer:
            stuck = ", ".join(step.id for step in remaining)
            raise PlaybookInvalid(
                [{"path": "steps", "message": f"these steps can never start: {stuck}"}]
            )
        layers.append(layer)
        done |= {step.id for step in layer}
        remaining = [step for step in remaining if step.id not in done]
    return layers
