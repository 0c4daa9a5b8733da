"""Outbox relay: domain events become flow runs.

    read the oldest unrelayed events -> start each one's flow run (idempotently) -> mark them

Scheduled every minute; a pass drains the backlog in batches, so events written while Prefect
was unreachable go out on the first pass after it returns.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from quire.settings import get_settings
from tasks import relay


class RelayReport(BaseModel):
    events: int
    runs_started: int


@flow(name="outbox-relay")
def outbox_relay(batch_size: int | None = None, max_batches: int = 50) -> RelayReport:
    logger = get_run_logger()
    size = batch_size or get_settings().relay_batch_size
    events = runs = 0
    for _ in range(max_batches):
        batch = relay.read_pending(size)
        if not batch:
            break
        started = relay.deliver(batch)
        events += len(batch)
        runs += len(started)
        if len(batch) < size:
            break
    logger.info("relayed %d event(s), started %d flow run(s)", events, runs)
    return RelayReport(events=events, runs_started=runs)
