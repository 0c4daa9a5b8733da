"""Payroll's operations for its callers (the API, flows, the command line), each one unit of work
on a tenant-scoped session.

Another tenant's specialist, details or profile is simply not there (`quire.tenancy`): it looks
exactly like a missing one. Who may do what is `quire.payroll.policy`'s.
"""

from __future__ import annotations

import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.audit import service as audit
from quire.db import utcnow
from quire.errors import Conflict, Forbidden, Invalid, NotFound
from quire.payroll import approvals, corrections, files, policy, runs
from quire.payroll import payout_details as rules
from quire.payroll.errors import FieldProblem, InvalidPayoutDetails
from quire.payroll.models import PayoutDetails, PayrollFile, PayrollLine, PayrollProfile, PayrollRun
from quire.payroll.schemas import (
    ApprovalIn,
    OwnPayoutDetailsOut,
    PayoutDetailsIn,
    PayoutDetailsView,
    PayrollProfileIn,
    PayrollProfileOut,
    RunStart,
)
from quire.people.actor import Actor
from quire.people.models import Role, SpecialistProfile, Tenant, User

# =============================================================================================
# Payout details, holds and the payroll profile
#
# For the run's computation: `details_of`, `profile_of`; the rules they feed are in
# `quire.payroll.payout_details` (`payee`, `mask`, `cooling_until`, `in_cooling_period_clause`).
# =============================================================================================

PAGE_MAX = 200


def details_of(session: Session, user_id: uuid.UUID) -> PayoutDetails | None:
    """A specialist's bank details in the session's tenant, or None."""
    return session.scalar(select(PayoutDetails).where(PayoutDetails.user_id == user_id))


def profile_of(session: Session) -> PayrollProfile | None:
    """The session tenant's payroll profile (debtor account, time zone, minimums), or None."""
    return session.scalar(select(PayrollProfile))


def _locked_details(session: Session, user_id: uuid.UUID) -> PayoutDetails | None:
    """The row, locked until commit: a specialist's change and finance's hold do not overwrite
    each other (SQLite's write transactions are serial anyway)."""
    return session.scalar(
        select(PayoutDetails).where(PayoutDetails.user_id == user_id).with_for_update()
    )


def _lock_user(session: Session, user_id: uuid.UUID) -> User | None:
    """Serialise a specialist's first details: two PUTs at once must not both INSERT. FOR NO KEY
    UPDATE leaves the row's key free, so foreign-key checks of other writers do not wait."""
    return session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True))


