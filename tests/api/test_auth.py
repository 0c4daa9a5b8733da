"""Authentication, as the API promises it.

- Login returns a short-lived JWT access token and a refresh token in an HttpOnly, SameSite
  cookie that only the /auth endpoints receive (and that is Secure unless turned off for dev).
- Refresh tokens rotate on every use; presenting a rotated one again revokes its whole family.
- Five failed logins lock the account (423 + Retry-After), and an account that does not exist
  answers exactly alike: whether an email has an account cannot be learnt by logging in.
- Login and refresh are rate limited per user and per IP: at most N attempts in any window-long
  span (429 + Retry-After), also across clock-minute boundaries.
- Every bad credential is a 401 and says nothing about which part was wrong; an overlong email
  is a 422 that writes nothing.
- Admins create users in their own tenant; API keys act for their owner with a subset of the
  owner's roles, are stored hashed, can be revoked, and cannot mint more keys.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select

from api.app import create_app
from api.deps import token_config
from quire.auth import access_tokens
from quire.auth.access_tokens import AccessClaims, TokenConfig
from quire.auth.models import ApiKey, LoginFailure, RateLimitLog, RefreshToken
from quire.db import Database, utcnow
from quire.settings import Settings
from tests.conftest import JWT_SECRET, make_settings
from tests.support.world import (
    PASSWORD,
    Person,
    World,
    build_world,
    login,
    order_body,
    publish_order,
)

# Lockouts and rate limits belong to no tenant: each test counts them in a database of its own.
pytestmark = pytest.mark.own_database

REFRESH_COOKIE = "quire_refresh"
# A rate-limit window this long: no attempt leaves it during a test, so counts never drop
# halfway through one.
LONG_WINDOW = 10**9


# --- the app, as conftest's `client` runs it or with custom settings --------------------------


class Server:
    """The app in-process; `client(ip)` talks to it from any client address."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.clients: list[httpx.AsyncClient] = []

    def client(self, ip: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40_000))
        client = httpx.AsyncClient(transport=transport, base_url="http://quire.test")
        self.clients.append(client)
        return client


@asynccontextmanager
async def serve(database: Database, settings: Settings) -> AsyncIterator[Server]:
    """The app with these settings, as conftest's `client` fixture runs it."""
    app = create_app(settings, database=database)
    async with LifespanManager(app, startup_timeout=30):
        server = Server(app)
        try:
            yield server
        finally:
            for client in server.clients:
                await client.aclose()
    await database.async_dispose()


@pytest.fixture
async def client(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """conftest's `client`, built on `serve` so tests can also pick client addresses."""
    async with serve(database, settings) as server:
        yield server.client()


@pytest.fixture
def acme(database: Database) -> World:
    """Tenant 'acme' with one user per role; nobody is logged in yet (log in who you need)."""
    return build_world(database, "acme")


# --- helpers ---------------------------------------------------------------------------------


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The response is the API's one error body, with this status (and code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "code", "detail", "request_id"} <= body.keys()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


async def attempt_login(
    client: httpx.AsyncClient, person: Person, *, password: str = PASSWORD, **overrides: str
) -> httpx.Response:
    body = {"tenant": person.tenant_slug, "email": person.email, "password": password}
    return await client.post("/auth/login", json={**body, **overrides})


def refresh_cookie(response: httpx.Response) -> Morsel:
    """The refresh cookie the response sets, with its attributes."""
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        if REFRESH_COOKIE in cookie:
            return cookie[REFRESH_COOKIE]
    raise AssertionError(f"no {REFRESH_COOKIE} cookie in {response.headers}")


def refresh_token_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return refresh_cookie(response).value


def cookie_sent_to(cookie_path: str, request_path: str) -> bool:
    """RFC 6265 section 5.1.4: does a cookie with this Path go along with a request there?"""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    )


