"""MT940 statements read into the bank-line model, and the mt-940 library's quirks handled."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import mt940 as library
import pytest

from quire.reconciliation.bank_lines import BankTransactionCode, CreditDebit
from quire.reconciliation.errors import (
    AmountPrecision,
    MalformedStatement,
    MissingAccount,
    MissingBalance,
)
from quire.reconciliation.mt940 import slash_fields
from quire.reconciliation.statements import parse_statements
from tests.quire.reconciliation.statement_samples import MT940, edited, parsed, sample

KREF_LESS_86 = b":61:2611291129D80,00NTRFCUSTREF-99//BK-7782"


def test_one_file_holds_three_statements_in_three_currencies():
    eur, jpy, kwd = parsed(MT940)
    assert [s.format for s in (eur, jpy, kwd)] == ["mt940"] * 3
    assert [s.currency for s in (eur, jpy, kwd)] == ["EUR", "JPY", "KWD"]
    assert [len(s.lines) for s in (eur, jpy, kwd)] == [6, 2, 2]


def test_the_statement_header_fields():
    eur = parsed(MT940)[0]
    assert eur.statement_id == "STMT-20261130/00042/001"  # :20: with :28C:
    assert eur.legal_sequence_number == "00042/001"
    assert eur.account_iban == "DE89370400440532013000"
    assert eur.created_at == datetime(2026, 11, 30, 18, 5, tzinfo=timezone(timedelta(hours=1)))
    assert (eur.opening_balance.amount_minor, eur.opening_balance.date) == (
        1250000,
        date(2026, 11, 27),
    )
    assert (eur.closing_balance.amount_minor, eur.closing_balance.date) == (
        1425000,
        date(2026, 11, 30),
    )
    assert eur.message_id is None
    assert eur.electronic_sequence_number is None


def test_accounts_that_are_not_plain_ibans():
    _, jpy, kwd = parsed(MT940)
    assert (jpy.account_iban, jpy.account_id) == (None, "0012345678")
    # some banks append the currency to the IBAN in :25:
    assert (kwd.account_iban, kwd.account_id) == ("KW81CBKU0000000000001234560101", None)


def test_a_payout_line_with_a_german_structured_86():
    line = parsed(MT940)[0].lines[0]
    assert (line.index, line.amount_minor, line.credit_debit) == (0, 125000, CreditDebit.DEBIT)
    assert (line.booking_date, line.value_date) == (date(2026, 11, 28), date(2026, 11, 28))
    assert line.end_to_end_id == "QP202611A1L000001"  # EREF+
    assert line.account_servicer_reference == "BK-7781"  # after // in :61:
    assert (line.counterparty_name, line.counterparty_account) == (
        "Ada Lovelace",
        "DE02100100100006820101",
    )
    assert line.remittance_information == "Payout November 2026"  # SVWZ+
    assert line.bank_code == BankTransactionCode(proprietary="NTRF+116", issuer="DK")
    assert line.entry_reference == "PAYRUN-7//BK-7781"
    assert line.raw.startswith(":61:2611281128D1250,00NTRFPAYRUN-7//BK-7781\n:86:116?00")


def test_the_61_reference_is_kept_when_86_has_kref_too():
    # The library joins the two into "PAYRUN-7\nPAYRUN-7".
    assert parsed(MT940)[0].lines[0].customer_reference == "PAYRUN-7"


def test_the_61_reference_is_kept_when_86_has_no_kref():
    """mt-940 drops the :61: customer reference when a structured :86: has no KREF+ (5.0.0
    behaviour, still its default); our parse keeps it."""
    dropped = library.parse_statements(sample(MT940).decode())[0][1]
    assert dropped.data["customer_reference"] is None  # the library's default, for the record
    line = parsed(MT940)[0].lines[1]
    assert line.raw.startswith(KREF_LESS_86.decode())
    assert line.customer_reference == "CUSTREF-99"


def test_kref_fills_in_where_61_says_nonref():
    client = parsed(MT940)[0].lines[3]
    assert client.customer_reference == "ACME-PAY-311"
    assert client.end_to_end_id is None  # EREF+NOTPROVIDED is no id
    assert client.counterparty_name == "Acme Publishing GmbH"
    assert client.remittance_information == "INV-2026-0042 Order ORD-1042"


def test_no_reference_at_all_is_none():
    fee = parsed(MT940)[0].lines[4]
    assert fee.customer_reference is None  # NONREF, no KREF
    assert fee.remittance_information == "Fee refund November"  # unstructured :86:


def test_a_german_bank_books_a_returned_payout_with_gvc_159_whatever_61_says():
    """DK banks write the return in the :86: business code (Retoure), often under a plain
    NTRF or NMSC :61: type: the line is a return, matched with the payout it names."""
    content = edited(
        MT940,
        b":61:2611301130C80,00NRTINONREF//BK-7790",
        b":61:2611301130C80,00NMSCNONREF//BK-7790",
    ).replace(
        b":86:/RTRN/AC04/EREF/QP202611A1L000002/CNTP/GB29NWBK60161331926819/NWBKGB2L/Alan Turing"
        b"//REMI/USTD",
        b":86:159?00RETOURE?20EREF+QP202611A1L000002?21SVWZ+RETOURE Payout November",
        1,
    )
    returned = parse_statements(content)[0].lines[2]
    assert returned.bank_code == BankTransactionCode(proprietary="NMSC+159", issuer="DK")
    assert returned.is_return
    assert returned.end_to_end_id == "QP202611A1L000002"
    # The same code under another issuer, or a DK payout (116), is no return.
    assert not BankTransactionCode(proprietary="NMSC+159", issuer="SWIFT").is_return
    assert not BankTransactionCode(proprietary="NTRF+116", issuer="DK").is_return


def test_a_returned_payout_nrti_with_reason_ac04():
    returned = parsed(MT940)[0].lines[2]
    assert (returned.credit_debit, returned.amount_minor) == (CreditDebit.CREDIT, 8000)
    assert returned.bank_code == BankTransactionCode(proprietary="NRTI", issuer="SWIFT")
    assert returned.return_info.reason_code == "AC04"  # /RTRN/
    assert returned.is_return
    assert not returned.is_reversal
    assert returned.end_to_end_id == "QP202611A1L000002"  # /EREF/
    assert (returned.counterparty_name, returned.counterparty_account) == (
        "Alan Turing",
        "GB29NWBK60161331926819",
    )  # /CNTP/
    assert returned.remittance_information == "RETURN Payout November 2026"  # /REMI/USTD//
    assert returned.additional_info == "/OCMT/EUR80,00/"  # :61: supplementary details


def test_a_reversal_of_a_credit_is_a_debit():
    """RC is a debit (the library's default gave it a positive amount)."""
    reversal = parsed(MT940)[0].lines[5]
    assert reversal.credit_debit is CreditDebit.DEBIT
    assert reversal.signed_amount_minor == -1500
    assert reversal.is_reversal
    assert not reversal.is_return


def test_jpy_and_kwd_amounts_and_intermediate_balances():
    _, jpy, kwd = parsed(MT940)
    assert [line.signed_amount_minor for line in jpy.lines] == [-250000, 5000]
    assert (jpy.opening_balance.amount_minor, jpy.closing_balance.amount_minor) == (1000000, 755000)
    assert jpy.lines[1].counterparty_name == "Sato Hanako"  # /NAME/
    # :60M:/:62M: (a later page of statement 3) stand in for :60F:/:62F:
    assert (kwd.opening_balance.amount_minor, kwd.closing_balance.amount_minor) == (-10500, 89250)
    assert [line.signed_amount_minor for line in kwd.lines] == [100125, -375]
    assert kwd.statement_id == "STMT-KWD-1130/3/2"


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (b"C5000,NTRF", b"C5000,5NTRF", "5000.5 JPY has more decimals than JPY has (0)"),
        (b"D0,375NCHG", b"D0,3751NCHG", "0.3751 KWD has more decimals than KWD has (3)"),
        (b"D80,00NTRF", b"D80,001NTRF", "80.001 EUR has more decimals than EUR has (2)"),
    ],
)
def test_an_amount_with_more_decimals_than_its_currency_is_refused(old, new, says):
    with pytest.raises(AmountPrecision) as refused:
        parse_statements(edited(MT940, old, new))
    assert refused.value.message == says
    assert refused.value.loc[-2] == ":61:"


