"""What test_fuzz.py adds to schemathesis: one correction to its coverage phase, and the rules
of this API that no JSON Schema can state, so that positive cases keep them.

Nothing here turns a check off. `install` registers, on the one schema the fuzz test uses:

- `map_case`: a case whose body or query schemathesis generated as valid is made to keep the
  cross-field and relative-to-now rules as well (a deadline inside its window, QA word bounds in
  order, a specialist with a payout profile, a statement with exactly one well-formed window).
  Only values that parse and break such a rule are replaced; anything the server cannot even
  parse is left as generated, so a schema/server mismatch still shows. Schemathesis notices the
  edit and judges the changed component against the schema again, so the case's
  positive/negative label stays its own.
- `filter_failure`: drops a "schema-valid request rejected" (ST202) only for the exact refusals
  that depend on server state or on a token only the server can mint (`ACCEPTED_REFUSALS`),
  identified by operation, status and problem `code`. Every other failure stays.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

import schemathesis.specs.openapi.coverage._operation as coverage_operation
from pydantic import TypeAdapter, ValidationError
from schemathesis import BaseSchema
from schemathesis.core.jsonschema.patterns import is_valid_jsonschema_rs_regex, update_quantifier
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.openapi.checks import RejectedPositiveData

from ledger.balances import statement_window
from quire.errors import Invalid
from quire.payroll.errors import InvalidPayoutDetails
from quire.payroll.payout_details import validate_account

# The coverage phase folds `minLength`/`maxLength` into a pattern's quantifier
# (`^[^\x00]*$` with 1..500000 becomes `^[^\x00]{1,500000}$`) and drops the length keywords.
# It checks the rewrite with Python's `re` only; the Rust engine that then compiles the schema
# (jsonschema_rs) refuses quantifiers that large, so the body gets no positive value at all. The
# operation's template then falls back to a negative body, and the parameter mutations built on
# that template are still labelled positive (schemathesis 4.32.5,
# `specs/openapi/coverage/_operation.py`: `_body_cases` sets `body_is_fallback_negative`, and
# `_parameter_mutations` only consults it for negative values): a body `0` reported as
# "schema-valid request rejected". The fuzzing phase's converter already guards the same rewrite
# with `is_valid_jsonschema_rs_regex` (`specs/openapi/converter.py`, `update_pattern_in_schema`);
# this gives the coverage phase that guard, so the pattern keeps its length keywords instead.
_COVERAGE_REWRITE = coverage_operation.update_quantifier
assert _COVERAGE_REWRITE is update_quantifier, "schemathesis changed its coverage pattern rewrite"


@lru_cache
def _guarded_rewrite(pattern: str, min_length: int | None, max_length: int | None) -> str:
    rewritten = update_quantifier(pattern, min_length, max_length)
    if rewritten == pattern or is_valid_jsonschema_rs_regex(rewritten):
        return rewritten
    return pattern


coverage_operation.update_quantifier = _guarded_rewrite  # type: ignore[assignment]

# Refusals of schema-valid requests that no request data can avoid: (status, problem code).
ACCEPTED_REFUSALS: dict[str, tuple[int, str, str]] = {
    "POST /auth/login": (
        423,
        "account_locked",
        "an account (or an unknown email) locks after repeated failures: server state",
    ),
    "GET /orders": (422, "invalid_cursor", "a cursor is opaque: only a next_cursor it issued"),
    "GET /ledger/accounts/{account_id}/statement": (
        422,
        "invalid_cursor",
        "a cursor is opaque: only a next_cursor it issued",
    ),
}

DEADLINE_WINDOW = dt.timedelta(days=3 * 366)
_DATETIME = TypeAdapter(dt.datetime)


def _parsed(value: Any) -> dt.datetime | None:
    """An aware timestamp as the server reads it, or None when it cannot read one."""
    try:
        parsed = _DATETIME.validate_python(value)
    except ValidationError:
        return None
    return parsed if parsed.utcoffset() is not None else None


def _is_positive(case: Any, location: ParameterLocation) -> bool:
    meta = case.meta
    component = meta.components.get(location) if meta is not None else None
    return component is not None and component.mode == GenerationMode.POSITIVE


def _order_draft(body: dict[str, Any]) -> dict[str, Any]:
    """The deadline lies in the future, at most three years (3 x 366 days) away; a QA config's
    `min_words` does not exceed its `max_words`."""
    deadline = _parsed(body.get("deadline"))
    now = dt.datetime.now(dt.UTC)
    if deadline is not None and not now < deadline <= now + DEADLINE_WINDOW:
        inside = (now + dt.timedelta(days=30)).astimezone(deadline.tzinfo)
        body = {**body, "deadline": inside.isoformat()}
    qa = body.get("qa")
    if isinstance(qa, dict):
        low, high = qa.get("min_words"), qa.get("max_words")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            # Both bounds stay inside their own schema ranges: max_words >= 1 and low > high.
            body = {**body, "qa": {**qa, "min_words": high, "max_words": low}}
    return body


def _user_draft(body: dict[str, Any]) -> dict[str, Any]:
    """A specialist is paid, so they come with a payout profile."""
    roles = body.get("roles")
    if isinstance(roles, list) and "specialist" in roles and body.get("profile") is None:
        return {**body, "profile": {"payout_currency": "EUR"}}
    return body


def _window_fits(
    period: str | None, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> bool:
    """Whether the server takes this statement window (its own rule, asked directly)."""
    try:
        statement_window(period, start, end)
    except Invalid:
        return False
    return True


def _statement_query(query: dict[str, Any]) -> dict[str, Any]:
    """`period`, or both `start` and `end` with start < end, inside EARLIEST..LATEST."""
    given = {name: value for name, value in query.items() if value is not None}
    period, start, end = given.get("period"), given.get("start"), given.get("end")
    if isinstance(period, str):
        # A period with a start or end is refused: the period stays, the extra bounds go.
        rest = {name: value for name, value in given.items() if name not in ("start", "end")}
        return rest if _window_fits(period) else {**rest, "period": "2024-02"}
    first, second = _parsed(start), _parsed(end)
    if (start is not None and first is None) or (end is not None and second is None):
        return query  # not a timestamp the server can read: left to show as it is
    if first is not None and second is not None:
        first, second = sorted((first, second))
        if _window_fits(None, first, second):
            return {**given, "start": first.isoformat(), "end": second.isoformat()}
    rest = {name: value for name, value in given.items() if name not in ("start", "end")}
    return {**rest, "period": "2024-02"}


# A bank account of each scheme that passes every bank rule (fields set to None are optional).
_VALID_ACCOUNT: dict[str, dict[str, Any]] = {
    "iban": {"iban": "DE89370400440532013000", "bic": None, "country": None},
    "local": {
        "country": "US",
        "bank_code": "021000021",
        "account_number": "123456789",
        "bic": None,
    },
}
_ACCOUNT_FIELDS = ("scheme", "account_holder", "iban", "bic", "account_number", "bank_code")


def _payout_details(body: dict[str, Any]) -> dict[str, Any]:
    """Bank details keep the banks' rules (check digits, a country's formats, a BIC of the
    account's country, no field of the other scheme): a field that breaks one is replaced by a
    valid account of the same scheme, a field of the other scheme is dropped."""
    scheme = body.get("scheme")
    if scheme not in _VALID_ACCOUNT:
        return body
    for _ in range(3):
        try:
            validate_account(**{name: body.get(name) for name in (*_ACCOUNT_FIELDS, "country")})
        except InvalidPayoutDetails as refused:
            fixed = dict(body)
            for problem in refused.problems:
                name = str(problem.loc[0])
                if problem.type == "not_allowed":
                    fixed.pop(name, None)
                elif name == "account_holder":
                    fixed[name] = "Sam Specialist"
                else:
                    fixed.update(_VALID_ACCOUNT[scheme])
            body = fixed
        else:
            return body
    return body


def _valid_or(model: Any, fallback: dict[str, Any]) -> Any:
    """A body the domain's own model takes as it is, else `fallback`: rules the schema cannot
    state (no control characters in a person's name, a mailbox, an http(s) URL)."""

    def rule(body: dict[str, Any]) -> dict[str, Any]:
        try:
            model.model_validate(body, strict=True)
        except Exception:
            return fallback
        return body

    return rule


def _lifecycle_rules() -> dict[str, Any]:
    from quire.lifecycle.connectors.ai import AiConnection
    from quire.lifecycle.connectors.chat import ChatConnection
    from quire.lifecycle.connectors.email import SmtpConnection
    from quire.lifecycle.webhooks import LifecycleEventIn

    event = {
        "type": "person.onboard",
        "timestamp": "2026-01-05T09:00:00+00:00",
        "data": {
            "person": {
                "id": "hr-1",
                "email": "ada@example.com",
                "given_name": "Ada",
                "family_name": "Lovelace",
            }
        },
    }
    return {
        "POST /lifecycle/events": _valid_or(LifecycleEventIn, event),
        "PUT /lifecycle/connections/email": _valid_or(
            SmtpConnection, {"host": "smtp.example.com", "from_address": "people@example.com"}
        ),
        "PUT /lifecycle/connections/chat": _valid_or(
            ChatConnection, {"webhook_url": "https://chat.example.com/hooks/T0/B0/x"}
        ),
        "PUT /lifecycle/connections/ai": _valid_or(
            AiConnection,
            {"base_url": "https://ai.example.com/v1", "api_key": "sk-test", "model": "m"},
        ),
    }


BODY_RULES = {
    "POST /orders": _order_draft,
    "POST /users": _user_draft,
    "PUT /me/payout-details": _payout_details,
    **_lifecycle_rules(),
}
QUERY_RULES = {"GET /ledger/accounts/{account_id}/statement": _statement_query}


def keep_unstatable_rules(context: Any, case: Any) -> Any:
    """`map_case`: a body or query generated as valid also keeps the rules the schema cannot."""
    label = case.operation.label
    body_rule = BODY_RULES.get(label)
    if body_rule and isinstance(case.body, dict) and _is_positive(case, ParameterLocation.BODY):
        case.body = body_rule(case.body)
    query_rule = QUERY_RULES.get(label)
    if query_rule and isinstance(case.query, dict) and _is_positive(case, ParameterLocation.QUERY):
        case.query = query_rule(case.query)
    return case


def accept_unavoidable_refusals(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """`filter_failure`: keep every failure but a refusal listed in ACCEPTED_REFUSALS."""
    refusal = ACCEPTED_REFUSALS.get(case.operation.label)
    if refusal is None or not isinstance(failure, RejectedPositiveData):
        return True
    status, code, _why = refusal
    if response.status_code != status:
        return True
    try:
        problem = response.json()
    except ValueError:
        return True
    return not (isinstance(problem, dict) and problem.get("code") == code)


def install(schema: BaseSchema) -> BaseSchema:
    schema.hooks.register_hook_with_name(keep_unstatable_rules, "map_case")
    schema.hooks.register_hook_with_name(accept_unavoidable_refusals, "filter_failure")
    return schema