def assert_cookie_cleared(response: httpx.Response) -> None:
    cleared = refresh_cookie(response)
    assert cleared.value in ("", '""')
    assert int(cleared["max-age"]) == 0


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """POST /auth/refresh with exactly this refresh cookie (the client's jar is not used)."""
    return await client.post("/auth/refresh", headers={"Cookie": f"{REFRESH_COOKIE}={token}"})


async def logout(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/logout", headers={"Cookie": f"{REFRESH_COOKIE}={token}"})


async def login_token(client: httpx.AsyncClient, person: Person) -> str:
    """Log in and return the refresh token."""
    return refresh_token_of(await attempt_login(client, person))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tokens(settings: Settings, **changes: Any) -> TokenConfig:
    """The app's own access-token configuration, or a variation of it."""
    config = token_config(settings)
    return TokenConfig(**{**config.__dict__, **changes})


def claims_of(person: Person) -> AccessClaims:
    return AccessClaims(person.id, person.tenant_id, frozenset(person.roles))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    """A JWT with `alg: none` and no signature."""
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def with_payload(token: str, **changes: Any) -> str:
    """The same token, signature kept, with its payload edited."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


# --- login -----------------------------------------------------------------------------------


async def test_login_returns_a_short_lived_jwt_access_token_with_every_registered_claim(
    client, acme, settings
):
    before = int(utcnow().timestamp())
    response = await attempt_login(client, acme.manager)
    after = int(utcnow().timestamp())

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["id"] == str(acme.manager.id)
    token = body["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(
        token,
        JWT_SECRET,
        algorithms=["HS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": ["exp", "iat", "sub", "aud", "iss"]},
    )
    assert claims["sub"] == str(acme.manager.id)
    assert claims["tid"] == str(acme.tenant_id)
    assert claims["roles"] == ["manager"]
    assert claims["aud"] == settings.jwt_audience
    assert claims["iss"] == settings.jwt_issuer
    assert before <= claims["iat"] <= after
    lifetime = claims["exp"] - claims["iat"]
    assert lifetime == body["expires_in"] == settings.access_token_ttl_seconds
    assert 0 < lifetime <= 3600, "access tokens are short-lived"
    me = await client.get("/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == str(acme.manager.id)


async def test_login_puts_the_refresh_token_in_an_httponly_samesite_cookie_for_auth_paths_only(
    client, acme, settings
):
    response = await attempt_login(client, acme.manager)

    cookie = refresh_cookie(response)
    assert len(cookie.value) >= 32
    assert cookie.value not in response.text, "scripts never get to read the refresh token"
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert int(cookie["max-age"]) == settings.refresh_token_ttl_seconds
    assert not cookie["secure"], "QUIRE_COOKIE_SECURE is off in these tests"
    for path in ("/auth/refresh", "/auth/logout"):
        assert cookie_sent_to(cookie["path"], path), path
    for path in ("/", "/orders", "/users", "/api-keys", "/me", "/events"):
        assert not cookie_sent_to(cookie["path"], path), path


async def test_the_refresh_cookie_is_secure_when_cookie_secure_is_on(
    database, db_url, tmp_path: Path, acme
):
    assert Settings.model_fields["cookie_secure"].default is True, "Secure is the default"
    settings = make_settings(db_url, tmp_path, QUIRE_COOKIE_SECURE=True)
    async with serve(database, settings) as server:
        response = await attempt_login(server.client(), acme.manager)

    assert response.status_code == 200, response.text
    cookie = refresh_cookie(response)
    assert cookie["secure"] is True
    assert cookie["httponly"] is True


async def test_a_wrong_password_an_unknown_user_and_an_unknown_tenant_are_refused_alike(
    client, acme, database
):
    globex = build_world(database, "globex", specialists=0)
    admin = acme.admin
    attempts = {
        "wrong password": await attempt_login(client, admin, password="not the password"),
        "unknown user": await attempt_login(client, admin, email="nobody@acme.test"),
        "unknown tenant": await attempt_login(client, admin, tenant="no-such-tenant"),
        "user of another tenant": await attempt_login(client, admin, email=globex.admin.email),
        "right password, wrong tenant": await attempt_login(client, admin, tenant="globex"),
    }

    bodies = {name: assert_problem(r, 401, "invalid_credentials") for name, r in attempts.items()}
    assert len({(b["title"], b["detail"]) for b in bodies.values()}) == 1, bodies
    for response in attempts.values():
        assert response.headers["www-authenticate"] == "Bearer"
        assert REFRESH_COOKIE not in response.headers.get("set-cookie", "")


# --- lockout ---------------------------------------------------------------------------------


async def fail_logins(client: httpx.AsyncClient, person: Person, times: int) -> None:
    for _ in range(times):
        response = await attempt_login(client, person, password="wrong password!")
        assert_problem(response, 401, "invalid_credentials")


async def test_five_consecutive_failed_logins_lock_the_account_until_the_lockout_ends(
    database, db_url, tmp_path: Path, acme
):
    settings = make_settings(
        db_url, tmp_path, QUIRE_LOCKOUT_SECONDS=1, QUIRE_LOGIN_LIMIT_PER_USER=100
    )
    async with serve(database, settings) as server:
        client = server.client()
        await fail_logins(client, acme.finance, 4)
        assert (await attempt_login(client, acme.finance)).status_code == 200, "count reset"
        await fail_logins(client, acme.finance, 5)

        locked = await attempt_login(client, acme.finance)

        body = assert_problem(locked, 423, "account_locked")
        assert_problem(await attempt_login(client, acme.finance, password="wrong again"), 423)
        other = await attempt_login(client, acme.reviewer)
        assert other.status_code == 200, "only the attacked account is locked"
        until = dt.datetime.fromisoformat(body["locked_until"])
        await asyncio.sleep(max(0.0, (until - utcnow()).total_seconds()) + 0.05)
        assert (await attempt_login(client, acme.finance)).status_code == 200, "the lock lifted"


def public(response: httpx.Response) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Everything a client sees of a refusal, minus what differs per request anyway."""
    body = {k: v for k, v in response.json().items() if k not in ("request_id", "locked_until")}
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("date", "x-request-id", "content-length")
    }
    return response.status_code, body, headers


