"""Who may see an event on the live stream (the tenant filter is applied before this)."""

from __future__ import annotations

from typing import Any

from quire.people.actor import Actor


def may_see(actor: Actor, event_type: str, payload: dict[str, Any]) -> bool:
    """Staff see everything in their tenant. Specialists see the marketplace move (orders that
    were published), and bids and submissions only when they are their own."""
    if actor.is_staff:
        return True
    me = str(actor.user_id)
    if event_type.startswith("bid."):
        return payload.get("specialist_id") == me
    order = payload.get("order") or {}
    if order.get("specialist_id") == me:
        return True
    if event_type == "order.submitted":
        return False
    # Only orders that reached the marketplace; a draft stays unseen even once cancelled.
    return bool(order.get("published_at")) and event_type != "order.created"
