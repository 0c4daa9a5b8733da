"""MT940 (SWIFT customer statement message) into `Statement`s, through the `mt-940` library.

The library splits a file into statements at each :20: and parses every tag; what it gets wrong
by default is switched off through its `Options` (each one's 5.0.0 behaviour in brackets):
a :61: customer reference survives a structured :86: without KREF+ (dropped), RC is a debit
(positive), ?31 is the counterparty's account (glued to the name), :13D: offsets are hours and
minutes (read as minutes), long :86: texts are kept whole (cut after 9 x 65 characters).

Two things it cannot be told, handled here:
- when :61: has a customer reference and :86: has KREF+ too, it joins them into one
  "REF\\nREF" string; so the :61: reference is kept apart as the :61: field wrote it (the tag's
  own parse, below), and :86:'s KREF+ is used only where :61: says NONREF;
- it keeps no raw text; the same two tag subclasses keep the :61: and :86: values.

Only German (DK) structured :86: fields (?20..?63 with EREF+/KREF+/SVWZ+) are parsed by the
library; the slash keywords other banks use (/EREF/, /RTRN/ for a return's reason, /REMI/,
/NAME/, /IBAN/, /CNTP/) are read from an unstructured :86: here.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import mt940
from mt940.models import Transactions

from quire.reconciliation.bank_lines import (
    Balance,
    BankLine,
    BankTransactionCode,
    CreditDebit,
    ReturnInfo,
    Statement,
    account_identification,
    currency_code,
    minor_units,
)
from quire.reconciliation.errors import Loc, MalformedStatement, MissingAccount, MissingBalance

FORMAT = "mt940"
NO_REFERENCE = "NONREF"
NOT_PROVIDED = "NOTPROVIDED"
OPTIONS = mt940.Options(
    applicant_iban=True,
    merge_keeps_values=True,
    reversal_sign=True,
    case_insensitive_marks=True,
    timezone_offset=True,
    unbounded_details=True,
    non_swift_free_text=True,
    floor_limit_blank_mark=True,
    strip_bom=True,
    gvc_leading_text=True,
)
CREDIT_MARKS = frozenset({"C", "RD"})  # RD: reversal of a debit, money back in
REVERSAL_MARKS = frozenset({"RC", "RD"})
SLASH_CODES = ("EREF", "KREF", "RTRN", "REMI", "NAME", "IBAN", "CNTP")
_SLASH = re.compile(r"/(" + "|".join(SLASH_CODES) + r")/")


class _StatementLine(mt940.tags.Statement):
    """:61:, also keeping its raw text and its own customer reference apart."""

    def parse(self, transactions: Transactions, value: str) -> dict[str, str | None]:
        data = super().parse(transactions, value)
        data["raw_61"] = value
        data["reference_61"] = data.get("customer_reference")
        return data


class _Details(mt940.tags.TransactionDetails):
    """:86:, also keeping its raw text."""

    def parse(self, transactions: Transactions, value: str) -> dict[str, str | None]:
        data = super().parse(transactions, value)
        data["raw_86"] = value
        return data


# The library names a tag's slug, and so the processors it runs, after the tag's class.
_StatementLine.__name__ = "Statement"
_Details.__name__ = "TransactionDetails"
TAGS: dict[int | str, mt940.tags.Tag] = {61: _StatementLine(), 86: _Details()}


def _keep_kref(
    transactions: Transactions, tag: Any, tag_dict: dict[str, Any], result: dict[str, Any]
) -> dict[str, Any]:
    """After the DK parse of :86:: its KREF+ as its own key, before merging blurs it."""
    result["kref"] = result.get("customer_reference")
    return result


PROCESSORS = {
    "post_transaction_details": [
        mt940.processors.transaction_details_post_processor,
        _keep_kref,
    ],
}


def parse(text: str) -> list[Statement]:
    """Every statement of the file (one per :20:)."""
    try:
        blocks = mt940.parse_statements(text, processors=PROCESSORS, tags=TAGS, options=OPTIONS)
    except RuntimeError as exc:  # the library's word for a tag that does not parse
        tag = exc.args[1] if len(exc.args) > 1 else None
        where: Loc = (f":{tag.id}:",) if tag is not None else ()
        value = exc.args[2] if len(exc.args) > 2 else ""
        raise MalformedStatement(f"MT940 tag does not parse: {value!r}", loc=where) from None
    except (ValueError, InvalidOperation) as exc:  # a date like 261341, an amount like 1,2,3
        raise MalformedStatement(f"MT940 value is not valid: {exc}") from None
    if not blocks:
        raise MalformedStatement("no statement in the file (no :20: tag)")
    return [_statement(block, ("statement", i)) for i, block in enumerate(blocks)]


def _statement(block: Transactions, loc: Loc) -> Statement:
    data = block.data
    iban, account_id = _account(data.get("account_identification"), (*loc, ":25:"))
    opening = _balance(
        data,
        ("final_opening_balance", "opening_balance", "intermediate_opening_balance"),
        (*loc, ":60F:"),
        "opening",
    )
    closing = _balance(
        data,
        ("final_closing_balance", "closing_balance", "intermediate_closing_balance"),
        (*loc, ":62F:"),
        "closing",
    )
    number, page = data.get("statement_number"), data.get("sequence_number")
    sequence = f"{number}/{page}" if number and page else number
    reference = (data.get("transaction_reference") or "").strip()
    return Statement(
        format=FORMAT,
        # Many banks write the same :20: on every statement (German ones "STARTUMS"); with the
        # :28C: statement number it names one statement of the account.
        statement_id=f"{reference}/{sequence}" if sequence else reference,
        currency=opening.currency,
        opening_balance=opening,
        closing_balance=closing,
        lines=tuple(
            _line(t.data, j, opening.currency, (*loc, ":61:", j)) for j, t in enumerate(block)
        ),
        account_iban=iban,
        account_id=account_id,
        created_at=_created_at(data.get("date")),
        legal_sequence_number=sequence,
    )


def _account(value: str | None, loc: Loc) -> tuple[str | None, str | None]:
    """:25: as an IBAN when it is one (some banks append the currency: "DE89...000EUR")."""
    text = (value or "").strip()
    if not text:
        raise MissingAccount("the statement does not identify its account (:25:)", loc=loc)
    iban, other = account_identification(text, loc)
    if iban is None and len(text) > 3 and text[-3:].isalpha():
        iban, _ = account_identification(text[:-3], loc)
    return (iban, None) if iban else (None, other)


def _balance(data: dict[str, Any], keys: tuple[str, ...], loc: Loc, name: str) -> Balance:
    found = next((data[k] for k in keys if data.get(k) is not None), None)
    if found is None:
        cut = " (is the file truncated?)" if name == "closing" else ""
        raise MissingBalance(f"no {name} balance ({loc[-1]}){cut}", loc=loc)
    currency = currency_code(found.amount.currency, loc)
    amount = minor_units(abs(found.amount.amount), currency, loc)
    sign = -1 if (found.status or "").upper() == "D" else 1
    return Balance(sign * amount, currency, _plain_date(found.date))


def _line(t: dict[str, Any], index: int, currency: str, loc: Loc) -> BankLine:
    mark = (t.get("status") or "").upper()
    slash = slash_fields(t.get("transaction_details") or "")
    name, account = _counterparty(t, slash)
    end_to_end = t.get("end_to_end_reference") or slash.get("EREF")
    raw_86 = t.get("raw_86")
    value_date = _plain_date(t["date"])
    return BankLine(
        index=index,
        amount_minor=minor_units(abs(Decimal(t["amount"].amount)), currency, loc),
        credit_debit=CreditDebit.CREDIT if mark in CREDIT_MARKS else CreditDebit.DEBIT,
        currency=currency,
        booking_date=_plain_date(t["entry_date"]) if t.get("entry_date") else value_date,
        value_date=value_date,
        end_to_end_id=None if end_to_end in (None, NOT_PROVIDED) else end_to_end,
        account_servicer_reference=t.get("bank_reference") or None,
        customer_reference=_reference(t.get("reference_61"))
        or _reference(t.get("kref") or slash.get("KREF")),
        counterparty_name=name,
        counterparty_account=account,
        remittance_information=_remittance(t, slash),
        bank_code=_bank_code(t.get("id"), t.get("transaction_code")),
        return_info=ReturnInfo(reversal=mark in REVERSAL_MARKS, reason_code=slash.get("RTRN")),
        additional_info=(t.get("extra_details") or "").strip() or None,
        entry_reference=_entry_reference(t),
        raw=f":61:{t.get('raw_61', '')}" + (f"\n:86:{raw_86}" if raw_86 else ""),
    )


def slash_fields(text: str) -> dict[str, str]:
    """The slash keywords of an unstructured :86: ("/RTRN/AC04/EREF/E2E-1/REMI/USTD//text/").

    CNTP is account/BIC/name/city; it fills IBAN and NAME when they are not given on their own.
    """
    found: dict[str, str] = {}
    flat = text.replace("\n", "")
    marks = list(_SLASH.finditer(flat))
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(flat)
        found.setdefault(mark.group(1), flat[mark.end() : end].strip("/ "))
    if "REMI" in found:
        found["REMI"] = found["REMI"].removeprefix("USTD//").strip("/ ")
    if "RTRN" in found:
        found["RTRN"] = found["RTRN"].split("/")[0]
    if "CNTP" in found:
        parts = [*found.pop("CNTP").split("/"), "", "", ""]
        found.setdefault("IBAN", parts[0])
        found.setdefault("NAME", parts[2])
    return {key: value for key, value in found.items() if value}


def _counterparty(t: dict[str, Any], slash: dict[str, str]) -> tuple[str | None, str | None]:
    name = t.get("applicant_name") or slash.get("NAME")
    account = t.get("applicant_iban") or slash.get("IBAN")
    return (name.strip() if name else None), (account.strip() if account else None)


def _remittance(t: dict[str, Any], slash: dict[str, str]) -> str | None:
    """DK's SVWZ+ (or ?20.. text), else /REMI/, else an unstructured :86: as it stands."""
    if t.get("purpose"):
        return str(t["purpose"]).strip() or None
    if slash:
        return slash.get("REMI")
    details = " ".join((t.get("transaction_details") or "").split())
    return details or None


