"""The ledger's operations for its callers, with who may read and move money: finance and
admins see the whole tenant's ledger; a specialist sees only their own accounts and invoices
(anything else looks missing)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import balances, invoices, posting
from ledger.models import Account, Invoice, Transfer
from ledger.schemas import InvoiceDraft, InvoiceLine, TransferIn
from quire.errors import Invalid, NotFound
from quire.people.actor import Actor
from quire.people.models import Role

FINANCE = (Role.FINANCE, Role.ADMIN)


def sees_everything(actor: Actor) -> bool:
    return actor.has(*FINANCE)


def list_accounts(
    session: Session, actor: Actor, currency: str | None = None, kind: str | None = None
) -> list[Account]:
    stmt = select(Account).order_by(Account.kind, Account.currency, Account.owner_key)
    if not sees_everything(actor):
        actor.require(Role.SPECIALIST, *FINANCE)
        stmt = stmt.where(Account.owner_id == actor.user_id)
    if currency:
        stmt = stmt.where(Account.currency == currency)
    if kind:
        stmt = stmt.where(Account.kind == kind)
    return list(session.scalars(stmt))


def read_account(session: Session, actor: Actor, account_id: uuid.UUID) -> Account:
    if not sees_everything(actor):
        actor.require(Role.SPECIALIST, *FINANCE)
    account = balances.get_account(session, account_id)
    if not sees_everything(actor) and account.owner_id != actor.user_id:
        raise NotFound(f"account {account_id} not found", code="account_not_found")
    return account


def read_statement(
    session: Session,
    actor: Actor,
    account_id: uuid.UUID,
    start: dt.datetime,
    end: dt.datetime,
    after_entry: int | None,
    limit: int,
) -> balances.Statement:
    read_account(session, actor, account_id)
    return balances.statement(
        session, account_id, start=start, end=end, after_entry=after_entry, limit=limit
    )


def post_transfer(session: Session, actor: Actor, body: TransferIn) -> Transfer:
    actor.require(*FINANCE)
    for leg in body.legs:
        if leg.currency is not None:
            account = balances.get_account(session, leg.account_id)
            if account.currency != leg.currency:
                raise Invalid(
                    f"account {account.id} holds {account.currency}, not {leg.currency}",
                    code="currency_mismatch",
                )
    return posting.post(
        session,
        posting.TransferSpec(
            kind=body.kind,
            idempotency_key=body.idempotency_key,
            reference=body.reference,
            effective_at=body.effective_at,
            legs=[posting.Leg(leg.account_id, leg.amount_minor) for leg in body.legs],
            metadata=body.metadata,
        ),
    )


def reverse_transfer(
    session: Session, actor: Actor, transfer_id: uuid.UUID, reason: str
) -> Transfer:
    actor.require(*FINANCE)
    return posting.reverse(session, transfer_id, reason=reason)


def list_invoices(session: Session, actor: Actor, period: str | None = None) -> list[Invoice]:
    stmt = select(Invoice).order_by(Invoice.period.desc(), Invoice.specialist_id, Invoice.version)
    if not sees_everything(actor):
        actor.require(Role.SPECIALIST, *FINANCE)
        stmt = stmt.where(Invoice.specialist_id == actor.user_id)
    if period:
        stmt = stmt.where(Invoice.period == period)
    return list(session.scalars(stmt))


def read_invoice(session: Session, actor: Actor, invoice_id: uuid.UUID) -> Invoice:
    if not sees_everything(actor):
        actor.require(Role.SPECIALIST, *FINANCE)
    invoice = invoices.get_invoice(session, invoice_id)
    if not sees_everything(actor) and invoice.specialist_id != actor.user_id:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return invoice


def create_invoice(session: Session, actor: Actor, draft: InvoiceDraft) -> Invoice:
    actor.require(*FINANCE)
    return invoices.create_draft(session, actor.tenant_id, draft)


def change_invoice(
    session: Session,
    actor: Actor,
    invoice_id: uuid.UUID,
    action: str,
    lock_version: int,
    lines: Sequence[InvoiceLine] = (),
) -> Invoice:
    actor.require(*FINANCE)
    if action == "edit":
        return invoices.update_draft(session, invoice_id, lock_version, list(lines))
    if action == "correct":
        return invoices.correct(session, invoice_id, lock_version, list(lines))
    step = {"issue": invoices.issue, "pay": invoices.mark_paid, "void": invoices.void}[action]
    return step(session, invoice_id, lock_version)
