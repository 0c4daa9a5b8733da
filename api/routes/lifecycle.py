"""Lifecycle over HTTP: HR's signed webhooks in, and for admins the events, the quarantine, the
playbooks (and their pictures), the connections (never their secrets), the runs with their saga
log, and the dead-letter queue with its replay.

`POST /webhooks/hr/{tenant}` carries no Quire credential: the Standard Webhooks signature under
the tenant's own secret is the authentication, checked by `quire.lifecycle.webhooks.receive`
over the raw bytes exactly as they arrived. That function works on synchronous sessions, so it
runs in the thread pool, off the event loop. Everything else is one unit of work as the caller
(`Work`), and needs an admin.

A replay closes the dead letter and puts its run back to pending in one transaction, then starts
a flow run of the lifecycle deployment as the API starts payroll runs (`api.workflows`), keyed by
(run, dead letter): one flow run per replay, however often Prefect's client retries the call.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, SkipValidation
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import workflows
from api.deps import Work
from api.errors import responses
from api.schemas import Page
from quire.errors import Unavailable
from quire.lifecycle import connections, dead_letters, report, service, webhooks
from quire.lifecycle.connections import HR_WEBHOOK, ConnectionOut
from quire.lifecycle.connectors.ai import AiConnection
from quire.lifecycle.connectors.chat import ChatConnection
from quire.lifecycle.connectors.email import SmtpConnection
from quire.lifecycle.connectors.identity import ScimConnection
from quire.lifecycle.models import QuarantinedDelivery
from quire.lifecycle.playbooks import Playbook
from quire.lifecycle.schemas import DeadLetterOut, PlaybookOut, RunOut
from quire.lifecycle.secrets import Keyring
from quire.lifecycle.webhooks import LifecycleEventIn, QuarantinedOut, ReceiptStatus
from quire.people.actor import Actor
from quire.people.models import Role, Tenant
from quire.people.service import SLUG
from quire.schemas import BIGINT_MAX, Output
from quire.settings import Settings

M = TypeVar("M", bound=BaseModel)
router = APIRouter(tags=["lifecycle"])
READ_ERRORS = responses(401, 403, 404, 422)
WRITE_ERRORS = responses(401, 403, 404, 409, 422)
PAGE_MAX = 200

TenantSlug = Annotated[
    str, PathParam(max_length=64, pattern=SLUG.pattern, description="The tenant's slug or id.")
]
EventType = Annotated[
    str,
    PathParam(
        max_length=32,
        description="person.onboard, person.exit, person.transfer or person.update (404 else).",
    ),
]
LetterId = Annotated[int, PathParam(ge=1, le=BIGINT_MAX)]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX)]

# What each provider's settings are, as its connector validates them, and what they are in
# words (the calendar sends its invitations through the email connection; documents need none).
CONNECTION_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "identity": (ScimConnection, "a SCIM 2.0 service: its root URL and bearer token"),
    "email": (SmtpConnection, "an SMTP server (also what calendar invitations are sent by)"),
    "chat": (ChatConnection, "a Slack-compatible incoming webhook (the URL is the secret)"),
    "ai": (AiConnection, "an OpenAI-compatible chat completions endpoint and its key"),
}

# Validated in the route, after the role: a non-admin learns nothing of what would be refused.
EventBody = Annotated[LifecycleEventIn, SkipValidation, Body()]
# Documented as a playbook, validated whole by the domain so that every problem comes back at
# once with its path (`problems`), the shape's as well as the graph's and the templates'.
PlaybookBody = Annotated[
    Playbook, SkipValidation, Body(description="The playbook (as GET shows it under `playbook`).")
]


def _event_schema() -> dict[str, Any]:
    """An event's JSON Schema, its parts referring to the components `POST /lifecycle/events`
    puts in the document (the same models)."""
    schema = LifecycleEventIn.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


WEBHOOK_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": schema,
    }
    for name, description, schema in (
        (
            "webhook-id",
            "The delivery's id (the same on every retry of it).",
            {"type": "string", "pattern": webhooks.WEBHOOK_ID.pattern},
        ),
        (
            "webhook-timestamp",
            "When it was signed, in whole seconds since 1970.",
            {"type": "string", "pattern": webhooks.TIMESTAMP.pattern},
        ),
        (
            "webhook-signature",
            "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated.",
            {"type": "string", "minLength": 1, "maxLength": webhooks.SIGNATURE_HEADER_MAX},
        ),
    )
]
WEBHOOK_DOC: dict[str, Any] = {
    "parameters": WEBHOOK_HEADERS,
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _event_schema()}},
    },
}


def _read_strictly(model: type[M], body: Any) -> M:
    """`body` as `model`, read as the document states it: JSON types, nothing coerced (pydantic's
    lax mode would take 0 for a date and "no" for a boolean)."""
    raw = body if isinstance(body, bytes) else json.dumps(body)
    return model.model_validate_json(raw, strict=True)


def keyring(request: Request) -> Keyring:
    """The keyring that seals connections, read from the settings once per app."""
    state = request.app.state
    found: Keyring | None = getattr(state, "lifecycle_keyring", None)
    if found is None:
        found = state.lifecycle_keyring = Keyring.from_settings(state.settings)
    return found


Keys = Annotated[Keyring, Depends(keyring)]


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(settings_of)]


# --- shapes only these routes answer -------------------------------------------------------------


class ReceiptOut(Output):
    """What became of one delivery (`webhooks.Receipt`): accepted (the event, received or
    scheduled for its day), duplicate (a webhook id seen before: nothing stored again) or
    quarantined (signed but not a usable event: kept with the reason, never processed)."""

    status: Literal["accepted", "duplicate", "quarantined"]
    webhook_id: str
    event_id: uuid.UUID | None = None
    event_status: str | None = None
    effective_on: dt.date | None = None
    quarantine_id: int | None = None
    reason: str | None = None


class EventOut(Output):
    """A stored lifecycle event."""

    id: uuid.UUID
    event_type: str
    person_key: str
    occurred_at: dt.datetime
    effective_on: dt.date | None = None
    status: str
    source: str
    received_at: dt.datetime
    payload: dict[str, Any]


class WebhookSecretOut(BaseModel):
    """HR's new signing secret: shown this once, never again."""

    provider: Literal["hr_webhook"] = "hr_webhook"
    secret: str


