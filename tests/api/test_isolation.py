"""Tenant isolation and roles, endpoint by endpoint.

Every endpoint that touches tenant data is listed in ENDPOINTS with the roles that may call it.
From that table:

- another tenant's ids are indistinguishable from ids that do not exist (404, same code), and
  probing them changes nothing in the other tenant;
- endpoints without ids never show or touch another tenant's data;
- every role outside the allowed ones is refused with 403, and anonymous callers with 401.

A new endpoint that is missing from the table fails `test_every_tenant_endpoint_is_in_the_table`.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from ledger import business
from quire.db import Database, utcnow
from tests.conftest import make_settings
from tests.support.world import Person, World, order_body, publish_order

ROLES = ("admin", "manager", "reviewer", "finance", "specialist")

# Not tenant data, or covered elsewhere (authentication in test_auth.py, the stream in its own).
UNCOVERED_HERE = re.compile(
    r"^(/health/.*|/metrics|/docs.*|/openapi\.json|/redoc|/auth/.*|/events|/events/ws|/me)$"
)
# Endpoints whose success needs a Prefect server, or whose path names no tenant-unique id (a file
# name is the same in every tenant's run of a period): tests/api/test_payroll.py covers their
# roles and isolation, tests/flows/test_payroll_run.py their success.
UNCOVERED_ENDPOINTS = {
    ("POST", "/payroll-runs"),
    ("GET", "/payroll-runs/{run_id}/files/{name}"),
    ("GET", "/payroll-runs/{run_id}/data-docs/{path:path}"),
    # A multipart upload, and a period (the same in every tenant): their roles and isolation
    # are tests/api/test_reconciliation.py's, as are the reconciliation's own ids (staged there
    # from a posted payroll and a statement).
    ("POST", "/bank-statements"),
    ("POST", "/ledger/periods/{period}/close"),
    ("POST", "/ledger/periods/{period}/reopen"),
    ("GET", "/reconciliations/{reconciliation_id}"),
    ("GET", "/reconciliations/{reconciliation_id}/exceptions"),
    ("POST", "/reconciliations/{reconciliation_id}/exceptions/{exception_id}/match"),
    ("POST", "/reconciliations/{reconciliation_id}/exceptions/{exception_id}/write-off"),
    ("GET", "/reconciliations/{reconciliation_id}/data-docs/{path:path}"),
    # Lifecycle's roles and isolation are tests/api/test_lifecycle.py's; the HR webhook has no
    # Quire login at all (its Standard Webhooks signature, per tenant, is its authentication).
    ("POST", "/webhooks/hr/{tenant}"),
    ("POST", "/lifecycle/events"),
    ("GET", "/lifecycle/quarantine"),
    ("GET", "/lifecycle/playbooks/{event_type}"),
    ("PUT", "/lifecycle/playbooks/{event_type}"),
    ("GET", "/lifecycle/playbooks/{event_type}/graph.svg"),
    ("GET", "/lifecycle/playbooks/{event_type}/graph.dot"),
    ("GET", "/lifecycle/connections"),
    *(("PUT", f"/lifecycle/connections/{p}") for p in ("identity", "email", "chat", "ai")),
    *(
        ("DELETE", f"/lifecycle/connections/{p}")
        for p in ("identity", "email", "chat", "ai", "hr_webhook")
    ),
    ("POST", "/lifecycle/connections/hr_webhook/secret"),
    ("GET", "/lifecycle/runs"),
    ("GET", "/lifecycle/runs/{run_id}"),
    ("GET", "/dead-letters"),
    ("POST", "/dead-letters/{letter_id}/replay"),
}


# --- the table -------------------------------------------------------------------------------

Ids = Mapping[str, str]  # parameter (in the path or the body) -> the id it carries

PERIOD = utcnow().strftime("%Y-%m")
DRAFT_LOCK = {"If-Match": "1"}  # a new invoice draft's lock_version
ISSUED_LOCK = {"If-Match": "2"}  # ... once it is issued


def new_user(_: Ids) -> dict[str, Any]:
    return {
        "email": f"new-{uuid.uuid4().hex[:8]}@acme.test",
        "display_name": "New Person",
        "password": "a long enough password",
        "roles": ["reviewer"],
    }


def admin_key(_: Ids) -> dict[str, Any]:
    return {"name": "probe", "roles": ["admin"]}


def draft_order(_: Ids) -> dict[str, Any]:
    return order_body(publish=False)


def submission(_: Ids) -> dict[str, Any]:
    return {"content": "Eight hundred words on double-entry bookkeeping."}


def review(_: Ids) -> dict[str, Any]:
    return {"decision": "approve", "comments": "Reads well."}


def bid(_: Ids) -> dict[str, Any]:
    return {"amount_minor": 20_000, "note": "I can do this"}


def transfer(ids: Ids) -> dict[str, Any]:
    return {
        "idempotency_key": uuid.uuid4().hex,
        "reference": "goodwill",
        "legs": [
            {"account_id": ids["debit"], "amount_minor": 100},
            {"account_id": ids["credit"], "amount_minor": -100},
        ],
    }


def reason(_: Ids) -> dict[str, Any]:
    return {"reason": "posted by mistake"}


def invoice(ids: Ids) -> dict[str, Any]:
    return {
        "specialist_id": ids["specialist_id"],
        "period": PERIOD,
        "currency": "USD",
        **lines(ids),
    }


def lines(_: Ids) -> dict[str, Any]:
    return {"lines": [{"description": "Blog post", "amount_minor": 8_500}]}


def payout_details(_: Ids) -> dict[str, Any]:
    return {"scheme": "iban", "account_holder": "Sam Specialist", "iban": "DE89370400440532013000"}


def payroll_profile(_: Ids) -> dict[str, Any]:
    return {
        "debtor_name": "Acme",
        "debtor_iban": "DE89370400440532013000",
        "debtor_bic": "COBADEFFXXX",
    }


def approval(_: Ids) -> dict[str, Any]:
    return {"decision": "approve"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    # Roles that may call it; the first one makes the isolation probes. Everyone else gets 403.
    allowed: tuple[str, ...]
    # Which staged object (see `stage`) each id names: the path's parameters and any body ids.
    ids: Mapping[str, str] = field(default_factory=dict)
    body: Callable[[Ids], dict[str, Any]] | None = None
    query: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    denied_code: str = "wrong_role"
    # Ids that are integers (a payroll line), not UUIDs: a missing one is a large number.
    integer_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def caller(self) -> str:
        return self.allowed[0]

    @property
    def denied(self) -> tuple[str, ...]:
        return tuple(role for role in ROLES if role not in self.allowed)

    def ids_in(self, scene: Mapping[str, str]) -> dict[str, str]:
        return {param: scene[name] for param, name in self.ids.items()}

    def missing_ids(self) -> dict[str, str]:
        return {
            param: str(2**62) if param in self.integer_ids else str(uuid.uuid4())
            for param in self.ids
        }


ANYONE = ROLES
STAFF = ("admin", "manager")
FINANCE = ("finance", "admin")
BOOKS = (*FINANCE, "specialist")  # a specialist sees their own accounts and invoices
ORDER = {"order_id": "open_order"}
BID = {"order_id": "bidding_order", "bid_id": "bid"}
PAYABLE = {"account_id": "payable_account"}
DRAFT = {"invoice_id": "draft_invoice"}
ISSUED = {"invoice_id": "issued_invoice"}
SPECIALIST = {"user_id": "specialist"}
RUN = {"run_id": "payroll_run"}
LINE = {"run_id": "payroll_run", "line_id": "payroll_line"}

ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/users", ("admin",), body=new_user),
    Endpoint("GET", "/users", STAFF),
    # Reading yourself is always allowed; `user` is somebody else (the manager).
    Endpoint("GET", "/users/{user_id}", STAFF, {"user_id": "user"}),
    # Anyone may mint keys, but only with roles they hold: asking for 'admin' is the probe.
    Endpoint("POST", "/api-keys", ("admin",), body=admin_key, denied_code="role_not_held"),
    Endpoint("GET", "/api-keys", ANYONE),
    # Anyone may revoke their own keys; other people's keys are simply not found (404).
    Endpoint("DELETE", "/api-keys/{key_id}", ANYONE, {"key_id": "api_key"}),
    Endpoint("POST", "/orders", STAFF, body=draft_order),
    Endpoint("GET", "/orders", ANYONE),
    Endpoint("GET", "/orders/{order_id}", ANYONE, ORDER),
    Endpoint("POST", "/orders/{order_id}/publish", STAFF, {"order_id": "draft_order"}),
    Endpoint("POST", "/orders/{order_id}/cancel", STAFF, ORDER),
    Endpoint("POST", "/orders/{order_id}/claim", ("specialist",), ORDER),
    Endpoint(
        "POST", "/orders/{order_id}/release", (*STAFF, "specialist"), {"order_id": "claimed_order"}
    ),
    Endpoint(
        "POST",
        "/orders/{order_id}/submissions",
        ("specialist",),
        {"order_id": "claimed_order"},
        body=submission,
    ),
    Endpoint("GET", "/orders/{order_id}/submissions", ANYONE, {"order_id": "claimed_order"}),
    Endpoint(
        "POST", "/orders/{order_id}/reviews", ("reviewer",), {"order_id": "claimed_order"}, review
    ),
    Endpoint("GET", "/orders/{order_id}/reviews", ANYONE, {"order_id": "claimed_order"}),
    Endpoint(
        "POST", "/orders/{order_id}/bids", ("specialist",), {"order_id": "bidding_order"}, body=bid
    ),
    Endpoint("GET", "/orders/{order_id}/bids", ANYONE, {"order_id": "bidding_order"}),
    Endpoint("POST", "/orders/{order_id}/bids/{bid_id}/withdraw", ("specialist",), BID),
    Endpoint("POST", "/orders/{order_id}/bids/{bid_id}/award", STAFF, BID),
    Endpoint("GET", "/ledger/accounts", BOOKS),
    Endpoint("GET", "/ledger/accounts/{account_id}", BOOKS, PAYABLE),
    Endpoint(
        "GET", "/ledger/accounts/{account_id}/statement", BOOKS, PAYABLE, query={"period": PERIOD}
    ),
    Endpoint(
        "POST",
        "/ledger/transfers",
        FINANCE,
        {"debit": "revenue_account", "credit": "receivable_account"},
        body=transfer,
    ),
    Endpoint(
        "POST",
        "/ledger/transfers/{transfer_id}/reverse",
        FINANCE,
        {"transfer_id": "transfer"},
        body=reason,
    ),
    Endpoint("GET", "/ledger/invoices", BOOKS),
    Endpoint("GET", "/ledger/invoices/{invoice_id}", BOOKS, DRAFT),
    Endpoint("POST", "/ledger/invoices", FINANCE, {"specialist_id": "specialist"}, body=invoice),
    Endpoint(
        "PUT", "/ledger/invoices/{invoice_id}/lines", FINANCE, DRAFT, lines, headers=DRAFT_LOCK
    ),
    Endpoint(
        "POST",
        "/ledger/invoices/{invoice_id}/correct",
        FINANCE,
        ISSUED,
        lines,
        headers=ISSUED_LOCK,
    ),
    Endpoint("POST", "/ledger/invoices/{invoice_id}/issue", FINANCE, DRAFT, headers=DRAFT_LOCK),
    Endpoint("POST", "/ledger/invoices/{invoice_id}/pay", FINANCE, ISSUED, headers=ISSUED_LOCK),
    Endpoint("POST", "/ledger/invoices/{invoice_id}/void", FINANCE, DRAFT, headers=DRAFT_LOCK),
    # Bank details: a specialist keeps their own; finance holds payouts and keeps the profile,
    # admins read what finance reads.
    Endpoint("GET", "/me/payout-details", ("specialist",)),
    Endpoint("PUT", "/me/payout-details", ("specialist",), body=payout_details),
    Endpoint("GET", "/payout-details", FINANCE),
    Endpoint("GET", "/specialists/{user_id}/payout-details", FINANCE, SPECIALIST),
    Endpoint("PUT", "/specialists/{user_id}/payout-hold", ("finance",), SPECIALIST, reason),
    Endpoint("DELETE", "/specialists/{user_id}/payout-hold", ("finance",), SPECIALIST),
    Endpoint("GET", "/payroll/profile", FINANCE),
    Endpoint("PUT", "/payroll/profile", ("finance",), body=payroll_profile),
    # The audit log: admins read all of it, finance its finance entries.
    Endpoint("GET", "/audit-log", ("admin", "finance")),
    Endpoint("GET", "/audit-log.csv", ("admin", "finance")),
    # Payslips: a specialist reads their own; finance and admins any of the tenant's.
    Endpoint("GET", "/me/payslips", ("specialist",)),
    Endpoint("GET", "/me/payslips/{invoice_id}", ("specialist",), {"invoice_id": "payslip"}),
    Endpoint("GET", "/payslips/{invoice_id}", FINANCE, {"invoice_id": "payslip"}),
    # Payroll runs are finance's alone.
    Endpoint("GET", "/payroll-runs", ("finance",)),
    Endpoint("GET", "/reconciliations", ("finance",)),
    Endpoint("GET", "/payroll-runs/{run_id}", ("finance",), RUN),
    Endpoint("GET", "/payroll-runs/{run_id}/lines", ("finance",), RUN),
    Endpoint("POST", "/payroll-runs/{run_id}/approval", ("finance",), RUN, approval),
    Endpoint("POST", "/payroll-runs/{run_id}/reverse", ("finance",), RUN, reason),
    Endpoint(
        "POST",
        "/payroll-runs/{run_id}/lines/{line_id}/reverse",
        ("finance",),
        LINE,
        reason,
        integer_ids=("line_id",),
    ),
]
WITH_IDS = [e for e in ENDPOINTS if e.ids]
WITHOUT_IDS = [e for e in ENDPOINTS if not e.ids]
STAGED = {
    "draft_order",
    "open_order",
    "claimed_order",
    "bidding_order",
    "bid",
    "user",
    "specialist",
    "api_key",
    "payable_account",
    "revenue_account",
    "receivable_account",
    "transfer",
    "draft_invoice",
    "issued_invoice",
    "payroll_run",
    "payroll_line",
    "payslip",
}


# --- fixtures and helpers --------------------------------------------------------------------


async def call(
    client: httpx.AsyncClient, endpoint: Endpoint, person: Person | None, ids: Ids
) -> httpx.Response:
    return await client.request(
        endpoint.method,
        endpoint.path.format(**ids),
        params=dict(endpoint.query),
        json=endpoint.body(ids) if endpoint.body else None,
        headers={**endpoint.headers, **(person.auth if person else {})},
    )


async def ok(response: Any, status: int = 200) -> Any:
    response = await response
    assert response.status_code == status, response.text
    return response.json()


async def stage_orders(client: httpx.AsyncClient, world: World) -> dict[str, str]:
    """An order in each state the probes need, and a bid."""
    manager, specialist = world.manager, world.specialist
    draft = await ok(client.post("/orders", json=draft_order({}), headers=manager.auth), 201)
    open_order = await publish_order(client, manager)
    claimed = await publish_order(client, manager)
    await ok(client.post(f"/orders/{claimed['id']}/claim", headers=specialist.auth))
    bidding = await publish_order(client, manager, mode="bidding")
    placed = await ok(
        client.post(f"/orders/{bidding['id']}/bids", json=bid({}), headers=specialist.auth), 201
    )
    return {
        "draft_order": draft["id"],
        "open_order": open_order["id"],
        "claimed_order": claimed["id"],
        "bidding_order": bidding["id"],
        "bid": placed["id"],
    }


def posted_payroll_run(database: Database, world: World) -> tuple[uuid.UUID, int, uuid.UUID]:
    """A posted payroll run with one posted line (the specialist's bank details made old enough
    to be paid), as the flow would leave it; approved by the system, as no second finance user
    exists in this world; with the specialist's payslip."""
    from sqlalchemy import select, update

    from ledger.models import Invoice
    from quire.payroll import lines, payslips, runs
    from quire.payroll.models import PayoutDetails, PayrollLine
    from quire.people.actor import Actor
    from tests.quire.payroll.support import RATES

    with database.session(world.tenant_id, write=True) as session:
        session.execute(
            update(PayoutDetails).values(details_changed_at=utcnow() - dt.timedelta(days=90))
        )
        run = runs.open_run(session, world.finance.actor, period=utcnow().strftime("%Y-%m"))
        runs.fix_rates(session, run.id, RATES.to_json())
        frame = lines.compute(
            session,
            run_id=run.id,
            period=run.period,
            attempt=run.attempt,
            cutoff=run.cutoff_at,
            as_of=utcnow(),
            cooling_days=14,
            minimums={},
            rate=RATES.rate,
            rate_source=RATES.source_label,
        )
        runs.store_lines(session, run, frame)
        runs.record_gate(session, run.id, {"success": True, "failed": []})
        runs.await_approval(session, run.id)
        runs.decide(session, run.id, Actor.system(world.tenant_id), approve=True, comment="")
        runs.post(session, run.id)
        payslips.issue_for_run(session, run)
        line_id = session.scalar(select(PayrollLine.id).where(PayrollLine.run_id == run.id))
        payslip = session.scalar(
            select(Invoice.id)
            .where(Invoice.specialist_id == world.specialist.id)
            .order_by(Invoice.created_at.desc())
        )
        return run.id, line_id, payslip


