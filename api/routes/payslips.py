"""A specialist's payslips: the statement behind each payout, as JSON, HTML or PDF.

`GET /me/payslips/{id}` answers JSON unless asked otherwise: `?format=html|pdf|json` decides
first, else the `Accept` header (`text/html`, `application/pdf`; anything else, JSON). Another
specialist's payslip is a 404, exactly like one that does not exist. Finance (and admins) read
any payslip of the tenant at `GET /payslips/{id}`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Work
from api.errors import responses
from quire.payroll import payslips
from quire.payroll.payslip_render import render_html, render_pdf
from quire.payroll.payslips import Payslip, PayslipSummary

router = APIRouter(tags=["payslips"])
READ_ERRORS = responses(401, 403, 404, 422)

Format = Literal["json", "html", "pdf"]
FormatQuery = Annotated[
    Format | None,
    Query(
        alias="format",
        description="json, html or pdf; overrides the Accept header. Default: JSON.",
    ),
]
RENDERED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The payslip: JSON (the default), an HTML page, or a PDF.",
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **READ_ERRORS,
}
MEDIA: dict[str, Format] = {
    "application/json": "json",
    "application/*": "json",
    "*/*": "json",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/*": "html",
    "application/pdf": "pdf",
}


def negotiate(accept: str | None) -> Format:
    """The first format the `Accept` header prefers (by q-value, then order); JSON if it names
    none of ours, or is absent or unreadable — a default, never an error."""
    if not accept:
        return "json"
    ranked: list[tuple[float, int, Format]] = []
    for position, part in enumerate(accept.split(",")[:50]):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        chosen = MEDIA.get(media.lower())
        if chosen is not None and 0 < quality <= 1:
            ranked.append((-quality, position, chosen))
    return min(ranked)[2] if ranked else "json"


async def answer(payslip: Payslip, fmt: Format | None, request: Request) -> Any:
    chosen = fmt or negotiate(request.headers.get("accept"))
    vary = {"Vary": "Accept"}
    if chosen == "html":
        return HTMLResponse(await run_in_threadpool(render_html, payslip), headers=vary)
    if chosen == "pdf":
        name = f"payslip-{payslip.period}-v{payslip.version}.pdf"
        return Response(
            await run_in_threadpool(render_pdf, payslip),
            media_type="application/pdf",
            headers={**vary, "Content-Disposition": f'inline; filename="{name}"'},
        )
    return Response(payslip.model_dump_json(), media_type="application/json", headers=vary)


@router.get("/me/payslips", response_model=list[PayslipSummary], responses=READ_ERRORS)
async def list_my_payslips(work: Work) -> list[PayslipSummary]:
    """Your payslips, newest first: every version, void ones too (specialists)."""
    return await work.read(payslips.list_for)


@router.get("/me/payslips/{invoice_id}", response_model=Payslip, responses=RENDERED)
async def get_my_payslip(
    invoice_id: uuid.UUID, work: Work, request: Request, fmt: FormatQuery = None
) -> Any:
    """One of your payslips (specialists), as JSON, HTML or PDF."""
    payslip = await work.read(payslips.read_mine, invoice_id)
    return await answer(payslip, fmt, request)


@router.get("/payslips/{invoice_id}", response_model=Payslip, responses=RENDERED)
async def get_payslip(
    invoice_id: uuid.UUID, work: Work, request: Request, fmt: FormatQuery = None
) -> Any:
    """Any payslip of the tenant (finance, admins), as JSON, HTML or PDF."""
    payslip = await work.read(payslips.read_any, invoice_id)
    return await answer(payslip, fmt, request)
