"""Who may see and act on orders: the visibility rules every order query and refusal applies.

The ORM path (`service`, `queries`) and the Core claim path (`claims`) read the same clauses, so
what a specialist can see, and what a refusal may tell them, is decided here once.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, or_, true

from quire.orders.models import Order
from quire.orders.state import OrderStatus
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
