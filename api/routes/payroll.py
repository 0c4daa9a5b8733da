"""Payroll runs over HTTP: start, follow, approve, correct, download the bank's files."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["payroll"])
