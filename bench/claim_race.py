"""Claim race benchmark: the real HTTP server (uvicorn) on PostgreSQL versus the bare UPDATE.

    .venv/bin/python bench/claim_race.py --repeat 3            # N=100 orders, C=32 clients
    .venv/bin/python bench/claim_race.py --orders 500 --pattern lockstep

Method
------
1. Create a fresh database ``quire_bench_claim_<random>_api`` on the server behind
   ``--admin-url``, migrate it (Alembic) and seed one tenant through the domain services: a
   manager, ``C`` specialists, and with ``create_order(..., publish=True)`` one warm-up set plus
   one set of ``N`` open claim-mode orders per run (``--repeat R`` runs).
2. Copy it with ``CREATE DATABASE ... TEMPLATE`` into ``quire_bench_claim_<random>_raw``, so the
   baseline gets the same rows (same ids), untouched by the API. Both are dropped at the end.
3. Start ``quire api --workers W`` (uvicorn; uvloop and httptools when installed)
   on the API database and wait for ``/health/ready``. Access tokens for the specialists are
   minted with the server's JWT secret: no logins, so login rate limits and Argon2 stay out.
4. Each of the ``C`` clients is one specialist with one keep-alive connection, opened before the
   clock starts, one after another with one request each (uvicorn's workers share one listening
   socket: a burst of simultaneous connects lands on a single worker; the report shows how the
   connections were spread over the server processes). Then every client tries to claim every
   order of the run's set, one request at a time, in its own shuffled order (``--pattern
   lockstep``: all clients in the same order, so each order is fought over by all C clients at
   nearly the same moment). That is ``N x C`` attempts, of which exactly ``N`` must answer 200
   and all others 409. Latency is measured per request in the client.
5. The baseline replays the same attempts (same per-client sequences, same ``C``) against the copy
   with psycopg: ``C`` autocommit connections issuing the conditional UPDATE the API issues,
   ``UPDATE orders SET status = 'claimed', ... WHERE id = $1 AND tenant_id = $2 AND status =
   'open' AND mode = 'claim' AND deadline > now() RETURNING id``. ``--raw-with-event`` adds the
   ``order.claimed`` event INSERT the API commits with it, as one CTE statement.
6. Both databases are then checked. A double claim is an order that two clients were told they
   won or (API) that has more than one ``order.claimed`` event; an order whose database winner is
   not the client that got the 200, or that stayed open, counts as ``bad``.
7. CPU seconds of the server processes, of PostgreSQL backends serving the benchmark databases and
   of this process (the load generator) are read from ``/proc`` around each measured phase, with
   the machine-wide total: the report says where the cores went, and how much of them other
   work on the machine (or the hypervisor) took. From these, ``CPU cost ratio raw/API`` = CPU
   seconds per raw attempt / CPU seconds per API attempt (server + PostgreSQL + client): what
   the ratio would be if both phases got the same CPU, a figure other load disturbs less.

claims/s = successful claims / wall time; attempts/s = all attempts / wall time. Both phases make
the same attempts, so ``ratio API/raw`` = raw wall time / API wall time. With ``--repeat R`` rates
and latencies are medians over the R runs (the ratio is the median of the per-run ratios) and the
correctness counts are sums; each run uses its own fresh set of orders, API phase then raw phase.
A warm-up set is raced once per phase beforehand and not reported. The exit status is 1 when any
double claim, error or bad order was seen (the ratio target only shows in the output).

The load generator runs in this process, on the same cores as the server and PostgreSQL. By
default it speaks HTTP/1.1 over raw asyncio streams on uvloop (about 0.2 ms of CPU per request);
``--client httpx`` uses ``httpx.AsyncClient`` instead, about five times as much CPU taken from
the cores the server needs. Every attempt is a full request, so the work grows as N x C: the
default N is 100 (3,200 requests per run), because at the API's few hundred requests/s on two
shared cores the issue's N=500 (16,000 requests) takes minutes per run; ``--orders 500`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import httpx
import psycopg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: the project root

from bench.harness import (
    HOST,
    CpuUse,
    Databases,
    ServerProcess,
    add_common_options,
    admin_dsn,
    cpu_snapshot,
    cpu_use,
    describe_server,
    free_port,
    median,
    new_parser,
    percentile,
    process_tree,
    read_procs,
    require_positive,
    server_settings,
)

T = TypeVar("T")

JWT_SECRET = secrets.token_urlsafe(32)
JWT_ISSUER = "quire"
JWT_AUDIENCE = "quire-api"
REQUEST_TIMEOUT = 30.0

WON, LOST, FAILED = 200, 409, 0

# One claim attempt: client index, order id, start and end (perf_counter seconds), status.
Attempt = tuple[int, uuid.UUID, float, float, int]

CLAIM_SQL = """
UPDATE orders
   SET status = 'claimed', specialist_id = %(specialist)s, claimed_at = now(),
       version = version + 1, updated_at = now()
 WHERE id = %(order)s AND tenant_id = %(tenant)s
   AND status = 'open' AND mode = 'claim' AND deadline > now()
