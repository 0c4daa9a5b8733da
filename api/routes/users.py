"""Users and API keys of the caller's tenant."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import Work
from api.errors import responses
from quire.auth import service as auth
from quire.auth.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from quire.db import utcnow
from quire.people import service as people
from quire.people.schemas import UserDraft, UserOut

router = APIRouter(tags=["users"])


@router.post(
    "/users", status_code=201, response_model=UserOut, responses=responses(400, 401, 403, 409, 422)
)
async def create_user(body: UserDraft, work: Work) -> UserOut:
    """Admins add people to their own tenant."""
    return UserOut.model_validate(await work.write(people.create_user, body))


@router.get("/users", response_model=list[UserOut], responses=responses(401, 403))
async def list_users(work: Work) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await work.read(people.list_users)]


@router.get("/users/{user_id}", response_model=UserOut, responses=responses(401, 403, 404))
async def get_user(user_id: uuid.UUID, work: Work) -> UserOut:
    return UserOut.model_validate(await work.read(people.get_user, user_id))


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=responses(400, 401, 403, 422),
)
async def create_api_key(body: ApiKeyIn, work: Work) -> ApiKeyCreated:
    """Mint a key for machine consumers; it acts as you, with the roles you give it."""
    key, secret = await work.write(auth.create_api_key, body.name, body.roles)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=responses(401))
async def list_api_keys(work: Work) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in await work.read(auth.list_api_keys)]


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, responses=responses(401, 404))
async def revoke_api_key(key_id: uuid.UUID, work: Work) -> ApiKeyOut:
    return ApiKeyOut.model_validate(await work.write(auth.revoke_api_key, key_id, utcnow()))
