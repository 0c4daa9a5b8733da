"""Fixed-window rate limits counted in the database, so all API processes share one budget.

One upsert per hit (`INSERT .. ON CONFLICT DO UPDATE .. RETURNING hits`) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import delete
from sqlalchemy.orm import Session

from quire.auth.models import RateLimitCounter
from quire.db import upsert
from quire.errors import RateLimited


def hit(session: Session, key: str, *, limit: int, window_seconds: int, now: dt.datetime) -> None:
    """Count one attempt against `key`; raise RateLimited once the window's budget is spent."""
    epoch = int(now.timestamp())
    window = epoch - epoch % window_seconds
    insert = upsert(session)
    stmt = insert(RateLimitCounter).values(key=key, window_start=window, hits=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RateLimitCounter.key, RateLimitCounter.window_start],
        set_={"hits": RateLimitCounter.hits + 1},
    ).returning(RateLimitCounter.hits)
    hits = session.execute(stmt).scalar_one()
    if random.random() < 0.01:  # keep the table small without a separate job
        session.execute(
            delete(RateLimitCounter).where(RateLimitCounter.window_start < window - 3600)
        )
    if hits > limit:
        raise RateLimited(
            f"too many attempts; try again in {window + window_seconds - epoch} s",
            retry_after=max(1, window + window_seconds - epoch),
        )