RETURNING id
"""

CLAIM_WITH_EVENT_SQL = """
WITH claimed AS (
    UPDATE orders
       SET status = 'claimed', specialist_id = %(specialist)s, claimed_at = now(),
           version = version + 1, updated_at = now()
     WHERE id = %(order)s AND tenant_id = %(tenant)s
       AND status = 'open' AND mode = 'claim' AND deadline > now()
    RETURNING id, tenant_id, specialist_id, version
)
INSERT INTO events (tenant_id, type, aggregate_type, aggregate_id, payload, created_at)
SELECT tenant_id, 'order.claimed', 'order', id,
       jsonb_build_object('order', jsonb_build_object('id', id, 'status', 'claimed',
                          'version', version, 'specialist_id', specialist_id)),
       now()
  FROM claimed
RETURNING aggregate_id
"""


# -- command line ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    orders: int
    clients: int
    workers: int
    repeat: int
    warmup: int
    pattern: str
    client: str
    admin_url: str
    port: int
    pool_size: int | None
    max_overflow: int | None
    raw_with_event: bool
    seed: int
    keep: bool
    stagger: float
    profile: Path | None
    floor: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = new_parser(
        "Claim race through uvicorn on PostgreSQL versus the bare conditional UPDATE."
    )
    parser.add_argument("--orders", "-n", type=int, default=100, help="orders per run (N)")
    parser.add_argument("--clients", "-c", type=int, default=32, help="concurrent clients (C)")
    parser.add_argument("--workers", "-w", type=int, default=2, help="uvicorn worker processes")
    add_common_options(parser, repeat=1, seed=1)
    parser.add_argument("--warmup", type=int, default=10, help="orders in the unmeasured warm-up")
    parser.add_argument(
        "--pattern",
        choices=("shuffle", "lockstep"),
        default="shuffle",
        help="shuffle: each client visits the orders in its own random order; lockstep: all "
        "clients visit them in the same order (maximal contention on every order)",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="HTTP load generator: raw asyncio streams (lean) or httpx.AsyncClient",
    )
    parser.add_argument("--port", type=int, default=0, help="API port (0: a free one)")
    parser.add_argument(
        "--pool-size", type=int, default=None, help="QUIRE_DB_POOL_SIZE for the server"
    )
    parser.add_argument(
        "--max-overflow", type=int, default=None, help="QUIRE_DB_MAX_OVERFLOW for the server"
    )
    parser.add_argument(
        "--raw-with-event",
        action="store_true",
        help="the baseline also inserts the order.claimed event (one CTE statement)",
    )
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="extra milliseconds between two clients' connects (they connect one after another; "
        "uvicorn's workers share one listening socket, so how connections spread matters)",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the HTTP floor phase (GET /health/live after each run)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the server (one worker) under cProfile (CPU time) and write its stats here",
    )
    args = parser.parse_args(argv)
    if args.profile is not None and args.workers != 1:
        parser.error("--profile needs --workers 1 (cProfile follows one process)")
    require_positive(parser, args, "orders", "clients", "workers", "repeat")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return Options(
        orders=args.orders,
        clients=args.clients,
        workers=args.workers,
        repeat=args.repeat,
        warmup=args.warmup,
        pattern=args.pattern,
        client=args.client,
        admin_url=args.admin_url,
        port=args.port,
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
        raw_with_event=args.raw_with_event,
        seed=args.seed,
        keep=args.keep,
        stagger=args.stagger,
        profile=args.profile.resolve() if args.profile else None,
        floor=args.floor,
    )


# -- seed data ---------------------------------------------------------------------------------


@dataclass
class Seed:
    tenant_id: uuid.UUID
    specialists: list[uuid.UUID]
    warmup: list[uuid.UUID]
    runs: list[list[uuid.UUID]]


def seed_database(url: str, opts: Options) -> Seed:
    """Migrate and fill the database through the domain services, as an operator would."""
    os.environ.setdefault("QUIRE_PASSWORD_HASH_PROFILE", "cheapest")
    from migrations.upgrade import upgrade
    from quire.db import Database, utcnow
    from quire.orders.schemas import OrderDraft
    from quire.orders.service import create_order
    from quire.people import service as people
    from quire.people.actor import Actor
    from quire.people.models import Role
    from quire.people.schemas import ProfileDraft, UserDraft

    database = Database(url)
    try:
        upgrade(database)
        slug = f"bench-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(16)
        with database.session(write=True) as session:
            tenant = people.create_tenant(session, slug, "Claim race bench")
            session.info["tenant_id"] = tenant.id
            manager = people.add_user(
                session,
                tenant.id,
                UserDraft(
                    email=f"manager@{slug}.test",
                    display_name="manager",
                    password=password,
                    roles=[Role.MANAGER],
                ),
            )
            specialists = [
                people.add_user(
                    session,
                    tenant.id,
                    UserDraft(
                        email=f"specialist{i}@{slug}.test",
                        display_name=f"specialist {i}",
                        password=password,
                        roles=[Role.SPECIALIST],
                        profile=ProfileDraft(payout_currency="EUR", skills=["copywriting"]),
                    ),
                ).id
                for i in range(opts.clients)
            ]
            actor = Actor(manager.id, tenant.id, frozenset({Role.MANAGER}))
            deadline = utcnow() + dt.timedelta(days=30)

            def order_set(label: str, count: int) -> list[uuid.UUID]:
                return [
                    create_order(
                        session,
                        actor,
                        OrderDraft(
                            title=f"Claim race {label} #{i}",
                            brief="Benchmark order.",
                            skill="copywriting",
                            fee_minor=25_000,
                            currency="USD",
                            deadline=deadline,
                            publish=True,
                        ),
                    ).id
                    for i in range(count)
                ]

            warmup = order_set("warm-up", opts.warmup)
            runs = [order_set(f"run {r + 1}", opts.orders) for r in range(opts.repeat)]
        return Seed(tenant.id, specialists, warmup, runs)
    finally:
        database.dispose()


@dataclass
class Verdict:
    claimed: int = 0
    unclaimed: int = 0
    db_double: set[uuid.UUID] = field(default_factory=set)
    inconsistent: int = 0


def verify(
    url: str, order_ids: Sequence[uuid.UUID], winners: dict[uuid.UUID, uuid.UUID]
) -> Verdict:
    """What the database says happened to `order_ids`, checked against what clients were told."""
    verdict = Verdict()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, status, specialist_id FROM orders WHERE id = ANY(%s)", (list(order_ids),)
        ).fetchall()
        events = conn.execute(
            "SELECT aggregate_id, count(*) FROM events WHERE type = 'order.claimed' "
            "AND aggregate_id = ANY(%s) GROUP BY aggregate_id",
            (list(order_ids),),
        ).fetchall()
    for order_id, status, specialist_id in rows:
        if status == "claimed":
            verdict.claimed += 1
            if winners.get(order_id) != specialist_id:
                verdict.inconsistent += 1
        else:
            verdict.unclaimed += 1
            if order_id in winners:
                verdict.inconsistent += 1
    verdict.db_double = {order_id for order_id, count in events if count > 1}
    return verdict


# -- the API server ----------------------------------------------------------------------------


class Server(ServerProcess):
    """`python -m deployments.cli api` in its own process group, logging to a temporary file."""

    def __init__(self, url: str, opts: Options, workdir: Path) -> None:
        self.port = opts.port or free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "QUIRE_JWT_SECRET": JWT_SECRET,
            "QUIRE_JWT_ISSUER": JWT_ISSUER,
            "QUIRE_JWT_AUDIENCE": JWT_AUDIENCE,
            "QUIRE_LOG_LEVEL": "WARNING",
            "QUIRE_DATA_DIR": str(workdir / "data"),
            "PYTHONUNBUFFERED": "1",
        }
        if opts.pool_size is not None:
            env["QUIRE_DB_POOL_SIZE"] = str(opts.pool_size)
        if opts.max_overflow is not None:
            env["QUIRE_DB_MAX_OVERFLOW"] = str(opts.max_overflow)
        # uvicorn re-raises the signal it shut down on; only SIGINT (KeyboardInterrupt) lets
        # cProfile write its stats on the way out.
        stop_signal = signal.SIGINT if opts.profile is not None else signal.SIGTERM
        cmd = [
            sys.executable,
            "-m",
            "deployments.cli",
            "api",
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]
        if opts.profile is not None:
            cmd[1:1] = [str(Path(__file__).with_name("profiled.py")), str(opts.profile)]
        cmd += ["--workers", str(opts.workers)]
        # cwd: a directory without a stray .env for pydantic-settings to pick up.
        super().__init__(cmd, workdir / "server.log", env=env, cwd=workdir, stop_signal=stop_signal)

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.wait_http(f"http://{HOST}:{self.port}/health/ready", timeout, "the API server")


def mint_token(tenant_id: uuid.UUID, user_id: uuid.UUID) -> str:
    from quire.auth.access_tokens import AccessClaims, TokenConfig, issue

    config = TokenConfig(JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, ttl_seconds=6 * 3600)
    return issue(config, AccessClaims(user_id, tenant_id, frozenset({"specialist"})))


# -- where the client connections went (/proc) ------------------------------------------


def connections_per_process(root: int, port: int) -> tuple[int, ...]:
    """Established TCP connections to `port` held by each process of the server, most first:
    which uvicorn worker got which keep-alive client."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f[9])
    counts = []
    for pid in process_tree(read_procs(), root):
        held = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    held += link.startswith("socket:[") and link[8:-1] in inodes
        counts.append(held)
    return tuple(sorted((c for c in counts if c), reverse=True))


