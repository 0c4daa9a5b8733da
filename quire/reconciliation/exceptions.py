"""Finance's exception queue: what the rules could not match, resolved by a person, audited.

- **Match by hand**: a bank debit nothing explained is matched with the posted payout it pays,
  with a reason. The payout is settled as a rule's match would be; if the bank moved a little
  more or less (within the write-off limit) the difference goes to bank fees in the same batch.
- **Write off**: a small bank line nothing explains (a fee, a rounding) goes to bank fees, with
  a reason, if it is within the limit (`QUIRE_RECONCILIATION_WRITE_OFF_LIMIT`, major units of
  its currency).

Each resolution is one transaction: the ledger batch, the match, the exception's new state and
the audit entry commit together. Every transfer it posts names the bank line
(`bank_line_reference`), as reconciliation's own do: the statement invariant
(`expectations.py`) finds the line's bank movements by it, so the bank account's entries of a
resolved line add up to what the bank moved (the payout plus the fee, or the line written off).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger import chart
from ledger.models import AccountKind
from ledger.posting import Leg, TransferSpec, post_batch
from quire.audit.service import record
from quire.db import utcnow
from quire.errors import Conflict, Invalid, NotFound
from quire.money import exponent
from quire.payroll.models import LineStatus, PayrollLine
from quire.people.actor import Actor
from quire.reconciliation.models import (
    BankLine,
    BankMatch,
    ExceptionSide,
    ExceptionStatus,
    MatchRule,
    ReconciliationException,
    bank_line_reference,
)
from quire.reconciliation.runs import mark_runs_paid

REASON_MAX = 500
K = AccountKind


def open_exception(session: Session, exception_id: int) -> ReconciliationException:
    found = session.get(ReconciliationException, exception_id, with_for_update=True)
    if found is None:
        raise NotFound(f"no exception {exception_id}", code="exception_not_found")
    if found.status != ExceptionStatus.OPEN:
        raise Conflict(
            f"exception {exception_id} is {found.status} already", code="exception_not_open"
        )
    return found


def limit_minor(limit: Decimal, currency: str) -> int:
    """The write-off limit in minor units of `currency`."""
    return int(limit * (10 ** exponent(currency)))


def match_by_hand(
    session: Session,
    actor: Actor,
    exception_id: int,
    payroll_line_id: int,
    reason: str,
    limit: Decimal,
) -> BankMatch:
    """Settle the payout `payroll_line_id` with the bank debit of this exception."""
    reason = _reason(reason)
    exception, bank_line = _bank_side(
        session, exception_id, "only a bank line is matched by hand: match the payout from it"
    )
    line = session.get(PayrollLine, payroll_line_id, with_for_update=True)
    if line is None:
        raise NotFound(f"no payroll line {payroll_line_id}", code="payroll_line_not_found")
    if line.status != LineStatus.POSTED:
        raise Conflict(
            f"payroll line {payroll_line_id} is {line.status}: only a posted payout waits for "
            "the bank",
            code="payroll_line_not_waiting",
        )
    if bank_line.amount_minor >= 0 or bank_line.currency != line.payout_currency:
        raise Invalid(
            f"bank line {bank_line.id} ({bank_line.amount_minor} {bank_line.currency}) is not a "
            f"debit in the payout's currency ({line.payout_currency})",
            code="match_currency_or_sign",
        )
    payout = int(line.payout_minor or 0)
    difference = -bank_line.amount_minor - payout  # > 0: the bank took more than the payout
    if abs(difference) > limit_minor(limit, line.payout_currency):
        raise Invalid(
            f"the bank moved {-bank_line.amount_minor} and the payout is {payout} "
            f"{line.payout_currency}: the difference {difference} is over the write-off limit",
            code="match_difference_too_large",
        )
    clearing = chart.account(session, K.PAYOUT_CLEARING, line.payout_currency).id
    bank = chart.account(session, K.BANK, line.payout_currency).id
    legs = [Leg.debit(clearing, payout), Leg.credit(bank, payout)]
    specs = [
        TransferSpec(
            kind="payout_settlement",
            idempotency_key=f"payroll-settle:{line.id}",
            reference=bank_line_reference(bank_line.id),
            legs=legs,
            metadata={
                "payroll_run": str(line.run_id),
                "end_to_end_id": line.end_to_end_id or "",
                "matched": "by hand",
                "reason": reason,
            },
        )
    ]
    if difference:
        specs.append(_fee_spec(session, bank_line, difference, reason))
    transfers = post_batch(session, specs)
    match = BankMatch(
        tenant_id=exception.tenant_id,
        reconciliation_id=exception.reconciliation_id,
        bank_line_id=bank_line.id,
        rule=MatchRule.MANUAL,
        payroll_line_id=line.id,
        amount_minor=bank_line.amount_minor,
        transfer_ids=[str(t.id) for t in transfers],
        reason=reason,
        matched_by=actor.user_id,
        created_at=utcnow(),
    )
    session.add(match)
    line.status = LineStatus.PAID
    line.updated_at = utcnow()
    session.flush()
    mark_runs_paid(session, {line.run_id}, utcnow())
    _close(exception, ExceptionStatus.MATCHED, actor, reason)
    # The payout's own exception (no bank line confirmed it) is answered by this match too.
    session.execute(
        update(ReconciliationException)
        .where(
            ReconciliationException.payroll_line_id == line.id,
            ReconciliationException.status == ExceptionStatus.OPEN,
        )
        .values(
            status=ExceptionStatus.MATCHED,
            resolution=reason,
            resolved_by=actor.user_id,
            resolved_at=utcnow(),
        )
    )
    session.flush()
    record(
        session,
        actor,
        "reconciliation.exception_matched",
        "reconciliation_exception",
        str(exception.id),
        before={"status": ExceptionStatus.OPEN},
        after={
            "status": ExceptionStatus.MATCHED,
            "payroll_line": line.id,
            "bank_line": bank_line.id,
            "difference_minor": difference,
            "reason": reason,
        },
    )
    return match


def write_off(
    session: Session, actor: Actor, exception_id: int, reason: str, limit: Decimal
) -> BankMatch:
    """Book a small bank line nothing explains to bank fees."""
    reason = _reason(reason)
    exception, bank_line = _bank_side(
        session, exception_id, "only a bank line is written off; an unpaid payout is reversed"
    )
    if abs(bank_line.amount_minor) > limit_minor(limit, bank_line.currency):
        raise Invalid(
            f"{abs(bank_line.amount_minor)} {bank_line.currency} (minor units) is over the "
            f"write-off limit of {limit} {bank_line.currency}",
            code="write_off_too_large",
        )
    fee = _fee_spec(session, bank_line, -bank_line.amount_minor, reason)
    [transfer] = post_batch(session, [fee])
    match = BankMatch(
        tenant_id=exception.tenant_id,
        reconciliation_id=exception.reconciliation_id,
        bank_line_id=bank_line.id,
        rule=MatchRule.WRITE_OFF,
        amount_minor=bank_line.amount_minor,
        transfer_ids=[str(transfer.id)],
        reason=reason,
        matched_by=actor.user_id,
        created_at=utcnow(),
    )
    session.add(match)
    _close(exception, ExceptionStatus.WRITTEN_OFF, actor, reason)
    session.flush()
    record(
        session,
        actor,
        "reconciliation.exception_written_off",
        "reconciliation_exception",
        str(exception.id),
        before={"status": ExceptionStatus.OPEN},
        after={
            "status": ExceptionStatus.WRITTEN_OFF,
            "amount_minor": bank_line.amount_minor,
            "currency": bank_line.currency,
            "reason": reason,
        },
    )
    return match


def _bank_side(
    session: Session, exception_id: int, refusal: str
) -> tuple[ReconciliationException, BankLine]:
    """The open exception of a bank line, and that line."""
    exception = open_exception(session, exception_id)
    bank_line = (
        session.get(BankLine, exception.bank_line_id)
        if exception.side == ExceptionSide.BANK and exception.bank_line_id is not None
        else None
    )
    if bank_line is None:
        raise Invalid(refusal, code="exception_not_bank_side")
    return exception, bank_line


def list_exceptions(
    session: Session, reconciliation_id: object | None = None, *, status: str | None = None
) -> list[ReconciliationException]:
    query = select(ReconciliationException).order_by(ReconciliationException.id)
    if reconciliation_id is not None:
        query = query.where(ReconciliationException.reconciliation_id == reconciliation_id)
    if status is not None:
        query = query.where(ReconciliationException.status == status)
    return list(session.scalars(query))


def _fee_spec(session: Session, bank_line: BankLine, fee_minor: int, reason: str) -> TransferSpec:
    """`fee_minor` > 0: the bank kept it (fees debited, bank credited); < 0: it gave it."""
    fees = chart.account(session, K.BANK_FEES, bank_line.currency).id
    bank = chart.account(session, K.BANK, bank_line.currency).id
    legs = (
        [Leg.debit(fees, fee_minor), Leg.credit(bank, fee_minor)]
        if fee_minor > 0
        else [Leg.debit(bank, -fee_minor), Leg.credit(fees, -fee_minor)]
    )
    return TransferSpec(
        kind="bank_fee",
        idempotency_key=f"bank-fee:{bank_line.id}",
        reference=bank_line_reference(bank_line.id),
        legs=legs,
        metadata={"reason": reason},
    )


def _close(
    exception: ReconciliationException, status: ExceptionStatus, actor: Actor, reason: str
) -> None:
    exception.status = status
    exception.resolution = reason
    exception.resolved_by = actor.user_id
    exception.resolved_at = utcnow()


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why (a reason is required and audited)", code="reason_required")
    if len(reason) > REASON_MAX:
        raise Invalid(f"the reason is longer than {REASON_MAX} characters", code="too_long")
    return reason
