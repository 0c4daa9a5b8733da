"""Login, refresh-token rotation, logout."""

from __future__ import annotations

from fastapi import APIRouter, Cookie, Request, Response

from api.deps import CurrentActor
from api.errors import domain_problem, responses
from quire.auth import service as auth
from quire.auth.schemas import LoginIn, TokenOut
from quire.auth.service import AttemptLimits, Granted, LoginPolicy
from quire.db import Database, utcnow
from quire.errors import Unauthenticated
from quire.people.schemas import UserOut
from quire.people.service import get_user
from quire.settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"])

REFRESH_COOKIE = "quire_refresh"
REFRESH_PATH = "/auth"  # sent to /auth/refresh and /auth/logout only


def _policy(settings: Settings) -> LoginPolicy:
    return LoginPolicy(
        max_failures=settings.login_max_failures,
        lockout_seconds=settings.lockout_seconds,
        refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
    )


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limits(settings: Settings, action: str) -> AttemptLimits:
    per_ip, per_user = {
        "login": (settings.login_limit_per_ip, settings.login_limit_per_user),
        "refresh": (settings.refresh_limit_per_ip, settings.refresh_limit_per_user),
    }[action]
    return AttemptLimits(per_ip, per_user, settings.rate_limit_window_seconds)


def _respond(response: Response, granted: Granted, settings: Settings) -> TokenOut:
    response.set_cookie(
        REFRESH_COOKIE,
        granted.refresh_token,
        max_age=settings.refresh_token_ttl_seconds,
        path=REFRESH_PATH,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return TokenOut(
        access_token=granted.access_token,
        expires_in=settings.access_token_ttl_seconds,
        user=UserOut.model_validate(granted.user),
    )


@router.post("/login", response_model=TokenOut, responses=responses(400, 401, 422, 423, 429))
async def login(body: LoginIn, request: Request, response: Response) -> TokenOut | Response:
    """Exchange a password for an access token (body) and a refresh token (HttpOnly cookie)."""
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.database
    async with database.async_session(write=True) as session:
        await session.run_sync(
            lambda s: auth.count_login_attempt(
                s,
                _limits(settings, "login"),
                ip=_client_ip(request),
                tenant=body.tenant,
                email=body.email,
                now=utcnow(),
            )
        )
    async with database.async_session(write=True) as session:
        outcome = await session.run_sync(
            lambda s: auth.login(
                s,
                body.tenant,
                body.email,
                body.password,
                tokens=request.app.state.token_config,
                policy=_policy(settings),
                now=utcnow(),
            )
        )
    if isinstance(outcome, auth.Denied):
        raise outcome.error  # after the failure was counted and committed
    return _respond(response, outcome, settings)


@router.post("/refresh", response_model=TokenOut, responses=responses(401, 429))
async def refresh(
    request: Request,
    response: Response,
    quire_refresh: str | None = Cookie(default=None, include_in_schema=False),
) -> TokenOut | Response:
    """Rotate the refresh cookie and get a new access token. A reused token revokes its family."""
    if not quire_refresh:
        raise Unauthenticated("no refresh token cookie", code="missing_refresh_token")
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.database
    async with database.async_session() as session:
        owner = await session.run_sync(auth.token_owner, quire_refresh)
    async with database.async_session(write=True) as session:
        await session.run_sync(
            lambda s: auth.count_refresh_attempt(
                s, _limits(settings, "refresh"), ip=_client_ip(request), owner=owner, now=utcnow()
            )
        )
    async with database.async_session(write=True) as session:
        outcome = await session.run_sync(
            lambda s: auth.refresh(
                s,
                quire_refresh,
                tokens=request.app.state.token_config,
                policy=_policy(settings),
                now=utcnow(),
            )
        )
    if isinstance(outcome, auth.Denied):
        refused = domain_problem(outcome.error)
        refused.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH)
        return refused
    return _respond(response, outcome, settings)


@router.post("/logout", status_code=204)
async def logout(
    request: Request,
    response: Response,
    quire_refresh: str | None = Cookie(default=None, include_in_schema=False),
) -> Response:
    """Revoke this login's refresh tokens (the access token simply expires)."""
    database: Database = request.app.state.database
    if quire_refresh:
        async with database.async_session(write=True) as session:
            await session.run_sync(lambda s: auth.logout(s, quire_refresh, now=utcnow()))
    response = Response(status_code=204)
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH)
    return response


me_router = APIRouter(tags=["auth"])


@me_router.get("/me", response_model=UserOut, responses=responses(401, 404))
async def me(request: Request, actor: CurrentActor) -> UserOut:
    """Who the credential belongs to."""
    database: Database = request.app.state.database
    async with database.async_session(actor.tenant_id) as session:
        user = await session.run_sync(lambda s: get_user(s, actor, actor.user_id))
    return UserOut.model_validate(user)
