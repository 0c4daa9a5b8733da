"""The demo's HR system: it tells Quire that a new specialist joins, as a signed webhook.

A real HR system (Personio, BambooHR, Workday...) is given the tenant's signing secret once and
then POSTs each change to `/webhooks/hr/{tenant}`, signed per Standard Webhooks: the
`webhook-id`, `webhook-timestamp` and `webhook-signature` headers over the exact bytes sent.
This one does the same with `standardwebhooks` itself, so the demo exercises the very check
HR's deliveries pass in production.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
from standardwebhooks import Webhook

NEW_SPECIALIST: dict[str, Any] = {
    "id": "hr-demo-0001",
    "email": "nia.okafor@demo.quire",
    "given_name": "Nia",
    "family_name": "Okafor",
    "title": "Senior copy editor",
    "manager_email": "manager@demo.quire",
    "skills": ["editing", "copywriting"],
    "groups": ["specialists", "editors"],
}
# The HR system's own id of the delivery: the same id delivered again is acknowledged, not run
# again (which is why a second `./dev demo` on the same data shows the first onboarding).
WEBHOOK_ID = "msg_demo_onboard_nia_okafor"


def onboarding(person: dict[str, Any], *, start_date: dt.date) -> dict[str, Any]:
    """The `person.onboard` event HR sends the day it signs a new specialist up."""
    return {
        "type": "person.onboard",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": {"person": {**person, "start_date": start_date.isoformat()}},
    }


def signed_headers(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks' headers for `body`, signed now with the tenant's `whsec_` secret."""
    at = dt.datetime.now(dt.UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body.decode()),
        "content-type": "application/json",
    }


def deliver(
    http: httpx.Client, tenant: str, secret: str, event: dict[str, Any], webhook_id: str
) -> httpx.Response:
    """POST one event to the tenant's HR webhook, as HR's sender does: 202 accepted (or
    quarantined), 200 for a delivery Quire has seen before, 401 for a bad signature."""
    body = json.dumps(event).encode()
    return http.post(
        f"/webhooks/hr/{tenant}", content=body, headers=signed_headers(secret, webhook_id, body)
    )
