"""A statement file in: its format told from its content, taken whole or refused whole."""

from __future__ import annotations

import pytest

from quire.errors import Invalid
from quire.reconciliation.errors import (
    MalformedStatement,
    MissingAccount,
    StatementInvalid,
    UnbalancedStatement,
    UnknownStatementFormat,
)
from quire.reconciliation.statements import parse_statements
from tests.quire.reconciliation.statement_samples import (
    CAMT_V02,
    CAMT_V05,
    CAMT_V08,
    MT940,
    edited,
    sample,
)


@pytest.mark.parametrize(
    ("name", "formats"),
    [
        (CAMT_V02, ["camt.053.001.02"]),
        (CAMT_V05, ["camt.053.001.05"]),
        (CAMT_V08, ["camt.053.001.08"] * 3),
        (MT940, ["mt940"] * 3),
    ],
)
def test_the_format_comes_from_the_content(name, formats):
    assert [s.format for s in parse_statements(sample(name))] == formats


def test_a_byte_order_mark_does_not_hide_the_format():
    assert parse_statements(b"\xef\xbb\xbf" + sample(CAMT_V02))[0].format == "camt.053.001.02"
    assert parse_statements(b"\xef\xbb\xbf\r\n" + sample(MT940))[0].format == "mt940"


def test_mt940_in_latin_1_is_read():
    content = edited(MT940, b"?32Ada Lovelace", "?32Ada Lövelace".encode("latin-1"))
    assert parse_statements(content)[0].lines[0].counterparty_name == "Ada Lövelace"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            sample(CAMT_V02).replace(b"camt.053.001.02", b"camt.053.001.09"),
            "camt.053.001.09 is not supported (versions .02 to .08 are)",
        ),
        (
            sample(CAMT_V02).replace(b"camt.053.001.02", b"camt.053.001.01"),
            "camt.053.001.01 is not supported",
        ),
        (
            sample(CAMT_V02).replace(b"camt.053.001.02", b"camt.052.001.02"),
            "a camt.052.001.02 message is not a camt.053 bank statement",
        ),
        (b"<html><body>statement</body></html>", "XML in namespace '' is not a camt.053"),
        (b"Date;Amount\n2026-11-30;12.50\n", "neither camt.053 XML nor MT940"),
        (b":86:only details\n", "neither camt.053 XML nor MT940"),
    ],
)
def test_an_unknown_format_or_version_is_refused(content, says):
    with pytest.raises(UnknownStatementFormat) as refused:
        parse_statements(content)
    assert says in refused.value.message
    assert refused.value.code == "unknown_statement_format"


def test_a_truncated_camt_file_is_refused():
    content = sample(CAMT_V08)
    with pytest.raises(MalformedStatement, match="not well-formed XML") as refused:
        parse_statements(content[: len(content) // 2])
    assert refused.value.code == "malformed_statement"


def test_an_empty_file_is_refused():
    with pytest.raises(MalformedStatement, match="empty"):
        parse_statements(b"  \n")


def test_xml_with_a_doctype_is_refused_before_anything_is_read():
    content = (
        b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&x;</Document>'
    )
    with pytest.raises(MalformedStatement, match="DOCTYPE"):
        parse_statements(content)


def test_camt_closing_balance_one_cent_off_names_both_numbers():
    content = edited(CAMT_V08, b'<Amt Ccy="EUR">14130.00</Amt>', b'<Amt Ccy="EUR">14130.01</Amt>')
    with pytest.raises(UnbalancedStatement) as refused:
        parse_statements(content)
    assert refused.value.message == (
        "statement STMT-EUR-2026-11-30: opening balance EUR 12,500.00 plus its 7 booked lines "
        "(EUR 1,630.00) is EUR 14,130.00, but its closing balance is EUR 14,130.01"
    )
    assert refused.value.loc == ("statements", 0, "closing_balance")
    assert refused.value.details["computed_closing_minor"] == 1413000
    assert refused.value.details["stated_closing_minor"] == 1413001


def test_a_pending_entry_is_not_in_the_booked_balance():
    # The EUR statement balances only without its PDNG entry of EUR 500.00; booked, it breaks it.
    booked = edited(CAMT_V08, b"<Sts><Cd>PDNG</Cd></Sts>", b"<Sts><Cd>BOOK</Cd></Sts>")
    with pytest.raises(UnbalancedStatement, match="8 booked lines"):
        parse_statements(booked)


def test_mt940_second_statement_off_refuses_the_whole_file():
    content = edited(MT940, b":62F:C261130JPY755000,", b":62F:C261130JPY755001,")
    with pytest.raises(UnbalancedStatement) as refused:
        parse_statements(content)
    assert "statement STMT-JPY-1130/7" in refused.value.message
    assert "is JPY 755,000, but its closing balance is JPY 755,001" in refused.value.message
    assert refused.value.loc == ("statements", 1, "closing_balance")


def test_a_line_left_out_breaks_the_balance():
    content = edited(MT940, b":61:261130D0,375NCHGNONREF\n", b"")
    with pytest.raises(
        UnbalancedStatement, match=r"KWD 89\.625, but its closing balance is KWD 89\.250"
    ):
        parse_statements(content)


def test_every_refusal_is_a_422_shaped_invalid_with_a_field_path():
    with pytest.raises(StatementInvalid) as refused:
        parse_statements(edited(MT940, b":25:0012345678\n", b":25:\n"))
    error = refused.value
    assert isinstance(error, Invalid)
    assert isinstance(error, MissingAccount)
    assert error.details["errors"] == [
        {
            "loc": ["statement", 1, ":25:"],
            "msg": "the statement does not identify its account (:25:)",
            "type": "missing_account",
        }
    ]
