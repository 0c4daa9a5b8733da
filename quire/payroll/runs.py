"""A payroll run's life, each step one transaction:

    open (draft) -> rates fixed -> lines computed and stored -> gate passed or failed
      -> preview published -> awaiting_approval -> approved | rejected
      -> posted (one ledger batch, all or nothing) -> files written -> paid (reconciliation)

Every step is idempotent, so a flow run that resumes after a suspension, is retried, or is
re-run after a worker died finds what was already done and goes on from there: rates and lines
are stored once and re-used (never fresh rates for a run that has some), and posting a posted
run posts nothing.

At most one live run per (tenant, period) is the database's rule (a partial unique index): two
people starting the same month at once get one run and one 409.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger import business
from quire.audit.service import record
from quire.db import Database, utcnow
from quire.errors import Conflict, Invalid, NotFound
from quire.payroll import lines as payroll_lines
from quire.payroll import periods
from quire.payroll.lines import COLUMNS
from quire.payroll.models import (
    RELEASED,
    LineStatus,
    PayrollLine,
    PayrollProfile,
    PayrollRun,
    RunStatus,
)
from quire.payroll.payout_details import SEPA_COUNTRIES
from quire.people.actor import Actor
from quire.people.models import Tenant
from quire.tenancy import ALL_TENANTS, tenant_of

# Statuses of a run that has moved money out of the payables.
MONEY_MOVED = (RunStatus.POSTED, RunStatus.PAID)
# Statuses in which a run can still fail (nothing posted yet).
NOT_POSTED = (RunStatus.DRAFT, RunStatus.AWAITING_APPROVAL, RunStatus.APPROVED)


def get_run(session: Session, run_id: uuid.UUID, *, for_update: bool = False) -> PayrollRun:
    statement = select(PayrollRun).where(PayrollRun.id == run_id)
    if for_update:
        statement = statement.with_for_update()
    run = session.scalar(statement)
    if run is None:
        raise NotFound(f"payroll run {run_id} not found", code="payroll_run_not_found")
    return run


def find_by_flow_run(session: Session, flow_run_id: uuid.UUID) -> PayrollRun | None:
    return session.scalar(select(PayrollRun).where(PayrollRun.flow_run_id == flow_run_id))


def profile(session: Session) -> PayrollProfile:
    found = session.scalar(select(PayrollProfile))
    if found is None:
        raise Conflict(
            "the tenant has no payroll profile yet (the account payouts leave from): "
            "finance sets it with PUT /payroll/profile",
            code="payroll_profile_missing",
        )
    return found


def open_run(
    session: Session,
    actor: Actor | None,
    *,
    period: str,
    payout_date: dt.date | None = None,
    dry_run: bool = False,
    flow_run_id: uuid.UUID | None = None,
) -> PayrollRun:
    """A new attempt for `period`, unless the period is paid or another run holds it."""
    periods.parse(period)
    settings_of_tenant = profile(session)
    runs = session.scalars(
        select(PayrollRun).where(PayrollRun.period == period).order_by(PayrollRun.attempt)
    ).all()
    paid = [r for r in runs if r.status in MONEY_MOVED and not r.dry_run]
    if paid:
        raise Conflict(
            f"payroll for {period} is already {paid[-1].status} (run {paid[-1].id})",
            code="period_already_paid",
            run_id=str(paid[-1].id),
        )
    live = [r for r in runs if r.status not in RELEASED and not r.dry_run]
    if live and not dry_run:
        raise Conflict(
            f"payroll for {period} is in progress (run {live[-1].id}, {live[-1].status})",
            code="payroll_in_progress",
            run_id=str(live[-1].id),
        )
    in_flight = session.scalar(
        select(PayrollRun).where(PayrollRun.status.in_(NOT_POSTED), PayrollRun.dry_run.is_(False))
    )
    if in_flight is not None and not dry_run:
        raise Conflict(
            f"the payroll for {in_flight.period} (run {in_flight.id}) is not posted yet: "
            "finish or reject it first (two unposted runs would pay the same payables)",
            code="payroll_in_progress",
            run_id=str(in_flight.id),
        )
    cutoff = periods.cutoff(period, settings_of_tenant.time_zone)
    payout_date = payout_date or periods.default_payout_date(period, settings_of_tenant.time_zone)
    if payout_date < cutoff.date() - dt.timedelta(days=1):
        raise Invalid(
            f"the payout date {payout_date} is before the period ends", code="invalid_payout_date"
        )
    now = utcnow()
    run = PayrollRun(
        id=uuid.uuid4(),
        tenant_id=tenant_of(session),
        period=period,
        attempt=max((r.attempt for r in runs), default=0) + 1,
        cutoff_at=cutoff,
        payout_date=payout_date,
        dry_run=dry_run,
        status=RunStatus.DRAFT,
        started_by=_person(actor),
        flow_run_id=flow_run_id,
        totals={},
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        # Another start for this period won the race (the live-run index, or the attempt).
        raise Conflict(
            f"payroll for {period} was started by someone else just now",
            code="payroll_in_progress",
        ) from None
    record(
        session,
        actor,
        "payroll_run.started",
        "payroll_run",
        run.id,
        after={"period": period, "attempt": run.attempt, "dry_run": dry_run},
    )
    return run


def next_attempt(session: Session, period: str) -> int | None:
    """The attempt a new run for `period` would be, or None if the period is paid or held."""
    runs = session.scalars(select(PayrollRun).where(PayrollRun.period == period)).all()
    real = [r for r in runs if not r.dry_run]
    if any(r.status not in RELEASED for r in real):
        return None
    return max((r.attempt for r in runs), default=0) + 1


def tenants_with_profiles(database: Database) -> list[tuple[uuid.UUID, str, str]]:
    """(tenant id, slug, time zone) of every tenant set up for payroll (across tenants)."""
    with database.session() as session:
        return [
            (tenant_id, slug, time_zone)
            for tenant_id, slug, time_zone in session.execute(
                select(PayrollProfile.tenant_id, Tenant.slug, PayrollProfile.time_zone)
                .join(Tenant, Tenant.id == PayrollProfile.tenant_id)
                .order_by(Tenant.slug)
                .execution_options(**ALL_TENANTS)
            )
        ]


def unfinished_runs(database: Database) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """(tenant id, run id, flow run id) of every real run not posted yet whose flow run is known,
    across tenants: maintenance asks Prefect whether those flow runs are still alive."""
    with database.session() as session:
        return [
            (tenant_id, run_id, flow_run_id)
            for tenant_id, run_id, flow_run_id in session.execute(
                select(PayrollRun.tenant_id, PayrollRun.id, PayrollRun.flow_run_id)
                .where(
                    PayrollRun.status.in_(NOT_POSTED),
                    PayrollRun.flow_run_id.is_not(None),
                    PayrollRun.dry_run.is_(False),
                )
                .execution_options(**ALL_TENANTS)
            )
        ]


def never_started(database: Database, before: dt.datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant id, run id) of runs opened before `before` that never got a flow run (the API
    process died between opening the run and starting it): they would hold their period."""
    with database.session() as session:
        return [
            (tenant_id, run_id)
            for tenant_id, run_id in session.execute(
                select(PayrollRun.tenant_id, PayrollRun.id)
                .where(
                    PayrollRun.status == RunStatus.DRAFT,
                    PayrollRun.flow_run_id.is_(None),
                    PayrollRun.created_at < before,
                )
                .execution_options(**ALL_TENANTS)
            )
        ]