async def stage(client: httpx.AsyncClient, database: Database, world: World) -> dict[str, str]:
    """One object of each kind an id can name (STAGED), each in a state where the probing call
    would succeed if it reached it."""
    specialist, finance = world.specialist, world.finance
    scene = await stage_orders(client, world)
    key = await ok(client.post("/api-keys", json=admin_key({}), headers=world.admin.auth), 201)
    with database.session(world.tenant_id, write=True) as session:
        business.post_earnings(
            session,
            order_id=uuid.UUID(scene["claimed_order"]),
            specialist_id=specialist.id,
            gross_minor=10_000,
            currency="USD",
            fee_bps=1500,
        )
    accounts = await ok(client.get("/ledger/accounts", headers=finance.auth))
    account = {a["kind"]: a["id"] for a in accounts}
    books = {"debit": account["platform_revenue"], "credit": account["client_receivable"]}
    moved = await ok(
        client.post("/ledger/transfers", json=transfer(books), headers=finance.auth), 201
    )
    mine = {"specialist_id": str(specialist.id)}
    draft_invoice = await ok(
        client.post("/ledger/invoices", json=invoice(mine), headers=finance.auth), 201
    )
    issued = await ok(
        client.post("/ledger/invoices", json=invoice(mine), headers=finance.auth), 201
    )
    issued = await ok(
        client.post(
            f"/ledger/invoices/{issued['id']}/issue", headers={**finance.auth, **DRAFT_LOCK}
        )
    )
    assert (draft_invoice["lock_version"], issued["lock_version"]) == (1, 2)
    await ok(client.put("/me/payout-details", json=payout_details({}), headers=specialist.auth))
    await ok(client.put("/payroll/profile", json=payroll_profile({}), headers=finance.auth))
    run_id, line_id, payslip = posted_payroll_run(database, world)
    scene |= {
        "user": str(world.manager.id),
        "specialist": str(specialist.id),
        "api_key": key["id"],
        "payable_account": account["specialist_payable"],
        "revenue_account": account["platform_revenue"],
        "receivable_account": account["client_receivable"],
        "transfer": moved["id"],
        "draft_invoice": draft_invoice["id"],
        "issued_invoice": issued["id"],
        "payroll_run": str(run_id),
        "payroll_line": str(line_id),
        "payslip": str(payslip),
    }
    assert set(scene) == STAGED
    return scene


