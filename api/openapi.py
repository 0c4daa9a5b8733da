"""The OpenAPI document, made to say what the server really answers when a request fails.

FastAPI documents a 422 it never sends (`HTTPValidationError` under `application/json`) and knows
nothing of the errors our handlers and middleware produce. Rather than spelling those out on every
route by hand, `install` wraps `app.openapi` and derives them from what each operation takes:

- every operation: 422 (`validation_failed`: a NUL character in the query, path or a header, which
  the middleware refuses for every request; failing parameters; a domain rule's own code);
- a request body: also 400 (not JSON, or not UTF-8: `malformed_json`) and 413 (`body_too_large`,
  from the middleware);
- a credential (the operation declares the bearer scheme): 401.

Statuses only the domain knows (403, 404, 409, 423, 429, 503) stay declared on the route with
`api.errors.responses(...)`. Every error response is then rewritten to one shape: the `Problem`
schema under `application/problem+json`, the only media type the server sends for errors.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# What each error means in this API (the `code` values a client can act on).
DESCRIPTIONS: dict[int, str] = {
    400: "The body cannot be read: not JSON, or not UTF-8 (`malformed_json`).",
    401: "Missing, invalid or expired credentials (`WWW-Authenticate: Bearer`).",
    403: "Authenticated, but your roles do not allow this.",
    404: "No such resource in your tenant (another tenant's looks exactly the same).",
    409: "The resource's state does not allow this now (e.g. `illegal_transition`).",
    413: "The body is larger than the server accepts (`body_too_large`).",
    422: "The request is well-formed but invalid: `validation_failed` with the failing fields "
    "in `errors`, or the domain rule's own `code`.",
    423: "The account is locked after repeated failed logins (`account_locked`).",
    429: "Too many attempts; retry after `Retry-After` seconds (`rate_limited`).",
    503: "A service this operation needs cannot be reached right now.",
}

# Headers that always come with an error status (set by `api.errors.domain_problem`).
HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The authentication scheme to use: `Bearer`.",
            "schema": {"type": "string"},
        }
    },
    423: {
        "Retry-After": {
            "description": "Seconds until the lockout ends, when the server knows.",
            "schema": {"type": "integer", "minimum": 0},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}


def error_response(status: int) -> dict[str, Any]:
    """One documented error: the Problem body under `application/problem+json`."""
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status in HEADERS:
        response["headers"] = HEADERS[status]
    return response


def _is_fastapi_default_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").endswith("/HTTPValidationError")


def _implied_errors(operation: dict[str, Any]) -> set[int]:
    """The errors the framework layer can answer for this operation, whatever the route does."""
    # Any request can be refused 422 `validation_failed`: the request middleware refuses a NUL
    # character in the query, path or any header before a route runs.
    statuses: set[int] = {422}
    if "requestBody" in operation:
        statuses |= {400, 413}
    if operation.get("security"):
        statuses.add(401)
    return statuses


# Every request refuses a NUL character (U+0000): bodies through `quire.schemas.Input`, the query,
# path and headers in the request middleware. Strings without a pattern of their own say so.
NO_NUL = "^[^\\x00]*$"


def _refuse_nul(schema: Any, components: dict[str, Any], seen: set[str]) -> None:
    """Give every free-text string reachable from `schema` the NUL-free pattern."""
    if isinstance(schema, list):
        for item in schema:
            _refuse_nul(item, components, seen)
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        if name not in seen:
            seen.add(name)
            _refuse_nul(components.get(name), components, seen)
        return
    free_text = not ({"pattern", "enum", "const", "format"} & set(schema))
    if schema.get("type") == "string" and free_text:
        schema["pattern"] = NO_NUL
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        schema.setdefault("propertyNames", {"pattern": NO_NUL})  # a free-form map's keys
    for key in ("properties", "items", "anyOf", "oneOf", "allOf", "additionalProperties"):
        value = schema.get(key)
        if key == "properties" and isinstance(value, dict):
            value = list(value.values())
        _refuse_nul(value, components, seen)


def document_request_text(spec: dict[str, Any]) -> None:
    """State the NUL rule on every parameter and request body (see `NO_NUL`)."""
    components = spec.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    for path_item in spec.get("paths", {}).values():
        for method in HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            for parameter in operation.get("parameters", []):
                _refuse_nul(parameter.get("schema"), components, seen)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _refuse_nul(media.get("schema"), components, seen)


def document_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite every operation's error responses to the truth (see the module docstring)."""
    for path_item in spec.get("paths", {}).values():
        for method in HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            declared = {
                int(code)
                for code, response in responses.items()
                if code.isdigit() and int(code) >= 400 and not _is_fastapi_default_422(response)
            }
            # FastAPI's own 422 (HTTPValidationError) is replaced by the Problem one below.
            if 422 not in declared:
                responses.pop("422", None)
            for status in sorted(declared | _implied_errors(operation)):
                responses[str(status)] = error_response(status)
            operation["responses"] = dict(sorted(responses.items()))
    schemas = spec.get("components", {}).get("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    document_request_text(spec)
    return spec


def install(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                    servers=app.servers,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