def attach_flow_run(session: Session, run_id: uuid.UUID, flow_run_id: uuid.UUID) -> PayrollRun:
    """Record the flow run working on the run: the latest one. A new flow run may take over a
    run whose worker died (a re-run); every step being idempotent under the run's row lock,
    two of them can never post twice."""
    run = get_run(session, run_id, for_update=True)
    run.flow_run_id = flow_run_id
    run.updated_at = utcnow()
    return run


def fix_rates(session: Session, run_id: uuid.UUID, rates: Mapping[str, Any]) -> dict[str, Any]:
    """The rates the run converts with: the first ones given stay (a re-run uses them)."""
    run = get_run(session, run_id, for_update=True)
    if run.fx_rates is None:
        run.fx_rates = dict(rates)
        run.updated_at = utcnow()
    return run.fx_rates


def previous_rates(session: Session, run: PayrollRun) -> dict[str, str] | None:
    """The rates of the tenant's latest posted or paid run before this period, if any."""
    previous = session.scalar(
        select(PayrollRun)
        .where(
            PayrollRun.status.in_([*MONEY_MOVED, RunStatus.REVERSED]),
            PayrollRun.period < run.period,
            PayrollRun.fx_rates.is_not(None),
        )
        .order_by(PayrollRun.period.desc(), PayrollRun.attempt.desc())
        .limit(1)
    )
    return dict(previous.fx_rates["rates"]) if previous and previous.fx_rates else None


