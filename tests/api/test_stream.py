"""Live updates: the SSE stream and its WebSocket twin against real uvicorn processes, and the
EventHub that feeds them.

API processes are started once for the module, in parallel (`sites`): per database, `server`
with default settings and `small` with a 5-event subscriber queue. Each test works in its own
tenant, so tests cannot see each other's events, and that sharing is itself an isolation check.

Every server runs with QUIRE_STREAM_POLL_SECONDS=30: an event that arrives within seconds was
delivered by the commit hook or by NOTIFY, never by the safety-net poll.

How a test knows its stream is subscribed before it makes a change: it connects with a
Last-Event-ID that leaves a known event to replay and waits for it (the subscription is taken
before the replay is read), or it waits for the `quire_stream_clients` gauge.

Tests named after a requirement the app does not meet yet fail on purpose; see their docstrings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets
from sqlalchemy import Integer, func, insert, literal, select
from websockets.asyncio.client import connect as ws_connect

from api.events.hub import EventHub, Subscription
from migrations.upgrade import upgrade
from quire.db import Database, utcnow
from quire.events import outbox
from quire.events.models import Event
from quire.tenancy import ALL_TENANTS
from tests.conftest import LiveServer
from tests.support import postgres
from tests.support.world import (
    Person,
    World,
    build_world,
    login,
    login_all,
    order_body,
    publish_order,
)

# Only the commit hook (same process) and NOTIFY (other processes) may explain a fast delivery.
SERVER_ENV = {"QUIRE_STREAM_POLL_SECONDS": "30", "QUIRE_LOGIN_LIMIT_PER_IP": "1000"}
WAIT = 5.0  # the longest any single expected event may take to show up
BULK_TENANT = "bulk"
BULK_EVENTS = 10_050  # more than one replay query's worth (the hub reads 10 000 at a time)


# -- a tiny SSE client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One dispatched Server-Sent Event."""

    event: str
    data: str
    id: int | None

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.data)

    def __repr__(self) -> str:
        data = self.data if len(self.data) <= 200 else self.data[:200] + "..."
        return f"Message(id={self.id}, event={self.event!r}, data={data!r})"


class SSEParser:
    """Incremental parser for text/event-stream lines (the subset the server uses)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: int | None = None

    def feed(self, line: str) -> Message | None:
        if line == "":
            if not self._data and not self._event:
                return None
            message = Message(self._event or "message", "\n".join(self._data), self._id)
            self._reset()
            return message
        if line.startswith(":"):
            return None  # comment: keep-alive ping
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = int(value)
        return None


_END = object()


class EventStream:
    """GET /events, parsed in a background task into a queue the test takes messages from.

    `read=False` opens the stream (headers received, subscription made) without reading the body:
    a consumer that falls behind. `start_reading()` later drains what the server managed to send.
    """

    def __init__(
        self,
        server: LiveServer,
        person: Person,
        *,
        last_event_id: int | None = None,
        after: int | None = None,
        read: bool = True,
    ) -> None:
        self.server = server
        self.person = person
        self.last_event_id = last_event_id
        self.after = after
        self.read = read
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stack = AsyncExitStack()
        self.response: httpx.Response

    async def __aenter__(self) -> EventStream:
        client = await self._stack.enter_async_context(
            httpx.AsyncClient(base_url=self.server.base_url, timeout=httpx.Timeout(10, read=None))
        )
        headers = {**self.person.auth, "Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        params = {"after": self.after} if self.after is not None else None
        self.response = await self._stack.enter_async_context(
            client.stream("GET", "/events", headers=headers, params=params)
        )
        if self.response.status_code != 200:
            await self.response.aread()
            await self._stack.aclose()
            raise AssertionError(f"GET /events: {self.response.status_code} {self.response.text}")
        assert self.response.headers["content-type"].startswith("text/event-stream")
        if self.read:
            self.start_reading()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._stack.aclose()

    def start_reading(self) -> None:
        assert self._task is None
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        parser = SSEParser()
        try:
            async for line in self.response.aiter_lines():
                message = parser.feed(line)
                if message is not None:
                    self._queue.put_nowait(message)
        except httpx.HTTPError as exc:
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(_END)

    async def next(self, within: float = WAIT) -> Message:
        try:
            if self._queue.empty():
                item = await asyncio.wait_for(self._queue.get(), within)
            else:
                item = self._queue.get_nowait()
        except TimeoutError:
            raise AssertionError(f"no event within {within}s") from None
        if item is _END or isinstance(item, Exception):
            raise AssertionError(f"the stream ended ({item!r})")
        return item

    async def take(self, n: int, within: float = WAIT) -> list[Message]:
        """The next `n` events; `within` applies to each."""
        return [await self.next(within) for _ in range(n)]

    async def until_end(self, within: float) -> list[Message]:
        """Everything up to the server closing the stream."""
        deadline = time.monotonic() + within
        got: list[Message] = []
        while True:
            left = deadline - time.monotonic()
            try:
                item = await asyncio.wait_for(self._queue.get(), max(left, 0.01))
            except TimeoutError:
                raise AssertionError(f"stream still open after {within}s: {got[-3:]}") from None
            if item is _END:
                return got
            if isinstance(item, Exception):
                raise AssertionError(f"stream failed: {item!r}")
            got.append(item)

    async def assert_quiet(self, seconds: float = 0.3) -> None:
        """Nothing more arrives (no duplicates, nothing that should have been filtered)."""
        await asyncio.sleep(seconds)
        extra = []
        while not self._queue.empty():
            extra.append(self._queue.get_nowait())
        assert extra == [], f"unexpected extra events: {extra}"


# -- helpers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: int
    type: str
    aggregate_id: uuid.UUID


def history(database: Database, tenant_id: uuid.UUID, after: int = 0) -> list[Row]:
    """The ground truth: a tenant's events in the table, oldest first."""
    with database.session(tenant_id) as session:
        rows = session.execute(
            select(Event.id, Event.type, Event.aggregate_id)
            .where(Event.id > after)
            .order_by(Event.id)
        )
        return [Row(*r) for r in rows]