async def test_an_account_that_does_not_exist_answers_and_locks_exactly_like_a_real_one(
    database, db_url, tmp_path: Path, acme
):
    settings = make_settings(db_url, tmp_path, QUIRE_LOGIN_LIMIT_PER_USER=100)
    real = {"tenant": "acme", "email": acme.finance.email}
    missing = {
        "unknown email": {"tenant": "acme", "email": "nobody@acme.test"},
        "unknown tenant": {"tenant": "no-such-tenant", "email": acme.finance.email},
    }
    async with serve(database, settings) as server:
        client = server.client()

        async def seven_attempts(who: dict[str, str]) -> list[httpx.Response]:
            wrong = {**who, "password": "wrong password!"}
            return [await client.post("/auth/login", json=wrong) for _ in range(7)]

        real_answers = await seven_attempts(real)
        other_answers = {name: await seven_attempts(who) for name, who in missing.items()}
        right_password = await client.post("/auth/login", json={**real, "password": PASSWORD})

    assert [r.status_code for r in real_answers] == [401] * 5 + [423] * 2
    locked = assert_problem(real_answers[5], 423, "account_locked")
    retry_after = int(real_answers[5].headers["retry-after"])
    assert settings.lockout_seconds - 5 <= retry_after <= settings.lockout_seconds
    until = dt.datetime.fromisoformat(locked["locked_until"])
    assert abs((until - utcnow()).total_seconds() - retry_after) <= 5
    assert_problem(right_password, 423, "account_locked")
    for name, answers in other_answers.items():
        assert [public(r) for r in answers] == [public(r) for r in real_answers], name
        assert answers[5].json().keys() == real_answers[5].json().keys(), name