def _payout_currencies(session: Session, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    ids = list(user_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(SpecialistProfile.user_id, SpecialistProfile.payout_currency).where(
            SpecialistProfile.user_id.in_(ids)
        )
    )
    return {user_id: currency for user_id, currency in rows}


def _shared_with(
    session: Session, rows: Iterable[PayoutDetails]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """For each row, the other specialists of the tenant whose details name the same account."""
    by_fingerprint = {row.account_fingerprint for row in rows}
    if not by_fingerprint:
        return {}
    owners: dict[str, list[uuid.UUID]] = defaultdict(list)
    found = session.execute(
        select(PayoutDetails.account_fingerprint, PayoutDetails.user_id)
        .where(PayoutDetails.account_fingerprint.in_(sorted(by_fingerprint)))
        .order_by(PayoutDetails.user_id)
    )
    for fingerprint, user_id in found:
        owners[fingerprint].append(user_id)
    return {
        row.user_id: [u for u in owners[row.account_fingerprint] if u != row.user_id]
        for row in rows
    }


def _own_view(session: Session, row: PayoutDetails, cooling_days: int) -> OwnPayoutDetailsOut:
    return OwnPayoutDetailsOut(
        user_id=row.user_id,
        scheme=row.scheme,
        account_holder=row.account_holder,
        iban=row.iban,
        bic=row.bic,
        account_number=row.account_number,
        bank_code=row.bank_code,
        country=row.country,
        payout_currency=_payout_currencies(session, [row.user_id]).get(row.user_id),
        details_changed_at=row.details_changed_at,
        cooling_until=rules.cooling_until(row, cooling_days),
        on_hold=row.on_hold,
        created_at=row.created_at,
    )


def _finance_views(
    session: Session, rows: list[PayoutDetails], cooling_days: int
) -> list[PayoutDetailsView]:
    currencies = _payout_currencies(session, (r.user_id for r in rows))
    shared = _shared_with(session, rows)
    now = utcnow()
    return [
        PayoutDetailsView(
            **rules.mask(row),
            user_id=row.user_id,
            payout_currency=currencies.get(row.user_id),
            details_changed_at=row.details_changed_at,
            cooling_until=rules.cooling_until(row, cooling_days, now),
            on_hold=row.on_hold,
            hold_reason=row.hold_reason,
            hold_set_by=row.hold_set_by,
            hold_set_at=row.hold_set_at,
            shared_with=shared.get(row.user_id, []),
            created_at=row.created_at,
        )
        for row in rows
    ]


def _specialist(session: Session, user_id: uuid.UUID) -> User:
    """A specialist of the session's tenant (or someone who has bank details), else 404."""
    user = session.scalar(select(User).where(User.id == user_id))
    if user is None or not (user.has_any_role(Role.SPECIALIST) or details_of(session, user_id)):
        raise NotFound(f"specialist {user_id} not found", code="specialist_not_found")
    return user


def _details_or_404(session: Session, user_id: uuid.UUID, *, lock: bool = False) -> PayoutDetails:
    row = _locked_details(session, user_id) if lock else details_of(session, user_id)
    if row is None:
        raise NotFound(
            f"specialist {user_id} has no payout details yet", code="payout_details_not_found"
        )
    return row


# --- The specialist's own -------------------------------------------------------------------


def my_payout_details(session: Session, actor: Actor, cooling_days: int) -> OwnPayoutDetailsOut:
    """The caller's own bank details, in full."""
    policy.may_keep_own_details(actor)
    return _own_view(session, _details_or_404(session, actor.user_id), cooling_days)


def change_my_payout_details(
    session: Session, actor: Actor, body: PayoutDetailsIn, cooling_days: int
) -> OwnPayoutDetailsOut:
    """Set or replace the caller's bank details (validated; nothing is written if any field is
    wrong). A new account restarts the cooling period; a corrected holder name or BIC on the same
    account does not (the money still goes where it went). Every change is audited once, masked;
    a PUT that changes nothing writes nothing."""
    policy.may_keep_own_details(actor)
    account = rules.validate_account(
        scheme=body.scheme,
        account_holder=body.account_holder,
        iban=body.iban,
        bic=body.bic,
        account_number=body.account_number,
        bank_code=body.bank_code,
        country=body.country,
    )
    if _lock_user(session, actor.user_id) is None:  # a deleted user's token: nothing to keep
        raise NotFound(f"user {actor.user_id} not found", code="user_not_found")
    row = _locked_details(session, actor.user_id)
    now = utcnow()
    before = rules.mask(row) if row is not None else None
    if row is None:
        row = PayoutDetails(
            tenant_id=actor.tenant_id,
            user_id=actor.user_id,
            account_fingerprint="",
            on_hold=False,
            created_at=now,
        )
        session.add(row)
    account_changed = rules.apply(row, account, now=now)
    after = rules.mask(row)
    if before != after:
        session.flush()
        audit.record(
            session,
            actor,
            "payout_details.changed",
            "specialist",
            actor.user_id,
            before=before,
            after={**after, "account_changed": account_changed},
        )
    return _own_view(session, row, cooling_days)


# --- Finance --------------------------------------------------------------------------------


def specialist_payout_details(
    session: Session, actor: Actor, user_id: uuid.UUID, cooling_days: int
) -> PayoutDetailsView:
    policy.may_read_payouts(actor)
    _specialist(session, user_id)
    return _finance_views(session, [_details_or_404(session, user_id)], cooling_days)[0]


def list_payout_details(
    session: Session,
    actor: Actor,
    cooling_days: int,
    on_hold: bool | None = None,
    after: uuid.UUID | None = None,
    limit: int = 50,
) -> tuple[list[PayoutDetailsView], str | None]:
    """The tenant's bank details, masked, by specialist id; `after` is the previous page's last
    id (the page's `next_cursor`)."""
    policy.may_read_payouts(actor)
    limit = max(1, min(limit, PAGE_MAX))
    stmt = select(PayoutDetails).order_by(PayoutDetails.user_id).limit(limit + 1)
    if on_hold is not None:
        stmt = stmt.where(PayoutDetails.on_hold.is_(on_hold))
    if after is not None:
        stmt = stmt.where(PayoutDetails.user_id > after)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = str(rows[-1].user_id)
    return _finance_views(session, rows, cooling_days), next_cursor


def _hold_state(row: PayoutDetails) -> dict[str, Any]:
    return {
        "on_hold": row.on_hold,
        "hold_reason": row.hold_reason,
        "hold_set_by": row.hold_set_by,
        "hold_set_at": row.hold_set_at,
    }


def set_hold(
    session: Session, actor: Actor, user_id: uuid.UUID, reason: str, cooling_days: int
) -> PayoutDetailsView:
    """Stop a specialist's payouts until finance lifts the hold (runs withhold their lines,
    which stay payable). Setting it again replaces the reason. A specialist without bank details
    cannot be held (there is no row) and is withheld by every run anyway: 409."""
    policy.may_hold(actor, user_id)
    reason = _reason(reason)
    _specialist(session, user_id)
    row = _locked_details(session, user_id)
    if row is None:
        raise Conflict(
            f"specialist {user_id} has no payout details: runs withhold their payouts anyway",
            code="payout_details_not_found",
        )
    before = _hold_state(row)
    if not (row.on_hold and row.hold_reason == reason):
        row.on_hold = True
        row.hold_reason = reason
        row.hold_set_by = None if actor.is_system else actor.user_id  # Quire itself: no user
        row.hold_set_at = utcnow()
        session.flush()
        audit.record(
            session,
            actor,
            "payout_hold.set",
            "specialist",
            user_id,
            before=before,
            after=_hold_state(row),
        )
    return _finance_views(session, [row], cooling_days)[0]


def lift_hold(
    session: Session,
    actor: Actor,
    user_id: uuid.UUID,
    reason: str | None,
    cooling_days: int,
) -> PayoutDetailsView:
    """Release a specialist's payouts; `reason` (optional) goes into the audit entry. Lifting a
    hold that is not there changes nothing and records nothing."""
    policy.may_hold(actor, user_id)
    reason = _reason(reason) if reason is not None else None
    _specialist(session, user_id)
    row = _details_or_404(session, user_id, lock=True)
    if row.on_hold:
        before = _hold_state(row)
        row.on_hold = False
        row.hold_reason = None
        row.hold_set_by = None
        row.hold_set_at = None
        session.flush()
        audit.record(
            session,
            actor,
            "payout_hold.lifted",
            "specialist",
            user_id,
            before=before,
            after={**_hold_state(row), "reason": reason},
        )
    return _finance_views(session, [row], cooling_days)[0]


def _reason(value: str) -> str:
    try:
        return rules.normalise_text(value, what="reason", max_length=500)
    except ValueError as bad:
        raise InvalidPayoutDetails(
            [FieldProblem(("reason",), str(bad), getattr(bad, "type", "invalid"))],
            code="invalid_reason",
        ) from None


# --- The payroll profile --------------------------------------------------------------------


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _profile_out(profile: PayrollProfile) -> PayrollProfileOut:
    return PayrollProfileOut.model_validate(profile)


def _profile_audit(profile: PayrollProfile | None) -> dict[str, Any] | None:
    if profile is None:
        return None
    return {
        "debtor_name": profile.debtor_name,
        "debtor_iban": rules.mask_iban(profile.debtor_iban),
        "debtor_bic": profile.debtor_bic,
        "time_zone": profile.time_zone,
        "minimum_payouts": dict(sorted(profile.minimum_payouts.items())),
    }


def validate_profile(body: PayrollProfileIn) -> dict[str, Any]:
    """The profile's fields, normalised, or `InvalidPayoutDetails` naming each wrong one."""
    problems: list[FieldProblem] = []
    values: dict[str, Any] = {}
    checks: list[tuple[str, Any]] = [
        ("debtor_name", lambda: rules.normalise_text(body.debtor_name, what="debtor name")),
        ("debtor_iban", lambda: rules.normalise_iban(body.debtor_iban)),
    ]
    for name, check in checks:
        try:
            values[name] = check()
        except ValueError as bad:
            problems.append(FieldProblem((name,), str(bad), getattr(bad, "type", "invalid")))
    iban_country = values["debtor_iban"][:2] if "debtor_iban" in values else None
    if iban_country is not None and iban_country not in rules.SEPA_COUNTRIES:
        # The SEPA file names the debtor's account; an account outside the zone could never
        # send it, and a run would be posted with no file the bank takes.
        problems.append(
            FieldProblem(
                ("debtor_iban",),
                f"payouts leave from an account in the SEPA zone; {iban_country} is outside it",
                "sepa_required",
            )
        )
    try:
        values["debtor_bic"] = rules.normalise_bic(body.debtor_bic, country=iban_country)
    except ValueError as bad:
        problems.append(FieldProblem(("debtor_bic",), str(bad), getattr(bad, "type", "invalid")))
    if body.time_zone in _time_zones():
        values["time_zone"] = body.time_zone
    else:
        problems.append(
            FieldProblem(
                ("time_zone",), "not an IANA time zone (e.g. Europe/Berlin, UTC)", "time_zone"
            )
        )
    if problems:
        raise InvalidPayoutDetails(problems, code="invalid_payroll_profile")
    values["minimum_payouts"] = dict(sorted(body.minimum_payouts.items()))
    return values


def read_profile(session: Session, actor: Actor) -> PayrollProfileOut:
    policy.may_read_payouts(actor)
    profile = profile_of(session)
    if profile is None:
        raise NotFound("the tenant has no payroll profile yet", code="payroll_profile_not_found")
    return _profile_out(profile)


def change_profile(session: Session, actor: Actor, body: PayrollProfileIn) -> PayrollProfileOut:
    """Create or replace the tenant's payroll profile (a PUT: omitted fields take their
    defaults); audited with the debtor IBAN masked. A PUT that changes nothing records nothing."""
    policy.may_change_payouts(actor)
    values = validate_profile(body)
    # One profile per tenant (unique): lock the tenant's row so two first PUTs do not race.
    session.execute(
        select(Tenant.id).where(Tenant.id == actor.tenant_id).with_for_update(key_share=True)
    )
    profile = profile_of(session)
    before = _profile_audit(profile)
    if profile is None:
        profile = PayrollProfile(tenant_id=actor.tenant_id, **values, updated_at=utcnow())
        session.add(profile)
    else:
        for name, value in values.items():
            setattr(profile, name, value)
    after = _profile_audit(profile)
    if before != after:
        profile.updated_at = utcnow()
        session.flush()
        audit.record(
            session,
            actor,
            "payroll_profile.changed",
            "payroll_profile",
            profile.id,
            before=before,
            after=after,
        )
    return _profile_out(profile)


# =============================================================================================
# (end of payout details, holds and the payroll profile; payroll run operations follow)
# =============================================================================================


# --- Payroll runs (finance) -----------------------------------------------------------------

MAX_PAGE = 500


def _finance(actor: Actor) -> None:
    actor.require(Role.FINANCE)


def start_run(session: Session, actor: Actor, body: RunStart) -> tuple[PayrollRun, str]:
    """Open a new attempt for the period; with the tenant's slug, which the flow run is given."""
    _finance(actor)
    run = runs.open_run(
        session, actor, period=body.period, payout_date=body.payout_date, dry_run=body.dry_run
    )
    slug = session.scalar(select(Tenant.slug).where(Tenant.id == actor.tenant_id))
    return run, str(slug)


def attach_flow_run(
    session: Session, actor: Actor, run_id: uuid.UUID, flow_run_id: uuid.UUID
) -> PayrollRun:
    _finance(actor)
    return runs.attach_flow_run(session, run_id, flow_run_id)


def fail_to_start(session: Session, actor: Actor, run_id: uuid.UUID, reason: str) -> PayrollRun:
    """The workflow engine could not start the run: fail it, so the period is free again."""
    _finance(actor)
    return runs.fail(session, run_id, f"could not be started: {reason}")


def idempotency_key(run: PayrollRun) -> str:
    """Prefect's key for the run's flow run: (tenant, period, attempt). Keys are permanent per
    flow, so a new attempt (after a rejection or failure) gets a new key."""
    return f"payroll:{run.tenant_id}:{run.period}:{run.attempt}"


def list_runs(
    session: Session,
    actor: Actor,
    period: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[PayrollRun]:
    _finance(actor)
    statement = select(PayrollRun).order_by(PayrollRun.period.desc(), PayrollRun.attempt.desc())
    if period is not None:
        statement = statement.where(PayrollRun.period == period)
    if status is not None:
        statement = statement.where(PayrollRun.status == status)
    return list(session.scalars(statement.limit(min(limit, MAX_PAGE))))


def read_run(
    session: Session, actor: Actor, run_id: uuid.UUID
) -> tuple[PayrollRun, list[PayrollFile]]:
    _finance(actor)
    run = runs.get_run(session, run_id)
    return run, files.files_of(session, run_id)


def list_lines(
    session: Session,
    actor: Actor,
    run_id: uuid.UUID,
    status: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> tuple[list[PayrollLine], int | None]:
    """A page of the run's lines in id order (keyset: `after` = the last id seen)."""
    _finance(actor)
    runs.get_run(session, run_id)
    statement = select(PayrollLine).where(PayrollLine.run_id == run_id).order_by(PayrollLine.id)
    if status is not None:
        statement = statement.where(PayrollLine.status == status)
    if after is not None:
        statement = statement.where(PayrollLine.id > after)
    page = list(session.scalars(statement.limit(min(limit, MAX_PAGE) + 1)))
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].id if more and page else None)


def open_approval(
    session: Session, actor: Actor, run_id: uuid.UUID, body: ApprovalIn
) -> tuple[uuid.UUID, dict[str, str]]:
    """Refuse up front what the flow would refuse; else the flow run to resume and its input."""
    _finance(actor)
    run = runs.get_run(session, run_id)
    data = approvals.ApprovalData(
        decision=body.decision, comment=body.comment, approver=str(actor.user_id)
    )
    refused = approvals.refusal(run, actor, data)
    if refused is not None:
        kind = {"four_eyes": Forbidden, "not_finance": Forbidden, "comment_required": Invalid}
        raise kind.get(refused.code, Conflict)(refused.message, code=refused.code)
    if run.flow_run_id is None:
        raise Conflict(
            f"run {run_id} has no flow run to resume", code="payroll_not_awaiting_approval"
        )
    return run.flow_run_id, data.model_dump(mode="json")


def reverse_line(
    session: Session, actor: Actor, run_id: uuid.UUID, line_id: int, reason: str
) -> PayrollLine:
    _finance(actor)
    return corrections.reverse_line(session, actor, run_id, line_id, reason)


def reverse_run(session: Session, actor: Actor, run_id: uuid.UUID, reason: str) -> PayrollRun:
    _finance(actor)
    return corrections.reverse_run(session, actor, run_id, reason)


def read_file(
    session: Session, actor: Actor, run_id: uuid.UUID, name: str, reports_dir: Path
) -> tuple[PayrollFile, bytes]:
    _finance(actor)
    runs.get_run(session, run_id)
    return files.read_file(session, run_id, name, reports_dir)
