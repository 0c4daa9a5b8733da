"""A specialist's payslips: the statement behind each payout, as JSON, HTML or PDF."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["payslips"])