async def test_login_with_an_overlong_email_is_a_422_problem_and_writes_nothing(
    client, acme, database
):
    def stored() -> dict[str, int]:
        with database.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (RateLimitLog, LoginFailure)
            } | {
                "refresh_tokens": session.scalar(
                    select(func.count())
                    .select_from(RefreshToken)
                    .execution_options(all_tenants=True)
                )
            }

    before = stored()
    for length in (255, 300, 10_000):
        email = "x" * (length - len("@acme.test")) + "@acme.test"
        response = await attempt_login(client, acme.admin, email=email)
        body = assert_problem(response, 422, "validation_failed")
        assert body["errors"][0]["loc"] == ["email"], body

    assert stored() == before, "refused before anything was counted or stored"
    longest = "x" * (254 - len("@acme.test")) + "@acme.test"
    assert_problem(await attempt_login(client, acme.admin, email=longest), 401)


# --- rate limits -----------------------------------------------------------------------------


def limited(db_url: str, tmp_path: Path, **limits: int) -> Settings:
    return make_settings(db_url, tmp_path, QUIRE_RATE_WINDOW=LONG_WINDOW, **limits)


def assert_rate_limited(response: httpx.Response) -> None:
    assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= LONG_WINDOW


async def test_login_is_rate_limited_per_user_from_any_ip(database, db_url, tmp_path: Path, acme):
    settings = limited(db_url, tmp_path, QUIRE_LOGIN_LIMIT_PER_USER=3)
    async with serve(database, settings) as server:
        for i in range(3):
            response = await attempt_login(server.client(f"10.0.0.{i}"), acme.manager)
            assert response.status_code == 200, response.text

        too_many = await attempt_login(server.client("10.0.0.99"), acme.manager)
        someone_else = await attempt_login(server.client("10.0.0.99"), acme.reviewer)

    assert_rate_limited(too_many)
    assert someone_else.status_code == 200, someone_else.text


async def test_the_per_user_login_limit_cannot_be_dodged_by_respelling_the_email(
    database, db_url, tmp_path: Path, acme
):
    settings = limited(db_url, tmp_path, QUIRE_LOGIN_LIMIT_PER_USER=3)
    email = acme.manager.email
    spellings = [email, email.upper(), f" {email}", f"{email} ", f"  {email.title()}  "]
    async with serve(database, settings) as server:
        statuses = []
        for i, spelling in enumerate(spellings):
            client = server.client(f"10.0.1.{i}")
            statuses.append((await attempt_login(client, acme.manager, email=spelling)).status_code)

    assert statuses == [200, 200, 200, 429, 429], list(zip(spellings, statuses, strict=True))


async def test_login_is_rate_limited_per_ip_whoever_logs_in(database, db_url, tmp_path: Path, acme):
    settings = limited(db_url, tmp_path, QUIRE_LOGIN_LIMIT_PER_IP=3)
    async with serve(database, settings) as server:
        busy = server.client("10.0.2.1")
        for person in (acme.admin, acme.manager, acme.reviewer):
            assert (await attempt_login(busy, person)).status_code == 200

        too_many = await attempt_login(busy, acme.finance)
        elsewhere = await attempt_login(server.client("10.0.2.2"), acme.finance)

    assert_rate_limited(too_many)
    assert elsewhere.status_code == 200, elsewhere.text


async def test_refresh_is_rate_limited_per_user_from_any_ip(database, db_url, tmp_path: Path, acme):
    settings = limited(db_url, tmp_path, QUIRE_REFRESH_LIMIT_PER_USER=2)
    async with serve(database, settings) as server:
        token = await login_token(server.client(), acme.manager)
        for i in range(2):
            token = refresh_token_of(await refresh(server.client(f"10.0.3.{i}"), token))

        too_many = await refresh(server.client("10.0.3.99"), token)
        other_user = await login_token(server.client(), acme.reviewer)
        someone_else = await refresh(server.client("10.0.3.99"), other_user)

    assert_rate_limited(too_many)
    assert someone_else.status_code == 200, someone_else.text


