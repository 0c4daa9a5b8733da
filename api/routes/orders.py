"""Orders, bids, claims and submissions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import Work
from api.errors import responses
from api.schemas import Page
from quire import idempotency
from quire.money import CurrencyCode
from quire.orders import claims, queries
from quire.orders import service as orders
from quire.orders.models import OrderMode
from quire.orders.schemas import (
    BidDraft,
    BidOut,
    OrderDraft,
    OrderOut,
    SubmissionDraft,
    SubmissionOut,
)
from quire.orders.state import OrderStatus
from quire.people.actor import Actor

router = APIRouter(prefix="/orders", tags=["orders"])

# Visible ASCII, spaces only inside: what survives an HTTP header intact (a server trims the
# ends, and anything beyond ASCII arrives as latin-1 guesswork).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=idempotency.MAX_KEY_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Retry-safe writes: the same key and body replay the first response; "
        "the same key with a different body is refused (422). Up to "
        f"{idempotency.MAX_KEY_LENGTH} visible ASCII characters (inner spaces allowed).",
    ),
]

ORDER_ERRORS = responses(401, 403, 404, 409, 422)


async def _idempotent(
    work: Work,
    request: Request,
    key: str | None,
    body: BaseModel | None,
    status_code: int,
    operation: Callable[[Session, Actor], BaseModel],
) -> JSONResponse:
    """Run `operation` once per Idempotency-Key, in the same transaction as the key's record."""
    fingerprint = idempotency.fingerprint(
        request.method, request.url.path, body.model_dump(mode="json") if body else None
    )

    def run(session: Session, actor: Actor) -> tuple[int, Any, bool]:
        if key is not None:
            stored = idempotency.reserve(session, actor.user_id, key, fingerprint)
            if stored is not None:
                return stored.status_code, stored.body, True
        result = operation(session, actor).model_dump(mode="json")
        if key is not None:
            idempotency.complete(session, actor.user_id, key, status_code, result)
        return status_code, result, False

    code, payload, replayed = await work.write(run)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=code, headers=headers)


@router.post("", status_code=201, response_model=OrderOut, responses=responses(401, 403, 422))
async def create_order(body: OrderDraft, work: Work) -> OrderOut:
    """Managers create orders as drafts, or publish them at once with `publish: true`."""
    return OrderOut.model_validate(await work.write(orders.create_order, body))


@router.get("", response_model=Page[OrderOut], responses=responses(401, 422))
async def list_orders(
    work: Work,
    status: Annotated[list[OrderStatus] | None, Query()] = None,
    skill: Annotated[str | None, Query(max_length=64)] = None,
    currency: Annotated[CurrencyCode | None, Query()] = None,
    mode: OrderMode | None = None,
    mine: bool = False,
    sort: Annotated[
        str,
        Query(
            pattern=r"^-?(created_at|deadline|fee_minor)$",
            description="Field to sort by; prefix with - for descending.",
        ),
    ] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[OrderOut]:
    """Orders you can see: staff see all of their tenant's, specialists open ones and their own."""
    f = queries.OrderFilter(
        status=[str(s) for s in status] if status else None,
        skill=skill,
        currency=currency,
        mode=mode,
        mine=mine,
        sort=queries.SortKey(sort.lstrip("-")),
        descending=sort.startswith("-"),
        limit=limit,
        cursor=cursor,
    )
    items, next_cursor = await work.read(queries.list_orders, f)
    return Page[OrderOut](
        items=[OrderOut.model_validate(o) for o in items], next_cursor=next_cursor
    )


@router.get("/{order_id}", response_model=OrderOut, responses=responses(401, 404))
async def get_order(order_id: uuid.UUID, work: Work) -> OrderOut:
    return OrderOut.model_validate(await work.read(orders.get_order, order_id))


@router.post("/{order_id}/publish", response_model=OrderOut, responses=ORDER_ERRORS)
async def publish(order_id: uuid.UUID, work: Work) -> OrderOut:
    return OrderOut.model_validate(await work.write(orders.publish, order_id))


@router.post("/{order_id}/cancel", response_model=OrderOut, responses=ORDER_ERRORS)
async def cancel(order_id: uuid.UUID, work: Work) -> OrderOut:
    return OrderOut.model_validate(await work.write(orders.cancel, order_id))


@router.post("/{order_id}/claim", response_model=OrderOut, responses=ORDER_ERRORS)
async def claim(
    order_id: uuid.UUID, request: Request, work: Work, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Take a first-come order. Exactly one concurrent claimant wins; the others get 409."""
    if idempotency_key is None:
        # The hot path of a claim race: no ORM session; on PostgreSQL a single statement.
        row = await work.write_core(claims.claim, order_id, atomic_statements=True)
        return JSONResponse(OrderOut.model_validate(row).model_dump(mode="json"))
    return await _idempotent(
        work,
        request,
        idempotency_key,
        None,
        200,
        lambda s, a: OrderOut.model_validate(claims.claim(s.connection(), a, order_id)),
    )


@router.post("/{order_id}/release", response_model=OrderOut, responses=ORDER_ERRORS)
async def release(order_id: uuid.UUID, work: Work) -> OrderOut:
    """Hand a claimed or awarded order back to the marketplace."""
    return OrderOut.model_validate(await work.write(orders.release, order_id))


@router.post(
    "/{order_id}/submissions", status_code=201, response_model=SubmissionOut, responses=ORDER_ERRORS
)
async def submit(
    order_id: uuid.UUID,
    body: SubmissionDraft,
    request: Request,
    work: Work,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Hand in work as the next numbered submission; QA picks it up from `order.submitted`."""
    return await _idempotent(
        work,
        request,
        idempotency_key,
        body,
        201,
        lambda s, a: SubmissionOut.model_validate(orders.submit(s, a, order_id, body)),
    )


@router.get(
    "/{order_id}/submissions", response_model=list[SubmissionOut], responses=responses(401, 404)
)
async def list_submissions(order_id: uuid.UUID, work: Work) -> list[SubmissionOut]:
    return [
        SubmissionOut.model_validate(s) for s in await work.read(orders.list_submissions, order_id)
    ]


@router.post("/{order_id}/bids", status_code=201, response_model=BidOut, responses=ORDER_ERRORS)
async def place_bid(order_id: uuid.UUID, body: BidDraft, work: Work) -> BidOut:
    return BidOut.model_validate(await work.write(orders.place_bid, order_id, body))


@router.get("/{order_id}/bids", response_model=list[BidOut], responses=responses(401, 404))
async def list_bids(order_id: uuid.UUID, work: Work) -> list[BidOut]:
    """Staff see every bid; a specialist sees their own."""
    return [BidOut.model_validate(b) for b in await work.read(orders.list_bids, order_id)]


@router.post("/{order_id}/bids/{bid_id}/withdraw", response_model=BidOut, responses=ORDER_ERRORS)
async def withdraw_bid(order_id: uuid.UUID, bid_id: uuid.UUID, work: Work) -> BidOut:
    return BidOut.model_validate(await work.write(orders.withdraw_bid, order_id, bid_id))


@router.post("/{order_id}/bids/{bid_id}/award", response_model=OrderOut, responses=ORDER_ERRORS)
async def award_bid(order_id: uuid.UUID, bid_id: uuid.UUID, work: Work) -> OrderOut:
    """Give the order to this bid's specialist at the bid's price; other bids lose."""
    return OrderOut.model_validate(await work.write(orders.award_bid, order_id, bid_id))
