"""camt.053 statements (.02, .05, .08 samples) read into the bank-line model."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from quire.reconciliation.bank_lines import BankTransactionCode, CreditDebit, ReturnInfo
from quire.reconciliation.camt053 import SUPPORTED_VERSIONS
from quire.reconciliation.errors import (
    AmountPrecision,
    CurrencyMismatch,
    MalformedStatement,
    MissingAccount,
    MissingBalance,
)
from quire.reconciliation.statements import parse_statements
from tests.quire.reconciliation.statement_samples import (
    CAMT_V02,
    CAMT_V05,
    CAMT_V08,
    edited,
    parsed,
    sample,
)

CET = timezone(timedelta(hours=1))


def test_one_message_holds_one_statement_per_account():
    eur, jpy, kwd = parsed(CAMT_V08)
    assert [s.statement_id for s in (eur, jpy, kwd)] == [
        "STMT-EUR-2026-11-30",
        "STMT-JPY-2026-11-30",
        "STMT-KWD-2026-11-30",
    ]
    assert [s.currency for s in (eur, jpy, kwd)] == ["EUR", "JPY", "KWD"]
    assert {s.message_id for s in (eur, jpy, kwd)} == {"FAKEBANK-20261130-0001"}


def test_the_statement_header_fields():
    eur = parsed(CAMT_V08)[0]
    assert eur.format == "camt.053.001.08"
    assert eur.account_iban == "DE89370400440532013000"
    assert eur.account_id is None
    assert eur.account == "DE89370400440532013000"
    assert eur.created_at == datetime(2026, 11, 30, 18, 0, tzinfo=CET)
    assert eur.electronic_sequence_number == "331"
    assert eur.legal_sequence_number == "47"


def test_balances_are_signed_minor_units_with_their_dates():
    eur, jpy, kwd = parsed(CAMT_V08)
    assert (eur.opening_balance.amount_minor, eur.opening_balance.date) == (
        1250000,
        date(2026, 11, 27),
    )
    assert (eur.closing_balance.amount_minor, eur.closing_balance.date) == (
        1413000,
        date(2026, 11, 30),
    )
    assert (jpy.opening_balance.amount_minor, jpy.closing_balance.amount_minor) == (1000000, 755000)
    # KWD has 3 decimals; the opening balance is overdrawn (DBIT) and given as PRCD.
    assert (kwd.opening_balance.amount_minor, kwd.closing_balance.amount_minor) == (-10500, 89250)


def test_an_account_without_iban_is_known_by_its_other_id():
    jpy = parsed(CAMT_V08)[1]
    assert (jpy.account_iban, jpy.account_id) == (None, "0012345678")


def test_the_creation_time_falls_back_to_the_group_header():
    kwd = parsed(CAMT_V08)[2]
    assert kwd.created_at == datetime(2026, 11, 30, 18, 5, tzinfo=CET)


def test_a_payout_line_carries_every_reference():
    line = parsed(CAMT_V08)[0].lines[0]
    assert line.index == 0
    assert (line.amount_minor, line.credit_debit, line.signed_amount_minor) == (
        125000,
        CreditDebit.DEBIT,
        -125000,
    )
    assert line.currency == "EUR"
    assert (line.booking_date, line.value_date) == (date(2026, 11, 28), date(2026, 11, 28))
    assert (line.booked, line.status) == (True, "BOOK")
    assert line.end_to_end_id == "QP202611A1L000001"
    assert line.account_servicer_reference == "BK-7781-1"  # the transaction's own, over the entry's
    assert line.customer_reference == "Q-PAYRUN-7-I1"  # InstrId
    assert line.entry_reference == "E-0001"
    assert (line.counterparty_name, line.counterparty_account) == (
        "Ada Lovelace",
        "DE02100100100006820101",
    )
    assert line.remittance_information == "Payout November 2026"
    assert line.bank_code == BankTransactionCode("PMNT", "ICDT", "ESCT", "NTRF+116", "DK")
    assert line.return_info == ReturnInfo()
    assert not line.is_return
    assert not line.is_reversal
    assert line.raw.startswith("<Ntry")
    assert "<NtryRef>E-0001</NtryRef>" in line.raw


def test_a_batch_booking_that_adds_up_is_one_line_per_payout():
    eur = parsed(CAMT_V08)[0]
    grace, alan = eur.lines[1:3]
    assert (grace.end_to_end_id, alan.end_to_end_id) == ("QP202611A1L000002", "QP202611A1L000003")
    assert (grace.amount_minor, alan.amount_minor) == (12000, 8000)
    assert {grace.entry_reference, alan.entry_reference} == {"E-0002"}
    assert grace.raw == alan.raw  # both parts keep the whole entry
    assert (grace.counterparty_name, alan.counterparty_account) == (
        "Grace Hopper",
        "GB29NWBK60161331926819",
    )
    assert grace.account_servicer_reference == "BK-7782"  # no transaction ref: the entry's


def test_a_batch_whose_parts_do_not_add_up_stays_one_line_without_details():
    content = edited(
        CAMT_V08,
        b'<Amt Ccy="EUR">80.00</Amt>\n            <CdtDbtInd>DBIT',
        b'<Amt Ccy="EUR">79.00</Amt>\n            <CdtDbtInd>DBIT',
    )
    eur = parse_statements(content)[0]
    batch = [line for line in eur.lines if line.entry_reference == "E-0002"]
    assert len(batch) == 1
    assert batch[0].amount_minor == 20000
    assert batch[0].end_to_end_id is None
    assert batch[0].counterparty_name is None
    assert [line.index for line in eur.lines] == list(range(len(eur.lines)))


def test_a_returned_payout_with_reason_ac04():
    eur = parsed(CAMT_V08)[0]
    returned = eur.lines[3]
    assert returned.end_to_end_id == "QP202611A1L000003"
    assert (returned.credit_debit, returned.amount_minor) == (CreditDebit.CREDIT, 8000)
    assert returned.return_info == ReturnInfo(
        reversal=False, reason_code="AC04", additional_info="Account closed"
    )
    assert returned.bank_code.sub_family == "RRTN"
    assert returned.is_return
    assert not returned.is_reversal
    assert returned.counterparty_name == "Alan Turing"  # the debtor of a credit


def test_a_client_payment_names_its_invoice_as_creditor_reference():
    client = parsed(CAMT_V08)[0].lines[4]
    assert client.end_to_end_id is None  # NOTPROVIDED is no id
    assert (client.counterparty_name, client.counterparty_account) == (
        "Acme Publishing GmbH",
        "DE75512108001245126199",
    )
    assert client.remittance_information == "Order ORD-1042"
    assert client.creditor_reference == "INV-2026-0042"


def test_a_reversed_fee_and_a_pending_credit():
    eur = parsed(CAMT_V08)[0]
    fee, reversal, pending = eur.lines[5:8]
    assert (fee.credit_debit, fee.additional_info) == (CreditDebit.DEBIT, "Account fee November")
    assert reversal.is_reversal
    assert reversal.return_info.reversal
    assert not reversal.is_return  # the bank correcting itself is not a returned payment
    assert (pending.booked, pending.status, pending.booking_date) == (False, "PDNG", None)
    assert pending not in eur.booked_lines
    assert len(eur.booked_lines) == 7


def test_jpy_and_kwd_amounts_in_their_own_minor_units():
    _, jpy, kwd = parsed(CAMT_V08)
    assert [line.signed_amount_minor for line in jpy.lines] == [-250000, 5000]
    assert [line.signed_amount_minor for line in kwd.lines] == [100125, -375]
    assert jpy.lines[0].counterparty_account == "9876543"  # an Othr/Id account
    assert kwd.lines[0].entry_reference is None  # NtryRef is optional


def test_version_02_names_parties_and_amounts_its_own_way():
    (statement,) = parsed(CAMT_V02)
    assert statement.format == "camt.053.001.02"
    payout, returned, client = statement.lines
    assert (payout.counterparty_name, payout.amount_minor) == ("Ada Lovelace", 125000)
    assert returned.end_to_end_id == payout.end_to_end_id == "QP202612A1L000001"
    assert returned.return_info.reason_code == "AC04"
    assert returned.is_return
    assert client.end_to_end_id == "ACME-PAY-311"
    assert client.remittance_information == "INV-2026-0043"
    assert statement.electronic_sequence_number == "12"


def test_version_05_reversal_proprietary_codes_and_an_overdrawn_opening():
    (statement,) = parsed(CAMT_V05)
    assert (statement.account_iban, statement.account_id) == (None, "ACC-77-001")
    assert statement.opening_balance.amount_minor == -10000
    assert statement.created_at == datetime(2026, 12, 2, 6, 0)  # no offset given: naive
    credit, reversal = statement.lines
    assert credit.booking_date == date(2026, 12, 2)  # given as a date and time
    assert credit.creditor_reference == "RF18539007547034"
    assert credit.counterparty_account == "GLOBEX-0042"
    assert credit.bank_code == BankTransactionCode(proprietary="NTRF", issuer="SWIFT")
    assert reversal.is_reversal
    assert reversal.credit_debit is CreditDebit.DEBIT
    assert reversal.bank_code.proprietary == "NRTI"
    assert reversal.is_return


def test_every_version_from_02_to_08_is_read():
    # .05's shape (TxDtls/Amt, a party's Nm) is also .03 to .06's; .08's (Pty/Nm, Sts/Cd) .07's.
    samples = {"02": (CAMT_V02, b"02"), "07": (CAMT_V08, b"08"), "08": (CAMT_V08, b"08")}
    for version in SUPPORTED_VERSIONS:
        name, own = samples.get(version, (CAMT_V05, b"05"))
        content = sample(name).replace(b"camt.053.001." + own, f"camt.053.001.{version}".encode())
        statements = parse_statements(content)
        assert statements[0].format == f"camt.053.001.{version}"
        assert statements[0].lines


@pytest.mark.parametrize("written", [b"99.991", b"0.001"])
def test_a_cent_fraction_is_refused_where_the_amount_is(written):
    content = edited(
        CAMT_V02, b'<Amt Ccy="EUR">99.99</Amt>', b'<Amt Ccy="EUR">' + written + b"</Amt>"
    )
    with pytest.raises(AmountPrecision) as refused:
        parse_statements(content)
    assert refused.value.loc == ("BkToCstmrStmt", "Stmt", 0, "Ntry", 2, "Amt")
    assert "more decimals than EUR has (2)" in refused.value.message


def test_a_yen_amount_with_decimals_is_refused_and_trailing_zeros_are_not():
    half_yen = edited(CAMT_V08, b'<Amt Ccy="JPY">5000</Amt>', b'<Amt Ccy="JPY">5000.5</Amt>')
    with pytest.raises(AmountPrecision, match=r"5000.5 JPY has more decimals than JPY has \(0\)"):
        parse_statements(half_yen)
    zeros = edited(CAMT_V08, b'<Amt Ccy="JPY">5000</Amt>', b'<Amt Ccy="JPY">5000.00</Amt>')
    assert parse_statements(zeros)[1].lines[1].amount_minor == 5000


def test_a_fils_fraction_of_kwd_is_refused():
    content = edited(CAMT_V08, b'<Amt Ccy="KWD">0.375</Amt>', b'<Amt Ccy="KWD">0.3755</Amt>')
    with pytest.raises(AmountPrecision, match="has more decimals than KWD has"):
        parse_statements(content)


def test_a_statement_without_account_is_refused():
    account = b"""<Acct>
        <Id><IBAN>DE89370400440532013000</IBAN></Id>
        <Ccy>EUR</Ccy>
      </Acct>"""
    content = edited(CAMT_V02, account, b"")
    with pytest.raises(MissingAccount) as refused:
        parse_statements(content)
    assert refused.value.code == "missing_account"
    assert refused.value.details["errors"][0]["type"] == "missing_account"


def test_an_account_iban_with_wrong_check_digits_is_refused():
    content = edited(CAMT_V02, b"<IBAN>DE89370400440532013000", b"<IBAN>DE89370400440532013001")
    with pytest.raises(MalformedStatement, match="not a valid IBAN") as refused:
        parse_statements(content)
    assert refused.value.loc == ("BkToCstmrStmt", "Stmt", 0, "Acct", "Id", "IBAN")


def test_an_entry_in_another_currency_than_the_account_is_refused():
    content = edited(CAMT_V02, b'<Amt Ccy="EUR">99.99</Amt>', b'<Amt Ccy="USD">99.99</Amt>')
    with pytest.raises(CurrencyMismatch, match="an entry is in USD, the account in EUR"):
        parse_statements(content)


def test_a_statement_without_closing_booked_balance_is_refused():
    content = edited(CAMT_V02, b"<Cd>CLBD</Cd>", b"<Cd>ITBD</Cd>")
    with pytest.raises(MissingBalance, match="CLBD"):
        parse_statements(content)


@pytest.mark.parametrize(
    ("old", "new", "says", "loc"),
    [
        # the message definition's facets (XSD patterns and lengths)
        (
            b"<Ccy>EUR</Ccy>",
            b"<Ccy>EURO</Ccy>",
            "does not match",
            ("BkToCstmrStmt", "Stmt", 0, "Acct", "Ccy"),
        ),
        (
            b"<EndToEndId>QP202612A1L000001</EndToEndId>",
            b"<EndToEndId>" + b"X" * 36 + b"</EndToEndId>",
            "exceeds maximum allowed length 35",
            (
                "BkToCstmrStmt",
                "Stmt",
                0,
                "Ntry",
                0,
                "NtryDtls",
                0,
                "TxDtls",
                0,
                "Refs",
                "EndToEndId",
            ),
        ),
        # what xsdata refuses while reading
        (
            b"<NtryRef>V2-1</NtryRef>",
            b"<Memo>V2-1</Memo>",
            "Unknown property ReportEntry2:Memo",
            ("BkToCstmrStmt",),
        ),
        (b">5000.00<", b">5000,00<", "is not a valid `Decimal`", ("BkToCstmrStmt",)),
        (
            b"<Sts>BOOK</Sts>",
            b"<Sts>DONE</Sts>",
            "is not a valid `EntryStatus2Code`",
            ("BkToCstmrStmt",),
        ),
        (
            b"<Dt>2026-11-30</Dt>",
            b"<Dt>2026-13-30</Dt>",
            "is not a valid `XmlDate`",
            ("BkToCstmrStmt",),
        ),
        (b"<Sts>BOOK</Sts>", b"", "a required element is missing: Sts (in ReportEntry2)", ("Sts",)),
    ],
)
def test_a_message_that_breaks_the_definition_is_refused(old, new, says, loc):
    with pytest.raises(MalformedStatement) as refused:
        parse_statements(edited(CAMT_V02, old, new))
    assert says in refused.value.message
    assert refused.value.loc == loc