async def differences(
    client: httpx.AsyncClient, endpoint: Endpoint, caller: Person, foreign: Ids, missing: Ids
) -> list[str]:
    """[] if the `foreign` ids get the same 404 as the `missing` ones, else what differed."""
    got = outcome(await call(client, endpoint, caller, foreign))
    expected = outcome(await call(client, endpoint, caller, missing))
    if got == expected and got[0] == 404:
        return []
    return [f"{endpoint} with {dict(foreign)}: {got}, but {expected} for missing ids"]


def outcome(response: httpx.Response) -> tuple[int, str | None]:
    body = response.json() if response.content else {}
    return response.status_code, body.get("code") if isinstance(body, dict) else None


def identifiers(world: World, scene: Mapping[str, str]) -> set[str]:
    """Everything that identifies the tenant's data in a response body (a small integer id,
    such as a payroll line's, is not searchable text: its isolation is probed by id)."""
    people = {str(p.id) for p in world.people.values()} | {p.email for p in world.people.values()}
    ids = {value for value in scene.values() if not value.isdigit()}
    return {str(world.tenant_id), world.slug, *people, *ids}


async def snapshot(client: httpx.AsyncClient, world: World, scene: Mapping[str, str]) -> Any:
    """What the tenant itself sees of its staged objects."""
    manager, admin, finance = world.manager.auth, world.admin.auth, world.finance.auth
    orders = {
        name: (await ok(client.get(f"/orders/{scene[name]}", headers=manager)))["status"]
        for name in ("draft_order", "open_order", "claimed_order", "bidding_order")
    }
    bids = await ok(client.get(f"/orders/{scene['bidding_order']}/bids", headers=manager))
    work = await ok(client.get(f"/orders/{scene['claimed_order']}/submissions", headers=manager))
    keys = await ok(client.get("/api-keys", headers=admin))
    users = await ok(client.get("/users", headers=admin))
    accounts = await ok(client.get("/ledger/accounts", headers=finance))
    invoices = await ok(client.get("/ledger/invoices", headers=finance))
    return (
        orders,
        [(b["id"], b["status"]) for b in bids],
        len(work),
        [(k["id"], k["revoked_at"]) for k in keys],
        sorted(u["id"] for u in users),
        [(a["id"], a["balance_minor"]) for a in accounts],
        [(i["id"], i["status"], i["lock_version"]) for i in invoices],
    )


