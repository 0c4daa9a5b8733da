"""One camt.053 entry (Ntry) into its bank lines, for every version from .02 to .08.

An entry is one booking; its TxDtls say what it paid. A batch-booked entry (one debit for a
whole payout file) lists several TxDtls: when each names its own amount, in the entry's currency
and direction, and they add up to the entry, it becomes one line per transaction (so each
payout's end-to-end id can be matched, and the lines still add up to the booking). When they do
not add up, or do not say their amounts, the entry stays one line and keeps only what the entry
itself says: guessing which transaction a detail belongs to would match the wrong payout.

The versions name things differently on the way (see camt053.py), so everything here is read by
attribute with `getattr` defaults instead of per-version code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any

from quire.reconciliation.bank_lines import (
    BankLine,
    BankTransactionCode,
    CreditDebit,
    ReturnInfo,
    minor_units,
)
from quire.reconciliation.errors import CurrencyMismatch, Loc

NOT_PROVIDED = "NOTPROVIDED"  # what ISO 20022 writes where an end-to-end id was not given


@dataclass(frozen=True, slots=True)
class EntryContext:
    """What an entry's lines need from their statement."""

    currency: str
    account: str
    first_index: int
    loc: Loc


def code(value: Any) -> str | None:
    """A code list value as text (xsdata gives an Enum for closed lists, str for external)."""
    if isinstance(value, Enum):
        return str(value.value)
    return value if isinstance(value, str) and value else None


def on_date(choice: Any) -> date | None:
    """A DateAndDateTimeChoice as a date (a booking given with a time keeps only its day)."""
    if choice is None:
        return None
    if choice.dt is not None:
        return choice.dt.to_date()
    return choice.dt_tm.to_datetime().date() if choice.dt_tm is not None else None


def entry_lines(entry: Any, raw: str, context: EntryContext) -> list[BankLine]:
    """The entry's lines: one per transaction of a batch that adds up, else one."""
    amount = minor_units(entry.amt.value, entry.amt.ccy, (*context.loc, "Amt"))
    if entry.amt.ccy != context.currency:
        raise CurrencyMismatch(
            f"an entry is in {entry.amt.ccy}, the account in {context.currency}",
            loc=(*context.loc, "Amt"),
        )
    sign = CreditDebit(code(entry.cdt_dbt_ind))
    transactions = [tx for details in entry.ntry_dtls for tx in details.tx_dtls]
    parts = _batch_parts(transactions, amount, sign, context)
    if parts is None:
        single = transactions[0] if len(transactions) == 1 else None
        parts = [(single, amount)]
    return [
        _line(entry, tx, part_amount, sign, raw, context.first_index + k, context)
        for k, (tx, part_amount) in enumerate(parts)
    ]


def _batch_parts(
    transactions: list[Any], amount: int, sign: CreditDebit, context: EntryContext
) -> list[tuple[Any, int]] | None:
    """Each transaction with its amount, if the batch splits exactly; None if it does not."""
    if len(transactions) < 2:
        return None
    parts: list[tuple[Any, int]] = []
    for k, tx in enumerate(transactions):
        money = _transaction_amount(tx)
        tx_sign = code(getattr(tx, "cdt_dbt_ind", None))
        if money is None or money.ccy != context.currency or tx_sign not in (None, sign.value):
            return None
        loc = (*context.loc, "NtryDtls", "TxDtls", k, "Amt")
        parts.append((tx, minor_units(money.value, money.ccy, loc)))
    return parts if sum(part for _, part in parts) == amount else None


def _transaction_amount(tx: Any) -> Any:
    """TxDtls/Amt (from .03), else AmtDtls/TxAmt/Amt (the only one in .02)."""
    direct = getattr(tx, "amt", None)
    if direct is not None:
        return direct
    details = getattr(tx, "amt_dtls", None)
    booked = getattr(details, "tx_amt", None)
    return getattr(booked, "amt", None)


