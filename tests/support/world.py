"""A ready-made tenant: one user per role, helpers to log in (or be handed a token) and to publish
orders."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from quire.auth import access_tokens
from quire.auth.access_tokens import AccessClaims, TokenConfig
from quire.db import Database, utcnow
from quire.people import service as people
from quire.people.actor import Actor
from quire.people.models import Role
from quire.people.schemas import UserDraft

PASSWORD = "correct horse battery"


@dataclass
class Person:
    id: uuid.UUID
    email: str
    roles: list[str]
    tenant_id: uuid.UUID
    tenant_slug: str
    token: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.id, self.tenant_id, frozenset(self.roles))

    @property
    def auth(self) -> dict[str, str]:
        assert self.token, "log in first"
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    tenant_id: uuid.UUID
    slug: str
    people: dict[str, Person] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Person:
        try:
            return self.people[name]
        except KeyError:
            raise AttributeError(name) from None


def build_world(database: Database, slug: str, *, specialists: int = 2) -> World:
    """Tenant `slug` with admin, manager, reviewer, finance and `specialists` specialists."""
    cast: list[tuple[str, list[Role], dict[str, Any] | None]] = [
        ("admin", [Role.ADMIN], None),
        ("manager", [Role.MANAGER], None),
        ("reviewer", [Role.REVIEWER], None),
        ("finance", [Role.FINANCE], None),
    ]
    cast += [
        (
            f"specialist{i}" if i else "specialist",
            [Role.SPECIALIST],
            {"payout_currency": "EUR", "skills": ["copywriting"]},
        )
        for i in range(specialists)
    ]
    with database.session(write=True) as session:
        tenant = people.create_tenant(session, slug, slug.title())
        session.info["tenant_id"] = tenant.id
        world = World(tenant.id, slug)
        for name, roles, profile in cast:
            email = f"{name}@{slug}.test"
            user = people.add_user(
                session,
                tenant.id,
                UserDraft(
                    email=email, display_name=name, password=PASSWORD, roles=roles, profile=profile
                ),
            )
            world.people[name] = Person(user.id, email, list(user.roles), tenant.id, slug)
    return world


async def login(client: httpx.AsyncClient, person: Person) -> Person:
    response = await client.post(
        "/auth/login",
        json={"tenant": person.tenant_slug, "email": person.email, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    person.token = response.json()["access_token"]
    return person


async def login_all(client: httpx.AsyncClient, world: World) -> World:
    for person in world.people.values():
        await login(client, person)
    return world


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Blog post about ledgers",
        "brief": "800 words on double-entry bookkeeping for engineers.",
        "skill": "copywriting",
        "fee_minor": 25_000,
        "currency": "USD",
        "deadline": (utcnow() + dt.timedelta(days=3)).isoformat(),
        "publish": True,
    }
    body.update(overrides)
    return body


async def publish_order(
    client: httpx.AsyncClient, manager: Person, **overrides: Any
) -> dict[str, Any]:
    response = await client.post("/orders", json=order_body(**overrides), headers=manager.auth)
    assert response.status_code == 201, response.text
    return response.json()


def unique_slug(stem: str) -> str:
    """A tenant slug nobody has used yet (`acme-1f2e3d4c`): tests sharing a database each get
    their own tenant, and what is keyed by slug (lockouts, per-user limits) stays theirs."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def sign_in_all(world: World, tokens: TokenConfig) -> World:
    """Give everyone the access token `POST /auth/login` issues (same claims, same signing key)
    without the round trips: logging in is tests/api/test_auth.py's subject, not every test's."""
    for person in world.people.values():
        claims = AccessClaims(person.id, person.tenant_id, frozenset(person.roles))
        person.token = access_tokens.issue(tokens, claims)
    return world