async def test_refresh_is_rate_limited_per_ip_whoever_refreshes(
    database, db_url, tmp_path: Path, acme
):
    settings = limited(db_url, tmp_path, QUIRE_REFRESH_LIMIT_PER_IP=2)
    async with serve(database, settings) as server:
        people = (acme.admin, acme.manager, acme.reviewer)
        refresh_tokens = [await login_token(server.client(), person) for person in people]
        busy = server.client("10.0.4.1")
        for token in refresh_tokens[:2]:
            assert (await refresh(busy, token)).status_code == 200

        too_many = await refresh(busy, refresh_tokens[2])
        elsewhere = await refresh(server.client("10.0.4.2"), refresh_tokens[2])

    assert_rate_limited(too_many)
    assert elsewhere.status_code == 200, elsewhere.text


async def test_refreshes_across_a_minute_boundary_get_one_windows_budget_not_two(
    database, db_url, tmp_path: Path, acme, monkeypatch
):
    # The issue's case: with a fixed window, a burst just before and just after a minute
    # boundary passed twice the limit (61 refreshes in a minute). Now no 60 s span holds more.
    settings = make_settings(db_url, tmp_path, QUIRE_REFRESH_LIMIT_PER_USER=3)
    boundary = utcnow().replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    clock = {"now": boundary - dt.timedelta(seconds=0.1)}
    monkeypatch.setattr("api.routes.auth.utcnow", lambda: clock["now"])
    async with serve(database, settings) as server:
        client = server.client()
        token = await login_token(client, acme.manager)
        for _ in range(3):
            token = refresh_token_of(await refresh(client, token))

        clock["now"] = boundary + dt.timedelta(seconds=0.1)
        after_boundary = await refresh(client, token)
        clock["now"] = boundary + dt.timedelta(seconds=59.9)
        a_minute_after_the_first = await refresh(client, token)

    assert_problem(after_boundary, 429, "rate_limited")
    assert after_boundary.headers["retry-after"] == "60", "59.8 s, rounded up"
    assert a_minute_after_the_first.status_code == 200, a_minute_after_the_first.text


# --- refresh-token rotation and logout -------------------------------------------------------


async def test_refreshing_rotates_the_refresh_token_and_refuses_the_old_one(client, acme, settings):
    first = await login_token(client, acme.manager)

    response = await refresh(client, first)

    assert response.status_code == 200, response.text
    second = refresh_cookie(response)
    assert second.value != first
    assert second["httponly"] is True
    assert cookie_sent_to(second["path"], "/auth/refresh")
    access = response.json()["access_token"]
    claims = jwt.decode(access, JWT_SECRET, algorithms=["HS256"], audience=settings.jwt_audience)
    assert claims["sub"] == str(acme.manager.id)
    assert (await client.get("/me", headers=bearer(access))).status_code == 200
    assert_problem(await refresh(client, first), 401)


async def test_reusing_a_rotated_refresh_token_revokes_its_whole_family_and_nothing_else(
    client, acme
):
    first = await login_token(client, acme.manager)
    second = refresh_token_of(await refresh(client, first))
    newest = refresh_token_of(await refresh(client, second))
    other_login = await login_token(client, acme.manager)

    reuse = await refresh(client, first)

    assert_problem(reuse, 401, "refresh_token_reused")
    after = assert_problem(await refresh(client, newest), 401)
    assert after["code"] in {"refresh_token_reused", "invalid_refresh_token"}
    assert (await refresh(client, other_login)).status_code == 200, "other logins live on"


async def test_a_refused_refresh_clears_the_refresh_cookie(client, acme):
    first = await login_token(client, acme.manager)
    refresh_token_of(await refresh(client, first))

    reuse = await refresh(client, first)

    assert_problem(reuse, 401, "refresh_token_reused")
    assert_cookie_cleared(reuse)