def _bank_code(swift: str | None, gvc: str | None) -> BankTransactionCode:
    """The :61: type code (issuer SWIFT); with a DK GVC, written as DK writes it in camt."""
    if gvc:
        return BankTransactionCode(proprietary=f"{swift}+{gvc}" if swift else gvc, issuer="DK")
    return BankTransactionCode(proprietary=swift, issuer="SWIFT" if swift else None)


def _entry_reference(t: dict[str, Any]) -> str | None:
    """The :61: reference subfields as written ("NONREF//BK-7790"): MT940 has no entry id of
    its own, and this is what a person finds the line by in the bank's portal."""
    customer, bank = (t.get("reference_61") or "").strip(), (t.get("bank_reference") or "").strip()
    return f"{customer}//{bank}" if bank else customer or None


def _reference(value: str | None) -> str | None:
    text = (value or "").strip()
    return None if not text or text.upper() == NO_REFERENCE else text


def _plain_date(value: date) -> date:
    """The library's Date subclass as a plain date (they compare and pickle alike)."""
    return date(value.year, value.month, value.day)


def _created_at(value: datetime | None) -> datetime | None:
    """:13D: as a plain datetime, with its offset as a `timezone` (not the library's)."""
    if value is None:
        return None
    offset = value.utcoffset()
    zone = timezone(offset) if offset is not None else None
    return datetime(value.year, value.month, value.day, value.hour, value.minute, tzinfo=zone)
