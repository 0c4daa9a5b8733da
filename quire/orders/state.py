"""The order state machine: the one table that says which action may move an order where.

Both the ORM path (load, check, change) and the race-deciding conditional UPDATEs read it, so a
transition is legal in exactly one place.
"""

from __future__ import annotations

import enum

from quire.errors import Conflict


class OrderStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLAIMED = "claimed"
    AWARDED = "awarded"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    REWORK = "rework"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Action(enum.StrEnum):
    PUBLISH = "publish"
    CLAIM = "claim"
    AWARD = "award"
    RELEASE = "release"
    SUBMIT = "submit"
    START_REVIEW = "start_review"
    ACCEPT = "accept"
    REQUEST_REWORK = "request_rework"
    CANCEL = "cancel"
    EXPIRE = "expire"


S = OrderStatus

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[OrderStatus], OrderStatus]] = {
    Action.PUBLISH: (frozenset({S.DRAFT}), S.OPEN),
    Action.CLAIM: (frozenset({S.OPEN}), S.CLAIMED),
    Action.AWARD: (frozenset({S.OPEN}), S.AWARDED),
    Action.RELEASE: (frozenset({S.CLAIMED, S.AWARDED}), S.OPEN),
    Action.SUBMIT: (frozenset({S.CLAIMED, S.AWARDED, S.REWORK}), S.SUBMITTED),
    Action.START_REVIEW: (frozenset({S.SUBMITTED}), S.IN_REVIEW),
    Action.ACCEPT: (frozenset({S.SUBMITTED, S.IN_REVIEW}), S.ACCEPTED),
    Action.REQUEST_REWORK: (frozenset({S.SUBMITTED, S.IN_REVIEW}), S.REWORK),
    Action.CANCEL: (frozenset({S.DRAFT, S.OPEN, S.CLAIMED, S.AWARDED, S.REWORK}), S.CANCELLED),
    Action.EXPIRE: (frozenset({S.OPEN}), S.EXPIRED),
}

TERMINAL: frozenset[OrderStatus] = frozenset({S.ACCEPTED, S.CANCELLED, S.EXPIRED})


class IllegalTransition(Conflict):
    """The order is not in a state that allows the action; nothing was changed."""

    code = "illegal_transition"

    def __init__(self, action: Action, status: OrderStatus | str) -> None:
        allowed = sorted(TRANSITIONS[action][0])
        super().__init__(
            f"cannot {action} an order that is {status} (allowed from: {', '.join(allowed)})",
            action=str(action),
            status=str(status),
            allowed_from=allowed,
        )
        self.action = action
        self.status = OrderStatus(status)