def test_a_statement_without_account_is_refused():
    with pytest.raises(MissingAccount) as refused:
        parse_statements(edited(MT940, b":25:0012345678\n", b":25:\n"))
    assert refused.value.loc == ("statement", 1, ":25:")
    with pytest.raises(MissingAccount):
        parse_statements(edited(MT940, b":25:0012345678\n", b""))


def test_a_file_cut_before_its_closing_balance_is_refused():
    content = sample(MT940)
    cut = content[: content.index(b":62F:C261130EUR")]
    with pytest.raises(MissingBalance, match="truncated") as refused:
        parse_statements(cut)
    assert refused.value.loc == ("statement", 0, ":62F:")


def test_a_tag_that_does_not_parse_is_refused():
    with pytest.raises(MalformedStatement) as refused:
        parse_statements(edited(MT940, b":60F:C261127JPY1000000,", b":60F:X261127JPY1000000,"))
    assert refused.value.loc == (":60F:",)
    with pytest.raises(MalformedStatement, match=r"month must be in 1\.\.12"):
        parse_statements(edited(MT940, b":60F:C261127JPY", b":60F:C261327JPY"))


def test_slash_keywords_of_an_unstructured_86():
    assert slash_fields("/RTRN/MS03/EREF/E2E-1/REMI/USTD//Invoice 7/") == {
        "RTRN": "MS03",
        "EREF": "E2E-1",
        "REMI": "Invoice 7",
    }
    assert slash_fields("/CNTP/NL91ABNA0417164300/ABNANL2A/J DOE/AMSTERDAM/") == {
        "IBAN": "NL91ABNA0417164300",
        "NAME": "J DOE",
    }
    assert slash_fields("Payout November 2026") == {}


def test_a_file_wrapped_in_swift_blocks_reads_the_same():
    header = "{1:F01FAKEDEFFAXXX0000000000}{2:O9401200261130FAKEDEFFAXXX00000000002611301200N}{4:\n"
    blocks = sample(MT940).decode().split("-\n")[:-1]
    wrapped = "".join(f"{header}{block}-}}\n" for block in blocks).encode()
    assert parse_statements(wrapped) == parsed(MT940)
