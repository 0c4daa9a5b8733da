"""Bank statement files in: camt.053 (.001.02 to .001.08) or MT940, into one model.

`parse_statements(content)` is the one entry point. It tells the format from the content, never
from a file name (an upload's name is whatever the user's browser sent): XML whose root is in a
camt.053 namespace is camt.053 of that version; text with :20: and :25: tags is MT940.
Everything else, including other ISO 20022 messages and camt.053 versions outside .02 to .08,
is refused as an unknown format.

A file is taken whole or not at all: any statement in it that is malformed, names no account,
has an amount its currency cannot hold, or whose opening balance plus its booked lines is not
its closing balance refuses the file, with an error that says which statement and why.
"""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

from quire import money
from quire.reconciliation import camt053, mt940
from quire.reconciliation.bank_lines import Statement
from quire.reconciliation.errors import (
    CurrencyMismatch,
    MalformedStatement,
    UnbalancedStatement,
    UnknownStatementFormat,
)

CAMT053_VERSION = re.compile(re.escape(camt053.NAMESPACE_PREFIX) + r"(\d{2})$")
ISO20022_MESSAGE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:([a-z]{4}\.\d{3}\.\d{3}\.\d{2})$")
# :20: opens every MT940 statement; with it, the account (:25:), the statement number (:28C:) or
# the opening balance (:60F:/:60M:) tell it from other text. A file with :20: but no :25: is
# MT940 without an account, refused as such rather than as an unknown format.
MT940_TAGS: Final = (re.compile(r"(?m)^:20:"), re.compile(r"(?m)^:(25|28C?|60[FM]):"))
BOM = "\ufeff"


def parse_statements(content: bytes) -> tuple[Statement, ...]:
    """Every statement in the file, each checked; raises a `StatementInvalid` otherwise."""
    if not content.removeprefix(BOM.encode()).strip():
        raise MalformedStatement("the file is empty")
    if content.removeprefix(BOM.encode()).lstrip().startswith(b"<"):
        statements = _camt053(content)
    else:
        statements = _mt940(content)
    for i, statement in enumerate(statements):
        check_balances(statement, i)
    return tuple(statements)


def _camt053(content: bytes) -> list[Statement]:
    root = _xml_root(content)
    namespace = etree.QName(root).namespace or ""
    version = CAMT053_VERSION.match(namespace)
    if version is None or etree.QName(root).localname != "Document":
        other = ISO20022_MESSAGE.match(namespace)
        what = f"a {other.group(1)} message" if other else f"XML in namespace {namespace!r}"
        raise UnknownStatementFormat(f"{what} is not a camt.053 bank statement", loc=("Document",))
    if version.group(1) not in camt053.SUPPORTED_VERSIONS:
        raise UnknownStatementFormat(
            f"camt.053.001.{version.group(1)} is not supported (versions .02 to .08 are)",
            loc=("Document",),
            version=f"camt.053.001.{version.group(1)}",
        )
    return camt053.parse(root, version.group(1))


def _xml_root(content: bytes) -> etree._Element:
    """The document's root, parsed without entities, DTDs or the network (a statement comes
    from outside; an entity could read local files or expand a billion laughs)."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        raise MalformedStatement(f"not well-formed XML (truncated?): {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise MalformedStatement("a bank statement has no DOCTYPE (it could declare entities)")
    return root


def _mt940(content: bytes) -> list[Statement]:
    text = _decode(content)
    if not all(tag.search(text) for tag in MT940_TAGS):
        raise UnknownStatementFormat("neither camt.053 XML nor MT940 (no :20: with :25: tags)")
    return mt940.parse(text)


def _decode(content: bytes) -> str:
    """MT940 is ASCII in SWIFT's character set; banks send UTF-8 or Latin-1 for names."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = content.decode("latin-1")
    return text.removeprefix(BOM)


def check_balances(statement: Statement, index: int = 0) -> None:
    """Opening balance + booked lines = closing balance, all in the account's currency."""
    loc = ("statements", index)
    for line in statement.lines:
        if line.currency != statement.currency:
            raise CurrencyMismatch(
                f"statement {statement.statement_id}: line {line.index} is in {line.currency}, "
                f"the account in {statement.currency}",
                loc=(*loc, "lines", line.index, "currency"),
            )
    opening = statement.opening_balance.amount_minor
    moved = sum(line.signed_amount_minor for line in statement.booked_lines)
    stated = statement.closing_balance.amount_minor
    if opening + moved != stated:
        raise _unbalanced(statement, opening, moved, stated, loc)


def _unbalanced(
    statement: Statement, opening: int, moved: int, stated: int, loc: tuple[str | int, ...]
) -> UnbalancedStatement:
    currency = statement.currency

    def shown(amount: int) -> str:
        return money.format_minor(amount, currency)

    return UnbalancedStatement(
        f"statement {statement.statement_id}: opening balance {shown(opening)} plus its "
        f"{len(statement.booked_lines)} booked lines ({shown(moved)}) is {shown(opening + moved)}, "
        f"but its closing balance is {shown(stated)}",
        loc=(*loc, "closing_balance"),
        statement_id=statement.statement_id,
        computed_closing_minor=opening + moved,
        stated_closing_minor=stated,
    )