# -- claimants ---------------------------------------------------------------------------------


class Claimant(Protocol):
    """One client: opens its connection, then claims orders one at a time."""

    async def open(self) -> None: ...

    async def claim(self, order_id: uuid.UUID) -> int:
        """200 when this client won the order, 409 when it was taken, 0 on any failure."""
        ...

    async def close(self) -> None: ...


class RawHttpClaimant:
    """HTTP/1.1 keep-alive over asyncio streams: just enough protocol for this benchmark."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.prefix = b"POST /orders/"
        self.suffix = (
            f"/claim HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connect and make one round trip (GET /health/live), as httpx's open does."""
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        live = f"GET /health/live HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()
        if await self._request(live) != 200:
            raise ConnectionError("GET /health/live did not answer 200")

    async def claim(self, order_id: uuid.UUID) -> int:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await self._request(self.prefix + str(order_id).encode() + self.suffix)
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            with contextlib.suppress(OSError):
                await self._reconnect()
            return FAILED

    async def _reconnect(self) -> None:
        await self.close()
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def _request(self, request: bytes) -> int:
        if self.reader is None or self.writer is None:
            raise ConnectionError("not connected")
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        else:
            await self.reader.readexactly(length)
        if close:
            await self._reconnect()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class LiveProbe(RawHttpClaimant):
    """The HTTP floor: the same client and connection, asking `GET /health/live` (no auth, no
    database) instead of claiming. What any endpoint of this server stack costs at the least."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(port, token)
        self.live = f"GET /health/live HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()

    async def claim(self, order_id: uuid.UUID) -> int:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await self._request(self.live)
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            return FAILED


class HttpxClaimant:
    """The same client on httpx.AsyncClient (one client, one connection each)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"http://{HOST}:{self.port}",
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=REQUEST_TIMEOUT,
        )
        await self.client.get("/health/live")  # connect before the clock starts

    async def claim(self, order_id: uuid.UUID) -> int:
        if self.client is None:
            raise RuntimeError("open() first")
        try:
            response = await self.client.post(f"/orders/{order_id}/claim", headers=self.headers)
        except httpx.HTTPError:
            return FAILED
        return response.status_code

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class SqlClaimant:
    """The baseline: the API's conditional UPDATE on an autocommit psycopg connection."""

    def __init__(self, url: str, tenant_id: uuid.UUID, specialist: uuid.UUID, sql: str) -> None:
        self.url = url
        self.sql = sql
        self.params: dict[str, Any] = {"tenant": tenant_id, "specialist": specialist}
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    async def claim(self, order_id: uuid.UUID) -> int:
        if self.conn is None:
            raise RuntimeError("open() first")
        try:
            cursor = await self.conn.execute(
                self.sql,  # type: ignore[arg-type]
                {**self.params, "order": order_id},
                prepare=True,
            )
            return WON if await cursor.fetchone() else LOST
        except psycopg.Error:
            return FAILED

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