def _line(
    entry: Any,
    tx: Any,
    amount: int,
    sign: CreditDebit,
    raw: str,
    index: int,
    context: EntryContext,
) -> BankLine:
    status = _status(entry.sts)
    refs = getattr(tx, "refs", None)
    name, account = _counterparty(getattr(tx, "rltd_pties", None), sign, context.account)
    remittance, creditor_reference = _remittance(getattr(tx, "rmt_inf", None))
    end_to_end = getattr(refs, "end_to_end_id", None)
    return BankLine(
        index=index,
        amount_minor=amount,
        credit_debit=sign,
        currency=context.currency,
        booking_date=on_date(entry.bookg_dt),
        value_date=on_date(entry.val_dt),
        booked=status == "BOOK",
        status=status,
        end_to_end_id=None if end_to_end in (None, NOT_PROVIDED) else end_to_end,
        account_servicer_reference=getattr(refs, "acct_svcr_ref", None) or entry.acct_svcr_ref,
        customer_reference=getattr(refs, "instr_id", None) or getattr(refs, "pmt_inf_id", None),
        counterparty_name=name,
        counterparty_account=account,
        remittance_information=remittance,
        creditor_reference=creditor_reference,
        bank_code=_bank_code(getattr(tx, "bk_tx_cd", None) or entry.bk_tx_cd),
        return_info=_return_info(entry, getattr(tx, "rtr_inf", None)),
        additional_info=entry.addtl_ntry_inf or getattr(tx, "addtl_tx_inf", None),
        entry_reference=entry.ntry_ref,
        raw=raw,
    )


def _status(sts: Any) -> str:
    """BOOK, PDNG or INFO: a code up to .06, a choice (Cd or Prtry) from .07."""
    return code(sts) or code(getattr(sts, "cd", None)) or code(getattr(sts, "prtry", None)) or ""


def _counterparty(parties: Any, sign: CreditDebit, own: str) -> tuple[str | None, str | None]:
    """The other side: the creditor of a debit, the debtor of a credit.

    Some banks keep the original roles on a returned payment (the returned credit still names
    the payee as creditor and the account holder as debtor); a side whose account is the
    statement's own account is then not the counterparty, and the other one is taken.
    """
    if parties is None:
        return None, None
    debtor = (_party_name(parties.dbtr), _account(parties.dbtr_acct))
    creditor = (_party_name(parties.cdtr), _account(parties.cdtr_acct))
    first, second = (creditor, debtor) if sign is CreditDebit.DEBIT else (debtor, creditor)
    if own and first[1] == own and any(second):
        return second
    return first


def _party_name(party: Any) -> str | None:
    """Nm up to .06; from .07 a choice of a party (Pty/Nm) or an agent (Agt)."""
    if party is None:
        return None
    name = getattr(party, "nm", None) or getattr(getattr(party, "pty", None), "nm", None)
    if name:
        return name
    institution = getattr(getattr(party, "agt", None), "fin_instn_id", None)
    return getattr(institution, "nm", None) or getattr(institution, "bicfi", None)


def _account(account: Any) -> str | None:
    ident = getattr(account, "id", None)
    if ident is None:
        return None
    other = getattr(ident, "othr", None)
    return ident.iban or (other.id if other is not None else None)


def _remittance(info: Any) -> tuple[str | None, str | None]:
    """Unstructured remittance lines, joined; and the first structured creditor reference
    (an invoice or RF reference) as its own field, for rules that match references."""
    if info is None:
        return None, None
    text = " ".join(part.strip() for part in info.ustrd if part.strip()) or None
    references = (getattr(getattr(strd, "cdtr_ref_inf", None), "ref", None) for strd in info.strd)
    return text, next((ref for ref in references if ref), None)


def _bank_code(structure: Any) -> BankTransactionCode:
    if structure is None:
        return BankTransactionCode()
    domain, proprietary = structure.domn, structure.prtry
    family = getattr(domain, "fmly", None)
    return BankTransactionCode(
        domain=getattr(domain, "cd", None),
        family=getattr(family, "cd", None),
        sub_family=getattr(family, "sub_fmly_cd", None),
        proprietary=getattr(proprietary, "cd", None),
        issuer=getattr(proprietary, "issr", None),
    )


def _return_info(entry: Any, returned: Any) -> ReturnInfo:
    reason = getattr(returned, "rsn", None)
    extra = [text for text in getattr(returned, "addtl_inf", None) or [] if text]
    return ReturnInfo(
        reversal=bool(entry.rvsl_ind),
        reason_code=code(getattr(reason, "cd", None)),
        reason_proprietary=code(getattr(reason, "prtry", None)),
        additional_info=" ".join(extra) or None,
    )