def has_lines(session: Session, run_id: uuid.UUID) -> bool:
    return bool(
        session.scalar(
            select(func.count()).select_from(PayrollLine).where(PayrollLine.run_id == run_id)
        )
    )


PAYEE_COLUMNS = ("scheme", "creditor_name", "iban", "bic", "account_number", "bank_code", "country")


def store_lines(session: Session, run: PayrollRun, frame: pd.DataFrame) -> None:
    """Keep the computed lines with the run (once) and its totals per currency.

    Core inserts (batched into multi-row statements), in two groups so that a line without a
    payee stores SQL NULL rather than JSON null: the ORM's bulk path would split 30,000 lines
    into thousands of statements by which of their values are None."""
    if has_lines(session, run.id):
        return
    now = utcnow()
    common = {
        "tenant_id": run.tenant_id,
        "run_id": run.id,
        "transfer_ids": [],
        "reversal_ids": [],
        "created_at": now,
        "updated_at": now,
    }
    with_payee: list[dict[str, Any]] = []
    without_payee: list[dict[str, Any]] = []
    for line in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        record = {
            **common,
            "specialist_id": uuid.UUID(line["specialist_id"]),
            "source_currency": line["source_currency"],
            "payable_minor": int(line["payable_minor"]),
            "payout_currency": line["payout_currency"],
            "payout_minor": None if line["payout_minor"] is None else int(line["payout_minor"]),
            "fx_rate": line["fx_rate"],
            "fx_source": line["fx_source"],
            "status": line["status"],
            "hold_reason": line["hold_reason"],
            "end_to_end_id": line["end_to_end_id"],
        }
        if line["scheme"] is None:
            without_payee.append(record)
        else:
            record["payee"] = {column: line[column] for column in PAYEE_COLUMNS}
            with_payee.append(record)
    for group in (with_payee, without_payee):
        if group:
            session.execute(insert(PayrollLine.__table__), group)
    run.totals = totals_of(frame)
    run.updated_at = now


def totals_of(frame: pd.DataFrame) -> dict[str, Any]:
    """Per payout currency: what is paid and how many lines; per source currency: what is
    withheld. All integers in minor units."""
    totals: dict[str, Any] = {"payout": {}, "withheld": {}, "lines": len(frame)}
    payable = frame[frame["status"] == LineStatus.PAYABLE]
    for currency, group in payable.groupby("payout_currency"):
        totals["payout"][currency] = {
            "amount_minor": int(group["payout_minor"].astype("int64").sum()),
            "lines": len(group),
            "specialists": int(group["specialist_id"].nunique()),
        }
    withheld = frame[frame["status"] == LineStatus.WITHHELD]
    for currency, group in withheld.groupby("source_currency"):
        totals["withheld"][currency] = {
            "amount_minor": int(group["payable_minor"].astype("int64").sum()),
            "lines": len(group),
        }
    return totals


# What posting and the frame read of every line (the frame adds its state and payee).
_LINE_FIELDS = (
    PayrollLine.specialist_id,
    PayrollLine.source_currency,
    PayrollLine.payable_minor,
    PayrollLine.payout_currency,
    PayrollLine.payout_minor,
    PayrollLine.fx_rate,
    PayrollLine.fx_source,
    PayrollLine.end_to_end_id,
)


def lines_frame(session: Session, run_id: uuid.UUID) -> pd.DataFrame:
    """The stored lines back as the frame `lines.compute` made (what the gate and preview read):
    one Core select, the payee's fields unpacked column by column."""
    selected = (*_LINE_FIELDS, PayrollLine.status, PayrollLine.hold_reason, PayrollLine.payee)
    rows = session.execute(
        select(*selected)
        .where(PayrollLine.run_id == run_id)
        .order_by(PayrollLine.specialist_id, PayrollLine.source_currency)
    ).all()
    frame = pd.DataFrame(rows, columns=[column.key for column in selected])
    frame["specialist_id"] = frame["specialist_id"].astype(str)
    frame["profile_currency"] = frame["payout_currency"]
    payees = [payee or {} for payee in frame.pop("payee")]
    for column in PAYEE_COLUMNS:
        frame[column] = [payee.get(column) for payee in payees]
    frame["account_fingerprint"] = None
    frame["sepa"] = (
        (frame["status"] != LineStatus.WITHHELD)
        & (frame["payout_currency"] == "EUR")
        & (frame["scheme"] == "iban")
        & frame["country"].isin(SEPA_COUNTRIES)
    )
    frame = frame[COLUMNS].copy()
    frame["payout_minor"] = frame["payout_minor"].astype("Int64")
    return frame