def ids(items: list[Message] | list[Row]) -> list[int | None]:
    return [item.id for item in items]


def summary(items: list[Message]) -> list[tuple[str, str | None]]:
    """(type, order id) per event, for readable assertion failures."""
    out = []
    for m in items:
        payload = m.body.get("payload", {})
        out.append((m.event, (payload.get("order") or {}).get("id") or payload.get("order_id")))
    return out


def api(server: LiveServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=20)


async def metric(c: httpx.AsyncClient, sample: str) -> float:
    """One sample from GET /metrics, e.g. `quire_stream_clients{transport="sse"}`."""
    response = await c.get("/metrics")
    assert response.status_code == 200
    for line in response.text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


SSE_CLIENTS = 'quire_stream_clients{transport="sse"}'
WS_CLIENTS = 'quire_stream_clients{transport="websocket"}'
SLOW_CONSUMERS = "quire_stream_slow_consumers_total"


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = WAIT, what: str = "condition"
) -> float:
    """Poll `check` until true; returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def create(c: httpx.AsyncClient, manager: Person, **overrides: Any) -> dict[str, Any]:
    """A draft order unless `publish=True` is given."""
    body = order_body(**{"publish": False, **overrides})
    response = await c.post("/orders", json=body, headers=manager.auth)
    assert response.status_code == 201, response.text
    return response.json()


async def act(c: httpx.AsyncClient, person: Person, path: str, body: Any = None) -> dict[str, Any]:
    response = await c.post(path, json=body, headers=person.auth)
    assert response.status_code in (200, 201), response.text
    return response.json()


def ws_url(server: LiveServer, token: str | None = None, after: int | None = None) -> str:
    query = {k: v for k, v in (("access_token", token), ("after", after)) if v is not None}
    base = server.base_url.replace("http://", "ws://") + "/events/ws"
    return f"{base}?{urlencode(query)}" if query else base


async def ws_take(ws: Any, n: int, within: float = WAIT) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), within)) for _ in range(n)]


# -- the shared server ---------------------------------------------------------------------------


@dataclass
class Shared:
    """One database and two API processes on it: `server` with default settings, used by most
    tests, and `small` with a 5-event subscriber queue (the slow-consumer test; it is also the
    second process of the fan-out test, where the queue size plays no part)."""

    url: str
    database: Database
    server: LiveServer
    small: LiveServer
    bulk: World | None = None

    async def world(self, slug: str, specialists: int = 2) -> World:
        world = build_world(self.database, slug, specialists=specialists)
        async with api(self.server) as c:
            return await login_all(c, world)


def seed_bulk_history(database: Database) -> World:
    """A tenant whose history is longer than one replay query (see test_replay_is_not_capped),
    written with one INSERT .. SELECT over a counter."""
    world = build_world(database, BULK_TENANT, specialists=0)
    n = select(literal(1, Integer).label("i")).cte("n", recursive=True)
    n = n.union_all(select((n.c.i + 1).label("i")).where(n.c.i < BULK_EVENTS))
    rows = select(
        literal(world.tenant_id, Event.tenant_id.type),
        literal("order.created"),
        literal("order"),
        literal(uuid.uuid4(), Event.aggregate_id.type),
        literal({"order": {"status": "open"}}, Event.payload.type),
        literal(utcnow(), Event.created_at.type),
    ).select_from(n)
    columns = ["tenant_id", "type", "aggregate_type", "aggregate_id", "payload", "created_at"]
    with database.session(world.tenant_id, write=True) as session:
        session.execute(insert(Event).from_select(columns, rows))
    return world


@pytest.fixture(scope="module")
def sites(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Shared]]:
    """The API processes for the whole module, on both databases, started in parallel (importing
    the app dominates a start-up) and kept until the end: each test works in its own tenant."""
    data_dir = tmp_path_factory.mktemp("stream")
    found: dict[str, Shared] = {}
    pg_database: tuple[str, str] | None = None
    try:
        url = f"sqlite:///{data_dir / 'quire.db'}"
        database = Database(url)
        upgrade(database)
        bulk = seed_bulk_history(database)  # before the servers start: their hubs begin past it
        found["sqlite"] = Shared(
            url,
            database,
            LiveServer(url, data_dir, **SERVER_ENV),
            LiveServer(url, data_dir, QUIRE_STREAM_QUEUE_SIZE="5", **SERVER_ENV),
            bulk,
        )
        try:
            admin: str = request.getfixturevalue("pg_admin_url")
            template: str = request.getfixturevalue("pg_template")
        except pytest.skip.Exception:
            pass  # the PostgreSQL variants skip
        else:
            pg_database = (admin, postgres.create_database(admin, template=template))
            url = postgres.with_database(*pg_database)
            found["postgresql"] = Shared(
                url,
                Database(url),
                LiveServer(url, data_dir, **SERVER_ENV),
                LiveServer(url, data_dir, QUIRE_STREAM_QUEUE_SIZE="5", **SERVER_ENV),
            )
        for site in found.values():
            site.server.wait_ready()
            site.small.wait_ready()
        yield found
    finally:
        for site in found.values():
            site.server.stop()
            site.small.stop()
            site.database.dispose()
        if pg_database is not None:
            postgres.drop_database(*pg_database)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared(request: pytest.FixtureRequest, sites: dict[str, Shared]) -> Shared:
    if request.param not in sites:
        pytest.skip("PostgreSQL is not available")
    return sites[request.param]


@pytest.fixture
def shared_pg(sites: dict[str, Shared]) -> Shared:
    if "postgresql" not in sites:
        pytest.skip("PostgreSQL is not available")
    return sites["postgresql"]


# -- SSE: replay, then live ----------------------------------------------------------------------


async def test_sse_replays_after_last_event_id_then_follows_live(shared: Shared) -> None:
    world = await shared.world("replay")
    manager = world.manager
    async with api(shared.server) as c:
        for i in range(3):
            await publish_order(c, manager, title=f"Replay order {i}")
        before = history(shared.database, world.tenant_id)
        assert [r.type for r in before] == ["order.created", "order.published"] * 3

        async with EventStream(shared.server, manager, last_event_id=before[1].id) as stream:
            assert stream.response.headers["cache-control"] == "no-store"
            replayed = await stream.take(4)
            # Exactly the later ones, in order, as the table has them (and nothing of the other
            # tenants that share this server and interleave with these ids).
            assert ids(replayed) == ids(before[2:])
            assert [m.event for m in replayed] == [r.type for r in before[2:]]
            for message, row in zip(replayed, before[2:], strict=True):
                body = message.body
                assert body["id"] == row.id
                assert body["type"] == row.type
                assert body["aggregate_id"] == str(row.aggregate_id)
                assert body["payload"]["order"]["id"] == str(row.aggregate_id)

            # A change made now arrives live, right after the replay, exactly once.
            started = time.monotonic()
            order = await publish_order(c, manager, title="Live order")
            live = await stream.take(2)
            elapsed = time.monotonic() - started
            after = history(shared.database, world.tenant_id, after=before[-1].id)
            assert ids(live) == ids(after)
            assert [m.event for m in live] == ["order.created", "order.published"]
            assert live[1].body["payload"]["order"]["id"] == order["id"]
            assert live[1].body["payload"]["order"]["status"] == "open"
            assert elapsed < 3, f"live event took {elapsed:.2f}s (the poll is 30s)"
            await stream.assert_quiet()

        # `?after=` is the same as the header (for clients that cannot set headers).
        everything = history(shared.database, world.tenant_id)
        async with EventStream(shared.server, manager, after=everything[3].id) as stream:
            assert ids(await stream.take(len(everything) - 4)) == ids(everything[4:])
            await stream.assert_quiet()

        # Last-Event-ID 0 is "from the beginning"; the latest id replays nothing.
        async with EventStream(shared.server, manager, last_event_id=0) as stream:
            assert ids(await stream.take(len(everything))) == ids(everything)
            await stream.assert_quiet()
        async with EventStream(shared.server, manager, last_event_id=everything[-1].id) as stream:
            await stream.assert_quiet()


async def test_a_client_holding_later_ids_gets_no_duplicates(shared: Shared) -> None:
    """A client coming from a process that was ahead may send a Last-Event-ID beyond this
    process's position: ids up to it are never sent again, later ones are."""
    world = await shared.world("ahead")
    manager = world.manager
    with shared.database.session() as session:
        newest = session.scalar(select(func.max(Event.id)).execution_options(**ALL_TENANTS)) or 0
    async with api(shared.server) as c:
        baseline = await metric(c, SSE_CLIENTS)
        async with EventStream(shared.server, manager, last_event_id=newest + 2) as stream:
            # Subscribed while the hub is still behind the client's id: the live path decides.
            await eventually(lambda: _equals(c, SSE_CLIENTS, baseline + 1), what="subscribed")
            for i in range(3):
                await create(c, manager, title=f"Ahead {i}")
            made = history(shared.database, world.tenant_id)
            assert made[0].id <= newest + 2 < made[-1].id
            expected = [r for r in made if r.id > newest + 2]
            assert ids(await stream.take(len(expected))) == ids(expected)
            await stream.assert_quiet()