# --- the table covers the app ----------------------------------------------------------------


def app_endpoints(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every HTTP route, including those of included routers."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: Any = iter_route_contexts(app.routes)
    except ImportError:  # FastAPI before lazily included routers: app.routes is flat
        routes = app.routes
    return {
        (method, route.path)
        for route in routes
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    }


def test_every_tenant_endpoint_is_in_the_table(tmp_path: Path):
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path))
    in_app = {
        (m, path)
        for m, path in app_endpoints(app)
        if not UNCOVERED_HERE.match(path) and (m, path) not in UNCOVERED_ENDPOINTS
    }
    in_table = [(e.method, e.path) for e in ENDPOINTS]

    assert ("GET", "/orders") in in_app, "the routes were found"
    assert len(in_table) == len(set(in_table)), "an endpoint is listed twice"
    assert in_app - set(in_table) == set(), "add these endpoints to ENDPOINTS"
    assert set(in_table) - in_app == set(), "these endpoints no longer exist"
    for endpoint in ENDPOINTS:
        assert set(re.findall(r"{(\w+)}", endpoint.path)) <= set(endpoint.ids), endpoint
        assert set(endpoint.ids.values()) <= STAGED, endpoint
        assert set(endpoint.allowed) <= set(ROLES), endpoint


# --- another tenant's ids --------------------------------------------------------------------


