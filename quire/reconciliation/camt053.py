"""camt.053 (ISO 20022 bank-to-customer statement, .001.02 to .001.08) into `Statement`s.

The message is read by pyiso20022's generated classes (one module per version) through xsdata,
strictly: an unknown element or attribute, a value that does not convert (a date 2026-13-01, an
amount "12,50", a status the code list lacks) or a required element missing refuses the file.
No camt.053 XSD ships with the installed packages (pyiso20022 and sepaxml carry pain XSDs only),
so there is no schema validation proper; instead the facets the XSD states and the generated
classes carry as field metadata (patterns, lengths, digits, occurrences) are checked by
pyiso20022's own validator, with its patterns anchored as XSD's are (it matches prefixes).
What that does not see is the order of elements.

The versions differ in names along the way (a party is `Nm` up to .06 and `Pty/Nm` from .07, a
transaction's amount is only in `AmtDtls` in .02, the entry status is a code up to .06 and a
choice from .07), so the entries are read by attribute, through the small accessors of
`camt053_entries`, rather than per version.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from lxml import etree
from pyiso20022.tools.validation import ISO20022Validator, ValidationResult
from xsdata.exceptions import ParserError
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig
from xsdata.formats.dataclass.parsers.handlers import LxmlEventHandler

from quire.reconciliation.bank_lines import (
    Balance,
    BankLine,
    Statement,
    account_identification,
    currency_code,
    minor_units,
)
from quire.reconciliation.camt053_entries import EntryContext, code, entry_lines, on_date
from quire.reconciliation.errors import (
    CurrencyMismatch,
    Loc,
    MalformedStatement,
    MissingAccount,
    MissingBalance,
)

NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:camt.053.001."
SUPPORTED_VERSIONS = ("02", "03", "04", "05", "06", "07", "08")
OPENING_CODES = ("OPBD", "PRCD")  # opening booked; previously closed booked (its equal)
CLOSING_CODE = "CLBD"
ROOT: Loc = ("BkToCstmrStmt",)

_CONFIG = ParserConfig(
    fail_on_unknown_properties=True,
    fail_on_unknown_attributes=True,
    fail_on_converter_warnings=True,
)
_MISSING = re.compile(r"(\w+)\.__init__\(\) missing \d+ required keyword-only arguments?: '(\w+)'")


class _AnchoredValidator(ISO20022Validator):
    """pyiso20022's facet validator, with XSD's anchored patterns (it uses `re.match`, so
    "EURO" passed `[A-Z]{3,3}`)."""

    def _validate_pattern(
        self, field_name: str, value: Any, pattern: str, result: ValidationResult
    ) -> None:
        if isinstance(value, str) and not re.fullmatch(pattern, value):
            result.add_error(field_name, value, "pattern", f"{value!r} does not match {pattern}")


def parse(root: etree._Element, version: str) -> list[Statement]:
    """Every statement of the message (a camt.053 may hold one per account)."""
    raw_entries = _raw_entries(root, f"{NAMESPACE_PREFIX}{version}")  # before xsdata empties it
    module = importlib.import_module(f"pyiso20022.camt.camt_053_001_{version}")
    document = _document(root, module)
    _check_facets(document)
    message = document.bk_to_cstmr_stmt
    return [
        _statement(stmt, raws, message.grp_hdr, f"camt.053.001.{version}", (*ROOT, "Stmt", i))
        for i, (stmt, raws) in enumerate(zip(message.stmt, raw_entries, strict=True))
    ]


def _raw_entries(root: etree._Element, namespace: str) -> list[list[str]]:
    """Each statement's entries as the bank wrote them. Taken first: xsdata's lxml handler
    clears the elements it has read, so after parsing the tree is empty."""
    return [
        [
            etree.tostring(entry, encoding="unicode")
            for entry in stmt.iterchildren(f"{{{namespace}}}Ntry")
        ]
        for stmt in root.iterfind(f"{{{namespace}}}BkToCstmrStmt/{{{namespace}}}Stmt")
    ]


def _document(root: etree._Element, module: ModuleType) -> Any:
    """The message as pyiso20022's classes, or the reason it is not one."""
    parser = XmlParser(config=_CONFIG, handler=LxmlEventHandler)
    try:
        return parser.parse(root, module.Document)
    except ParserError as exc:
        message = re.sub(r"\{[^}]*\}", "", str(exc))  # Clark notation's namespaces: noise here
        raise MalformedStatement(f"not a valid camt.053 message: {message}", loc=ROOT) from None
    except TypeError as exc:  # xsdata builds the dataclass without a required element
        raise _missing_element(str(exc), module) from None


