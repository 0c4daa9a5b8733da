"""Payslips: a statement per specialist per payroll run — the orders, fines and FX behind their
payout — kept as a self-billing invoice version (`ledger.invoices`), one version per change.

What a statement says, per source currency the specialist was paid from in the run:

    balance brought forward      (informational: what was owed before the window, or not paid then)
    Order <id>: USD 300.00       (informational: earnings credited in the window)
    Late fine, order <id>: ...   (informational: fines debited in the window)
    Adjustment (...): ...        (informational: anything else that moved the payable)
    USD 300.00 at 0.92... = ...  (informational: the conversion, when the currencies differ)
    Paid from the USD balance    amount_minor = the line's payout, in the payout currency
      — or, once the line is reversed, "reversed: <reason>" and no amount.

Only the "payout" lines carry an `amount_minor` (the invoice's currency, positive, as an
`InvoiceLine` requires); they add up to the invoice's total, which is therefore exactly the sum of
the specialist's paid `payout_minor`. Every other line is informational: its amount, in the
payable's own currency, is named in its description and kept in `source_amount_minor`. The first
line is the header (`kind` = `ledger.invoices.STATEMENT_KIND`, with the run's id): that is what
tells a payslip from an ordinary invoice, and what finds a run's payslips.

The window, per (specialist, source currency): entries of their payable that existed when the
line was computed (so, never the run's own payout), credits effective before the run's cutoff and
debits whenever (as `quire.payroll.lines` counts them), since the cutoff of the specialist's
previous run that paid that currency. Earlier payrolls' payouts (and their reversals) are not
listed: with whatever preceded the window they are the balance brought forward, computed as the
line's payable minus what is listed, so the statement always adds up.

Set-based: per chunk of CHUNK specialists, one query for their lines, one for all their windows'
entries, one INSERT of their invoices — never a query per specialist, and memory bounded by the
chunk however many orders a month holds. Issuing is idempotent per run (a specialist
with a statement for the run gets none again); a reversal gets a new version that supersedes the
old (void) one, without any ledger adjustment — the reversal transfers moved the money.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from ledger import invoices
from ledger.invoices import STATEMENT_KIND, StatementDraft, statement_header
from ledger.models import Account, AccountKind, Entry, Invoice, InvoiceStatus, Transfer
from quire.errors import Conflict, NotFound
from quire.money import exponent
from quire.payroll.models import LineStatus, PayrollLine, PayrollRun, RunStatus
from quire.payroll.runs import get_run
from quire.people.actor import Actor
from quire.people.models import Role, Tenant, User
from quire.schemas import Output
from quire.tenancy import tenant_of

# Lines a statement is about: money moved in the run (and maybe moved back since).
STATED = (LineStatus.POSTED, LineStatus.PAID, LineStatus.REVERSED)
PAID_OUT = (LineStatus.POSTED, LineStatus.PAID)
# Runs whose payslips may be issued (a reversed run's, only by reissuing).
ISSUABLE = (RunStatus.POSTED, RunStatus.PAID)
# Transfers of earlier payrolls' payouts: folded into the balance brought forward, not listed.
PAYROLL_KINDS = frozenset({"payroll_payout", "fx_out"})
FINANCE = (Role.FINANCE, Role.ADMIN)
DESCRIPTION_MAX = 500
# Specialists whose payslips are built and inserted together (see `_chunks`).
CHUNK = 1000

# Line kinds (the header's is ledger.invoices.STATEMENT_KIND).
BROUGHT_FORWARD = "brought_forward"
ORDER = "order"
FINE = "fine"
ADJUSTMENT = "adjustment"
FX = "fx"
PAYOUT = "payout"
REVERSED = "reversed"
WITHHELD = "withheld"


# ---------------------------------------------------------------------------------------------
# What a reader gets


class PayslipLine(BaseModel):
    """One line of a payslip. `amount_minor` (the payslip's currency) only on `payout` lines,
    which add up to the total; the others are informational, in `source_currency`."""

    kind: str
    description: str
    amount_minor: int | None = None
    order_id: uuid.UUID | None = None
    source_currency: str | None = None
    source_amount_minor: int | None = None
    fx_rate: str | None = None
    fx_source: str | None = None
    payroll_line_id: int | None = None
    reason: str | None = None
    effective_at: dt.datetime | None = None


class PayslipSummary(Output):
    id: uuid.UUID
    period: str
    version: int
    status: str
    currency: str
    total_minor: int
    run_id: uuid.UUID
    attempt: int
    issued_at: dt.datetime | None
    voided_at: dt.datetime | None
    supersedes_id: uuid.UUID | None
    superseded_by_id: uuid.UUID | None = None


class Payslip(PayslipSummary):
    """A payslip as the specialist reads it (JSON, or rendered by `payslip_render`)."""

    tenant_id: uuid.UUID
    tenant_name: str
    specialist_id: uuid.UUID
    specialist_name: str
    specialist_email: str
    cutoff_at: dt.datetime
    payout_date: dt.date
    superseded_by_version: int | None = None
    lines: list[PayslipLine]


# ---------------------------------------------------------------------------------------------
# Issuing


def issue_for_run(session: Session, run: PayrollRun) -> int:
    """Issue one payslip per specialist the posted `run` paid (none for withheld-only ones);
    returns how many were issued now. Again for the same run: 0, nothing new."""
    run = get_run(session, run.id, for_update=True)  # one issuer per run at a time
    if run.dry_run or run.status not in (*ISSUABLE, RunStatus.REVERSED):
        raise Conflict(
            f"payroll run {run.id} is {run.status}: payslips are issued for posted runs",
            code="payroll_not_posted",
        )
    if run.status == RunStatus.REVERSED:
        return 0  # nothing was paid; statements issued before are reissued by the reversal
    issued = 0
    for chunk in _chunks(_stated_specialists(session, run, unissued=True)):
        built = _build(session, run, only=chunk)
        drafts = [
            StatementDraft(specialist, run.period, currency, lines)
            for specialist, (currency, lines) in built.items()
        ]
        issued += len(invoices.issue_statements(session, run.tenant_id, drafts))
    return issued


def reissue_for_line(session: Session, run: PayrollRun, line: PayrollLine) -> Invoice:
    """After `line` was reversed: the specialist's payslip for `run` as a new version (the old
    one void, `supersedes_id` set) in which that line is no longer paid. Idempotent: when the
    current version already says so, it is returned as it is."""
    run = get_run(session, run.id, for_update=True)
    _reissue(session, run, {line.specialist_id})
    current = _current(session, run, {line.specialist_id})
    if line.specialist_id not in current:
        raise NotFound(
            f"specialist {line.specialist_id} has no payslip for run {run.id}",
            code="payslip_not_found",
        )
    return current[line.specialist_id]


def reissue_for_run(session: Session, run: PayrollRun) -> int:
    """After lines of `run` were reversed (all of them, for a run's reversal): every payslip
    that no longer tells the truth gets a new version, set-based. Returns how many."""
    run = get_run(session, run.id, for_update=True)
    return sum(
        _reissue(session, run, chunk) for chunk in _chunks(_stated_specialists(session, run))
    )


def _stated_specialists(
    session: Session, run: PayrollRun, *, unissued: bool = False
) -> list[uuid.UUID]:
    """Everyone the run paid (or paid and reversed), in order; with `unissued`, only those
    without a payslip for it yet. One query."""
    return list(
        session.scalars(
            select(PayrollLine.specialist_id)
            .where(
                PayrollLine.run_id == run.id,
                PayrollLine.status.in_(STATED),
                *_whose(run, None, unissued),
            )
            .distinct()
            .order_by(PayrollLine.specialist_id)
        )
    )


def _chunks(specialists: list[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    """CHUNK specialists at a time: the queries stay few (one set per chunk, not per person)
    and memory stays bounded however many orders a month has (each payslip lists them all)."""
    for at in range(0, len(specialists), CHUNK):
        yield specialists[at : at + CHUNK]


def _reissue(session: Session, run: PayrollRun, specialists: Collection[uuid.UUID] | None) -> int:
    current = _current(session, run, specialists)
    built = _build(session, run, only=specialists)
    replacements: list[tuple[Invoice, list[dict[str, Any]]]] = []
    fresh: list[StatementDraft] = []
    ever = _issued_to(session, run, specialists)
    for specialist, (currency, lines) in built.items():
        old = current.get(specialist)
        if old is None:
            if specialist not in ever:  # never issued (issue_for_run not called yet)
                fresh.append(StatementDraft(specialist, run.period, currency, lines))
            continue
        if old.lines != lines:
            replacements.append((old, lines))
    invoices.supersede_statements(session, replacements)
    invoices.issue_statements(session, run.tenant_id, fresh)
    return len(replacements) + len(fresh)


def _of_run(run: PayrollRun, specialists: Collection[uuid.UUID] | None, *columns: Any) -> Any:
    statement = select(*columns).where(
        Invoice.period == run.period,
        statement_header() == STATEMENT_KIND,
        statement_header("payroll_run_id") == str(run.id),
    )
    if specialists is not None:
        statement = statement.where(Invoice.specialist_id.in_(list(specialists)))
    return statement


def _issued_to(
    session: Session, run: PayrollRun, specialists: Collection[uuid.UUID] | None = None
) -> set[uuid.UUID]:
    """Who ever had a payslip for the run, whatever its versions' states (ids only: cheap)."""
    return set(session.scalars(_of_run(run, specialists, Invoice.specialist_id).distinct()))


def _current(
    session: Session, run: PayrollRun, specialists: Collection[uuid.UUID] | None
) -> dict[uuid.UUID, Invoice]:
    """The current (latest, not void) version of each specialist's payslip for the run."""
    found: dict[uuid.UUID, Invoice] = {}
    for invoice in session.scalars(
        _of_run(run, specialists, Invoice)
        .where(Invoice.status != InvoiceStatus.VOID)
        .order_by(Invoice.specialist_id, Invoice.version)
    ):
        found[invoice.specialist_id] = invoice  # ordered by version: the latest stays
    return found


# ---------------------------------------------------------------------------------------------
# What a statement says (set-based)


LINE_COLUMNS = (
    PayrollLine.id,
    PayrollLine.specialist_id,
    PayrollLine.source_currency,
    PayrollLine.payable_minor,
    PayrollLine.payout_currency,
    PayrollLine.payout_minor,
    PayrollLine.fx_rate,
    PayrollLine.fx_source,
    PayrollLine.status,
    PayrollLine.hold_reason,
    PayrollLine.reversal_ids,
)


def _build(
    session: Session,
    run: PayrollRun,
    *,
    only: Collection[uuid.UUID] | None = None,
) -> dict[uuid.UUID, tuple[str, list[dict[str, Any]]]]:
    """(currency, lines) of the statement of each specialist `run` paid, in a fixed number of
    queries: the run's lines, their windows' entries, and the reasons of reversed lines."""
    lines_query = (
        select(*LINE_COLUMNS)
        .where(PayrollLine.run_id == run.id, *_whose(run, only, False))
        .order_by(PayrollLine.specialist_id, PayrollLine.source_currency)
    )
    # Rows, not ORM objects: tens of thousands of lines are read, none is changed.
    by_specialist: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for line in session.execute(lines_query):
        by_specialist[line.specialist_id].append(line)
    stated = {
        specialist: lines
        for specialist, lines in by_specialist.items()
        if any(line.status in STATED for line in lines)
    }
    if not stated:
        return {}
    currency_of = {ln.id: ln.source_currency for lines in stated.values() for ln in lines}
    windows = _windows(session, run, only, currency_of)
    reasons = _reversal_reasons(
        session,
        run,
        [ln for lines in stated.values() for ln in lines if ln.status == LineStatus.REVERSED],
    )
    header = {
        "kind": STATEMENT_KIND,
        "description": f"Payroll statement {run.period}, run attempt {run.attempt}",
        "amount_minor": None,
        "order_id": None,
        "payroll_run_id": str(run.id),
        "attempt": run.attempt,
        "cutoff_at": _iso(run.cutoff_at),
        "payout_date": run.payout_date.isoformat(),
    }
    built: dict[uuid.UUID, tuple[str, list[dict[str, Any]]]] = {}
    for specialist, lines in stated.items():
        paid = [line for line in lines if line.status in STATED]
        currencies = {line.payout_currency for line in paid}
        if len(currencies) != 1:
            raise Conflict(
                f"specialist {specialist} was paid in {sorted(currencies)} in one run",
                code="payslip_mixed_currencies",
            )
        out: list[dict[str, Any]] = [dict(header)]
        for line in lines:
            out.extend(_describe(line, windows.get(line.id, []), reasons.get(line.id)))
        built[specialist] = (currencies.pop(), out)
    return built


def _whose(run: PayrollRun, only: Collection[uuid.UUID] | None, unissued: bool) -> list[Any]:
    """Which specialists' lines to state: `only` these, and with `unissued` only those who
    never had a payslip for the run (a subquery: no parameter per specialist)."""
    clauses: list[Any] = []
    if only is not None:
        clauses.append(PayrollLine.specialist_id.in_(list(only)))
    if unissued:
        issued = _of_run(run, None, Invoice.specialist_id)
        clauses.append(PayrollLine.specialist_id.not_in(issued.scalar_subquery()))
    return clauses


def _windows(
    session: Session,
    run: PayrollRun,
    only: Collection[uuid.UUID] | None,
    currency_of: dict[int, str],
) -> dict[int, list[dict[str, Any]]]:
    """Every stated line's window, as its finished statement lines, from one query (see the
    module docstring). The hot loop of a large run — one pass per entry, a million in a busy
    month — so it builds the dicts directly."""
    windows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line_id, amount, at, kind, reference, order_id, reverses in session.execute(
        window_query(run, only)
    ):
        if kind in PAYROLL_KINDS or (kind == "reversal" and reverses in PAYROLL_KINDS):
            continue  # an earlier payroll's payout (or its return): in the balance brought forward
        currency = currency_of[line_id]
        owed = -int(amount)  # credit-normal: a credit is money owed to the specialist
        if kind == "earnings" and order_id:
            item, label = ORDER, f"Order {order_id}"
        elif kind == "late_fine" and order_id:
            item, label = FINE, f"Late fine, order {order_id}"
        else:
            what = (
                f"reversal of {reverses.replace('_', ' ')}" if reverses else kind.replace("_", " ")
            )
            item, label = ADJUSTMENT, f"Adjustment ({what}{', ' + reference if reference else ''})"
            order_id = None
        description = f"{label}: {money(owed, currency)}"
        if len(description) > DESCRIPTION_MAX:
            description = description[: DESCRIPTION_MAX - 1] + "…"
        windows[line_id].append(
            {
                "kind": item,
                "description": description,
                "amount_minor": None,
                "order_id": order_id,
                "source_currency": currency,
                "payroll_line_id": line_id,
                "source_amount_minor": owed,
                "effective_at": at.isoformat(),  # UTCDateTime: always aware, in UTC
            }
        )
    return windows


def money(amount_minor: int, currency: str) -> str:
    """`quire.money.format_minor`, in integer arithmetic (the same text, a tenth of the cost:
    it runs once per order of the month)."""
    places = exponent(currency)
    whole, part = divmod(-amount_minor if amount_minor < 0 else amount_minor, 10**places)
    sign = "-" if amount_minor < 0 else ""
    return (
        f"{currency} {sign}{whole:,}.{part:0{places}d}" if places else f"{currency} {sign}{whole:,}"
    )


def window_query(run: PayrollRun, only: Collection[uuid.UUID] | None = None) -> Any:
    """The one SELECT of every stated line's window entries (apart, so it can be EXPLAINed)."""
    stated = select(
        PayrollLine.id,
        PayrollLine.specialist_id,
        PayrollLine.source_currency,
        PayrollLine.created_at,
    ).where(PayrollLine.run_id == run.id, PayrollLine.status.in_(STATED))
    stated = stated.where(*_whose(run, only, False))
    stated_lines = stated.subquery("stated")
    earlier = aliased(PayrollLine)
    previous = (
        select(
            earlier.specialist_id,
            earlier.source_currency,
            func.max(PayrollRun.cutoff_at).label("since"),
        )
        .join(PayrollRun, PayrollRun.id == earlier.run_id)
        .where(
            earlier.status.in_(PAID_OUT),
            PayrollRun.id != run.id,
            PayrollRun.cutoff_at < run.cutoff_at,
        )
        .group_by(earlier.specialist_id, earlier.source_currency)
        .subquery("previous")
    )
    reversed_transfer = aliased(Transfer)
    return (
        select(
            stated_lines.c.id,
            Entry.amount,
            Entry.effective_at,
            Transfer.kind,
            Transfer.reference,
            Transfer.meta["order_id"].as_string(),
            reversed_transfer.kind,
        )
        .select_from(Account)
        .join(Entry, Entry.account_id == Account.id)
        .join(Transfer, Transfer.id == Entry.transfer_id)
        .outerjoin(reversed_transfer, reversed_transfer.id == Transfer.reverses_id)
        .join(
            stated_lines,
            and_(
                stated_lines.c.specialist_id == Account.owner_id,
                stated_lines.c.source_currency == Account.currency,
            ),
        )
        .outerjoin(
            previous,
            and_(
                previous.c.specialist_id == Account.owner_id,
                previous.c.source_currency == Account.currency,
            ),
        )
        .where(
            Account.kind == AccountKind.SPECIALIST_PAYABLE,
            Entry.created_at <= stated_lines.c.created_at,
            or_(Entry.amount > 0, Entry.effective_at < run.cutoff_at),
            or_(previous.c.since.is_(None), Entry.effective_at >= previous.c.since),
        )
        .order_by(stated_lines.c.id, Entry.effective_at, Entry.id)
    )


def _reversal_reasons(session: Session, run: PayrollRun, lines: Iterable[Any]) -> dict[int, str]:
    """Why each reversed line was reversed: the reason its reversal transfers carry."""
    first = {line.reversal_ids[0]: line.id for line in lines if line.reversal_ids}
    reasons: dict[int, str] = {}
    ids = list(first)
    prefix = f"payroll {run.period}: "
    for at in range(0, len(ids), 1000):
        chunk = [uuid.UUID(i) for i in ids[at : at + 1000]]
        for transfer_id, reason in session.execute(
            select(Transfer.id, Transfer.meta["reason"].as_string()).where(Transfer.id.in_(chunk))
        ):
            text = reason or ""
            reasons[first[str(transfer_id)]] = text.removeprefix(prefix) or "no reason given"
    return reasons


def _describe(line: Any, window: list[dict[str, Any]], reason: str | None) -> list[dict[str, Any]]:
    """The lines one payroll line (a row of LINE_COLUMNS) contributes to its statement."""
    source, target = line.source_currency, line.payout_currency
    if line.status == LineStatus.WITHHELD:
        return [
            _info(
                WITHHELD,
                f"{source} balance withheld: {line.hold_reason or 'no reason given'} "
                f"({money(line.payable_minor, source)} stays payable)",
                line,
                source_amount_minor=line.payable_minor,
                reason=line.hold_reason,
            )
        ]
    out: list[dict[str, Any]] = []
    listed = sum(item["source_amount_minor"] for item in window)
    brought_forward = line.payable_minor - listed
    if brought_forward:
        out.append(
            _info(
                BROUGHT_FORWARD,
                f"Balance brought forward: {money(brought_forward, source)}",
                line,
                source_amount_minor=brought_forward,
            )
        )
    out.extend(window)
    payout = int(line.payout_minor or 0)
    if source != target:
        rate = Decimal(line.fx_rate or "1")
        out.append(
            _info(
                FX,
                f"{money(line.payable_minor, source)} at {rate} {target} per {source} "
                f"({line.fx_source or 'rate source unknown'}) = {money(payout, target)}",
                line,
                source_amount_minor=line.payable_minor,
                fx_rate=str(rate),
                fx_source=line.fx_source,
            )
        )
    if line.status == LineStatus.REVERSED:
        why = reason or "no reason given"
        out.append(
            _info(
                REVERSED,
                f"Payout from the {source} balance reversed: {why} "
                f"({money(payout, target)} not paid; payable again next period)",
                line,
                source_amount_minor=line.payable_minor,
                reason=why,
            )
        )
    else:
        out.append(
            {
                **_info(
                    PAYOUT,
                    f"Paid from the {source} balance ({money(line.payable_minor, source)})",
                    line,
                    source_amount_minor=line.payable_minor,
                ),
                "amount_minor": payout,
            }
        )
    return out


def _info(kind: str, description: str, line: Any, **extra: Any) -> dict[str, Any]:
    """A statement line without an amount of the invoice's currency."""
    if len(description) > DESCRIPTION_MAX:
        description = description[: DESCRIPTION_MAX - 1] + "…"
    return {
        "kind": kind,
        "description": description,
        "amount_minor": None,
        "order_id": extra.pop("order_id", None),
        "source_currency": line.source_currency,
        "payroll_line_id": line.id,
        **{key: value for key, value in extra.items() if value is not None},
    }


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:  # SQLite without the UTC type's help (never in our columns)
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


# ---------------------------------------------------------------------------------------------
# Reading


def list_for(session: Session, actor: Actor) -> list[PayslipSummary]:
    """A specialist's own payslips, newest first (every version, void ones included)."""
    actor.require(Role.SPECIALIST)
    successor = aliased(Invoice)
    rows = session.execute(
        _summary_columns(successor)
        .where(Invoice.specialist_id == actor.user_id, statement_header() == STATEMENT_KIND)
        .order_by(Invoice.created_at.desc(), Invoice.period.desc(), Invoice.version.desc())
    ).all()
    return [_summary(row) for row in rows]


def read_for(
    session: Session, actor: Actor, invoice_id: uuid.UUID, *, mine: bool = False
) -> Payslip:
    """One payslip: a specialist reads their own; finance and admins any of the tenant's
    (unless `mine`, the /me view). Anyone else is refused (403); another specialist's payslip,
    or an invoice that is no payslip, is not found (404), so ids cannot be probed."""
    sees_all = not mine and actor.has(*FINANCE)
    if not sees_all:
        actor.require(Role.SPECIALIST)
    successor = aliased(Invoice)
    statement = _summary_columns(successor).where(
        Invoice.id == invoice_id, statement_header() == STATEMENT_KIND
    )
    if not sees_all:
        statement = statement.where(Invoice.specialist_id == actor.user_id)
    row = session.execute(statement.add_columns(successor.version)).first()
    invoice = session.scalar(select(Invoice).where(Invoice.id == invoice_id)) if row else None
    if row is None or invoice is None:
        raise NotFound(f"payslip {invoice_id} not found", code="payslip_not_found")
    person = session.execute(
        select(User.display_name, User.email).where(User.id == invoice.specialist_id)
    ).one()
    tenant = session.get(Tenant, tenant_of(session))
    header = invoice.lines[0]
    return Payslip(
        **_summary(row).model_dump(),
        tenant_id=invoice.tenant_id,
        tenant_name=tenant.name if tenant else "",
        specialist_id=invoice.specialist_id,
        specialist_name=person.display_name,
        specialist_email=person.email,
        cutoff_at=dt.datetime.fromisoformat(header["cutoff_at"]),
        payout_date=dt.date.fromisoformat(header["payout_date"]),
        superseded_by_version=row[-1],
        lines=[PayslipLine.model_validate(line) for line in invoice.lines[1:]],
    )


def read_mine(session: Session, actor: Actor, invoice_id: uuid.UUID) -> Payslip:
    """`GET /me/payslips/{id}`: the specialist's own, whatever other roles they hold."""
    return read_for(session, actor, invoice_id, mine=True)


def read_any(session: Session, actor: Actor, invoice_id: uuid.UUID) -> Payslip:
    """`GET /payslips/{id}`: any of the tenant's, for finance and admins only."""
    actor.require(*FINANCE)
    return read_for(session, actor, invoice_id)


def _summary_columns(successor: Any) -> Any:
    return select(
        Invoice.id,
        Invoice.period,
        Invoice.version,
        Invoice.status,
        Invoice.currency,
        Invoice.total_minor,
        statement_header("payroll_run_id"),
        Invoice.lines[(0, "attempt")].as_integer(),
        Invoice.issued_at,
        Invoice.voided_at,
        Invoice.supersedes_id,
        successor.id,
    ).outerjoin(successor, successor.supersedes_id == Invoice.id)


def _summary(row: Any) -> PayslipSummary:
    (
        invoice_id,
        period,
        version,
        status,
        currency,
        total,
        run_id,
        attempt,
        issued_at,
        voided_at,
        supersedes_id,
        successor_id,
    ) = row[:12]
    return PayslipSummary(
        id=invoice_id,
        period=period,
        version=version,
        status=status,
        currency=currency,
        total_minor=total,
        run_id=uuid.UUID(run_id),
        attempt=int(attempt),
        issued_at=issued_at,
        voided_at=voided_at,
        supersedes_id=supersedes_id,
        superseded_by_id=successor_id,
    )
