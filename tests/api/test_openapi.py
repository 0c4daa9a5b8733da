"""The OpenAPI document tells the truth: how errors look, which statuses each operation can
answer, what `Allow` a 405 carries, and the constraints the server enforces."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from quire.money import currency_codes
from quire.people.schemas import EMAIL_PATTERN
from tests.support.world import publish_order

METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}


async def spec_of(client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(spec: dict[str, Any]):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def errors_of(operation: dict[str, Any]) -> set[int]:
    return {int(code) for code in operation["responses"] if int(code) >= 400}


def schema_of(parameter: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional parameter's schema."""
    schema = parameter["schema"]
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") != "null":
            return branch
    raise AssertionError(parameter)


def parameter(spec: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    found = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == name]
    assert found, f"{method.upper()} {path} has no parameter {name}"
    return found[0]


async def test_every_error_is_a_problem_under_the_problem_media_type(client):
    spec = await spec_of(client)
    for name, operation in operations(spec):
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                assert response["content"] == {"application/problem+json": PROBLEM}, (name, code)
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])


async def test_each_operation_documents_the_errors_the_framework_can_answer(client):
    spec = await spec_of(client)
    for name, operation in operations(spec):
        errors = errors_of(operation)
        # Any request may be refused: a NUL in its query string (`?x=%00`) is a 422 everywhere.
        assert 422 in errors, name
        if "requestBody" in operation:
            assert {400, 413} <= errors, name
        if operation.get("security"):
            assert 401 in errors, name


async def test_a_nul_in_the_query_of_an_operation_without_parameters_is_the_documented_422(client):
    response = await client.post("/auth/logout?x=%00")
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "invalid_character"


async def test_rate_limited_operations_document_429_with_retry_after(client):
    spec = await spec_of(client)
    for path in ("/auth/login", "/auth/refresh"):
        too_many = spec["paths"][path]["post"]["responses"]["429"]
        assert too_many["headers"]["Retry-After"]["required"] is True
    assert 423 in errors_of(spec["paths"]["/auth/login"]["post"])


async def test_domain_statuses_stay_documented_where_they_occur(client):
    spec = await spec_of(client)
    assert {403, 404, 409} <= errors_of(spec["paths"]["/orders/{order_id}/claim"]["post"])
    assert 503 in errors_of(spec["paths"]["/orders/{order_id}/reviews"]["post"])
    assert 503 in errors_of(spec["paths"]["/health/ready"]["get"])


async def test_the_schema_states_the_constraints_the_server_enforces(client):
    spec = await spec_of(client)
    schemas = spec["components"]["schemas"]
    currency = schemas["OrderDraft"]["properties"]["currency"]
    assert currency["pattern"] == "^[A-Z]{3}$"
    assert currency["enum"] == currency_codes()
    assert schema_of(parameter(spec, "get", "/orders", "currency"))["pattern"] == "^[A-Z]{3}$"
    email = schemas["UserDraft"]["properties"]["email"]
    assert (email["format"], email["maxLength"]) == ("email", 254)
    assert email["pattern"] == EMAIL_PATTERN  # what the server checks, stated
    for path in ("/orders/{order_id}/claim", "/orders/{order_id}/submissions"):
        key = schema_of(parameter(spec, "post", path, "Idempotency-Key"))
        assert (key["minLength"], key["maxLength"]) == (1, 200)
        assert key["pattern"] == "^[!-~]([ -~]*[!-~])?$"
    assert "three years" in schemas["OrderDraft"]["properties"]["deadline"]["description"]
    statement = "/ledger/accounts/{account_id}/statement"
    period = parameter(spec, "get", statement, "period")
    assert period["schema"]["pattern"] == r"^[0-9]{4}-(0[1-9]|1[0-2])$"
    assert "both `start` and `end`" in period["description"]
    assert "before `end`" in parameter(spec, "get", statement, "start")["description"]


def _paths_and_methods(app) -> dict[str, set[str]]:
    served: dict[str, set[str]] = defaultdict(set)
    for route in iter_route_contexts(app.routes):
        if route.methods and route.path:
            served[route.path] |= route.methods
    return served


async def test_a_405_allows_every_method_the_path_serves(client):
    app = client._transport.app
    for path, methods in _paths_and_methods(app).items():
        url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
        response = await client.request("PATCH", url)
        assert response.status_code == 405, (path, response.text)
        assert response.headers["allow"] == ", ".join(sorted(methods)), path
        assert response.json()["code"] == "method_not_allowed"
    served = _paths_and_methods(app)
    assert served["/orders"] == {"GET", "POST"}
    assert len(served) > 25  # every HTTP path of the app was tried


@pytest.mark.parametrize(
    ("body", "why"),
    [(b'{"title": ', "not JSON"), (b'{"title": "\xff\xfe"}', "not UTF-8")],
)
async def test_a_body_that_cannot_be_read_is_one_400_malformed_json(client, world, body, why):
    response = await client.post(
        "/orders",
        content=body,
        headers={**world.manager.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, why
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_json", why


async def test_a_whole_json_number_is_an_integer_amount_as_the_schema_says(client, world):
    """JSON Schema's `integer` includes 1200.0; strings and fractions are still refused."""
    order = await publish_order(client, world.manager, mode="bidding")
    url = f"/orders/{order['id']}/bids"
    placed = await client.post(url, json={"amount_minor": 1200.0}, headers=world.specialist.auth)
    assert (placed.status_code, placed.json()["amount_minor"]) == (201, 1200)
    for bad in ("1200", 12.5, True):
        refused = await client.post(url, json={"amount_minor": bad}, headers=world.specialist.auth)
        assert refused.status_code == 422, bad
