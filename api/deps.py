"""FastAPI dependencies: the database, the authenticated actor, and running domain code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from quire.auth import access_tokens
from quire.auth.access_tokens import TokenConfig
from quire.auth.service import API_KEY_PREFIX, authenticate_api_key
from quire.db import Database
from quire.errors import Unauthenticated
from quire.people.actor import Actor
from quire.settings import Settings

T = TypeVar("T")

bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login, or an API key")


def token_config(settings: Settings) -> TokenConfig:
    return TokenConfig(
        secret=settings.jwt_signing_key(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )


async def authenticate(request: HTTPConnection, credential: str) -> Actor:
    if credential.startswith(API_KEY_PREFIX):
        database: Database = request.app.state.database
        async with database.async_session() as session:
            return await session.run_sync(authenticate_api_key, credential)
    claims = access_tokens.verify(request.app.state.token_config, credential)
    return Actor(user_id=claims.user_id, tenant_id=claims.tenant_id, roles=claims.roles)


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor:
    if credentials is None:
        api_key = request.headers.get("x-api-key")
        if api_key:
            return await authenticate(request, api_key)
        raise Unauthenticated(
            "missing credentials: send 'Authorization: Bearer <token>'", code="missing_credentials"
        )
    return await authenticate(request, credentials.credentials)


CurrentActor = Annotated[Actor, Depends(current_actor)]


class UnitOfWork:
    """Runs one synchronous domain function in one transaction, scoped to the actor's tenant."""

    def __init__(self, database: Database, actor: Actor) -> None:
        self.database = database
        self.actor = actor

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.database.async_session(self.actor.tenant_id) as session:
            return await session.run_sync(fn, self.actor, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.database.async_session(self.actor.tenant_id, write=True) as session:
            return await session.run_sync(fn, self.actor, *args)

    async def write_core(
        self, fn: Callable[..., T], *args: Any, atomic_statements: bool = False
    ) -> T:
        """Like `write`, on a bare Core connection (no ORM session): for the hottest paths."""
        connection = self.database.async_write_connection(atomic_statements=atomic_statements)
        async with connection as conn:
            return await conn.run_sync(fn, self.actor, *args)


def unit_of_work(request: Request, actor: CurrentActor) -> UnitOfWork:
    return UnitOfWork(request.app.state.database, actor)


Work = Annotated[UnitOfWork, Depends(unit_of_work)]