def _missing_element(message: str, module: ModuleType) -> MalformedStatement:
    """The error for a required element that is absent, named as the XML names it."""
    found = _MISSING.search(message)
    if found is None:
        return MalformedStatement(f"not a valid camt.053 message: {message}", loc=ROOT)
    owner, field = found.groups()
    owner_class = getattr(module, owner, None)
    fields = dataclasses.fields(owner_class) if dataclasses.is_dataclass(owner_class) else ()
    element = next((f.metadata.get("name", field) for f in fields if f.name == field), field)
    if element == "Acct":
        return MissingAccount("a statement has no account (Acct)", loc=(*ROOT, "Stmt", "Acct"))
    return MalformedStatement(
        f"a required element is missing: {element} (in {owner})", loc=(element,)
    )


def _check_facets(document: Any) -> None:
    """The XSD's facets, from the generated classes' metadata; the first breach refuses."""
    result = _AnchoredValidator().validate_message(document, strict=False)
    if result.is_valid:
        return
    first = result.errors[0]
    more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
    raise MalformedStatement(
        f"{first.message}{more}", loc=_xml_loc(document, first.field_name), value=str(first.value)
    )


def _xml_loc(document: Any, dotted: str) -> Loc:
    """The validator's path (bk_to_cstmr_stmt.stmt.[0].acct) in XML names (Stmt, 0, Acct)."""
    loc: list[str | int] = []
    node = document
    for part in dotted.split("."):
        index = re.fullmatch(r"\[(\d+)\]", part)
        if index:
            loc.append(int(index.group(1)))
            node = node[int(index.group(1))] if isinstance(node, Sequence) else node
            continue
        names = {f.name: f.metadata.get("name", f.name) for f in dataclasses.fields(node)}
        loc.append(names.get(part, part))
        node = getattr(node, part, None)
        if node is None or isinstance(node, str | int | float):
            break
    return tuple(loc)


def _statement(stmt: Any, raws: list[str], header: Any, fmt: str, loc: Loc) -> Statement:
    iban, account_id = _account(stmt.acct, (*loc, "Acct"))
    opening, closing = _balances(stmt.bal, loc)
    currency = currency_code(stmt.acct.ccy or closing.currency, (*loc, "Acct", "Ccy"))
    for name, balance in (("opening", opening), ("closing", closing)):
        if balance.currency != currency:
            raise CurrencyMismatch(
                f"the {name} balance is in {balance.currency}, the account in {currency}",
                loc=(*loc, "Bal"),
            )
    lines: list[BankLine] = []
    for j, (entry, raw) in enumerate(zip(stmt.ntry, raws, strict=True)):
        context = EntryContext(currency, iban or account_id or "", len(lines), (*loc, "Ntry", j))
        lines.extend(entry_lines(entry, raw, context))
    created = stmt.cre_dt_tm or header.cre_dt_tm
    return Statement(
        format=fmt,
        statement_id=stmt.id,
        currency=currency,
        opening_balance=opening,
        closing_balance=closing,
        lines=tuple(lines),
        account_iban=iban,
        account_id=account_id,
        message_id=header.msg_id,
        created_at=created.to_datetime() if created is not None else None,
        electronic_sequence_number=_number(stmt.elctrnc_seq_nb),
        legal_sequence_number=_number(stmt.lgl_seq_nb),
    )


def _account(account: Any, loc: Loc) -> tuple[str | None, str | None]:
    ident = account.id
    iban = ident.iban if ident is not None else None
    other = ident.othr.id if ident is not None and ident.othr is not None else None
    if not (iban or other):
        raise MissingAccount("the statement does not identify its account", loc=(*loc, "Id"))
    if iban:
        return account_identification(iban, (*loc, "Id", "IBAN"), require_iban=True)
    return None, other


def _balances(balances: list[Any], loc: Loc) -> tuple[Balance, Balance]:
    """The opening (OPBD, else PRCD) and closing (CLBD) booked balances, signed."""
    found: dict[str, Balance] = {}
    for k, bal in enumerate(balances):
        kind = code(bal.tp.cd_or_prtry.cd) or code(bal.tp.cd_or_prtry.prtry)
        where = (*loc, "Bal", k, "Amt")
        amount = minor_units(bal.amt.value, bal.amt.ccy, where)
        sign = -1 if code(bal.cdt_dbt_ind) == "DBIT" else 1
        when = on_date(bal.dt)
        if kind and when is not None:
            found.setdefault(kind, Balance(sign * amount, bal.amt.ccy, when))
    opening = next((found[c] for c in OPENING_CODES if c in found), None)
    if opening is None:
        raise MissingBalance(
            "no opening booked balance (Bal of type OPBD or PRCD)", loc=(*loc, "Bal")
        )
    if CLOSING_CODE not in found:
        raise MissingBalance("no closing booked balance (Bal of type CLBD)", loc=(*loc, "Bal"))
    return opening, found[CLOSING_CODE]


def _number(value: Any) -> str | None:
    """A sequence number as text (xsdata reads them as Decimal)."""
    return None if value is None else str(int(value)) if value == int(value) else str(value)