# -- one race ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    database: str  # whose PostgreSQL backends count as "postgres"
    server_pid: int | None = None
    server_port: int = 0
    stagger: float = 0.0  # seconds between two clients' connects


@dataclass
class Race:
    wall: float
    attempts: list[Attempt]
    cpu: CpuUse | None
    connections: tuple[int, ...]  # client connections per server process


async def race(
    claimants: Sequence[Claimant], plans: Sequence[Sequence[uuid.UUID]], target: Target
) -> Race:
    """Open every connection, then release all clients at once and time until the last is done."""
    for claimant in claimants:  # one after another, as clients arrive; a burst of connects
        await claimant.open()  # lands on whichever uvicorn worker wakes first
        if target.stagger:
            await asyncio.sleep(target.stagger)
    connections: tuple[int, ...] = ()
    if target.server_pid is not None:
        connections = connections_per_process(target.server_pid, target.server_port)
    go = asyncio.Event()

    async def client(index: int) -> list[Attempt]:
        claimant, records, clock = claimants[index], list[Attempt](), time.perf_counter
        await go.wait()
        for order_id in plans[index]:
            started = clock()
            status = await claimant.claim(order_id)
            records.append((index, order_id, started, clock(), status))
        return records

    tasks = [asyncio.create_task(client(i)) for i in range(len(claimants))]
    await asyncio.sleep(0.05)  # every task is parked on `go`
    before = cpu_snapshot(target.server_pid, [target.database])
    started = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    after = cpu_snapshot(target.server_pid, [target.database])
    await asyncio.gather(*(c.close() for c in claimants))
    return Race(wall, [a for r in results for a in r], cpu_use(before, after), connections)