class ReplayOut(BaseModel):
    dead_letter_id: int
    run_id: uuid.UUID
    flow_run_id: uuid.UUID


# --- events in -----------------------------------------------------------------------------------


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request's body, or 413 as soon as it is longer than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise StarletteHTTPException(413, f"request body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise StarletteHTTPException(413, f"request body exceeds {limit} bytes")
    return bytes(body)


@router.post(
    "/webhooks/hr/{tenant}",
    status_code=202,
    response_model=ReceiptOut,
    responses={
        200: {"model": ReceiptOut, "description": "A delivery seen before: acknowledged."},
        **responses(401, 413),
    },
    openapi_extra=WEBHOOK_DOC,
)
async def receive_hr_webhook(
    tenant: TenantSlug, request: Request, response: Response, keys: Keys, settings: AppSettings
) -> ReceiptOut:
    """One delivery of the tenant's HR system, signed per Standard Webhooks with the tenant's
    secret (`POST /lifecycle/connections/hr_webhook/secret`) within the configured window.
    202 accepted (the event is stored and its run will start) or quarantined (signed, but not a
    usable event: kept with the reason, so HR need not retry it); 200 for a webhook id seen
    before; 401 for anything not provably from the tenant's HR system (nothing is stored); 413
    above 64 KiB."""
    body = await _bounded_body(request, webhooks.BODY_MAX_BYTES)
    receipt = await run_in_threadpool(
        webhooks.receive,
        request.app.state.database,
        tenant,
        request.headers,
        body,
        keyring=keys,
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    if receipt.status is ReceiptStatus.DUPLICATE:
        response.status_code = 200
    return ReceiptOut.model_validate(receipt)


@router.post("/lifecycle/events", status_code=201, response_model=EventOut, responses=WRITE_ERRORS)
async def record_event(body: EventBody, work: Work) -> EventOut:
    """Enter an event by hand (admin): stored and run exactly as HR's webhook would be. An exit
    dated after today waits for its day (`status: scheduled`)."""
    work.actor.require(Role.ADMIN)
    event = _read_strictly(LifecycleEventIn, body)
    return EventOut.model_validate(await work.write(webhooks.record_admin_event, event))


def _quarantine_page(
    session: Session, actor: Actor, cursor: int | None, limit: int
) -> tuple[list[QuarantinedDelivery], str | None]:
    actor.require(Role.ADMIN)  # the domain's list_quarantine takes no actor
    return webhooks.list_quarantine(session, cursor, limit)


@router.get("/lifecycle/quarantine", response_model=Page[QuarantinedOut], responses=READ_ERRORS)
async def list_quarantine(
    work: Work,
    cursor: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="A `next_cursor` from before.")
    ] = None,
    limit: Limit = 50,
) -> Page[QuarantinedOut]:
    """Signed deliveries that were not usable events, newest first, each with its reason and
    body as received (admin)."""
    rows, next_cursor = await work.read(_quarantine_page, cursor, limit)
    return Page[QuarantinedOut](
        items=[QuarantinedOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


# --- playbooks -----------------------------------------------------------------------------------


@router.get("/lifecycle/playbooks/{event_type}", response_model=PlaybookOut, responses=READ_ERRORS)
async def get_playbook(event_type: EventType, work: Work) -> PlaybookOut:
    """The playbook in force for an event type (admin): the tenant's latest version, or Quire's
    shipped one (version 0). 404 for a type without either."""
    return await work.read(service.playbook_in_force, event_type)


@router.put("/lifecycle/playbooks/{event_type}", response_model=PlaybookOut, responses=WRITE_ERRORS)
async def put_playbook(event_type: EventType, body: PlaybookBody, work: Work) -> PlaybookOut:
    """Store a playbook as the next version (admin); runs already begun keep theirs. An invalid
    one (a cycle, an unknown step kind, a bad template, a missing compensation...) is a 422
    `playbook_invalid` listing every problem with its path in `problems`."""
    return await work.write(service.put_playbook, event_type, body)


GRAPH_ERRORS = responses(401, 403, 404, 422)


@router.get(
    "/lifecycle/playbooks/{event_type}/graph.svg",
    response_class=Response,
    responses={**GRAPH_ERRORS, 200: {"content": {"image/svg+xml": {}}}},
)
async def playbook_svg(event_type: EventType, work: Work) -> Response:
    """The playbook in force as a picture of its DAG (admin)."""
    playbook = await work.read(service.playbook_model, event_type)
    return Response(report.playbook_svg(playbook), media_type="image/svg+xml")


@router.get(
    "/lifecycle/playbooks/{event_type}/graph.dot",
    response_class=Response,
    responses={**GRAPH_ERRORS, 200: {"content": {"text/vnd.graphviz": {}}}},
)
async def playbook_dot(event_type: EventType, work: Work) -> Response:
    """The playbook in force as Graphviz DOT source (admin)."""
    playbook = await work.read(service.playbook_model, event_type)
    return Response(report.playbook_dot(playbook), media_type="text/vnd.graphviz")


# --- connections ---------------------------------------------------------------------------------


def _describe(session: Session, actor: Actor) -> list[ConnectionOut]:
    actor.require(Role.ADMIN)  # the domain's describe_connections takes no actor
    return connections.describe_connections(session)


def _put_connection(
    session: Session, actor: Actor, keys: Keyring, provider: str, settings: BaseModel
) -> ConnectionOut:
    row = connections.put_connection(session, actor, keys, provider, settings)
    return ConnectionOut.model_validate(row)


@router.get("/lifecycle/connections", response_model=list[ConnectionOut], responses=READ_ERRORS)
async def list_connections(work: Work) -> list[ConnectionOut]:
    """Which providers are configured, with which key, when and by whom (admin); never what
    they hold."""
    return await work.read(_describe)


def _connection_route(provider: str, model: type[BaseModel], what: str) -> None:
    """`PUT /lifecycle/connections/<provider>`, its body documented as the provider's own
    settings model: one path per provider, since one path cannot say which body goes with
    which path value. The body is validated here, after the role (a non-admin learns nothing
    of what would have been refused)."""

    async def put(body: Any, work: Work, keys: Keys) -> ConnectionOut:
        work.actor.require(Role.ADMIN)
        settings = _read_strictly(model, body)
        return await work.write(_put_connection, keys, provider, settings)

    # The annotations are strings (postponed evaluation); FastAPI takes a type object as is.
    put.__annotations__["body"] = Annotated[model, SkipValidation, Body()]
    router.put(
        f"/lifecycle/connections/{provider}",
        name=f"put_{provider}_connection",
        summary=f"Put the {provider} connection",
        description=f"Create or replace the tenant's {provider} settings, {what} (admin), "
        "sealed with the current key; 422 when the connector would not take them. The "
        "answer never shows them.",
        response_model=ConnectionOut,
        responses=WRITE_ERRORS,
    )(put)


def _delete_route(provider: str) -> None:
    """`DELETE /lifecycle/connections/<provider>` (a path per provider, as for PUT)."""

    async def delete(work: Work) -> Response:
        await work.write(connections.delete_connection, provider)
        return Response(status_code=204)

    stops = " Without it the tenant accepts no webhooks." if provider == HR_WEBHOOK else ""
    router.delete(
        f"/lifecycle/connections/{provider}",
        name=f"delete_{provider}_connection",
        summary=f"Delete the {provider} connection",
        description=f"Remove the tenant's {provider} settings (admin); 404 if there are none."
        + stops,
        status_code=204,
        response_class=Response,
        responses=WRITE_ERRORS,
    )(delete)


for _provider, (_model, _what) in CONNECTION_MODELS.items():
    _connection_route(_provider, _model, _what)
for _provider in (*CONNECTION_MODELS, HR_WEBHOOK):
    _delete_route(_provider)


@router.post(
    "/lifecycle/connections/hr_webhook/secret",
    status_code=201,
    response_model=WebhookSecretOut,
    responses=WRITE_ERRORS,
)
async def new_webhook_secret(work: Work, keys: Keys, response: Response) -> WebhookSecretOut:
    """Generate the tenant's HR webhook signing secret (admin), replacing any earlier one at
    once. It is shown in this answer only: give it to the HR system."""
    secret = await work.write(connections.new_webhook_secret, keys)
    response.headers["Cache-Control"] = "no-store"
    return WebhookSecretOut(secret=secret)


# --- runs and dead letters -----------------------------------------------------------------------


@router.get("/lifecycle/runs", response_model=list[RunOut], responses=READ_ERRORS)
async def list_runs(work: Work, limit: Limit = 50) -> list[RunOut]:
    """The tenant's lifecycle runs, newest first, each with its saga log (admin)."""
    return await work.read(service.list_runs, limit)


@router.get("/lifecycle/runs/{run_id}", response_model=RunOut, responses=READ_ERRORS)
async def read_run(run_id: uuid.UUID, work: Work) -> RunOut:
    """One run: its state, its frozen playbook's version, and every step with its attempts,
    output, error and compensation (admin)."""
    return await work.read(service.get_run, run_id)


def _open_letters(
    session: Session, actor: Actor, cursor: int | None, limit: int
) -> tuple[list[DeadLetterOut], str | None]:
    found = dead_letters.list_open(session, actor, after=cursor, limit=limit + 1)
    page = [DeadLetterOut.model_validate(letter) for letter in found[:limit]]
    return page, str(page[-1].id) if len(found) > limit else None


@router.get("/dead-letters", response_model=Page[DeadLetterOut], responses=READ_ERRORS)
async def list_dead_letters(
    work: Work,
    cursor: Annotated[
        int | None, Query(ge=0, le=BIGINT_MAX, description="The last dead letter id seen.")
    ] = None,
    limit: Limit = 50,
) -> Page[DeadLetterOut]:
    """Runs parked with a step out of retries, oldest first, with the step's error, inputs and
    attempts (admin)."""
    items, next_cursor = await work.read(_open_letters, cursor, limit)
    return Page[DeadLetterOut](items=items, next_cursor=next_cursor)


def _replay(
    session: Session, actor: Actor, letter_id: int, engine_configured: bool
) -> tuple[uuid.UUID, uuid.UUID, str]:
    """(run id, event id, tenant slug) of the run the replay put back to pending.

    Without a Prefect API nothing could start the run, so the replay is undone (this
    transaction rolls back) and the dead letter stays open for a later one; the role and the
    letter are checked first, so a caller learns nothing from the 503 it could not from a 403
    or a 404."""
    run = service.replay_dead_letter(session, actor, letter_id)
    if not engine_configured:
        raise Unavailable(
            "the API is not connected to a Prefect server (set PREFECT_API_URL); the dead letter "
            "stays open",
            code="workflow_unavailable",
        )
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == actor.tenant_id))
    assert slug is not None
    return run.id, run.event_id, slug