async def test_another_tenants_ids_alone_or_mixed_with_ours_look_exactly_like_missing_ones(
    client, database, world, rival
):
    ours, theirs = await stage(client, database, world), await stage(client, database, rival)
    before = await snapshot(client, world, ours), await snapshot(client, rival, theirs)

    leaks = []
    for endpoint in WITH_IDS:
        caller = world.people[endpoint.caller]
        cases = [(endpoint.ids_in(theirs), endpoint.missing_ids())]
        if len(endpoint.ids) > 1:  # also one of their ids among ours
            own = endpoint.ids_in(ours)
            cases += [
                (
                    {**own, param: endpoint.ids_in(theirs)[param]},
                    {**own, param: endpoint.missing_ids()[param]},
                )
                for param in endpoint.ids
            ]
        for foreign, missing in cases:
            leaks += await differences(client, endpoint, caller, foreign, missing)

    assert leaks == []
    after = await snapshot(client, world, ours), await snapshot(client, rival, theirs)
    assert after == before, "probing changed something"


async def test_endpoints_without_ids_never_show_another_tenants_data(
    client, database, world, rival
):
    theirs = await stage(client, database, rival)
    await stage(client, database, world)
    forbidden = identifiers(rival, theirs)

    leaks = []
    for endpoint in WITHOUT_IDS:
        for role in endpoint.allowed:
            response = await call(client, endpoint, world.people[role], {})
            assert response.status_code in (200, 201), (str(endpoint), role, response.text)
            leaks += [f"{endpoint} as {role}: {x}" for x in forbidden if x in response.text]

    assert leaks == []
    # Not even a clash gives away that an email is in use in another tenant.
    taken_there = {**new_user({}), "email": rival.reviewer.email}
    created = await ok(client.post("/users", json=taken_there, headers=world.admin.auth), 201)
    assert created["tenant_id"] == str(world.tenant_id)


