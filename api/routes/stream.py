"""The live stream: Server-Sent Events with Last-Event-ID replay, and the same over WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import CurrentActor, authenticate
from api.errors import responses
from api.events.hub import EventHub, LiveEvent, SlowConsumer
from quire.errors import DomainError
from quire.people.actor import Actor
from quire.schemas import BIGINT_MAX

router = APIRouter(tags=["events"])


async def follow(
    hub: EventHub, actor: Actor, last_event_id: int | None
) -> AsyncIterator[LiveEvent]:
    """Replay what the client missed, then follow live, each event exactly once and in order."""
    sub = hub.subscribe(actor)
    try:
        # No await between subscribing and reading the position: everything at or below it
        # comes from the replay, everything above from the live queue.
        position = hub.position
        last = position
        if last_event_id is not None:
            async for event in hub.replay(actor, min(last_event_id, position), position):
                yield event
            # The client may already hold ids beyond our position (it came from a process that
            # was ahead): never send those twice.
            last = max(last_event_id, position)
        while True:
            event = await sub.next(wait=3600)
            if event is not None and event.id > last:
                last = event.id
                yield event
    finally:
        hub.unsubscribe(sub)


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "An endless text/event-stream of this tenant's events.",
        },
        **responses(401, 422),
    },
)
async def stream(
    request: Request,
    actor: CurrentActor,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=BIGINT_MAX)] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=BIGINT_MAX, description="Same as the Last-Event-ID header."),
    ] = None,
) -> EventSourceResponse:
    """Follow the marketplace live. Reconnect with `Last-Event-ID` to get what you missed."""
    hub: EventHub = request.app.state.hub
    metrics = request.app.state.metrics
    settings = request.app.state.settings
    start = last_event_id if last_event_id is not None else after

    async def events() -> AsyncIterator[ServerSentEvent]:
        metrics.stream_clients.labels("sse").inc()
        try:
            async for event in follow(hub, actor, start):
                yield ServerSentEvent(data=event.data, id=str(event.id), event=event.type)
        except SlowConsumer:
            yield ServerSentEvent(event="disconnect", data='{"reason":"slow_consumer"}')
        finally:
            metrics.stream_clients.labels("sse").dec()

    return EventSourceResponse(
        events(),
        ping=int(settings.stream_heartbeat_seconds),
        send_timeout=10,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.websocket("/events/ws")
async def stream_ws(
    websocket: WebSocket,
    access_token: Annotated[str | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=BIGINT_MAX)] = None,
) -> None:
    """The same events as JSON text frames. Browsers cannot set headers on a WebSocket, so the
    credential may come as `?access_token=` (or the usual Authorization header)."""
    credential = access_token
    header = websocket.headers.get("authorization", "")
    if credential is None and header.lower().startswith("bearer "):
        credential = header[7:]
    try:
        if not credential:
            raise DomainError("missing credentials")
        actor = await authenticate(websocket, credential)
    except DomainError:
        # Accept first: closing before the handshake would be a bare HTTP 403 to the client.
        await websocket.accept()
        await websocket.close(code=4401, reason="unauthenticated")
        return
    await websocket.accept()
    hub: EventHub = websocket.app.state.hub
    metrics = websocket.app.state.metrics
    metrics.stream_clients.labels("websocket").inc()

    async def drain_client() -> None:
        # We never expect messages; reading notices the client going away.
        while True:
            await websocket.receive_text()

    async def pump() -> None:
        try:
            async for event in follow(hub, actor, after):
                async with asyncio.timeout(10):
                    await websocket.send_text(event.data)
        except SlowConsumer:
            await websocket.close(
                code=1013, reason="slow consumer: reconnect with ?after=<last id>"
            )

    # Whichever ends first (the client leaving, or the stream) ends the other: a closed
    # socket is noticed at once, not at the tenant's next event.
    reader = asyncio.create_task(drain_client())
    sender = asyncio.create_task(pump())
    try:
        await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, sender):
            task.cancel()
        for task in (reader, sender):
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, TimeoutError, RuntimeError, Exception
            ):
                await task
        metrics.stream_clients.labels("websocket").dec()