def attempt_plans(
    order_ids: Sequence[uuid.UUID], clients: int, pattern: str, seed: str
) -> list[list[uuid.UUID]]:
    if pattern == "lockstep":
        shared = list(order_ids)
        random.Random(seed).shuffle(shared)
        return [list(shared) for _ in range(clients)]
    plans = []
    for i in range(clients):
        plan = list(order_ids)
        random.Random(f"{seed}/{i}").shuffle(plan)
        plans.append(plan)
    return plans


# -- statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseResult:
    wall: float
    attempts: int
    wins: int
    claims_per_s: float
    attempts_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    double_claims: int
    errors: int  # attempts answered with neither 200 nor 409
    inconsistent: int  # database and clients disagree about a winner, or an order stayed open
    contended: int  # orders with at least two claims in flight at the same moment
    churn: int  # database sessions the server closed during the run (pool overflow); -1: unknown
    cpu: CpuUse | None
    connections: tuple[int, ...] = ()  # client connections per server process


def summarize(result: Race, verdict: Verdict, churn: int) -> PhaseResult:
    by_order: dict[uuid.UUID, list[tuple[float, float]]] = {}
    winners: dict[uuid.UUID, set[int]] = {}
    latencies: list[float] = []
    errors = 0
    for client, order_id, start, end, status in result.attempts:
        latencies.append(end - start)
        by_order.setdefault(order_id, []).append((start, end))
        if status == WON:
            winners.setdefault(order_id, set()).add(client)
        elif status != LOST:
            errors += 1
    contended = 0
    for spans in by_order.values():
        spans.sort()
        busy_until = spans[0][1]
        for start, end in spans[1:]:
            if start < busy_until:
                contended += 1
                break
            busy_until = max(busy_until, end)
    http_double = {order_id for order_id, who in winners.items() if len(who) > 1}
    latencies.sort()
    wins = sum(len(who) for who in winners.values())
    return PhaseResult(
        wall=result.wall,
        attempts=len(result.attempts),
        wins=wins,
        claims_per_s=wins / result.wall,
        attempts_per_s=len(result.attempts) / result.wall,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p95_ms=percentile(latencies, 0.95) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        double_claims=len(http_double | verdict.db_double),
        errors=errors,
        inconsistent=verdict.inconsistent + verdict.unclaimed,
        contended=contended,
        churn=churn,
        cpu=result.cpu,
        connections=result.connections,
    )


