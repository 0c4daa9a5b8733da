"""Who may see and act on orders: the visibility rules every order query, refusal and live event
applies.

The ORM path (`service`, `queries`) and the Core claim path (`claims`) read the same clauses, and
the live stream asks `may_see_event`, so what a specialist can see, and what a refusal may tell
them, is decided here once.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, or_, true

from quire.orders.events import EVENT_TYPES, ORDER_CREATED
from quire.orders.models import Order
from quire.orders.state import Action, OrderStatus
from quire.people.actor import Actor
from quire.people.models import Role

STAFF = (Role.ADMIN, Role.MANAGER)
"""Who creates, publishes, cancels orders and awards bids."""


def visible_clause(staff: bool, user_id: uuid.UUID | ColumnElement[Any]) -> ColumnElement[bool]:
    """Staff see every order of their tenant; a specialist sees open orders and their own."""
    if staff:
        return true()
    return or_(Order.status == OrderStatus.OPEN, Order.specialist_id == user_id)


def known_clause(staff: bool, user_id: uuid.UUID | ColumnElement[Any]) -> ColumnElement[bool]:
    """What an actor may be told about when an action fails: a specialist who lost a claim race
    learns the order was taken (409), but drafts stay invisible (404)."""
    if staff:
        return true()
    return or_(Order.published_at.is_not(None), Order.specialist_id == user_id)


def visible_to(actor: Actor) -> ColumnElement[bool]:
    return visible_clause(actor.is_staff, actor.user_id)


def known_to(actor: Actor) -> ColumnElement[bool]:
    return known_clause(actor.is_staff, actor.user_id)


def may_see_event(actor: Actor, event_type: str, payload: dict[str, Any]) -> bool:
    """On the live stream (the tenant filter is applied before this): staff see everything in
    their tenant; specialists see the marketplace move (orders that were published), and bids
    and submissions only when they are their own."""
    if actor.is_staff:
        return True
    me = str(actor.user_id)
    if event_type.startswith("bid."):
        return payload.get("specialist_id") == me
    order = payload.get("order") or {}
    if order.get("specialist_id") == me:
        return True
    if event_type == EVENT_TYPES[Action.SUBMIT]:
        return False
    # Only orders that reached the marketplace; a draft stays unseen even once cancelled.
    return bool(order.get("published_at")) and event_type != ORDER_CREATED
