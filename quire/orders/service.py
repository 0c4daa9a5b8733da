"""Marketplace operations. Each is one unit of work on a tenant-scoped Session.

Every state change is a single conditional UPDATE whose WHERE clause carries the state machine's
allowed source states (and any ownership rule), so the database, not a read-then-write in Python,
decides races: of 32 simultaneous claims exactly one UPDATE matches a row. When nothing matches we
look again only to say precisely why (missing, wrong state, not yours).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from quire.db import utcnow
from quire.errors import Conflict, DomainError, Forbidden, NotFound
from quire.orders import events
from quire.orders.models import Bid, BidStatus, Order, OrderMode, Submission
from quire.orders.policy import STAFF, known_to, visible_to
from quire.orders.schemas import BidDraft, OrderDraft, SubmissionDraft
from quire.orders.state import TRANSITIONS, Action, IllegalTransition, OrderStatus
from quire.people.actor import Actor
from quire.people.models import Role


def get_order(
    session: Session, actor: Actor, order_id: uuid.UUID, *, why_failed: bool = False
) -> Order:
    scope = known_to(actor) if why_failed else visible_to(actor)
    order = session.scalar(select(Order).where(Order.id == order_id, scope))
    if order is None:
        raise NotFound(f"order {order_id} not found", code="order_not_found")
    return order


def _transition(
    session: Session,
    actor: Actor,
    order_id: uuid.UUID,
    action: Action,
    *,
    where: Sequence[ColumnElement[bool]] = (),
    values: dict[str, Any] | None = None,
    otherwise: DomainError | None = None,
    emit: bool = True,
    event: dict[str, Any] | None = None,
) -> Order:
    """Apply `action` with one conditional UPDATE, or raise why it could not apply."""
    allowed_from, to = TRANSITIONS[action]
    now = utcnow()
    stmt = (
        update(Order)
        .where(Order.id == order_id, Order.status.in_(allowed_from), visible_to(actor), *where)
        .values(status=to, version=Order.version + 1, updated_at=now, **(values or {}))
        .returning(Order)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    order = session.execute(stmt).scalar_one_or_none()
    if order is not None:
        if emit:
            events.record(session, events.EVENT_TYPES[action], order, actor, **(event or {}))
        return order
    current = get_order(session, actor, order_id, why_failed=True)
    if current.status not in allowed_from:
        raise IllegalTransition(action, current.status)
    raise otherwise or Conflict(f"cannot {action} this order now", code="conflict")


def create_order(session: Session, actor: Actor, draft: OrderDraft) -> Order:
    actor.require(*STAFF)
    now = utcnow()
    order = Order(
        tenant_id=actor.tenant_id,
        title=draft.title,
        brief=draft.brief,
        skill=draft.skill,
        fee_minor=draft.fee_minor,
        currency=draft.currency,
        deadline=draft.deadline,
        mode=draft.mode,
        qa_config=draft.qa.model_dump(mode="json"),
        status=OrderStatus.DRAFT,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    events.record(session, events.ORDER_CREATED, order, actor)
    if draft.publish:
        return publish(session, actor, order.id)
    return order


def publish(session: Session, actor: Actor, order_id: uuid.UUID) -> Order:
    actor.require(*STAFF)
    return _transition(session, actor, order_id, Action.PUBLISH, values={"published_at": utcnow()})


def cancel(session: Session, actor: Actor, order_id: uuid.UUID) -> Order:
    actor.require(*STAFF)
    order = _transition(session, actor, order_id, Action.CANCEL)
    _close_open_bids(session, order_id, except_bid=None)
    return order


def release(session: Session, actor: Actor, order_id: uuid.UUID) -> Order:
    """Give a claimed or awarded order back to the marketplace (its holder, or staff)."""
    where: list[ColumnElement[bool]] = []
    if not actor.has(*STAFF):
        actor.require(Role.SPECIALIST)
        where.append(Order.specialist_id == actor.user_id)
    order = _transition(
        session,
        actor,
        order_id,
        Action.RELEASE,
        where=where,
        values={"specialist_id": None, "claimed_at": None},
        otherwise=Forbidden(
            "only the specialist holding the order can release it", code="not_holder"
        ),
    )
    return order


def submit(
    session: Session, actor: Actor, order_id: uuid.UUID, draft: SubmissionDraft
) -> Submission:
    """Hand in work: a new numbered submission, and `order.submitted` for the QA pipeline."""
    actor.require(Role.SPECIALIST)
    now = utcnow()
    order = _transition(
        session,
        actor,
        order_id,
        Action.SUBMIT,
        where=[Order.specialist_id == actor.user_id],
        values={"submitted_at": now},
        otherwise=Forbidden("only the specialist holding the order can submit", code="not_holder"),
        emit=False,
    )
    number = 1 + session.scalar(
        select(func.coalesce(func.max(Submission.number), 0)).where(Submission.order_id == order_id)
    )
    submission = Submission(
        tenant_id=actor.tenant_id,
        order_id=order_id,
        specialist_id=actor.user_id,
        number=number,
        content=draft.content,
        content_hash=content_hash(draft.content),
        created_at=now,
    )
    session.add(submission)
    session.flush()
    events.record(
        session,
        events.EVENT_TYPES[Action.SUBMIT],
        order,
        actor,
        submission={"id": submission.id, "number": number, "content_hash": submission.content_hash},
    )
    return submission


def start_review(session: Session, actor: Actor, order_id: uuid.UUID) -> Order:
    """QA has picked the submission up: the order is in review until accepted or sent back."""
    actor.require(*STAFF)
    return _transition(session, actor, order_id, Action.START_REVIEW)


def accept(session: Session, actor: Actor, order_id: uuid.UUID, **details: Any) -> Order:
    """The work passed QA and every review stage."""
    actor.require(*STAFF)
    return _transition(session, actor, order_id, Action.ACCEPT, event=details)


def request_rework(session: Session, actor: Actor, order_id: uuid.UUID, **details: Any) -> Order:
    """Send the work back to its specialist, who submits a new version."""
    actor.require(*STAFF)
    return _transition(session, actor, order_id, Action.REQUEST_REWORK, event=details)


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def list_submissions(session: Session, actor: Actor, order_id: uuid.UUID) -> list[Submission]:
    get_order(session, actor, order_id)
    return list(
        session.scalars(
            select(Submission).where(Submission.order_id == order_id).order_by(Submission.number)
        )
    )


# --- bidding -------------------------------------------------------------------------------


def place_bid(session: Session, actor: Actor, order_id: uuid.UUID, draft: BidDraft) -> Bid:
    actor.require(Role.SPECIALIST)
    # Lock the order so an award cannot slip in between our check and our insert.
    order = session.scalar(
        select(Order).where(Order.id == order_id, visible_to(actor)).with_for_update()
    )
    if order is None:
        raise NotFound(f"order {order_id} not found", code="order_not_found")
    if order.mode != OrderMode.BIDDING:
        raise Conflict("this order is first-come: claim it instead", code="order_not_bidding")
    if order.status != OrderStatus.OPEN:
        raise Conflict(f"the order is {order.status}, not open for bids", code="not_open")
    existing = session.scalar(
        select(Bid.id).where(
            Bid.order_id == order_id,
            Bid.specialist_id == actor.user_id,
            Bid.status == BidStatus.ACTIVE,
        )
    )
    if existing is not None:
        raise Conflict(
            "you already have an active bid on this order", code="bid_exists", bid_id=str(existing)
        )
    bid = Bid(
        tenant_id=actor.tenant_id,
        order_id=order_id,
        specialist_id=actor.user_id,
        amount_minor=draft.amount_minor,
        note=draft.note,
        status=BidStatus.ACTIVE,
        created_at=utcnow(),
    )
    session.add(bid)
    session.flush()
    events.record_bid(
        session,
        events.BID_PLACED,
        order_id,
        bid_id=bid.id,
        specialist_id=actor.user_id,
        amount_minor=bid.amount_minor,
        currency=order.currency,
    )
    return bid


def _visible_bids(actor: Actor) -> ColumnElement[bool]:
    if actor.is_staff:
        return Bid.id.is_not(None)
    return Bid.specialist_id == actor.user_id


def list_bids(session: Session, actor: Actor, order_id: uuid.UUID) -> list[Bid]:
    get_order(session, actor, order_id)
    return list(
        session.scalars(
            select(Bid)
            .where(Bid.order_id == order_id, _visible_bids(actor))
            .order_by(Bid.created_at, Bid.id)
        )
    )


def _get_bid(session: Session, actor: Actor, order_id: uuid.UUID, bid_id: uuid.UUID) -> Bid:
    bid = session.scalar(
        select(Bid).where(Bid.id == bid_id, Bid.order_id == order_id, _visible_bids(actor))
    )
    if bid is None:
        raise NotFound(f"bid {bid_id} not found on order {order_id}", code="bid_not_found")
    return bid


def withdraw_bid(session: Session, actor: Actor, order_id: uuid.UUID, bid_id: uuid.UUID) -> Bid:
    actor.require(Role.SPECIALIST)
    changed = session.execute(
        update(Bid)
        .where(
            Bid.id == bid_id,
            Bid.order_id == order_id,
            Bid.specialist_id == actor.user_id,
            Bid.status == BidStatus.ACTIVE,
        )
        .values(status=BidStatus.WITHDRAWN)
        .returning(Bid)
        .execution_options(populate_existing=True, synchronize_session=False)
    ).scalar_one_or_none()
    if changed is None:
        bid = _get_bid(session, actor, order_id, bid_id)
        raise Conflict(
            f"the bid is {bid.status}, only active bids can be withdrawn", code="bid_not_active"
        )
    events.record_bid(
        session, events.BID_WITHDRAWN, order_id, bid_id=bid_id, specialist_id=actor.user_id
    )
    return changed


def award_bid(session: Session, actor: Actor, order_id: uuid.UUID, bid_id: uuid.UUID) -> Order:
    """Give a bidding order to one bid: the order goes to its specialist at the bid's price."""
    actor.require(*STAFF)
    bid = _get_bid(session, actor, order_id, bid_id)
    if bid.status != BidStatus.ACTIVE:
        raise Conflict(
            f"the bid is {bid.status}; only an active bid can be awarded", code="bid_not_active"
        )
    order = _transition(
        session,
        actor,
        order_id,
        Action.AWARD,
        where=[Order.mode == OrderMode.BIDDING],
        values={
            "specialist_id": bid.specialist_id,
            "fee_minor": bid.amount_minor,
            "claimed_at": utcnow(),
        },
        otherwise=Conflict(
            "this order is first-come: it has no bids to award", code="order_not_bidding"
        ),
    )
    won = session.execute(
        update(Bid)
        .where(Bid.id == bid_id, Bid.status == BidStatus.ACTIVE)
        .values(status=BidStatus.AWARDED)
    )
    if won.rowcount != 1:
        # Withdrawn between our read and now: the whole unit of work rolls back.
        raise Conflict("the bid was withdrawn meanwhile", code="bid_not_active")
    _close_open_bids(session, order_id, except_bid=bid_id)
    return order


def _close_open_bids(session: Session, order_id: uuid.UUID, except_bid: uuid.UUID | None) -> None:
    stmt = update(Bid).where(Bid.order_id == order_id, Bid.status == BidStatus.ACTIVE)
    if except_bid is not None:
        stmt = stmt.where(Bid.id != except_bid)
    session.execute(stmt.values(status=BidStatus.LOST))