def winners_of(result: Race, specialists: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    return {order_id: specialists[c] for c, order_id, _, _, s in result.attempts if s == WON}


# -- orchestration -----------------------------------------------------------------------------


@dataclass
class Bench:
    opts: Options
    seed: Seed
    dbs: Databases
    api_db: str
    raw_db: str
    server: Server
    runner: asyncio.Runner
    tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens = [mint_token(self.seed.tenant_id, s) for s in self.seed.specialists]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def api_claimants(self) -> list[Claimant]:
        kind = RawHttpClaimant if self.opts.client == "raw" else HttpxClaimant
        return [kind(self.server.port, token) for token in self.tokens]

    def sql_claimants(self) -> list[Claimant]:
        sql = CLAIM_WITH_EVENT_SQL if self.opts.raw_with_event else CLAIM_SQL
        return [
            SqlClaimant(self.raw_url, self.seed.tenant_id, s, sql) for s in self.seed.specialists
        ]

    def floor(self, order_ids: Sequence[uuid.UUID], plan_seed: str) -> float:
        """Requests/s of `GET /health/live` for as many requests as a claim phase makes."""
        plans = attempt_plans(order_ids, self.opts.clients, self.opts.pattern, plan_seed)
        probes: list[Claimant] = [LiveProbe(self.server.port, t) for t in self.tokens]
        target = Target(self.api_db, self.server.process.pid, self.server.port, 0.0)
        result = self._run(race(probes, plans, target))
        if any(a[4] != 200 for a in result.attempts):
            raise RuntimeError("GET /health/live failed during the floor phase")
        return len(result.attempts) / result.wall

    @property
    def raw_url(self) -> str:
        return self.dbs.url(self.raw_db)

    def phase(
        self, which: Literal["api", "raw"], order_ids: Sequence[uuid.UUID], plan_seed: str
    ) -> PhaseResult:
        plans = attempt_plans(order_ids, self.opts.clients, self.opts.pattern, plan_seed)
        if which == "api":
            before = closed_sessions(self.opts.admin_url, self.api_db)
            target = Target(
                self.api_db, self.server.process.pid, self.server.port, self.opts.stagger / 1000
            )
            result = self._run(race(self.api_claimants(), plans, target))
            # The server's pool is warm: sessions that ended during the race are churn.
            after = closed_sessions(self.opts.admin_url, self.api_db)
            churn = after - before if after is not None and before is not None else -1
            database = self.api_db
        else:
            result = self._run(race(self.sql_claimants(), plans, Target(self.raw_db)))
            churn, database = -1, self.raw_db
        winners = winners_of(result, self.seed.specialists)
        verdict = verify(self.dbs.url(database), order_ids, winners)
        return summarize(result, verdict, churn)


def server_stack() -> str:
    """What uvicorn's "auto" loop and HTTP settings pick in this environment."""
    found = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name)]
    return " + ".join(found) or "asyncio + h11"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def closed_sessions(admin_url: str, database: str) -> int | None:
    """Sessions of `database` that have ended (PostgreSQL 14+ counts them at disconnection)."""
    try:
        with psycopg.connect(admin_dsn(admin_url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def server_facts(admin_url: str) -> str:
    names = ("server_version", "fsync", "synchronous_commit", "max_connections")
    return describe_server(server_settings(admin_url, names))


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    cpus = os.cpu_count() or 1
    client_name = (
        "raw asyncio streams (HTTP/1.1 keep-alive)"
        if opts.client == "raw"
        else f"httpx {httpx.__version__} AsyncClient"
    )
    loop_factory = event_loop_factory()
    print(
        f"claim race: N={opts.orders} orders x C={opts.clients} clients "
        f"({opts.orders * opts.clients} attempts per phase, pattern={opts.pattern}), "
        f"repeat={opts.repeat}, warm-up={opts.warmup} orders\n"
        f"server: quire api, {opts.workers} uvicorn worker(s) ({server_stack()}); "
        f"{server_facts(opts.admin_url)} at {make_url(opts.admin_url).host}\n"
        f"load generator: {client_name} on {'uvloop' if loop_factory else 'asyncio'}, "
        f"1 connection per client (opened one after another), in this process; "
        f"{cpus} CPU(s) shared by all\n"
        f"baseline: psycopg {psycopg.__version__} async, {opts.clients} autocommit connections, "
        f"{'UPDATE + event INSERT (CTE)' if opts.raw_with_event else 'conditional UPDATE'}",
        flush=True,
    )
    results: list[tuple[PhaseResult, PhaseResult]] = []
    floors: list[float] = []
    with (
        Databases("claim", opts.admin_url, opts.keep) as dbs,
        tempfile.TemporaryDirectory(prefix="quire-bench-") as tmp,
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        api_db = dbs.create("api")
        api_url = dbs.url(api_db, "postgresql+psycopg")
        started = time.perf_counter()
        seed = seed_database(api_url, opts)
        raw_db = dbs.create("raw", template=api_db)
        print(f"seeded in {time.perf_counter() - started:.1f}s", flush=True)
        server = Server(api_url, opts, Path(tmp))
        try:
            server.wait_ready()
            bench = Bench(opts, seed, dbs, api_db, raw_db, server, runner)
            if seed.warmup:
                bench.phase("api", seed.warmup, f"{opts.seed}/warm-up")
                bench.phase("raw", seed.warmup, f"{opts.seed}/warm-up")
            print_header()
            for r, order_ids in enumerate(seed.runs):
                plan_seed = f"{opts.seed}/{r}"
                api = bench.phase("api", order_ids, plan_seed)
                raw = bench.phase("raw", order_ids, plan_seed)
                results.append((api, raw))
                print_row(str(r + 1), api, raw, api.attempts_per_s / raw.attempts_per_s)
                if opts.floor:
                    floors.append(bench.floor(order_ids, plan_seed))
        except BaseException:
            if server.process.poll() is not None:
                print(server.log_tail(), file=sys.stderr)
            raise
        finally:
            server.stop()
    return report(opts, results, floors)


# -- output ------------------------------------------------------------------------------------


def print_header() -> None:
    print(
        "\nrun |  API claims/s attempts/s  p50 ms  p95 ms  p99 ms dbl err bad contended |"
        "  raw claims/s attempts/s  p50 ms  p95 ms  p99 ms dbl | API/raw"
    )


def print_row(label: str, api: PhaseResult, raw: PhaseResult, ratio: float) -> None:
    print(
        f"{label:>3} | {api.claims_per_s:12.1f} {api.attempts_per_s:10.0f} {api.p50_ms:7.2f} "
        f"{api.p95_ms:7.2f} {api.p99_ms:7.2f} {api.double_claims:3d} {api.errors:3d} "
        f"{api.inconsistent:3d} {api.contended:9d} | {raw.claims_per_s:12.1f} "
        f"{raw.attempts_per_s:10.0f} {raw.p50_ms:7.2f} {raw.p95_ms:7.2f} {raw.p99_ms:7.2f} "
        f"{raw.double_claims:3d} | {ratio:7.3f}",
        flush=True,
    )


def median_phase(phases: Sequence[PhaseResult]) -> PhaseResult:
    """Medians of the rates and latencies; sums of every correctness count; no CPU figures."""

    def med(name: str) -> float:
        return median(getattr(p, name) for p in phases)

    return PhaseResult(
        wall=med("wall"),
        attempts=int(med("attempts")),
        wins=int(med("wins")),
        claims_per_s=med("claims_per_s"),
        attempts_per_s=med("attempts_per_s"),
        p50_ms=med("p50_ms"),
        p95_ms=med("p95_ms"),
        p99_ms=med("p99_ms"),
        double_claims=sum(p.double_claims for p in phases),
        errors=sum(p.errors for p in phases),
        inconsistent=sum(p.inconsistent for p in phases),
        contended=int(med("contended")),
        churn=int(med("churn")),
        cpu=None,
    )


def describe_cpu(label: str, phases: Sequence[PhaseResult], server: bool) -> str:
    """Median cores used per component, and median CPU milliseconds per attempt."""
    runs = [(p.cpu, p.attempts_per_s) for p in phases if p.cpu is not None]
    if not runs:
        return f"{label}: CPU accounting unavailable (no /proc)"
    names = [*(["server"] if server else []), "postgres", "client", "other"]

    def med_cores(name: str) -> float:
        return median(cpu.cores(name) for cpu, _ in runs)

    def med_ms(name: str) -> float:
        return median(cpu.cores(name) * 1000 / rate for cpu, rate in runs)

    split = [f"{name} {med_cores(name):.2f}" for name in names]
    if server:
        busy = [busy_server_procs(cpu) for cpu, _ in runs]
        width = max(len(procs) for procs in busy)
        procs = [median(b[i] if i < len(b) else 0.0 for b in busy) for i in range(width)]
        split[0] += f" ({' + '.join(f'{p:.2f}' for p in procs)} per process)"
    pad = " " * len(label)
    return (
        f"{label}: cores busy {med_cores('machine'):.2f} of {os.cpu_count()}"
        f" (+{med_cores('stolen'):.2f} stolen by the hypervisor) = {', '.join(split)}\n"
        f"{pad}  CPU ms per attempt: "
        + ", ".join(f"{name} {med_ms(name):.3f}" for name in names[:-1])
    )


def busy_server_procs(cpu: CpuUse) -> list[float]:
    """Cores used by each server process that used at least 0.01, busiest first."""
    return [p / cpu.span for p in cpu.server_procs if p / cpu.span >= 0.01]


def cpu_cost_ratio(results: Sequence[tuple[PhaseResult, PhaseResult]]) -> float | None:
    """Median over runs of (raw CPU seconds per attempt) / (API CPU seconds per attempt), counting
    the server, PostgreSQL and the load generator."""
    ratios = []
    for api, raw in results:
        if api.cpu is None or raw.cpu is None:
            return None
        api_cores = sum(api.cpu.cores(name) for name in ("server", "postgres", "client"))
        raw_cores = raw.cpu.cores("postgres") + raw.cpu.cores("client")
        api_cost = api_cores / api.attempts_per_s
        raw_cost = raw_cores / raw.attempts_per_s
        if api_cost > 0:
            ratios.append(raw_cost / api_cost)
    return median(ratios) if ratios else None


def report(
    opts: Options, results: Sequence[tuple[PhaseResult, PhaseResult]], floors: Sequence[float]
) -> int:
    api = median_phase([a for a, _ in results])
    raw = median_phase([r for _, r in results])
    ratio = median(a.attempts_per_s / r.attempts_per_s for a, r in results)
    print_row("med", api, raw, ratio)
    print(
        "\n(dbl: double claims, err: answers other than 200/409, bad: orders whose database state"
        " disagrees with the answers; summed over runs. contended: orders with >= 2 claims in"
        " flight at once.)\n"
    )
    print(describe_cpu("API phase", [a for a, _ in results], server=True))
    print(describe_cpu("raw phase", [r for _, r in results], server=False))
    print(
        f"{' ' * 9}  client connections per server process, each run: "
        f"{', '.join('/'.join(map(str, a.connections)) or '?' for a, _ in results)}\n"
        f"{' ' * 9}  server DB sessions closed during a run (pool churn): "
        f"{api.churn if api.churn >= 0 else 'unknown'}\n"
        f"{' ' * 9}  'other' = the rest of the machine: other processes and databases, PostgreSQL"
        " background workers, backends that disconnected mid-run"
    )
    doubles = api.double_claims + raw.double_claims
    print(
        f"\nmedian over {len(results)} run(s): API {api.claims_per_s:.1f} claims/s, "
        f"{api.attempts_per_s:.0f} attempts/s, p50/p95/p99 {api.p50_ms:.1f}/{api.p95_ms:.1f}/"
        f"{api.p99_ms:.1f} ms; raw {raw.claims_per_s:.1f} claims/s, "
        f"{raw.attempts_per_s:.0f} attempts/s"
    )
    print(
        f"double claims = {api.double_claims} (API) + {raw.double_claims} (raw)   "
        f"target 0: {'met' if doubles == 0 else 'MISSED'}"
    )
    print(f"ratio API/raw = {ratio:.2f}   target >= 0.5: {'met' if ratio >= 0.5 else 'MISSED'}")
    floor = median(floors) if floors else None
    if floor is not None:
        print(
            f"HTTP floor (GET /health/live: no auth, no database; same client, connections and "
            f"request count) = {floor:.0f} requests/s = {floor / raw.attempts_per_s:.2f} x raw: "
            "the most API/raw could reach on this server stack and machine"
        )
    cost_ratio = cpu_cost_ratio(results)
    if cost_ratio is not None:
        print(
            f"CPU cost ratio raw/API per attempt = {cost_ratio:.2f}   (what API/raw would be if "
            "both phases had the same CPU: less sensitive to other load on the machine)"
        )
    print(
        json.dumps(
            {
                "orders": opts.orders,
                "clients": opts.clients,
                "workers": opts.workers,
                "repeat": len(results),
                "client": opts.client,
                "pattern": opts.pattern,
                "api_claims_per_s": round(api.claims_per_s, 1),
                "api_attempts_per_s": round(api.attempts_per_s, 1),
                "api_p50_ms": round(api.p50_ms, 3),
                "api_p95_ms": round(api.p95_ms, 3),
                "api_p99_ms": round(api.p99_ms, 3),
                "api_double_claims": api.double_claims,
                "api_errors": api.errors,
                "api_inconsistent": api.inconsistent,
                "raw_claims_per_s": round(raw.claims_per_s, 1),
                "raw_attempts_per_s": round(raw.attempts_per_s, 1),
                "raw_double_claims": raw.double_claims,
                "ratio": round(ratio, 4),
                "cpu_cost_ratio": None if cost_ratio is None else round(cost_ratio, 4),
                "http_floor_per_s": None if floor is None else round(floor, 1),
            }
        )
    )
    failed = doubles or api.errors or api.inconsistent or raw.errors or raw.inconsistent
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
