"""Version-controlled invoices: draft -> issued -> paid | void.

Drafts are edited under optimistic locking (`lock_version`): an edit made against a stale version
loses with a Conflict and changes nothing. Issued versions are frozen (the database refuses edits
too); a correction voids the issued version, issues a new version that supersedes it, and posts an
adjusting transfer for the difference.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ledger import chart
from ledger.models import AccountKind, Invoice, InvoiceStatus
from ledger.posting import Leg, TransferSpec, post
from ledger.schemas import InvoiceDraft, InvoiceLine
from quire.db import utcnow
from quire.errors import Conflict, Invalid, NotFound
from quire.people.models import Role, User


def _total(lines: list[InvoiceLine]) -> tuple[list[dict[str, Any]], int]:
    return [line.model_dump(mode="json") for line in lines], sum(
        line.amount_minor for line in lines
    )


def get_invoice(session: Session, invoice_id: uuid.UUID) -> Invoice:
    invoice = session.scalar(select(Invoice).where(Invoice.id == invoice_id))
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    return invoice


def create_draft(session: Session, tenant_id: uuid.UUID, draft: InvoiceDraft) -> Invoice:
    specialist = session.scalar(select(User).where(User.id == draft.specialist_id))
    if specialist is None or Role.SPECIALIST not in specialist.roles:
        raise NotFound(f"specialist {draft.specialist_id} not found", code="specialist_not_found")
    latest = session.scalar(
        select(func.max(Invoice.version)).where(
            Invoice.specialist_id == draft.specialist_id, Invoice.period == draft.period
        )
    )
    lines, total = _total(draft.lines)
    invoice = Invoice(
        tenant_id=tenant_id,
        specialist_id=draft.specialist_id,
        period=draft.period,
        version=(latest or 0) + 1,
        status=InvoiceStatus.DRAFT,
        currency=draft.currency,
        lines=lines,
        total_minor=total,
        created_at=utcnow(),
    )
    session.add(invoice)
    _flush(session)
    return invoice


def _expect(invoice: Invoice, lock_version: int) -> None:
    if invoice.lock_version != lock_version:
        raise Conflict(
            f"invoice {invoice.id} changed meanwhile (version {invoice.lock_version}, "
            f"you had {lock_version}); reload and retry",
            code="stale_invoice",
            current_lock_version=invoice.lock_version,
        )


def _flush(session: Session) -> None:
    try:
        session.flush()
    except StaleDataError:
        raise Conflict(
            "the invoice changed meanwhile; reload and retry", code="stale_invoice"
        ) from None


def update_draft(
    session: Session, invoice_id: uuid.UUID, lock_version: int, lines: list[InvoiceLine]
) -> Invoice:
    invoice = get_invoice(session, invoice_id)
    _expect(invoice, lock_version)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict(
            f"invoice is {invoice.status}; only drafts can be edited", code="invoice_not_draft"
        )
    if not lines:
        raise Invalid("an invoice needs at least one line", code="invalid_lines")
    invoice.lines, invoice.total_minor = _total(lines)
    _flush(session)
    return invoice


def _move(
    session: Session,
    invoice_id: uuid.UUID,
    lock_version: int,
    allowed: set[InvoiceStatus],
    to: InvoiceStatus,
) -> Invoice:
    invoice = get_invoice(session, invoice_id)
    _expect(invoice, lock_version)
    if invoice.status not in allowed:
        raise Conflict(
            f"cannot mark a {invoice.status} invoice {to}",
            code="illegal_transition",
            status=invoice.status,
        )
    invoice.status = to
    now = utcnow()
    if to is InvoiceStatus.ISSUED:
        invoice.issued_at = now
    elif to is InvoiceStatus.PAID:
        invoice.paid_at = now
    elif to is InvoiceStatus.VOID:
        invoice.voided_at = now
    _flush(session)
    return invoice


def issue(session: Session, invoice_id: uuid.UUID, lock_version: int) -> Invoice:
    return _move(session, invoice_id, lock_version, {InvoiceStatus.DRAFT}, InvoiceStatus.ISSUED)


def mark_paid(session: Session, invoice_id: uuid.UUID, lock_version: int) -> Invoice:
    return _move(session, invoice_id, lock_version, {InvoiceStatus.ISSUED}, InvoiceStatus.PAID)


def void(session: Session, invoice_id: uuid.UUID, lock_version: int) -> Invoice:
    return _move(
        session,
        invoice_id,
        lock_version,
        {InvoiceStatus.DRAFT, InvoiceStatus.ISSUED},
        InvoiceStatus.VOID,
    )


def correct(
    session: Session, invoice_id: uuid.UUID, lock_version: int, lines: list[InvoiceLine]
) -> Invoice:
    """Supersede an issued invoice: void it, issue the corrected version, post the difference."""
    old = get_invoice(session, invoice_id)
    _expect(old, lock_version)
    if old.status != InvoiceStatus.ISSUED:
        raise Conflict("only an issued invoice can be corrected", code="invoice_not_issued")
    void(session, old.id, lock_version)
    new = create_draft(
        session,
        old.tenant_id,
        InvoiceDraft(
            specialist_id=old.specialist_id, period=old.period, currency=old.currency, lines=lines
        ),
    )
    new.supersedes_id = old.id
    new.status = InvoiceStatus.ISSUED
    new.issued_at = utcnow()
    _flush(session)
    difference = new.total_minor - old.total_minor
    if difference:
        receivable = chart.account(session, AccountKind.CLIENT_RECEIVABLE, old.currency)
        payable = chart.account(
            session, AccountKind.SPECIALIST_PAYABLE, old.currency, old.specialist_id
        )
        legs = (
            [Leg.debit(receivable, difference), Leg.credit(payable, difference)]
            if difference > 0
            else [Leg.debit(payable, -difference), Leg.credit(receivable, -difference)]
        )
        post(
            session,
            TransferSpec(
                kind="invoice_adjustment",
                idempotency_key=f"invoice-adjustment:{new.id}",
                reference=f"invoice:{old.id}->{new.id}",
                legs=legs,
                metadata={"supersedes": str(old.id), "invoice": str(new.id)},
            ),
        )
    return new
