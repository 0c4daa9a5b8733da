"""Payroll runs over HTTP: start, follow, approve, correct, download the bank's files (finance).

Starting a run opens it in Quire's database first (so the period's one-live-run rule decides a
race, not Prefect) and then creates its flow run with an idempotency key of (tenant, period,
attempt); the answer is 202, the flow run computes, validates and previews, then waits for a
second finance user's approval.
"""

from __future__ import annotations

import mimetypes
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from api import workflows
from api.deps import Work
from api.errors import responses
from api.schemas import Page
from ledger.balances import PERIOD
from quire.errors import NotFound, Unavailable
from quire.payroll import service
from quire.payroll.files import run_directory
from quire.payroll.models import PayrollFile, PayrollRun
from quire.payroll.schemas import (
    ApprovalIn,
    FileOut,
    LineOut,
    ReverseIn,
    RunOut,
    RunStart,
)
from quire.schemas import BIGINT_MAX

router = APIRouter(prefix="/payroll-runs", tags=["payroll"])
READ_ERRORS = responses(401, 403, 404, 422)
WRITE_ERRORS = responses(401, 403, 404, 409, 422)


def _out(run: PayrollRun, files: list[PayrollFile] | None = None) -> RunOut:
    out = RunOut.model_validate(run)
    out.flow_run_url = workflows.flow_run_url(run.flow_run_id)
    if run.gate and run.gate.get("data_docs_index"):
        out.data_docs_url = f"/payroll-runs/{run.id}/data-docs/index.html"
        # The worker's file system is not the caller's business: the URL above serves it.
        out.gate = {k: v for k, v in run.gate.items() if k != "data_docs_index"}
    out.files = [FileOut.model_validate(f) for f in files or []]
    return out


@router.post(
    "", status_code=202, response_model=RunOut, responses=responses(401, 403, 409, 422, 503)
)
async def start_run(body: RunStart, request: Request, work: Work) -> RunOut:
    """Start the month's payroll (finance). 409 if the period is paid or a run holds it; a run
    that was rejected or failed frees the period for a new attempt."""
    run, slug = await work.write(service.start_run, body)
    try:
        flow_run_id = await workflows.start_deployment(
            request.app.state.settings.payroll_deployment,
            {
                "tenant": slug,
                "period": run.period,
                "payout_date": run.payout_date.isoformat(),
                "dry_run": run.dry_run,
                "run_id": str(run.id),
            },
            idempotency_key=service.idempotency_key(run),
            tags=["quire", "payroll"],
        )
    except Unavailable as exc:
        await work.write(service.fail_to_start, run.id, exc.message)
        raise
    run = await work.write(service.attach_flow_run, run.id, flow_run_id)
    return _out(run)


@router.get("", response_model=list[RunOut], responses=READ_ERRORS)
async def list_runs(
    work: Work,
    period: Annotated[str | None, Query(pattern=PERIOD.pattern)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> list[RunOut]:
    """The tenant's runs, newest period first (finance)."""
    return [_out(r) for r in await work.read(service.list_runs, period, status, limit)]


@router.get("/{run_id}", response_model=RunOut, responses=READ_ERRORS)
async def read_run(run_id: uuid.UUID, work: Work) -> RunOut:
    """State, totals per currency, the gate's outcome, the files, the flow run and its UI link."""
    run, files = await work.read(service.read_run, run_id)
    return _out(run, files)


@router.get("/{run_id}/lines", response_model=Page[LineOut], responses=READ_ERRORS)
async def list_lines(
    run_id: uuid.UUID,
    work: Work,
    status: Annotated[str | None, Query(max_length=12)] = None,
    cursor: Annotated[int | None, Query(ge=0, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
) -> Page[LineOut]:
    """The run's lines in id order, a page at a time (`cursor` = the last line id seen)."""
    lines, next_id = await work.read(service.list_lines, run_id, status, cursor, limit)
    return Page[LineOut](
        items=[LineOut.model_validate(line) for line in lines],
        next_cursor=None if next_id is None else str(next_id),
    )


@router.post(
    "/{run_id}/approval", status_code=202, responses=responses(401, 403, 404, 409, 422, 503)
)
async def decide(run_id: uuid.UUID, body: ApprovalIn, work: Work) -> dict[str, str]:
    """Approve (post the payouts, write the files) or reject (with a comment; nothing posted) a
    run awaiting approval. Finance only, and not whoever started the run (403 `four_eyes`)."""
    flow_run_id, run_input = await work.read(service.open_approval, run_id, body)
    await workflows.resume(
        flow_run_id, run_input, what="payroll run", closed_code="payroll_not_awaiting_approval"
    )
    return {"run_id": str(run_id), "decision": body.decision.value, "flow_run_id": str(flow_run_id)}


@router.post("/{run_id}/lines/{line_id}/reverse", response_model=LineOut, responses=WRITE_ERRORS)
async def reverse_line(
    run_id: uuid.UUID,
    line_id: Annotated[int, PathParam(ge=1, le=BIGINT_MAX)],
    body: ReverseIn,
    work: Work,
) -> LineOut:
    """Reverse one posted line (e.g. the bank returned it): reversal transfers put the amount
    back in the payable, and the next period pays it again."""
    return LineOut.model_validate(
        await work.write(service.reverse_line, run_id, line_id, body.reason)
    )


@router.post("/{run_id}/reverse", response_model=RunOut, responses=WRITE_ERRORS)
async def reverse_run(run_id: uuid.UUID, body: ReverseIn, work: Work) -> RunOut:
    """Reverse a whole posted run the bank has not paid: every line reversed, files void."""
    run = await work.write(service.reverse_run, run_id, body.reason)
    _, files = await work.read(service.read_run, run_id)
    return _out(run, files)


@router.get(
    "/{run_id}/files/{name}",
    response_class=Response,
    responses={
        **responses(401, 403, 404, 409, 422),
        200: {"content": {"application/xml": {}, "text/csv": {}}},
    },
)
async def download_file(
    run_id: uuid.UUID, name: Annotated[str, PathParam(max_length=200)], request: Request, work: Work
) -> Response:
    """A payout file as recorded (its sha256 is checked before it is served: 409 if it no longer
    matches). A reversed run's files are served too, marked `X-File-Status: void`."""
    reports_dir = request.app.state.settings.reports_dir
    found, content = await work.read(service.read_file, run_id, name, reports_dir)
    return Response(
        content,
        media_type=found.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{found.name}"',
            "X-Content-SHA256": found.sha256,
            "X-File-Status": found.status,
        },
    )


@router.get("/{run_id}/data-docs/{path:path}", response_class=Response, responses=READ_ERRORS)
async def data_docs(run_id: uuid.UUID, path: str, request: Request, work: Work) -> Response:
    """The gate's Great Expectations Data Docs (HTML), as written under the reports directory."""
    run, _ = await work.read(service.read_run, run_id)
    root = (request.app.state.settings.reports_dir / run_directory(run) / "data-docs").resolve()
    target = (root / path).resolve()
    if "\x00" in path or root not in (target, *target.parents) or not target.is_file():
        raise NotFound(f"no Data Docs page {path!r} for run {run_id}", code="data_docs_not_found")
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Response(target.read_bytes(), media_type=media_type)