def record_gate(session: Session, run_id: uuid.UUID, gate: Mapping[str, Any]) -> PayrollRun:
    """Keep the gate's outcome; a failed gate fails the run (nothing was posted)."""
    run = get_run(session, run_id, for_update=True)
    run.gate = dict(gate)
    if not gate.get("success"):
        _fail(run, f"the payroll gate failed: {len(gate.get('failed', []))} expectation(s)")
    run.updated_at = utcnow()
    return run


def await_approval(session: Session, run_id: uuid.UUID) -> PayrollRun:
    run = get_run(session, run_id, for_update=True)
    if run.status == RunStatus.DRAFT and not run.dry_run:
        run.status = RunStatus.AWAITING_APPROVAL
        run.updated_at = utcnow()
    return run


def decide(
    session: Session,
    run_id: uuid.UUID,
    approver: Actor | None,
    *,
    approve: bool,
    comment: str,
) -> PayrollRun:
    """Finance's decision, once: approved (to be posted) or rejected (nothing posted)."""
    run = get_run(session, run_id, for_update=True)
    if run.status != RunStatus.AWAITING_APPROVAL:
        if run.decided_at is not None and (run.status == RunStatus.REJECTED) != approve:
            return run  # the same decision arriving again (a resumed flow): nothing to do
        raise Conflict(
            f"payroll run {run_id} is {run.status}, not awaiting approval",
            code="payroll_not_awaiting_approval",
        )
    before = {"status": run.status}
    run.status = RunStatus.APPROVED if approve else RunStatus.REJECTED
    run.decided_by = _person(approver)
    run.decision_comment = comment
    run.decided_at = utcnow()
    run.updated_at = run.decided_at
    record(
        session,
        approver,
        "payroll_run.approved" if approve else "payroll_run.rejected",
        "payroll_run",
        run.id,
        before=before,
        after={"status": run.status, "comment": comment},
    )
    return run


def post(
    session: Session, run_id: uuid.UUID, *, as_of: dt.datetime | None = None, cooling_days: int = 0
) -> PayrollRun:
    """Move every payable line out of the payables into payout clearing, in one ledger batch
    with the run's and lines' new states: all of it commits, or none of it.

    The approval may come days after the preview: a line whose specialist has been held since
    (by finance, or by new bank details within `cooling_days` of `as_of`), or whose payable has
    shrunk below it (a fine), is withheld now with that reason rather than paid — never more than
    is owed, never to a held account — and the rest is posted."""
    run = get_run(session, run_id, for_update=True)
    if run.status in (*MONEY_MOVED, RunStatus.REVERSED):
        return run  # posted before (a re-run after a crash that followed the commit)
    if run.status != RunStatus.APPROVED:
        raise Conflict(
            f"payroll run {run_id} is {run.status}: only an approved run is posted",
            code="payroll_not_approved",
        )
    lines = _still_payable(
        session,
        run,
        session.execute(
            select(PayrollLine.id, *_LINE_FIELDS)
            .where(PayrollLine.run_id == run.id, PayrollLine.status == LineStatus.PAYABLE)
            .order_by(PayrollLine.id)
        ).all(),
        as_of or utcnow(),
        cooling_days,
    )
    payouts = [
        business.PayoutLine(
            key=payout_key(run, line),
            specialist_id=line.specialist_id,
            source_currency=line.source_currency,
            amount_minor=line.payable_minor,
            payout_currency=line.payout_currency,
            payout_minor=int(line.payout_minor or 0),
            rate=_decimal(line.fx_rate),
            rate_source=line.fx_source or "same currency",
            reference=f"payroll:{run.period}:{run.attempt}",
            metadata={"payroll_run": str(run.id), "end_to_end_id": line.end_to_end_id or ""},
        )
        for line in lines
    ]
    transfers = business.post_payouts(session, payouts)
    now = utcnow()
    _mark_posted(
        session,
        [line.id for line in lines],
        [[str(t.id) for t in posted] for posted in transfers],
        now,
    )
    run.status = RunStatus.POSTED
    run.posted_at = now
    run.updated_at = now
    return run


