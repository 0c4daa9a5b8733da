"""Reconciliation over HTTP (finance): bank statements in, reconciliations and their exception
queue, the Data Docs of their invariant suites, and closing a month (reopening: an admin).

Matching itself runs in the `reconcile-ledger` flow (daily, or from its form in the Prefect UI):
an upload stores the statement, the flow reconciles what is stored.
"""

from __future__ import annotations

import mimetypes
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response

from api.deps import Work
from api.errors import responses
from ledger.balances import PERIOD
from quire.errors import NotFound
from quire.reconciliation import service
from quire.reconciliation.models import Reconciliation
from quire.reconciliation.schemas import (
    ClosedPeriodOut,
    ExceptionOut,
    ManualMatchIn,
    MatchOut,
    ReasonIn,
    ReconciliationOut,
    StatementOut,
)
from quire.schemas import BIGINT_MAX

router = APIRouter(tags=["reconciliation"])
READ_ERRORS = responses(401, 403, 404, 422)
WRITE_ERRORS = responses(401, 403, 404, 409, 422)
ExceptionId = Annotated[int, PathParam(ge=1, le=BIGINT_MAX)]
Period = Annotated[str, PathParam(pattern=PERIOD.pattern, max_length=7)]


def _out(run: Reconciliation) -> ReconciliationOut:
    out = ReconciliationOut.model_validate(run)
    if run.suites:
        # The worker's file system is not the caller's business: the URL below serves it.
        out.suites = {k: v for k, v in run.suites.items() if k != "data_docs_index"}
        if run.suites.get("data_docs_index"):
            out.data_docs_url = f"/reconciliations/{run.id}/data-docs/index.html"
    return out


@router.post(
    "/bank-statements",
    status_code=201,
    response_model=list[StatementOut],
    responses=responses(401, 403, 413, 422),
)
async def upload_statement(
    work: Work, file: Annotated[UploadFile, File(description="camt.053 or MT940")]
) -> list[StatementOut]:
    """Store a bank statement file (camt.053 .02-.08 or MT940; finance). Idempotent: the same
    file, or a statement already stored, answers what is stored. A malformed or truncated file,
    another account's statement, or one whose balances do not add up is a 422 that says what is
    wrong, and nothing is stored."""
    content = await file.read(service.MAX_STATEMENT_BYTES + 1)
    stored = await work.write(service.import_statements, file.filename or "statement", content)
    return [StatementOut.model_validate(s) for s in stored]


@router.get("/reconciliations", response_model=list[ReconciliationOut], responses=READ_ERRORS)
async def list_reconciliations(
    work: Work, limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50
) -> list[ReconciliationOut]:
    """The tenant's reconciliations, newest first (finance)."""
    return [_out(r) for r in await work.read(service.list_reconciliations, limit)]


@router.get(
    "/reconciliations/{reconciliation_id}", response_model=ReconciliationOut, responses=READ_ERRORS
)
async def read_reconciliation(reconciliation_id: uuid.UUID, work: Work) -> ReconciliationOut:
    """Matched, settled, returned, exceptions, the invariant suites' results and Data Docs."""
    return _out(await work.read(service.read_reconciliation, reconciliation_id))


@router.get(
    "/reconciliations/{reconciliation_id}/exceptions",
    response_model=list[ExceptionOut],
    responses=READ_ERRORS,
)
async def list_exceptions(
    reconciliation_id: uuid.UUID,
    work: Work,
    status: Annotated[str | None, Query(max_length=12)] = None,
) -> list[ExceptionOut]:
    """What the rules could not match, and how finance resolved it."""
    found = await work.read(service.list_exceptions, reconciliation_id, status)
    return [ExceptionOut.model_validate(e) for e in found]


@router.post(
    "/reconciliations/{reconciliation_id}/exceptions/{exception_id}/match",
    response_model=MatchOut,
    responses=WRITE_ERRORS,
)
async def match_exception(
    reconciliation_id: uuid.UUID,
    exception_id: ExceptionId,
    body: ManualMatchIn,
    request: Request,
    work: Work,
) -> MatchOut:
    """Match a bank debit to the posted payout it pays, with a reason (audited): the payout is
    settled; a difference within the write-off limit goes to bank fees."""
    limit = request.app.state.settings.reconciliation_write_off_limit
    match = await work.write(
        service.match_exception,
        reconciliation_id,
        exception_id,
        body.payroll_line_id,
        body.reason,
        limit,
    )
    return MatchOut.model_validate(match)


@router.post(
    "/reconciliations/{reconciliation_id}/exceptions/{exception_id}/write-off",
    response_model=MatchOut,
    responses=WRITE_ERRORS,
)
async def write_off_exception(
    reconciliation_id: uuid.UUID,
    exception_id: ExceptionId,
    body: ReasonIn,
    request: Request,
    work: Work,
) -> MatchOut:
    """Write a small unexplained bank line off to bank fees, with a reason (audited)."""
    limit = request.app.state.settings.reconciliation_write_off_limit
    match = await work.write(
        service.write_off_exception, reconciliation_id, exception_id, body.reason, limit
    )
    return MatchOut.model_validate(match)


@router.get(
    "/reconciliations/{reconciliation_id}/data-docs/{path:path}",
    response_class=Response,
    responses=READ_ERRORS,
)
async def data_docs(
    reconciliation_id: uuid.UUID, path: str, request: Request, work: Work
) -> Response:
    """The invariant suites' Great Expectations Data Docs (HTML)."""
    run = await work.read(service.read_reconciliation, reconciliation_id)
    index = (run.suites or {}).get("data_docs_index")
    root = Path(index).parent.resolve() if index else None
    target = (root / path).resolve() if root else None
    if (
        root is None
        or target is None
        or "\x00" in path
        or root not in (target, *target.parents)
        or not target.is_file()
    ):
        raise NotFound(
            f"no Data Docs page {path!r} for reconciliation {reconciliation_id}",
            code="data_docs_not_found",
        )
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Response(target.read_bytes(), media_type=media_type)


@router.post(
    "/ledger/periods/{period}/close", response_model=ClosedPeriodOut, responses=WRITE_ERRORS
)
async def close_period(period: Period, work: Work) -> ClosedPeriodOut:
    """Close a month (finance), only after a clean reconciliation of it with no exception
    waiting; from then on the database refuses entries dated in it."""
    return ClosedPeriodOut.model_validate(await work.write(service.close_period, period))


@router.post(
    "/ledger/periods/{period}/reopen", response_model=ClosedPeriodOut, responses=WRITE_ERRORS
)
async def reopen_period(period: Period, body: ReasonIn, work: Work) -> ClosedPeriodOut:
    """Reopen a closed month (admin), with a reason; recorded in the audit log."""
    return ClosedPeriodOut.model_validate(
        await work.write(service.reopen_period, period, body.reason)
    )