# --- roles -----------------------------------------------------------------------------------


async def test_every_endpoint_refuses_the_roles_it_does_not_allow_with_403(client, database, world):
    ours = await stage(client, database, world)
    before = await snapshot(client, world, ours)

    wrong = []
    for endpoint in ENDPOINTS:
        for role in endpoint.denied:
            response = await call(client, endpoint, world.people[role], endpoint.ids_in(ours))
            if outcome(response) != (403, endpoint.denied_code):
                wrong.append(f"{endpoint} as {role}: {outcome(response)}")

    assert wrong == []
    assert await snapshot(client, world, ours) == before, "a refused call changed something"


async def test_every_endpoint_refuses_anonymous_callers_with_401(client):
    wrong = []
    for endpoint in ENDPOINTS:
        response = await call(client, endpoint, None, endpoint.missing_ids())
        if outcome(response) != (401, "missing_credentials"):
            wrong.append(f"{endpoint}: {outcome(response)}")

    assert wrong == []


# --- what a specialist sees ------------------------------------------------------------------


async def test_a_specialist_cannot_see_a_draft_order_of_its_own_tenant(client, world):
    specialist = world.specialist
    draft = await ok(client.post("/orders", json=draft_order({}), headers=world.manager.auth), 201)
    missing = str(uuid.uuid4())

    for suffix in ("", "/bids", "/submissions"):
        seen = await client.get(f"/orders/{draft['id']}{suffix}", headers=specialist.auth)
        unknown = await client.get(f"/orders/{missing}{suffix}", headers=specialist.auth)
        assert outcome(seen) == outcome(unknown), suffix
        assert seen.status_code == 404, suffix
    claim = await client.post(f"/orders/{draft['id']}/claim", headers=specialist.auth)
    unknown = await client.post(f"/orders/{missing}/claim", headers=specialist.auth)
    assert outcome(claim) == outcome(unknown) == (404, "order_not_found")
    assert draft["id"] not in await all_order_ids(client, specialist)
    assert draft["id"] in await all_order_ids(client, world.manager)


