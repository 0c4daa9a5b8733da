"""Version-controlled invoices: draft -> issued -> paid | void.

Drafts are edited under optimistic locking (`lock_version`): an edit made against a stale version
loses with a Conflict and changes nothing. Issued versions are frozen (the database refuses edits
too); a correction voids the issued version, issues a new version that supersedes it, and posts an
adjusting transfer for the difference.

Self-billing *statements* (a payroll's payslips) are invoices too, with two differences: they are
issued at once, in bulk (`issue_statements`), and they move no money — the payroll's posting did.
So a statement is superseded by `supersede_statements` (void the old version, issue the new one,
`supersedes_id` set, no adjusting transfer), and `correct` refuses them. A statement's first line
is its header, `{"kind": STATEMENT_KIND, ...}`; lines carrying an `amount_minor` (not None) are
ordinary invoice lines in the invoice's currency and add up to its total, the others describe
what is behind them (amounts in other currencies named in their description).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ledger import chart
from ledger.models import AccountKind, Invoice, InvoiceStatus
from ledger.posting import Leg, TransferSpec, post
from ledger.schemas import InvoiceDraft, InvoiceLine
from quire.db import utcnow
from quire.errors import Conflict, Invalid, NotFound
from quire.people.models import Role, User
from quire.schemas import NUL


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
    if is_statement(old):
        raise Conflict(
            "a payroll statement is not corrected with an adjustment: the payroll's own "
            "corrections (a line's reversal) issue its next version",
            code="statement_not_correctable",
        )
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


# ---------------------------------------------------------------------------------------------
# Self-billing statements: issued in bulk, superseded without adjusting transfers.

# The `kind` of a statement's header line (its first): what tells a statement from an invoice.
STATEMENT_KIND = "payroll_statement"


def is_statement(invoice: Invoice) -> bool:
    lines = invoice.lines or []
    return bool(lines) and isinstance(lines[0], dict) and lines[0].get("kind") == STATEMENT_KIND


def statement_header(key: str = "kind") -> Any:
    """SQL for a key of a statement's header line (`lines[0][key]`, as text), on both
    databases: `statement_header() == STATEMENT_KIND` selects statements."""
    return Invoice.lines[(0, key)].as_string()


@dataclass(frozen=True)
class StatementDraft:
    """One statement version to issue: `lines` as stored (see the module's docstring)."""

    specialist_id: uuid.UUID
    period: str
    currency: str
    lines: list[dict[str, Any]]


def statement_total(lines: Sequence[Mapping[str, Any]]) -> int:
    """The total of a statement's lines, checking their shape: a header first, every line
    described as an invoice line must be, and every line with an amount a valid invoice line
    (positive, bounded). Only those are validated as `InvoiceLine`: a statement may describe a
    million orders, and a plain check of a description costs far less than a model."""
    if not lines or lines[0].get("kind") != STATEMENT_KIND:
        raise Invalid("a statement starts with its header line", code="invalid_statement")
    total = 0
    for line in lines:
        description = line.get("description")
        amount = line.get("amount_minor")
        if amount is None:
            if not (
                isinstance(description, str)
                and 0 < len(description) <= 500
                and NUL not in description
            ):
                raise Invalid(
                    f"statement line {str(description)[:80]!r} needs a description of 1 to 500 "
                    "characters",
                    code="invalid_statement",
                )
            continue
        try:
            checked = InvoiceLine(
                description=description, amount_minor=amount, order_id=line.get("order_id")
            )
        except ValidationError as error:
            raise Invalid(
                f"statement line {str(description)[:80]!r} is invalid: {error}",
                code="invalid_statement",
            ) from None
        total += checked.amount_minor
    return total


def issue_statements(
    session: Session,
    tenant_id: uuid.UUID,
    drafts: Sequence[StatementDraft],
    *,
    supersedes: Mapping[uuid.UUID, uuid.UUID] | None = None,
) -> list[uuid.UUID]:
    """Issue each draft as the next version of its (specialist, period), all at once: one query
    for the latest versions, one INSERT. No transfer is posted: a statement describes money that
    moved elsewhere. `supersedes` maps a specialist to the version the new one replaces (see
    `supersede_statements`). Returns the new invoices' ids, in the drafts' order."""
    if not drafts:
        return []
    keys = {(d.specialist_id, d.period) for d in drafts}
    if len(keys) != len(drafts):
        raise Invalid("one statement per specialist and period at a time", code="invalid_statement")
    # By period, not by specialist: a handful of parameters however many specialists there are.
    latest = {
        (specialist, period): version
        for specialist, period, version in session.execute(
            select(Invoice.specialist_id, Invoice.period, func.max(Invoice.version))
            .where(Invoice.period.in_({period for _, period in keys}))
            .group_by(Invoice.specialist_id, Invoice.period)
        )
    }
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "specialist_id": draft.specialist_id,
            "period": draft.period,
            "version": latest.get((draft.specialist_id, draft.period), 0) + 1,
            "status": InvoiceStatus.ISSUED,
            "currency": draft.currency,
            "lines": draft.lines,
            "total_minor": statement_total(draft.lines),
            "supersedes_id": (supersedes or {}).get(draft.specialist_id),
            "lock_version": 1,
            "created_at": now,
            "issued_at": now,
        }
        for draft in drafts
    ]
    session.execute(insert(Invoice), rows)
    return [row["id"] for row in rows]


def supersede_statements(
    session: Session, replacements: Sequence[tuple[Invoice, list[dict[str, Any]]]]
) -> list[uuid.UUID]:
    """Replace issued statements with new versions: each old one void, each new one issued with
    `supersedes_id` pointing at it — and, unlike `correct`, no adjusting transfer (the payroll's
    reversal transfers are the money's movement). Returns the new versions' ids."""
    if not replacements:
        return []
    for old, _ in replacements:
        if not is_statement(old):
            raise Conflict(f"invoice {old.id} is not a statement", code="invoice_not_statement")
        if old.status != InvoiceStatus.ISSUED:
            raise Conflict(
                f"statement {old.id} is {old.status}; only an issued one is superseded",
                code="invoice_not_issued",
            )
    now = utcnow()
    for old, _ in replacements:
        old.status = InvoiceStatus.VOID
        old.voided_at = now
    _flush(session)
    return issue_statements(
        session,
        replacements[0][0].tenant_id,
        [
            StatementDraft(old.specialist_id, old.period, old.currency, lines)
            for old, lines in replacements
        ],
        supersedes={old.specialist_id: old.id for old, _ in replacements},
    )


def supersede_statement(
    session: Session, invoice_id: uuid.UUID, lock_version: int, lines: list[dict[str, Any]]
) -> Invoice:
    """One statement's next version (optimistically locked, like every invoice change)."""
    old = get_invoice(session, invoice_id)
    _expect(old, lock_version)
    (new_id,) = supersede_statements(session, [(old, lines)])
    return get_invoice(session, new_id)
