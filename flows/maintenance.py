"""Hourly maintenance of the marketplace.

release claims whose deadline passed without a submission (the order reopens)
-> expire open orders past their deadline -> prune relayed events past retention
-> log and publish statistics
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from tasks import maintenance


class MaintenanceReport(BaseModel):
    released: int
    expired: int
    handed_back: int
    pruned: int
    statistics: str


@flow(name="maintenance")
def marketplace_maintenance() -> MaintenanceReport:
    logger = get_run_logger()
    released = maintenance.release_overdue_claims()
    expired = maintenance.expire_stale_orders()
    handed_back = maintenance.hand_back_unanswered_reviews()
    pruned = maintenance.prune_events()
    line = maintenance.publish_statistics(maintenance.gather_statistics())
    logger.info(
        "released %d overdue claim(s), expired %d order(s), handed back %d unreviewed "
        "submission(s), pruned %d event(s); %s",
        released,
        expired,
        handed_back,
        pruned,
        line,
    )
    return MaintenanceReport(
        released=released,
        expired=expired,
        handed_back=handed_back,
        pruned=pruned,
        statistics=line,
    )
