"""The ledger over HTTP: balances, statements, manual transfers and reversals, invoices."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from api.deps import Work
from api.errors import responses
from ledger import service
from ledger.balances import entry_cursor, statement_window
from ledger.schemas import (
    PERIOD,
    AccountOut,
    InvoiceChange,
    InvoiceDraft,
    InvoiceOut,
    ReverseIn,
    StatementLineOut,
    StatementOut,
    TransferIn,
    TransferOut,
)
from quire.money import CurrencyCode

router = APIRouter(prefix="/ledger", tags=["ledger"])
READ_ERRORS = responses(401, 403, 404, 422)
WRITE_ERRORS = responses(401, 403, 404, 409, 422)


@router.get("/accounts", response_model=list[AccountOut], responses=READ_ERRORS)
async def list_accounts(
    work: Work, currency: CurrencyCode | None = None, kind: str | None = None
) -> list[AccountOut]:
    """Finance and admins see every account; a specialist sees their own."""
    return [AccountOut.of(a) for a in await work.read(service.list_accounts, currency, kind)]


@router.get("/accounts/{account_id}", response_model=AccountOut, responses=READ_ERRORS)
async def get_account(account_id: uuid.UUID, work: Work) -> AccountOut:
    """The current balance, read in O(1) from the maintained balance."""
    return AccountOut.of(await work.read(service.read_account, account_id))


@router.get("/accounts/{account_id}/statement", response_model=StatementOut, responses=READ_ERRORS)
async def get_statement(
    account_id: uuid.UUID,
    work: Work,
    period: Annotated[
        str | None,
        Query(
            # Documented, not enforced here: statement_window checks it and answers with the
            # statement's own code (invalid_period) rather than a generic validation_failed.
            json_schema_extra={"pattern": PERIOD.pattern},
            description="A month, YYYY-MM. Give either `period`, or both `start` and `end`.",
        ),
    ] = None,
    start: Annotated[
        dt.datetime | None,
        Query(
            description="With `end`, instead of `period`: an aware timestamp, before `end`; "
            "the window lies between 0001-01-02 and 9999-12-31 (UTC)."
        ),
    ] = None,
    end: Annotated[
        dt.datetime | None,
        Query(description="With `start`, instead of `period`: an aware timestamp, exclusive."),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=32, description="The previous page's next_cursor.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> StatementOut:
    """Entries of a period with a running balance (`period=YYYY-MM`, or `start` and `end`)."""
    start, end = statement_window(period, start, end)
    after_entry = entry_cursor(cursor)
    st = await work.read(service.read_statement, account_id, start, end, after_entry, limit)
    return StatementOut(
        account=AccountOut.of(st.account),
        start=start,
        end=end,
        opening_balance_minor=st.opening_balance,
        closing_balance_minor=st.closing_balance,
        lines=[
            StatementLineOut(
                entry_id=x.entry_id,
                transfer_id=x.transfer_id,
                kind=x.kind,
                reference=x.reference,
                effective_at=x.effective_at,
                amount_minor=x.amount,
                running_balance_minor=x.running_balance,
            )
            for x in st.lines
        ],
        next_cursor=st.next_cursor,
    )


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferOut,
    response_model_by_alias=True,
    responses=WRITE_ERRORS,
)
async def post_transfer(body: TransferIn, work: Work) -> TransferOut:
    """A manual, balanced journal entry (finance). Replaying its idempotency key is safe."""
    return TransferOut.model_validate(await work.write(service.post_transfer, body))


@router.post(
    "/transfers/{transfer_id}/reverse",
    status_code=201,
    response_model=TransferOut,
    response_model_by_alias=True,
    responses=WRITE_ERRORS,
)
async def reverse_transfer(transfer_id: uuid.UUID, body: ReverseIn, work: Work) -> TransferOut:
    """Correct a transfer by posting its mirror image (nothing is ever edited)."""
    return TransferOut.model_validate(
        await work.write(service.reverse_transfer, transfer_id, body.reason)
    )


@router.get("/invoices", response_model=list[InvoiceOut], responses=READ_ERRORS)
async def list_invoices(
    work: Work, period: Annotated[str | None, Query(pattern=PERIOD.pattern)] = None
) -> list[InvoiceOut]:
    return [InvoiceOut.model_validate(i) for i in await work.read(service.list_invoices, period)]


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut, responses=READ_ERRORS)
async def get_invoice(invoice_id: uuid.UUID, work: Work) -> InvoiceOut:
    return InvoiceOut.model_validate(await work.read(service.read_invoice, invoice_id))


@router.post("/invoices", status_code=201, response_model=InvoiceOut, responses=WRITE_ERRORS)
async def create_invoice(body: InvoiceDraft, work: Work) -> InvoiceOut:
    """Draft the next version of a specialist's invoice for a period."""
    return InvoiceOut.model_validate(await work.write(service.create_invoice, body))


IfMatch = Annotated[
    int,
    Header(alias="If-Match", description="The invoice's lock_version you last saw."),
]


@router.put("/invoices/{invoice_id}/lines", response_model=InvoiceOut, responses=WRITE_ERRORS)
async def edit_invoice(
    invoice_id: uuid.UUID, body: InvoiceChange, work: Work, if_match: IfMatch
) -> InvoiceOut:
    """Edit a draft. A stale `If-Match` (someone edited it since) is a 409."""
    return InvoiceOut.model_validate(
        await work.write(service.change_invoice, invoice_id, "edit", if_match, body.lines)
    )


@router.post(
    "/invoices/{invoice_id}/correct",
    status_code=201,
    response_model=InvoiceOut,
    responses=WRITE_ERRORS,
)
async def correct_invoice(
    invoice_id: uuid.UUID, body: InvoiceChange, work: Work, if_match: IfMatch
) -> InvoiceOut:
    """Supersede an issued invoice with a corrected version and post the adjustment."""
    return InvoiceOut.model_validate(
        await work.write(service.change_invoice, invoice_id, "correct", if_match, body.lines)
    )


for _action, _summary in (
    ("issue", "Issue a draft"),
    ("pay", "Mark an issued invoice paid"),
    ("void", "Void a draft or issued invoice"),
):

    def _make(action: str) -> Any:
        async def change(invoice_id: uuid.UUID, work: Work, if_match: IfMatch) -> InvoiceOut:
            return InvoiceOut.model_validate(
                await work.write(service.change_invoice, invoice_id, action, if_match)
            )

        return change

    router.add_api_route(
        f"/invoices/{{invoice_id}}/{_action}",
        _make(_action),
        methods=["POST"],
        response_model=InvoiceOut,
        responses=WRITE_ERRORS,
        summary=_summary,
        name=f"{_action}_invoice",
    )
