"""Hourly maintenance of the marketplace.

release claims whose deadline passed without a submission (the order reopens)
-> expire open orders past their deadline -> hand back work whose review timed out
-> release payroll runs whose flow run ended (cancelled, failed, timed out while suspended)
-> lifecycle: release exits that came due; compensate runs whose flow run was cancelled or
   crashed (from the saga log)
-> prune relayed events past retention -> log and publish statistics
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from tasks import maintenance


class MaintenanceReport(BaseModel):
    released: int
    expired: int
    handed_back: int
    payroll_released: int = 0
    lifecycle_released: int = 0
    lifecycle_closed: int = 0
    pruned: int
    statistics: str


@flow(name="maintenance")
def marketplace_maintenance() -> MaintenanceReport:
    logger = get_run_logger()
    released = maintenance.release_overdue_claims()
    expired = maintenance.expire_stale_orders()
    handed_back = maintenance.hand_back_unanswered_reviews()
    payroll_released = maintenance.release_abandoned_payroll_runs()
    lifecycle_released = maintenance.release_due_lifecycle_events()
    lifecycle_closed = maintenance.compensate_abandoned_lifecycle_runs()
    pruned = maintenance.prune_events()
    line = maintenance.publish_statistics(maintenance.gather_statistics())
    logger.info(
        "released %d overdue claim(s), expired %d order(s), handed back %d unreviewed "
        "submission(s), released %d abandoned payroll run(s), released %d due lifecycle "
        "event(s), compensated %d abandoned lifecycle run(s), pruned %d event(s); %s",
        released,
        expired,
        handed_back,
        payroll_released,
        lifecycle_released,
        lifecycle_closed,
        pruned,
        line,
    )
    return MaintenanceReport(
        released=released,
        expired=expired,
        handed_back=handed_back,
        payroll_released=payroll_released,
        lifecycle_released=lifecycle_released,
        lifecycle_closed=lifecycle_closed,
        pruned=pruned,
        statistics=line,
    )