async def test_replay_is_not_capped(sites: dict[str, Shared]) -> None:
    """A client that was away for a long time gets its whole backlog, not the first 10 000 events
    followed by a silent jump to the present. (SQLite only: paging the replay is the same code on
    both databases, and 10 000 events take a while to stream.)"""
    shared = sites["sqlite"]
    assert shared.bulk is not None
    async with api(shared.server) as c:
        admin = await login(c, shared.bulk.admin)
    backlog = history(shared.database, shared.bulk.tenant_id)
    assert len(backlog) == BULK_EVENTS
    async with EventStream(shared.server, admin, last_event_id=0) as stream:
        got = await stream.take(10_000, within=10)
        assert ids(got) == ids(backlog[:10_000])
        rest: list[Message] = []
        with contextlib.suppress(AssertionError):
            for _ in range(BULK_EVENTS - 10_000):
                rest.append(await stream.next(within=1))
        assert ids(rest) == ids(backlog[10_000:]), (
            f"replay stopped after {len(got) + len(rest)} of {BULK_EVENTS} events"
        )


# -- who sees what -------------------------------------------------------------------------------


async def test_another_tenants_events_never_appear(shared: Shared) -> None:
    acme = await shared.world("iso-acme")
    globex = await shared.world("iso-globex")
    async with api(shared.server) as c:
        await publish_order(c, acme.manager, title="Acme before")
        await publish_order(c, globex.manager, title="Globex before")
        acme_before = history(shared.database, acme.tenant_id)
        globex_before = history(shared.database, globex.tenant_id)
        assert len(acme_before) == len(globex_before) == 2

        async with (
            EventStream(shared.server, globex.manager, last_event_id=0) as g,
            EventStream(shared.server, globex.specialist, last_event_id=0) as g_spec,
            EventStream(shared.server, acme.manager, last_event_id=0) as a,
            ws_connect(ws_url(shared.server, globex.manager.token, after=0)) as g_ws,
        ):
            # Replay from the very beginning: each tenant's own history only.
            assert ids(await g.take(2)) == ids(globex_before)
            assert ids(await g_spec.take(1)) == ids(globex_before[1:])  # the publication
            assert [m["id"] for m in await ws_take(g_ws, 2)] == ids(globex_before)
            assert ids(await a.take(2)) == ids(acme_before)

            # Live: acme's changes reach acme only; globex's marker then shows globex saw none.
            await publish_order(c, acme.manager, title="Acme live")
            acme_live = history(shared.database, acme.tenant_id, after=acme_before[-1].id)
            assert ids(await a.take(2)) == ids(acme_live)
            await publish_order(c, globex.manager, title="Globex marker")
            globex_live = history(shared.database, globex.tenant_id, after=globex_before[-1].id)
            assert ids(await g.take(2)) == ids(globex_live)
            assert ids(await g_spec.take(1)) == ids(globex_live[1:])
            assert [m["id"] for m in await ws_take(g_ws, 2)] == ids(globex_live)
            for stream in (g, g_spec, a):
                await stream.assert_quiet(0.2)


