"""The audit log over HTTP: who did what to which object, filtered, paged and exported."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["audit"])
