"""Payroll run: one tenant's month, from the ledger's payables to the bank's files.

    open the run -> fix the day's FX rates (cached per provider and day; a fallback file)
    -> compute the lines (one SQL aggregate, set-based rules) -> validate them (Great Expectations)
    -> keep them -> gate failed? publish why, fail the run, post nothing
    -> publish the preview -> dry run? stop here
    -> wait for a finance user's approval (paused, then suspended); the starter may not approve
    -> rejected? stop, nothing posted -> post every payout in one ledger batch
    -> write the payout files for the bank -> issue each paid specialist's payslip

Finance starts it from the API (`POST /payroll-runs`, which opens the run and passes `run_id`),
from this deployment's form in the Prefect UI, or the monthly schedule — which names no tenant,
and so starts one run per tenant with a payroll profile, for the month just ended.

While it waits for approval the run first stays paused in its process (an approval given while
the preview is fresh goes on at once), then is suspended (it holds no worker). Resumed from a
suspension it runs again from the top and each step finds what was already done in the
database; so does a re-run after a worker was killed: nothing is posted twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Failed, Running, State
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from quire.payroll.approvals import ApprovalData
from quire.payroll.models import RunStatus
from quire.settings import get_settings
from tasks import payroll
from tasks.payroll import RunRef


class PayrollApproval(ApprovalData, RunInput):
    """The form a finance user fills in (Prefect UI) or the API sends when resuming the run."""


class PayrollOutcome(BaseModel):
    run_id: uuid.UUID | None
    period: str
    status: str
    files: list[str] = []
    started: list[str] = []  # the scheduled fan-out: the tenants whose run it started


def _release(flow: Any, run: FlowRun, state: State[Any]) -> None:
    """on_failure / on_crashed / on_cancellation: a run that dies before posting frees its
    period (a new attempt may start); a posted run stays posted (reversal is finance's call)."""
    run_id = run.parameters.get("run_id")
    tenant = run.parameters.get("tenant")
    if not tenant:
        return
    reason = f"the flow run {state.name.lower() if state.name else 'ended'}: {state.message or ''}"
    payroll.release_after_failure(tenant, run_id, run.id, reason.strip().rstrip(":"))


@flow(
    name="payroll-run",
    persist_result=True,
    log_prints=True,
    on_failure=[_release],
    on_crashed=[_release],
    on_cancellation=[_release],
)
def payroll_run(
    tenant: str = "",
    period: str = "",
    payout_date: dt.date | None = None,
    dry_run: bool = False,
    run_id: uuid.UUID | None = None,
) -> PayrollOutcome | State[Any]:
    """Pay one tenant's month (`tenant` slug, `period` YYYY-MM: the month just ended if empty).
    Without a tenant (the monthly schedule) it starts one run per tenant instead."""
    logger = get_run_logger()
    if not tenant:
        started = payroll.start_every_tenant(period or None)
        return PayrollOutcome(run_id=None, period=period, status="started", started=started)

    run = payroll.open_run(tenant, period, payout_date, dry_run, run_id, _this_run())
    progress = payroll.show_progress(run, 10)
    if not run.has_lines:
        payroll.fix_rates(run, todays_rates())
        lines = payroll.compute_lines(run)
        payroll.show_progress(run, 30, progress)
        gate = payroll.validate_lines(run, lines)
        run = payroll.keep_lines(run, lines, gate)
        payroll.show_progress(run, 50, progress)
        if not gate["success"]:
            payroll.publish_gate_failure(run, gate)
            return Failed(message=f"the payroll gate failed; nothing was posted (run {run.run_id})")
        payroll.publish_preview(run)
    payroll.show_progress(run, 60, progress)
    if run.status in (RunStatus.FAILED, RunStatus.REJECTED, RunStatus.REVERSED):
        logger.info("payroll run %s is %s; nothing to do", run.run_id, run.status)
        return PayrollOutcome(run_id=run.run_id, period=run.period, status=run.status)
    if run.dry_run:
        logger.info("dry run: the preview is published; nothing is posted")
        return PayrollOutcome(run_id=run.run_id, period=run.period, status="previewed")

    if run.status in (RunStatus.DRAFT, RunStatus.AWAITING_APPROVAL):
        run = wait_for_approval(run)
    if run.status == RunStatus.REJECTED:
        return PayrollOutcome(run_id=run.run_id, period=run.period, status=run.status)

    run = payroll.post_run(run)
    payroll.show_progress(run, 85, progress)
    written = payroll.write_payout_files(run)
    payroll.issue_payslips(run)
    payroll.show_progress(run, 100, progress)
    return PayrollOutcome(run_id=run.run_id, period=run.period, status=run.status, files=written)


def todays_rates() -> dict[str, Any]:
    """The provider's rates of the day (retried, cached per provider and day), else the
    configured fallback file."""
    settings = get_settings()
    if not settings.fx_rates_url:  # no provider configured: the rates file is the source
        return payroll.fallback_rates()
    backoff = settings.fx_retry_backoff_seconds
    fetch = payroll.fetch_rates.with_options(
        retry_delay_seconds=exponential_backoff(backoff_factor=backoff)
    )
    fetched = fetch(dt.datetime.now(dt.UTC).date(), return_state=True)
    if fetched.is_completed():
        return fetched.result()
    get_run_logger().warning(
        "FX provider unavailable (%s); using the fallback file", fetched.message
    )
    return payroll.fallback_rates()


def wait_for_approval(run: RunRef) -> RunRef:
    """Wait until a finance user who did not start the run decides; refuse and wait again
    otherwise (a wrong approver named in the UI form, a rejection without a reason)."""
    logger = get_run_logger()
    run = payroll.mark_awaiting_approval(run)
    attempt = 0
    while True:
        decision = ask_for_decision(run, attempt)
        refusal = payroll.vet_approval(run, decision)
        if refusal is None:
            return payroll.record_decision(run, decision)
        logger.warning("approval refused: %s; waiting for another", refusal)
        attempt += 1


def ask_for_decision(run: RunRef, attempt: int) -> PayrollApproval:
    """The typed form in the Prefect UI (or the API's POST .../approval fills it in).

    For its first `QUIRE_PAYROLL_APPROVAL_HOLD_SECONDS` the run waits paused in this process, so
    an approver at hand continues it at once; then it is suspended: its process exits, it holds
    no worker, and the approval starts it again from the top (each step answers from the
    database). Each wait has its own pause key, so a resumed run finds its decision again."""
    settings = get_settings()
    timeout = dt.timedelta(hours=settings.payroll_approval_timeout_hours).total_seconds()
    hold = min(settings.payroll_approval_hold_seconds, timeout)
    form = PayrollApproval.with_initial_data(
        description=(
            f"**Payroll {run.period}** (attempt {run.attempt}): approve to post the payouts and "
            "write the bank's files, or reject (with a reason) to post nothing. The preview and "
            "the summary are in this run's artifacts. Name yourself (a finance user's email); "
            "whoever started the run may not approve."
        ),
    )
    held, suspended = f"approval-{attempt}-held", f"approval-{attempt}"
    if hold >= 1 and not _fired({held, suspended}):
        try:
            return pause_flow_run(wait_for_input=form, timeout=int(hold), poll_interval=1, key=held)
        except FlowPauseTimeout:
            _running_again()
    return suspend_flow_run(
        wait_for_input=form, timeout=max(int(timeout - hold), 60), key=suspended
    )


def _fired(keys: set[str]) -> bool:
    """Whether one of these waits happened already (this flow run was resumed after it)."""
    context = FlowRunContext.get()
    fired = context.flow_run.empirical_policy.pause_keys if context and context.flow_run else None
    return bool(keys & set(fired or ()))


def _running_again() -> None:
    """An expired pause leaves the flow run Paused, from which Prefect allows only a forced move
    on; move to Running so the run can be suspended, unless it was cancelled meanwhile."""
    run_id = flow_run.get_id()
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(run_id)).state
        if state is None or not state.is_paused():
            raise RuntimeError(f"the flow run is {state.name if state else 'gone'} while waiting")
        client.set_flow_run_state(uuid.UUID(run_id), Running(), force=True)


def _this_run() -> uuid.UUID | None:
    run_id = flow_run.get_id()
    return uuid.UUID(run_id) if run_id else None