async def test_specialist_sees_the_marketplace_but_not_drafts_or_other_peoples_work(
    shared: Shared,
) -> None:
    world = await shared.world("audience")
    manager, me, rival = world.manager, world.specialist, world.specialist1
    async with api(shared.server) as c:
        first = await publish_order(c, manager, title="Published before connecting")
        async with (
            EventStream(shared.server, me, last_event_id=0) as mine,
            EventStream(shared.server, manager, last_event_id=0) as staff,
        ):
            # Replay hides the draft-stage order.created and shows the publication.
            synced = await mine.next()
            assert (synced.event, synced.body["payload"]["order"]["id"]) == (
                "order.published",
                first["id"],
            )
            await staff.take(2)

            draft = await create(c, manager, title="Stays a draft")  # hidden
            later = await create(c, manager, title="Draft, then published")  # created: hidden
            await act(c, manager, f"/orders/{later['id']}/publish")  # shown
            bidding = await publish_order(c, manager, title="Takes bids", mode="bidding")
            await act(c, rival, f"/orders/{bidding['id']}/bids", {"amount_minor": 20_000})  # no
            await act(c, me, f"/orders/{bidding['id']}/bids", {"amount_minor": 21_000})  # mine
            await act(c, rival, f"/orders/{first['id']}/claim")  # the marketplace moved: shown
            await act(c, rival, f"/orders/{first['id']}/submissions", {"content": "Done."})  # no
            marker = await publish_order(c, manager, title="Marker")

            everything = history(shared.database, world.tenant_id, after=synced.id or 0)
            # Staff see every one of them.
            assert ids(await staff.take(len(everything))) == ids(everything)
            got = await mine.take(5)
            assert summary(got) == [
                ("order.published", later["id"]),
                ("order.published", bidding["id"]),
                ("bid.placed", bidding["id"]),
                ("order.claimed", first["id"]),
                ("order.published", marker["id"]),
            ]
            assert got[2].body["payload"]["specialist_id"] == str(me.id)
            assert draft["id"] not in json.dumps([m.body for m in got])
            await mine.assert_quiet()
            await staff.assert_quiet()