async def test_refresh_without_a_valid_cookie_is_refused(client, acme):
    client.cookies.clear()
    assert_problem(await client.post("/auth/refresh"), 401, "missing_refresh_token")
    assert_problem(await refresh(client, "not-a-token-we-issued"), 401, "invalid_refresh_token")


async def test_of_concurrent_refreshes_with_the_same_token_exactly_one_succeeds(client, acme):
    token = await login_token(client, acme.specialist)

    responses = await asyncio.gather(*(refresh(client, token) for _ in range(8)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 7, [r.text for r in responses]
    for loser in (r for r in responses if r.status_code != 200):
        code = assert_problem(loser, 401)["code"]
        assert code in {"refresh_token_reused", "invalid_refresh_token"}


async def test_logout_with_any_token_of_a_login_revokes_that_login_and_clears_the_cookie(
    client, acme
):
    first = await login_token(client, acme.manager)
    current = refresh_token_of(await refresh(client, first))
    other_login = await login_token(client, acme.manager)

    response = await logout(client, first)  # an already rotated token of the login

    assert response.status_code == 204, response.text
    assert_cookie_cleared(response)
    assert_problem(await refresh(client, current), 401)
    assert (await refresh(client, other_login)).status_code == 200, "other logins live on"
    third = await login_token(client, acme.manager)
    assert (await logout(client, third)).status_code == 204
    assert_problem(await refresh(client, third), 401)


# --- access tokens ---------------------------------------------------------------------------


async def test_missing_invalid_expired_forged_unsigned_and_misaddressed_tokens_get_401(
    client, acme, settings
):
    specialist = await login(client, acme.specialist)
    past = utcnow() - dt.timedelta(hours=1)
    good_claims = jwt.decode(specialist.token, options={"verify_signature": False})
    no_exp = {k: v for k, v in good_claims.items() if k != "exp"}

    def issued(**config_changes: Any) -> str:
        return access_tokens.issue(tokens(settings, **config_changes), claims_of(specialist))

    bad_tokens = {
        "garbage": ("not-a-jwt", "invalid_token"),
        "expired": (
            access_tokens.issue(tokens(settings), claims_of(specialist), now=past),
            "token_expired",
        ),
        "forged with another secret": (
            issued(secret="another-secret-that-is-long-enough-for-hs256-xyz"),
            "invalid_token",
        ),
        "alg none": (unsigned_token(good_claims), "invalid_token"),
        "wrong audience": (issued(audience="some-other-api"), "invalid_token"),
        "wrong issuer": (issued(issuer="someone-else"), "invalid_token"),
        "no expiry": (jwt.encode(no_exp, JWT_SECRET, algorithm="HS256"), "invalid_token"),
        "another algorithm": (
            jwt.encode(good_claims, JWT_SECRET, algorithm="HS384"),
            "invalid_token",
        ),
        "roles edited after signing": (
            with_payload(specialist.token, roles=["admin"]),
            "invalid_token",
        ),
    }
    # The recipes above are sound: the same one with nothing wrong is accepted.
    assert (await client.get("/me", headers=bearer(issued()))).status_code == 200

    for name, (token, code) in bad_tokens.items():
        response = await client.get("/me", headers=bearer(token))
        assert response.status_code == 401, (name, response.text)
        assert response.json()["code"] == code, name
        assert response.headers["www-authenticate"] == "Bearer", name
    promoted, _ = bad_tokens["roles edited after signing"]
    assert_problem(await client.get("/users", headers=bearer(promoted)), 401, "invalid_token")
    assert_problem(await client.get("/me"), 401, "missing_credentials")
    assert_problem(await client.get("/orders"), 401, "missing_credentials")


# --- users -----------------------------------------------------------------------------------


def new_user(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": f"new-{uuid.uuid4().hex[:8]}@acme.test",
        "display_name": "New Person",
        "password": "a long enough password",
        "roles": ["reviewer"],
    }
    return {**body, **overrides}


async def login_as(client: httpx.AsyncClient, tenant: str, body: dict[str, Any]) -> httpx.Response:
    credentials = {"tenant": tenant, "email": body["email"], "password": body["password"]}
    return await client.post("/auth/login", json=credentials)


async def test_an_admin_creates_users_in_their_own_tenant_who_can_then_log_in(client, acme):
    admin = await login(client, acme.admin)
    body = new_user()

    response = await client.post("/users", json=body, headers=admin.auth)

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["tenant_id"] == str(acme.tenant_id)
    assert created["roles"] == ["reviewer"]
    assert body["password"] not in response.text
    logged_in = await login_as(client, acme.slug, body)
    assert logged_in.status_code == 200, logged_in.text
    assert logged_in.json()["user"]["id"] == created["id"]
    elsewhere = new_user(tenant_id=str(uuid.uuid4()))
    refused = await client.post("/users", json=elsewhere, headers=admin.auth)
    assert_problem(refused, 422, "validation_failed")


async def test_only_admins_create_users(client, acme):
    for role in ("manager", "reviewer", "finance", "specialist"):
        person = await login(client, acme.people[role])
        body = new_user()

        response = await client.post("/users", json=body, headers=person.auth)

        assert_problem(response, 403, "wrong_role")
        assert_problem(await login_as(client, acme.slug, body), 401, "invalid_credentials")


# --- API keys --------------------------------------------------------------------------------


async def create_key(
    client: httpx.AsyncClient, headers: dict[str, str], roles: list[str]
) -> httpx.Response:
    return await client.post("/api-keys", json={"name": "ci", "roles": roles}, headers=headers)


async def new_key(client: httpx.AsyncClient, person: Person, roles: list[str]) -> dict[str, Any]:
    response = await create_key(client, person.auth, roles)
    assert response.status_code == 201, response.text
    return response.json()


def key_headers(secret: str) -> list[dict[str, str]]:
    """Both ways to present an API key."""
    return [bearer(secret), {"X-API-Key": secret}]


def api_key_row(database: Database, tenant_id: uuid.UUID, key_id: str) -> ApiKey:
    with database.session(tenant_id) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.id == uuid.UUID(key_id)))
    assert row is not None
    return row


