"""Where specialists are paid: their own bank details, finance's holds, the payroll profile.

A specialist sees their own details in full; finance (and admins, read-only) see them masked.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.deps import Work
from api.errors import responses
from api.schemas import Page
from quire.payroll import service
from quire.payroll.schemas import (
    HoldIn,
    OwnPayoutDetailsOut,
    PayoutDetailsIn,
    PayoutDetailsView,
    PayrollProfileIn,
    PayrollProfileOut,
)
from quire.settings import Settings

router = APIRouter(tags=["payouts"])
READ_ERRORS = responses(401, 403, 404, 422)
WRITE_ERRORS = responses(401, 403, 404, 409, 422)


def cooling_days(request: Request) -> int:
    settings: Settings = request.app.state.settings
    return settings.payout_details_cooling_days


CoolingDays = Annotated[int, Depends(cooling_days)]


@router.get("/me/payout-details", response_model=OwnPayoutDetailsOut, responses=READ_ERRORS)
async def get_my_payout_details(work: Work, days: CoolingDays) -> OwnPayoutDetailsOut:
    """Your own bank details, in full (specialists; 404 until you have given some)."""
    return await work.read(service.my_payout_details, days)


@router.put("/me/payout-details", response_model=OwnPayoutDetailsOut, responses=WRITE_ERRORS)
async def put_my_payout_details(
    body: PayoutDetailsIn, work: Work, days: CoolingDays
) -> OwnPayoutDetailsOut:
    """Set or replace your bank details. A new account is held for review in payroll runs for
    the cooling period (`cooling_until`); fixing the holder's name or the BIC is not."""
    return await work.write(service.change_my_payout_details, body, days)


@router.get("/payout-details", response_model=Page[PayoutDetailsView], responses=READ_ERRORS)
async def list_payout_details(
    work: Work,
    days: CoolingDays,
    on_hold: bool | None = None,
    cursor: Annotated[
        uuid.UUID | None, Query(description="The previous page's next_cursor.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.PAGE_MAX)] = 50,
) -> Page[PayoutDetailsView]:
    """The tenant's bank details, masked (finance, admins), by specialist id."""
    items, next_cursor = await work.read(service.list_payout_details, days, on_hold, cursor, limit)
    return Page[PayoutDetailsView](items=items, next_cursor=next_cursor)


@router.get(
    "/specialists/{user_id}/payout-details",
    response_model=PayoutDetailsView,
    responses=READ_ERRORS,
)
async def get_specialist_payout_details(
    user_id: uuid.UUID, work: Work, days: CoolingDays
) -> PayoutDetailsView:
    """A specialist's bank details, masked, with the hold and the cooling period (finance,
    admins)."""
    return await work.read(service.specialist_payout_details, user_id, days)


@router.put(
    "/specialists/{user_id}/payout-hold", response_model=PayoutDetailsView, responses=WRITE_ERRORS
)
async def put_payout_hold(
    user_id: uuid.UUID, body: HoldIn, work: Work, days: CoolingDays
) -> PayoutDetailsView:
    """Hold a specialist's payouts, with the reason (finance; never your own)."""
    return await work.write(service.set_hold, user_id, body.reason, days)


@router.delete(
    "/specialists/{user_id}/payout-hold", response_model=PayoutDetailsView, responses=WRITE_ERRORS
)
async def delete_payout_hold(
    user_id: uuid.UUID,
    work: Work,
    days: CoolingDays,
    reason: Annotated[
        str | None,
        Query(min_length=1, max_length=500, description="Why, for the audit log."),
    ] = None,
) -> PayoutDetailsView:
    """Lift a hold (finance; never your own). Lifting one that is not there changes nothing."""
    return await work.write(service.lift_hold, user_id, reason, days)


@router.get("/payroll/profile", response_model=PayrollProfileOut, responses=READ_ERRORS)
async def get_payroll_profile(work: Work) -> PayrollProfileOut:
    """The account payouts leave from, the cutoff's time zone, the minimum payouts (finance,
    admins)."""
    return await work.read(service.read_profile)


@router.put("/payroll/profile", response_model=PayrollProfileOut, responses=WRITE_ERRORS)
async def put_payroll_profile(body: PayrollProfileIn, work: Work) -> PayrollProfileOut:
    """Create or replace the tenant's payroll profile (finance)."""
    return await work.write(service.change_profile, body)