async def test_specialist_never_sees_a_draft_that_was_cancelled(shared: Shared) -> None:
    """A draft is never shown to specialists, so neither is its cancellation: the event carries
    the unpublished order's title, fee and deadline."""
    world = await shared.world("cancelled-draft")
    manager, me = world.manager, world.specialist
    async with api(shared.server) as c:
        first = await publish_order(c, manager, title="Sync point")
        async with EventStream(shared.server, me, last_event_id=0) as mine:
            assert (await mine.next()).body["payload"]["order"]["id"] == first["id"]
            draft = await create(c, manager, title="Secret project, never published")
            await act(c, manager, f"/orders/{draft['id']}/cancel")
            marker = await publish_order(c, manager, title="Marker")
            got = await mine.next()
            assert summary([got]) == [("order.published", marker["id"])], (
                f"a specialist was shown a never-published draft: {got.event} {got.data}"
            )


# -- WebSocket -----------------------------------------------------------------------------------


async def test_websocket_carries_the_same_events(shared: Shared) -> None:
    world = await shared.world("websocket")
    manager = world.manager
    async with api(shared.server) as c:
        await publish_order(c, manager, title="Before")
        before = history(shared.database, world.tenant_id)
        start = before[0].id
        async with (
            EventStream(shared.server, manager, last_event_id=start) as sse,
            ws_connect(ws_url(shared.server, manager.token, after=start)) as ws,
        ):
            sse_replay = await sse.take(1)
            ws_replay = await ws_take(ws, 1)
            order = await publish_order(c, manager, title="During")
            await act(c, manager, f"/orders/{order['id']}/cancel")
            sse_live = await sse.take(3)
            ws_live = await ws_take(ws, 3)

            everything = history(shared.database, world.tenant_id, after=start)
            assert [m.body for m in sse_replay + sse_live] == ws_replay + ws_live
            assert [m["id"] for m in ws_replay + ws_live] == ids(everything)
            assert [m["type"] for m in ws_live] == [
                "order.created",
                "order.published",
                "order.cancelled",
            ]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)

        # The token may also come as an Authorization header.
        headers = {"Authorization": f"Bearer {manager.token}"}
        async with ws_connect(ws_url(shared.server, after=start), additional_headers=headers) as ws:
            assert [m["id"] for m in await ws_take(ws, len(everything))] == ids(everything)


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no-token", "bad-token"])
async def test_websocket_without_valid_credentials_is_closed_with_4401(
    shared: Shared, token: str | None
) -> None:
    try:
        async with ws_connect(ws_url(shared.server, token)) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
    except websockets.InvalidStatus as exc:
        pytest.fail(
            f"the handshake was refused with HTTP {exc.response.status_code} instead of being "
            "accepted and closed with code 4401"
        )
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_sse_without_credentials_is_401(shared: Shared) -> None:
    async with api(shared.server) as c:
        response = await c.get("/events", headers={"Accept": "text/event-stream"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("where", "value"),
    [("query", str(2**63)), ("query", str(2**70)), ("header", str(2**70)), ("query", "-1")],
)
async def test_a_resume_position_outside_the_event_ids_range_is_a_422(
    shared: Shared, where: str, value: str
) -> None:
    """Event ids are BIGINT: a position no event can have is refused, never sent to the database."""
    world = await shared.world(f"far-{where}-{abs(hash(value)) % 10**8}")
    headers = {"Accept": "text/event-stream", **world.manager.auth}
    params: dict[str, str] = {}
    if where == "header":
        headers["Last-Event-ID"] = value
    else:
        params["after"] = value
    async with api(shared.server) as c:
        response = await c.get("/events", headers=headers, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_a_client_that_goes_away_is_unsubscribed(shared: Shared, transport: str) -> None:
    """Closing the connection releases the subscription at once, not at the tenant's next event
    (a quiet tenant would otherwise hold dead subscribers indefinitely)."""
    world = await shared.world(f"goes-away-{transport}")
    sample = SSE_CLIENTS if transport == "sse" else WS_CLIENTS
    async with api(shared.server) as c:
        baseline = await metric(c, sample)
        if transport == "sse":
            async with EventStream(shared.server, world.manager):
                await eventually(lambda: _equals(c, sample, baseline + 1), what="client counted")
        else:
            async with ws_connect(ws_url(shared.server, world.manager.token)):
                await eventually(lambda: _equals(c, sample, baseline + 1), what="client counted")
        await eventually(
            lambda: _equals(c, sample, baseline),
            within=2,
            what=f"{sample} back to {baseline} after the client left",
        )


async def _equals(c: httpx.AsyncClient, sample: str, value: float) -> bool:
    return await metric(c, sample) == value


# -- two processes on PostgreSQL -----------------------------------------------------------------


@pytest.mark.postgres
async def test_events_fan_out_between_processes_with_notify(shared_pg: Shared) -> None:
    """A change written through process B reaches a client of process A at once: with a 30 s
    poll, only B's commit NOTIFYing A's LISTEN connection explains it."""
    a, b = shared_pg.server, shared_pg.small
    world = build_world(shared_pg.database, "fanout")
    async with api(b) as via_b, api(a) as via_a:
        await login_all(via_b, world)
        manager = world.manager
        await publish_order(via_b, manager, title="Before")
        first = history(shared_pg.database, world.tenant_id)[0]
        async with (
            EventStream(a, manager, last_event_id=first.id) as on_a,
            EventStream(b, manager, last_event_id=first.id) as on_b,
            ws_connect(ws_url(a, manager.token, after=first.id)) as ws_on_a,
        ):
            for sync in (on_a.next(), on_b.next(), ws_take(ws_on_a, 1)):
                await sync  # each is subscribed now (the replayed publication arrived)

            started = time.monotonic()
            order = await publish_order(via_b, manager, title="Through B")
            got = await on_a.take(2, within=3)
            latency = time.monotonic() - started
            assert [m.body["payload"]["order"]["id"] for m in got] == [order["id"]] * 2
            assert latency < 3, f"A saw B's change after {latency:.2f}s"
            assert [m["id"] for m in await ws_take(ws_on_a, 2, within=3)] == ids(got)
            assert ids(await on_b.take(2, within=3)) == ids(got)

            # And the other way round.
            started = time.monotonic()
            await act(via_a, manager, f"/orders/{order['id']}/cancel")
            (back,) = await on_b.take(1, within=3)
            assert back.event == "order.cancelled"
            assert time.monotonic() - started < 3
            assert ids(await on_a.take(1, within=3)) == [back.id]
            for stream in (on_a, on_b):
                await stream.assert_quiet(0.2)


# -- slow consumers ------------------------------------------------------------------------------


def add_padding_event(database: Database, tenant_id: uuid.UUID, size: int) -> None:
    """An event far bigger than the API can produce (a few of them fill a socket's buffers)."""
    with database.session(tenant_id, write=True) as session:
        outbox.record(
            session,
            "test.padding",
            aggregate_type="test",
            aggregate_id=uuid.uuid4(),
            payload={"padding": "x" * size},
        )


async def test_a_slow_consumer_is_cut_off_and_can_resume(shared: Shared) -> None:
    """A consumer that stops reading is disconnected once its (here: 5-event) buffer is full,
    without disturbing a consumer that keeps up; it can resume from its last id."""
    server, database = shared.small, shared.database
    world = build_world(database, "slow", specialists=0)
    manager = world.manager
    async with api(server) as c:
        await login_all(c, world)
        dropped_before = await metric(c, SLOW_CONSUMERS)
        clients_before = await metric(c, SSE_CLIENTS)
        async with (
            EventStream(server, manager, last_event_id=0) as fast,
            # Never reads while the events pour in: once the socket buffers between it and the
            # server are full (a few MiB), the server's sends block, the subscriber's queue
            # fills, and the hub cuts it off. (A tiny SO_RCVBUF does not help: with a window
            # below one segment the sender's zero-window probes back off for many seconds
            # after the client resumes reading.)
            EventStream(server, manager, last_event_id=0, read=False) as lazy,
        ):
            await eventually(
                lambda: _equals(c, SSE_CLIENTS, clients_before + 2), what="both subscribed"
            )
            # Each round: one 512 KiB event straight into the table, then one change through
            # the API, whose commit wakes the hub. At most two events per hub read, so a
            # consumer that keeps reading never has more than two queued.
            rounds = 0
            while await metric(c, SLOW_CONSUMERS) == dropped_before:
                assert rounds < 60, "the slow consumer was never cut off (30 MiB sent)"
                add_padding_event(database, world.tenant_id, 512 * 1024)
                await create(c, manager)
                rounds += 1
            everything = history(database, world.tenant_id)
            assert len(everything) == 2 * rounds

            # The reader that kept up got everything and was not cut off.
            got = await fast.take(len(everything))
            assert ids(got) == ids(everything)
            assert "disconnect" not in [m.event for m in got]

            # The lazy one gets what was already on its way, then the disconnect notice.
            lazy.start_reading()
            received = await lazy.until_end(within=10)
            assert received, "nothing at all reached the slow consumer"
            notice = received[-1]
            assert (notice.event, notice.body) == ("disconnect", {"reason": "slow_consumer"})
            delivered = received[:-1]
            assert 0 < len(delivered) < len(everything)
            assert ids(delivered) == ids(everything[: len(delivered)])

        # It reconnects with its last id and misses nothing.
        async with EventStream(server, manager, last_event_id=delivered[-1].id) as again:
            rest = await again.take(len(everything) - len(delivered))
            assert ids(delivered + rest) == ids(everything)
            await again.assert_quiet(0.2)

        # Exactly one consumer was dropped, and the server is fine.
        assert await metric(c, SLOW_CONSUMERS) == dropped_before + 1
        await eventually(lambda: _equals(c, SSE_CLIENTS, clients_before), what="streams released")
        assert (await c.get("/health/ready")).status_code == 200
        async with EventStream(server, manager, last_event_id=everything[-1].id) as fresh:
            order = await create(c, manager)
            (live,) = await fresh.take(1)
            assert live.body["payload"]["order"]["id"] == order["id"]


# -- the hub itself: ids that commit out of order (PostgreSQL) -----------------------------------


class _Rollback(Exception):
    pass


async def _add_event(session: Any, label: str) -> int:
    def work(sync_session: Any) -> int:
        event = outbox.record(
            sync_session,
            "test.event",
            aggregate_type="test",
            aggregate_id=uuid.uuid4(),
            payload={"label": label},
        )
        sync_session.flush()
        return event.id

    return await session.run_sync(work)


@dataclass
class HubRig:
    database: Database
    hub: EventHub
    sub: Subscription
    tenant_id: uuid.UUID

    def session(self) -> Any:
        return self.database.async_session(self.tenant_id, write=True)

    async def received(self, n: int, within: float = 3) -> list[int]:
        got = []
        for _ in range(n):
            event = await self.sub.next(wait=within)
            assert event is not None, f"only {got} arrived"
            got.append(event.id)
        return got

    async def assert_nothing(self, seconds: float) -> None:
        event = await self.sub.next(wait=seconds)
        assert event is None, f"unexpected event {event}"


@pytest.fixture
async def rig(pg_url: str, request: pytest.FixtureRequest) -> Any:
    gap_timeout = getattr(request, "param", 10.0)
    database = Database(pg_url)
    world = build_world(database, "hub", specialists=0)
    # A 30 s poll: only NOTIFY (and the short gap re-checks) drive the hub here.
    hub = EventHub(database, poll_seconds=30, gap_timeout=gap_timeout)
    await hub.start()
    try:
        sub = hub.subscribe(world.admin.actor)
        async with database.async_session(world.tenant_id, write=True) as session:
            warm = await _add_event(session, "warm-up")  # also proves LISTEN is connected
        rig = HubRig(database, hub, sub, world.tenant_id)
        assert await rig.received(1) == [warm]
        yield rig
    finally:
        await hub.stop()
        await database.async_dispose()


@pytest.mark.postgres
async def test_hub_holds_a_later_id_until_the_earlier_transaction_commits(rig: HubRig) -> None:
    async with rig.session() as slow:
        early = await _add_event(slow, "early")
        async with rig.session() as quick:
            late = await _add_event(quick, "late")
        assert late == early + 1
        # `late` is committed and NOTIFY has woken the hub, but `early` may still commit.
        await rig.assert_nothing(0.5)
        assert rig.hub.position < early
        assert rig.hub._gap_since is not None  # white-box: it saw `late` and waits on the hole
    # `early` commits: both are delivered, in id order, once.
    assert await rig.received(2) == [early, late]
    await rig.assert_nothing(0.3)
    assert rig.hub.position == late


@pytest.mark.postgres
@pytest.mark.parametrize("rig", [0.5], indirect=True)
async def test_hub_skips_the_id_of_a_rolled_back_transaction(rig: HubRig) -> None:
    with contextlib.suppress(_Rollback):
        async with rig.session() as doomed:
            await _add_event(doomed, "rolled back")
            async with rig.session() as quick:
                late = await _add_event(quick, "late")
            raise _Rollback
    started = time.monotonic()
    assert await rig.received(1) == [late]  # after the gap timeout, not forever
    assert time.monotonic() - started < 3
    # The hole is settled: the next event goes straight through.
    async with rig.session() as session:
        following = await _add_event(session, "following")
    started = time.monotonic()
    assert await rig.received(1) == [following]
    assert time.monotonic() - started < 0.5
    await rig.assert_nothing(0.2)


@pytest.mark.postgres
@pytest.mark.parametrize("rig", [0.5], indirect=True)
async def test_hub_delivers_an_event_whose_transaction_commits_after_the_gap_timeout(
    rig: HubRig,
) -> None:
    async with rig.session() as slow:
        early = await _add_event(slow, "early")
        async with rig.session() as quick:
            late = await _add_event(quick, "late")
        await asyncio.sleep(1.0)  # slower than gap_timeout: e.g. waiting on a row lock
    got = []
    with contextlib.suppress(AssertionError):
        got = await rig.received(2, within=1.5)
    assert got == [early, late]