async def test_an_api_key_is_shown_once_stored_hashed_and_works_as_bearer_or_x_api_key(
    client, acme, database
):
    manager = await login(client, acme.manager)

    created = await new_key(client, manager, ["manager"])

    secret = created["key"]
    assert secret.startswith("qk_")
    assert len(secret) >= 40
    assert created["roles"] == ["manager"]
    assert created["owner_id"] == str(manager.id)
    listing = await client.get("/api-keys", headers=manager.auth)
    assert listing.status_code == 200, listing.text
    assert [k["id"] for k in listing.json()] == [created["id"]]
    assert "key" not in listing.json()[0]
    assert secret not in listing.text
    row = api_key_row(database, acme.tenant_id, created["id"])
    assert row.key_hash != secret
    assert secret not in (row.key_hash, row.prefix, row.name)
    assert len(row.key_hash) == 64, "a SHA-256 hex digest"
    for headers in key_headers(secret):
        me = await client.get("/me", headers=headers)
        assert me.status_code == 200, (headers, me.text)
        assert me.json()["id"] == str(manager.id)
        order = await client.post("/orders", json=order_body(publish=False), headers=headers)
        assert order.status_code == 201, order.text


async def admin_and_specialist(client: httpx.AsyncClient, admin: Person) -> Person:
    """A new user holding both the admin and the specialist role, logged in."""
    body = new_user(
        password=PASSWORD,
        roles=["admin", "specialist"],
        profile={"payout_currency": "EUR", "skills": ["copywriting"]},
    )
    response = await client.post("/users", json=body, headers=admin.auth)
    assert response.status_code == 201, response.text
    user = response.json()
    person = Person(
        uuid.UUID(user["id"]), body["email"], user["roles"], admin.tenant_id, admin.tenant_slug
    )
    return await login(client, person)


