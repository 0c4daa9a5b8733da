"""Where specialists are paid: their own bank details, finance's holds, the payroll profile."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["payouts"])