# --- listings --------------------------------------------------------------------------------


async def all_order_ids(client: httpx.AsyncClient, person: Person, **params: Any) -> set[str]:
    """Every order id the listing returns to `person`, following the cursor page by page."""
    ids: list[str] = []
    cursor = None
    while True:
        query = {"limit": 3, **params, **({"cursor": cursor} if cursor else {})}
        page = await ok(client.get("/orders", params=query, headers=person.auth))
        ids += [order["id"] for order in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            assert len(ids) == len(set(ids)), "a page repeated an order"
            return set(ids)


async def test_listing_orders_never_returns_another_tenants_orders(client, database, world, rival):
    ours, theirs = await stage_orders(client, world), await stage_orders(client, rival)
    our_orders = {v for k, v in ours.items() if k.endswith("_order")}
    their_orders = {v for k, v in theirs.items() if k.endswith("_order")}

    for role in ROLES:
        person = world.people[role]
        for params in ({}, {"status": ["open", "claimed"]}, {"mode": "bidding"}, {"mine": True}):
            listed = await all_order_ids(client, person, **params)
            assert not listed & their_orders, (role, params)
            assert listed <= our_orders, (role, params)
        if role != "specialist":
            assert await all_order_ids(client, person) == our_orders, role
    their_page = await ok(client.get("/orders?limit=1", headers=rival.manager.auth))
    query = {"cursor": their_page["next_cursor"]}
    page = await ok(client.get("/orders", params=query, headers=world.manager.auth))
    assert {order["id"] for order in page["items"]} <= our_orders