def _mark_posted(
    session: Session, line_ids: list[int], transfer_ids: list[list[str]], now: dt.datetime
) -> None:
    """Every posted line's status and transfers in one statement on PostgreSQL (an UPDATE from
    unnest of two arrays); elsewhere one executemany."""
    if not line_ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE payroll_lines AS l SET status = :status, transfer_ids = d.ids::jsonb, "
                "updated_at = :now "
                "FROM unnest(CAST(:line_ids AS bigint[]), CAST(:ids AS text[])) AS d(id, ids) "
                "WHERE l.id = d.id AND l.tenant_id = :tenant_id"
            ),
            {
                "status": LineStatus.POSTED.value,
                "now": now,
                "line_ids": line_ids,
                "ids": [json.dumps(ids) for ids in transfer_ids],
                "tenant_id": tenant_of(session),
            },
        )
        return
    table = PayrollLine.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("line_id"), table.c.tenant_id == tenant_of(session))
        .values(status=LineStatus.POSTED, transfer_ids=bindparam("ids"), updated_at=now),
        [{"line_id": i, "ids": ids} for i, ids in zip(line_ids, transfer_ids, strict=True)],
    )


def _still_payable(
    session: Session,
    run: PayrollRun,
    candidates: list[Any],
    as_of: dt.datetime,
    cooling_days: int,
) -> list[Any]:
    """The lines that may still be paid; the others are withheld, with why (two queries)."""
    held = payroll_lines.held_specialists(session, as_of, cooling_days)
    now_payable = {
        (row.specialist_id, row.source_currency): int(row.payable_minor)
        for row in payroll_lines.payables(session, run.cutoff_at).itertuples()
    }
    keep, withheld = [], []
    for line in candidates:
        owed = now_payable.get((str(line.specialist_id), line.source_currency), 0)
        if str(line.specialist_id) in held:
            withheld.append(
                (
                    line.id,
                    "held since the preview (on hold, or new bank details in the cooling period)",
                )
            )
        elif owed < line.payable_minor:
            withheld.append((line.id, f"the payable fell to {owed} minor units since the preview"))
        else:
            keep.append(line)
    if withheld:
        table = PayrollLine.__table__
        session.execute(
            update(table)
            .where(table.c.id == bindparam("line_id"), table.c.tenant_id == tenant_of(session))
            .values(
                status=LineStatus.WITHHELD,
                hold_reason=bindparam("reason"),
                payout_minor=None,
                end_to_end_id=None,
                updated_at=utcnow(),
            ),
            [{"line_id": line_id, "reason": reason} for line_id, reason in withheld],
        )
        run.totals = totals_of(lines_frame(session, run.id))
    return keep


def payout_key(run: PayrollRun, line: PayrollLine | Row[Any]) -> str:
    """The idempotency key of a line's payout: (tenant, period, attempt, specialist, currency);
    the tenant is part of every key's uniqueness already."""
    return f"payroll:{run.period}:{run.attempt}:{line.specialist_id}:{line.source_currency}"


def fail(
    session: Session, run_id: uuid.UUID, reason: str, *, flow_run_id: uuid.UUID | None = None
) -> PayrollRun:
    """The run cannot go on (its flow run failed, crashed, was cancelled, or timed out): if
    nothing was posted it fails and frees the period for a new attempt; a posted run stays.
    Given `flow_run_id`, only if that flow run is still the run's (not one a re-run replaced)."""
    run = get_run(session, run_id, for_update=True)
    if flow_run_id is not None and run.flow_run_id not in (None, flow_run_id):
        return run
    if run.status in NOT_POSTED:
        _fail(run, reason)
        run.updated_at = utcnow()
    return run


def _person(actor: Actor | None) -> uuid.UUID | None:
    """Who did it, as a user (Quire itself, or the Prefect UI without identities, is None)."""
    return None if actor is None or actor.is_system else actor.user_id


def _fail(run: PayrollRun, reason: str) -> None:
    run.status = RunStatus.FAILED
    run.failure_reason = reason[:2000]


def _decimal(text: str | None) -> Decimal:
    return Decimal(text or "1")