def _engine_configured() -> bool:
    """Whether a Prefect API is named (imported here, not inside a transaction: the first
    import of Prefect takes a while)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


@router.post(
    "/dead-letters/{letter_id}/replay",
    status_code=202,
    response_model=ReplayOut,
    responses=responses(401, 403, 404, 409, 422, 503),
)
async def replay_dead_letter(letter_id: LetterId, work: Work, settings: AppSettings) -> ReplayOut:
    """Replay a parked run (admin): the steps that succeeded stay done, the rest run again in a
    new flow run. 409 if it was replayed already; 503 when Prefect cannot be reached."""
    configured = await run_in_threadpool(_engine_configured)
    run_id, event_id, slug = await work.write(_replay, letter_id, configured)
    try:
        flow_run_id = await workflows.start_deployment(
            settings.lifecycle_deployment,
            {"tenant": slug, "event_id": str(event_id)},
            idempotency_key=dead_letters.replay_key(run_id, letter_id),
            tags=["quire", "lifecycle"],
        )
    except Unavailable as exc:  # nothing started it: the letter is open again for a retry
        await work.write(dead_letters.reopen, letter_id, exc.message)
        raise
    return ReplayOut(dead_letter_id=letter_id, run_id=run_id, flow_run_id=flow_run_id)
