"""Tell finance: mail the tenant's finance users that a reconciliation needs them.

Run by the automation prefect.yaml declares on the event `quire.reconciliation.failed` (its
parameters come from the event: the tenant, the period, why, the reconciliation), or by hand.
"""

from __future__ import annotations

from prefect import flow

from tasks import reconciliation


@flow(name="notify-finance", log_prints=True)
def notify_finance(
    tenant: str, period: str = "", reason: str = "", reconciliation_id: str = ""
) -> list[str]:
    """Mail the tenant's active finance users; returns whom it mailed."""
    return reconciliation.mail_finance(tenant, period, reason, reconciliation_id)