async def test_an_api_key_holds_a_subset_of_its_owners_roles_and_acts_only_with_those(client, acme):
    admin, manager = await login(client, acme.admin), await login(client, acme.manager)
    both = await admin_and_specialist(client, admin)
    as_specialist = bearer((await new_key(client, both, ["specialist"]))["key"])
    as_admin = bearer((await new_key(client, both, ["admin"]))["key"])

    assert_problem(await client.post("/users", json=new_user(), headers=as_specialist), 403)
    assert_problem(await client.get("/users", headers=as_specialist), 403, "wrong_role")
    order = await publish_order(client, manager)
    claimed = await client.post(f"/orders/{order['id']}/claim", headers=as_specialist)
    assert claimed.status_code == 200, claimed.text
    assert (await client.post("/users", json=new_user(), headers=as_admin)).status_code == 201
    other = await publish_order(client, manager)
    refused = await client.post(f"/orders/{other['id']}/claim", headers=as_admin)
    assert_problem(refused, 403, "wrong_role")

    for roles in (["admin"], ["manager", "specialist"]):
        response = await create_key(client, manager.auth, roles)
        assert_problem(response, 403, "role_not_held")
    assert (await client.get("/api-keys", headers=manager.auth)).json() == []


async def test_a_revoked_forged_or_malformed_api_key_is_refused_with_401(client, acme):
    manager, reviewer = await login(client, acme.manager), await login(client, acme.reviewer)
    created = await new_key(client, manager, ["manager"])
    secret = created["key"]
    tampered = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    for forged in (tampered, "qk_nonsense", "qk_000000000000_" + "x" * 43):
        for headers in key_headers(forged):
            assert_problem(await client.get("/me", headers=headers), 401, "invalid_api_key")
    not_theirs = await client.delete(f"/api-keys/{created['id']}", headers=reviewer.auth)
    assert_problem(not_theirs, 404, "api_key_not_found")
    assert (await client.get("/me", headers=bearer(secret))).status_code == 200

    revoked = await client.delete(f"/api-keys/{created['id']}", headers=manager.auth)

    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    for headers in key_headers(secret):
        assert_problem(await client.get("/me", headers=headers), 401, "api_key_revoked")
    admin = await login(client, acme.admin)
    another = await new_key(client, manager, ["manager"])
    by_admin = await client.delete(f"/api-keys/{another['id']}", headers=admin.auth)
    assert by_admin.status_code == 200, by_admin.text
    assert_problem(await client.get("/me", headers=bearer(another["key"])), 401)


async def test_api_keys_cannot_create_api_keys(client, acme):
    admin = await login(client, acme.admin)
    secret = (await new_key(client, admin, ["admin"]))["key"]

    for headers in key_headers(secret):
        response = await create_key(client, headers, ["admin"])
        assert_problem(response, 403, "api_key_not_allowed")

    assert len((await client.get("/api-keys", headers=admin.auth)).json()) == 1


async def test_every_address_a_user_can_be_created_with_can_log_in(client, world):
    """One length rule for both: the longest address an admin may create still signs in."""
    email = f"{'x' * 64}@{'d' * 63}.{'e' * 63}.{'f' * 56}.test"  # RFC 5321's longest
    assert len(email) == 254
    created = await client.post(
        "/users",
        headers=world.admin.auth,
        json={"email": email, "display_name": "Long", "password": PASSWORD, "roles": ["manager"]},
    )
    assert created.status_code == 201, created.text
    login = await client.post(
        "/auth/login", json={"tenant": world.slug, "email": email, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    too_long = await client.post(
        "/users",
        headers=world.admin.auth,
        json={
            "email": "y" + email,
            "display_name": "Long",
            "password": PASSWORD,
            "roles": ["manager"],
        },
    )
    assert too_long.status_code == 422
