"""Payout files for the bank: a SEPA credit transfer (pain.001.001.03) for EUR, ISO 20022
pain.001.001.09 for every other currency, and a CSV summary, each checked against the XSD the bank
would check it against and against the sums an XSD cannot check."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import gc
import hashlib
import io
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from sepaxml.validation import try_valid_xml
from text_unidecode import unidecode
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig

from quire.errors import Invalid
from quire.payroll import payout_files
from quire.payroll.payout_files import (
    CSV_HEADER,
    FORMAT_CSV,
    FORMAT_ISO20022,
    FORMAT_SEPA,
    NAME_LENGTH,
    NAMESPACES,
    REMITTANCE_LENGTH,
    SCHEMAS_DIR,
    SEPA_NAME_LENGTH,
    Debtor,
    Payment,
    PayoutFile,
    is_aba_routing_number,
    iso20022_credit_transfer,
    latin_text,
    sepa_credit_transfer,
    summary_csv,
    validate,
)

DEBTOR = Debtor(name="Quire Services GmbH", iban="DE89 3704 0044 0532 0130 00", bic="COBADEFFXXX")
PAYOUT_DATE = dt.date(2026, 12, 3)
CREATED = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
REMITTANCE = "Quire payout 2026-11"
SEPA_MSG = "QUIRE-202611-A1-SEPA-1a2b3c4d"
XCT_MSG = "QUIRE-202611-A1-XCT-1a2b3c4d"

# The XSDs the files are validated with: the ISO 20022 schemas sepaxml 2.7.0 ships. Pinned so that
# a dependency upgrade that changes a schema is a decision, not a surprise.
XSD_SHA256 = {
    FORMAT_SEPA: "ed4be42522e3e35b108b3ad2ebbcc65da987cddbf6cfdc20828cd4fd0d69c51a",
    FORMAT_ISO20022: "de038b373e47b0077b1832ddd81f4b2f1eb25d35721f62da1e38b7f5a09fda24",
}


def eur(end_to_end_id: str, amount_minor: int, **changes: object) -> Payment:
    payment = Payment(
        end_to_end_id=end_to_end_id,
        creditor_name="Zoë Müller-Łukasz",
        scheme="iban",
        iban="FR1420041010050500013M02606",
        bic=None,
        account_number=None,
        bank_code=None,
        country="FR",
        amount_minor=amount_minor,
        currency="EUR",
        remittance=REMITTANCE,
    )
    return dataclasses.replace(payment, **changes)


SEPA_PAYMENTS = [
    eur("Q202611-0001", 123_456),
    eur(
        "Q202611-0002",
        5,
        creditor_name="Jan de Vries",
        iban="NL91ABNA0417164300",
        bic="ABNANL2A",
        country="NL",
    ),
    eur(
        "Q202611-0003",
        99_900,
        creditor_name="Ana Peña",
        iban="ES9121000418450200051332",
        country="ES",
    ),
]

US_LOCAL = Payment(
    end_to_end_id="Q202611-0101",
    creditor_name="John Smith",
    scheme="local",
    iban=None,
    bic=None,
    account_number="000123456789",
    bank_code="021000021",  # JPMorgan Chase, New York: a real ABA routing number
    country="US",
    amount_minor=150_000,
    currency="USD",
    remittance=REMITTANCE,
)
OTHER_PAYMENTS = [
    US_LOCAL,
    dataclasses.replace(
        US_LOCAL,
        end_to_end_id="Q202611-0102",
        creditor_name="Mary Jones",
        account_number="987654321",
        bank_code="011000015",
        bic="CHASUS33",
        amount_minor=7,
    ),
    dataclasses.replace(
        US_LOCAL,
        end_to_end_id="Q202611-0103",
        creditor_name="Yamada Taro",
        account_number="1234567",
        bank_code="0005001",  # Zengin: bank 0005, branch 001
        country="JP",
        amount_minor=1200,
        currency="JPY",
    ),
    Payment(
        end_to_end_id="Q202611-0104",
        creditor_name="Fatima Al-Sabah",
        scheme="iban",
        iban="KW81CBKU0000000000001234560101",
        bic="CBKUKWKWXXX",
        account_number=None,
        bank_code=None,
        country="KW",
        amount_minor=12_345,
        currency="KWD",
        remittance=REMITTANCE,
    ),
]


def sepa_file(payments: list[Payment] = SEPA_PAYMENTS, **overrides: object) -> PayoutFile:
    arguments: dict[str, object] = {
        "message_id": SEPA_MSG,
        "execution_date": PAYOUT_DATE,
        "name": "payroll-2026-11-a1-sepa.pain.001.001.03.xml",
        "created_at": CREATED,
    }
    arguments.update(overrides)
    return sepa_credit_transfer(DEBTOR, payments, **arguments)  # type: ignore[arg-type]


def other_file(payments: list[Payment] = OTHER_PAYMENTS, **overrides: object) -> PayoutFile:
    arguments: dict[str, object] = {
        "message_id": XCT_MSG,
        "execution_date": PAYOUT_DATE,
        "name": "payroll-2026-11-a1.pain.001.001.09.xml",
        "created_at": CREATED,
    }
    arguments.update(overrides)
    return iso20022_credit_transfer(DEBTOR, payments, **arguments)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sepa() -> PayoutFile:
    return sepa_file()


@pytest.fixture(scope="module")
def other() -> PayoutFile:
    return other_file()


def parse(content: bytes) -> etree._Element:
    return etree.fromstring(content)


def finder(fmt: str) -> Callable[[etree._Element, str], list[etree._Element]]:
    ns = {"p": NAMESPACES[fmt]}
    return lambda node, path: node.findall(path, ns)


def text(node: etree._Element, path: str, fmt: str) -> str:
    found = node.findtext(path, namespaces={"p": NAMESPACES[fmt]})
    assert found is not None, path
    return found


def official_schema(fmt: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS_DIR / f"{fmt}.xsd")))


# -- the schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [FORMAT_SEPA, FORMAT_ISO20022])
def test_the_xsds_are_the_iso_schemas_sepaxml_ships_unchanged(fmt: str) -> None:
    xsd = (SCHEMAS_DIR / f"{fmt}.xsd").read_bytes()
    assert hashlib.sha256(xsd).hexdigest() == XSD_SHA256[fmt]
    assert etree.fromstring(xsd).get("targetNamespace") == NAMESPACES[fmt]


# -- SEPA (pain.001.001.03) -----------------------------------------------------------------------


def test_a_sepa_file_validates_against_pain_001_001_03_and_adds_up(sepa: PayoutFile) -> None:
    root = parse(sepa.content)
    official_schema(FORMAT_SEPA).assertValid(root)
    validate(sepa.content, FORMAT_SEPA)
    find = finder(FORMAT_SEPA)
    assert text(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId", FORMAT_SEPA) == SEPA_MSG
    assert text(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", FORMAT_SEPA) == "3"
    assert text(root, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", FORMAT_SEPA) == "2233.61"
    (block,) = find(root, "p:CstmrCdtTrfInitn/p:PmtInf")
    assert text(block, "p:PmtInfId", FORMAT_SEPA) == f"{SEPA_MSG}-EUR"
    assert text(block, "p:NbOfTxs", FORMAT_SEPA) == "3"
    assert text(block, "p:CtrlSum", FORMAT_SEPA) == "2233.61"
    assert text(block, "p:ReqdExctnDt", FORMAT_SEPA) == "2026-12-03"
    assert text(block, "p:PmtTpInf/p:SvcLvl/p:Cd", FORMAT_SEPA) == "SEPA"
    assert text(block, "p:DbtrAcct/p:Id/p:IBAN", FORMAT_SEPA) == "DE89370400440532013000"
    transactions = find(block, "p:CdtTrfTxInf")
    assert [text(t, "p:PmtId/p:EndToEndId", FORMAT_SEPA) for t in transactions] == [
        "Q202611-0001",
        "Q202611-0002",
        "Q202611-0003",
    ]
    amounts = [find(t, "p:Amt/p:InstdAmt")[0] for t in transactions]
    assert [(a.text, a.get("Ccy")) for a in amounts] == [
        ("1234.56", "EUR"),
        ("0.05", "EUR"),
        ("999.00", "EUR"),
    ]
    assert text(transactions[1], "p:CdtrAgt/p:FinInstnId/p:BIC", FORMAT_SEPA) == "ABNANL2A"
    assert not find(transactions[0], "p:CdtrAgt")  # no BIC given: IBAN-only, as SEPA allows


def test_a_sepa_file_records_its_ids_digest_and_currency(sepa: PayoutFile) -> None:
    assert sepa.format == FORMAT_SEPA
    assert sepa.media_type == "application/xml"
    assert sepa.sha256 == hashlib.sha256(sepa.content).hexdigest()
    assert sepa.message_id == SEPA_MSG
    assert sepa.currencies == ["EUR"]
    assert sepa.line_count == 3
    assert sepa.end_to_end_ids == ("Q202611-0001", "Q202611-0002", "Q202611-0003")


def test_names_are_transliterated_to_the_sepa_character_set(sepa: PayoutFile) -> None:
    names = [n.text for n in finder(FORMAT_SEPA)(parse(sepa.content), ".//p:Cdtr/p:Nm")]
    assert names == ["Zoe Muller-Lukasz", "Jan de Vries", "Ana Pena"]
    assert latin_text("Smith & Söhne <GmbH>\x00", 70) == "Smith Sohne GmbH"


def test_the_same_run_gives_the_same_bytes(sepa: PayoutFile) -> None:
    assert sepa_file().content == sepa.content


def test_a_sepa_transfer_refuses_a_non_eur_payment() -> None:
    with pytest.raises(Invalid, match="EUR only, not USD"):
        sepa_file([SEPA_PAYMENTS[0], US_LOCAL])


def test_a_sepa_transfer_refuses_a_local_account_and_an_iban_outside_sepa() -> None:
    local_eur = dataclasses.replace(US_LOCAL, currency="EUR")
    with pytest.raises(Invalid, match="pays an IBAN, not a local account"):
        sepa_file([local_eur])
    kuwaiti_eur = dataclasses.replace(OTHER_PAYMENTS[3], currency="EUR", amount_minor=100)
    with pytest.raises(Invalid, match="KW is outside the SEPA zone"):
        sepa_file([kuwaiti_eur])


# -- ISO 20022 (pain.001.001.09) ------------------------------------------------------------------


def test_a_multi_currency_file_validates_against_pain_001_001_09(other: PayoutFile) -> None:
    root = parse(other.content)
    official_schema(FORMAT_ISO20022).assertValid(root)
    validate(other.content, FORMAT_ISO20022)
    assert other.currencies == ["JPY", "KWD", "USD"]
    assert other.line_count == 4
    assert other.message_id == XCT_MSG
    assert other.sha256 == hashlib.sha256(other.content).hexdigest()


def test_one_payment_block_per_currency_with_the_currencys_own_decimals(
    other: PayoutFile,
) -> None:
    find = finder(FORMAT_ISO20022)
    root = parse(other.content)
    blocks = {}
    for block in find(root, "p:CstmrCdtTrfInitn/p:PmtInf"):
        amounts = find(block, "p:CdtTrfTxInf/p:Amt/p:InstdAmt")
        (currency,) = {a.get("Ccy") for a in amounts}
        blocks[currency] = (
            text(block, "p:PmtInfId", FORMAT_ISO20022),
            text(block, "p:NbOfTxs", FORMAT_ISO20022),
            text(block, "p:CtrlSum", FORMAT_ISO20022),
            [a.text for a in amounts],
        )
    assert blocks == {
        "JPY": (f"{XCT_MSG}-JPY", "1", "1200", ["1200"]),  # 0 decimals
        "KWD": (f"{XCT_MSG}-KWD", "1", "12.345", ["12.345"]),  # 3 decimals
        "USD": (f"{XCT_MSG}-USD", "2", "1500.07", ["1500.00", "0.07"]),
    }
    header = "p:CstmrCdtTrfInitn/p:GrpHdr/"
    assert text(root, header + "p:NbOfTxs", FORMAT_ISO20022) == "4"
    assert text(root, header + "p:CtrlSum", FORMAT_ISO20022) == "2712.415"
    assert text(root, header + "p:CreDtTm", FORMAT_ISO20022) == "2026-12-01T09:30:00Z"


def transaction(content: bytes, end_to_end_id: str) -> etree._Element:
    for found in finder(FORMAT_ISO20022)(parse(content), ".//p:CdtTrfTxInf"):
        if text(found, "p:PmtId/p:EndToEndId", FORMAT_ISO20022) == end_to_end_id:
            return found
    raise AssertionError(end_to_end_id)


def test_a_local_account_is_its_number_and_its_banks_clearing_code(other: PayoutFile) -> None:
    us = transaction(other.content, "Q202611-0101")
    assert text(us, "p:CdtrAcct/p:Id/p:Othr/p:Id", FORMAT_ISO20022) == "000123456789"
    agent = "p:CdtrAgt/p:FinInstnId/"
    assert text(us, agent + "p:ClrSysMmbId/p:MmbId", FORMAT_ISO20022) == "021000021"
    assert text(us, agent + "p:ClrSysMmbId/p:ClrSysId/p:Cd", FORMAT_ISO20022) == "USABA"
    assert text(us, agent + "p:PstlAdr/p:Ctry", FORMAT_ISO20022) == "US"
    assert text(us, "p:Cdtr/p:Nm", FORMAT_ISO20022) == "John Smith"
    assert text(us, "p:RmtInf/p:Ustrd", FORMAT_ISO20022) == REMITTANCE
    with_bic = transaction(other.content, "Q202611-0102")
    assert text(with_bic, agent + "p:BICFI", FORMAT_ISO20022) == "CHASUS33"
    assert text(with_bic, agent + "p:ClrSysMmbId/p:MmbId", FORMAT_ISO20022) == "011000015"
    japan = transaction(other.content, "Q202611-0103")
    assert text(japan, agent + "p:ClrSysMmbId/p:ClrSysId/p:Cd", FORMAT_ISO20022) == "JPZGN"


def test_an_iban_creditor_is_paid_to_its_iban_and_bic(other: PayoutFile) -> None:
    kuwait = transaction(other.content, "Q202611-0104")
    iban = text(kuwait, "p:CdtrAcct/p:Id/p:IBAN", FORMAT_ISO20022)
    assert iban == "KW81CBKU0000000000001234560101"
    assert text(kuwait, "p:CdtrAgt/p:FinInstnId/p:BICFI", FORMAT_ISO20022) == "CBKUKWKWXXX"
    assert not finder(FORMAT_ISO20022)(kuwait, "p:CdtrAcct/p:Id/p:Othr")


def test_a_long_message_id_still_gives_short_unique_block_ids() -> None:
    message_id = "M" * 35
    made = other_file(message_id=message_id)
    ids = [n.text for n in finder(FORMAT_ISO20022)(parse(made.content), ".//p:PmtInf/p:PmtInfId")]
    assert len(set(ids)) == 3
    assert all(len(i) <= 35 for i in ids)


@settings(max_examples=40, deadline=None)
@given(
    amount_minor=st.integers(min_value=1, max_value=10**13),
    currency=st.sampled_from(["JPY", "USD", "KWD", "CLF"]),
)
def test_every_amount_is_written_exactly(amount_minor: int, currency: str) -> None:
    made = other_file([dataclasses.replace(US_LOCAL, amount_minor=amount_minor, currency=currency)])
    written = finder(FORMAT_ISO20022)(parse(made.content), ".//p:InstdAmt")[0].text
    places = {"JPY": 0, "USD": 2, "KWD": 3, "CLF": 4}[currency]
    assert written is not None
    assert len(written.partition(".")[2]) == places
    assert Decimal(written).scaleb(places) == amount_minor


# -- tampering ------------------------------------------------------------------------------------


def tampered(content: bytes, fmt: str, change: Callable[[etree._Element], None]) -> bytes:
    root = parse(content)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def first(root: etree._Element, fmt: str, path: str) -> etree._Element:
    return finder(fmt)(root, path)[0]


def remove(fmt: str, path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        node = first(root, fmt, path)
        parent = node.getparent()
        assert parent is not None
        parent.remove(node)

    return change


def set_text(fmt: str, path: str, value: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        first(root, fmt, path).text = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (remove(FORMAT_SEPA, ".//p:CdtrAcct"), r"Q202611-0001 has no creditor IBAN"),
        (
            remove(FORMAT_SEPA, ".//p:Dbtr"),
            r"\(line \d+\): Element .*DbtrAcct.: This element is not expected.*Dbtr \)",
        ),
        (remove(FORMAT_SEPA, ".//p:GrpHdr/p:MsgId"), r"MsgId"),
        (
            set_text(FORMAT_SEPA, ".//p:InstdAmt", "1234.561234"),
            r"InstdAmt.*more fractional digits than are allowed",
        ),
        (set_text(FORMAT_SEPA, ".//p:InstdAmt", "1234.561"), r"has 3 decimals, EUR has 2"),
        (
            set_text(FORMAT_SEPA, ".//p:InstdAmt", "1234.57"),
            r"control sum is 2233.61, its amounts add up to 2233.62",
        ),
        (set_text(FORMAT_SEPA, ".//p:EndToEndId", "Q202611-0002"), r"Q202611-0002 appears twice"),
        (set_text(FORMAT_SEPA, ".//p:GrpHdr/p:NbOfTxs", "2"), r"says 2 transactions, it has 3"),
    ],
    ids=[
        "no-account",
        "no-debtor",
        "no-msgid",
        "xsd-decimals",
        "eur-decimals",
        "sum",
        "dup-id",
        "count",
    ],
)
def test_a_tampered_sepa_file_fails_validation(
    sepa: PayoutFile, change: Callable[[etree._Element], None], message: str
) -> None:
    with pytest.raises(Invalid, match=message):
        validate(tampered(sepa.content, FORMAT_SEPA, change), FORMAT_SEPA)


def test_a_sepa_file_in_another_currency_fails_validation(sepa: PayoutFile) -> None:
    def to_usd(root: etree._Element) -> None:
        for node in finder(FORMAT_SEPA)(root, ".//p:InstdAmt"):
            node.set("Ccy", "USD")

    with pytest.raises(Invalid, match="SEPA is EUR only"):
        validate(tampered(sepa.content, FORMAT_SEPA, to_usd), FORMAT_SEPA)


def test_a_transfer_without_a_creditor_account_fails_validation(other: PayoutFile) -> None:
    content = tampered(other.content, FORMAT_ISO20022, remove(FORMAT_ISO20022, ".//p:CdtrAcct"))
    with pytest.raises(Invalid, match="has no creditor account"):
        validate(content, FORMAT_ISO20022)


def test_a_jpy_amount_with_decimals_fails_validation(other: PayoutFile) -> None:
    def yen_with_sen(root: etree._Element) -> None:
        for node in finder(FORMAT_ISO20022)(root, ".//p:InstdAmt"):
            if node.get("Ccy") == "JPY":
                node.text = "1200.5"

    content = tampered(other.content, FORMAT_ISO20022, yen_with_sen)
    with pytest.raises(Invalid, match=r"1200\.5 JPY has 1 decimals, JPY has 0"):
        validate(content, FORMAT_ISO20022)


def test_an_element_removed_from_a_pain_001_001_09_file_fails_validation(
    other: PayoutFile,
) -> None:
    content = tampered(other.content, FORMAT_ISO20022, remove(FORMAT_ISO20022, ".//p:DbtrAcct"))
    with pytest.raises(Invalid, match=r"does not validate against its XSD \(line \d+\).*DbtrAgt"):
        validate(content, FORMAT_ISO20022)


def test_a_file_of_one_format_is_not_valid_as_the_other(sepa: PayoutFile) -> None:
    with pytest.raises(Invalid, match="No matching global declaration"):
        validate(sepa.content, FORMAT_ISO20022)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<Document", "not well-formed"),
        (b"", "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03">&x;</Document>',
            "DOCTYPE",
        ),
    ],
    ids=["truncated", "empty", "external-entity"],
)
def test_validate_refuses_what_is_not_a_payment_file(content: bytes, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        validate(content, FORMAT_SEPA)


def test_validate_refuses_an_unknown_format(sepa: PayoutFile) -> None:
    with pytest.raises(Invalid, match=r"unknown payout file format 'pain\.001\.001\.99'"):
        validate(sepa.content, "pain.001.001.99")


# -- input the bank would refuse ------------------------------------------------------------------


@pytest.mark.parametrize("make", [sepa_file, other_file], ids=["sepa", "pain.001.001.09"])
def test_a_file_without_payments_is_refused(make: Callable[..., PayoutFile]) -> None:
    with pytest.raises(Invalid, match="at least one payment"):
        make([])


def test_a_summary_without_payments_is_refused() -> None:
    with pytest.raises(Invalid, match="at least one payment"):
        summary_csv([], name="summary.csv")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"end_to_end_id": "X" * 36}, "end-to-end id 'XXX"),
        ({"end_to_end_id": ""}, "end-to-end id ''"),
        ({"end_to_end_id": "A//B"}, "no '//'"),
        ({"end_to_end_id": "Q 1"}, "no spaces"),
        ({"creditor_name": "\U0001f600\x00"}, "no letters or digits a bank accepts"),
        ({"creditor_name": None}, "creditor name must be text"),
        ({"remittance": "   "}, "remittance text is empty"),
        ({"scheme": "swift"}, "scheme 'swift' is not one of iban, local"),
        ({"bank_code": "021000022"}, "not an ABA routing number"),
        ({"bank_code": ""}, "bank code '' is not"),
        ({"account_number": "12/34"}, "account number '12/34' is not"),
        ({"country": "usa"}, "not an ISO 3166 alpha-2 code"),
        ({"bic": "NOTABIC"}, "the BIC is invalid"),
        ({"amount_minor": 0}, "amount must be positive"),
        ({"amount_minor": -5}, "amount must be positive"),
        ({"amount_minor": 12.5}, "integers in the currency's minor unit"),
        ({"amount_minor": True}, "integers in the currency's minor unit"),
        ({"amount_minor": 10**13 + 1}, "absurdly large"),
        ({"currency": "XXX"}, "no minor unit"),
        ({"currency": "usd"}, "three capital letters"),
    ],
)
def test_a_payment_the_bank_would_refuse_is_refused_with_its_reason(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(Invalid, match=message):
        other_file([dataclasses.replace(US_LOCAL, **changes)])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iban": "FR1420041010050500013M02607"}, "the IBAN is invalid"),
        ({"iban": None}, "the iban scheme needs an IBAN"),
        ({"country": "DE"}, "the IBAN is a FR account, the payment says DE"),
    ],
)
def test_a_wrong_iban_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        other_file([eur("Q-1", 100, **changes)])


def test_duplicate_end_to_end_ids_are_refused() -> None:
    with pytest.raises(Invalid, match="Q202611-0101 is also payment 1's"):
        other_file([US_LOCAL, dataclasses.replace(US_LOCAL, amount_minor=1)])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"message_id": "M" * 36}, "message id"),
        ({"message_id": ""}, "message id"),
        ({"name": "../escape.xml"}, "file name"),
        ({"name": "dir/file.xml"}, "file name"),
        ({"execution_date": dt.datetime(2026, 12, 3, 10)}, "a date, not datetime"),
        ({"execution_date": "2026-12-03"}, "a date, not str"),
        ({"created_at": dt.datetime(2026, 12, 1, 9)}, "with a time zone"),
    ],
)
def test_bad_file_arguments_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        other_file(**overrides)


def test_a_bad_debtor_is_refused() -> None:
    with pytest.raises(Invalid, match="debtor: the IBAN is invalid"):
        iso20022_credit_transfer(
            dataclasses.replace(DEBTOR, iban="DE00370400440532013000"),
            OTHER_PAYMENTS,
            message_id=XCT_MSG,
            execution_date=PAYOUT_DATE,
            name="x.xml",
        )


def test_aba_routing_numbers_are_checked_by_their_checksum() -> None:
    assert is_aba_routing_number("021000021")
    assert is_aba_routing_number("011000015")
    assert not is_aba_routing_number("021000022")
    assert not is_aba_routing_number("02100002")
    assert not is_aba_routing_number("\uff10\uff12\uff11000021")  # fullwidth digits: not ASCII


# -- the CSV summary ------------------------------------------------------------------------------


def test_the_summary_lists_every_payment_with_its_file_and_a_masked_account(
    sepa: PayoutFile, other: PayoutFile
) -> None:
    summary = summary_csv(
        SEPA_PAYMENTS + OTHER_PAYMENTS, name="payroll-2026-11-a1-summary.csv", files=[sepa, other]
    )
    validate(summary.content, FORMAT_CSV)
    assert summary.format == FORMAT_CSV
    assert summary.media_type.startswith("text/csv")
    assert summary.sha256 == hashlib.sha256(summary.content).hexdigest()
    assert summary.message_id is None
    assert summary.currencies == ["EUR", "JPY", "KWD", "USD"]
    assert summary.line_count == 7
    rows = list(csv.reader(io.StringIO(summary.content.decode())))
    assert tuple(rows[0]) == CSV_HEADER
    assert rows[1] == [
        "Q202611-0001",
        "Zoe Muller-Lukasz",
        "EUR",
        "1234.56",
        "****2606",
        "iban",
        sepa.name,
    ]
    by_id = {row[0]: row for row in rows[1:]}
    assert by_id["Q202611-0101"][3:] == ["1500.00", "****6789", "local", other.name]
    assert by_id["Q202611-0103"][2:4] == ["JPY", "1200"]
    assert by_id["Q202611-0104"][2:5] == ["KWD", "12.345", "****0101"]
    assert b"000123456789" not in summary.content
    assert b"FR1420041010050500013M02606" not in summary.content


def test_a_summary_refuses_a_payment_in_no_file_or_in_two(
    sepa: PayoutFile, other: PayoutFile
) -> None:
    with pytest.raises(Invalid, match="is in none of the payout files"):
        summary_csv(SEPA_PAYMENTS + OTHER_PAYMENTS, name="s.csv", files=[sepa])
    with pytest.raises(Invalid, match="it would be paid twice"):
        summary_csv(SEPA_PAYMENTS, name="s.csv", files=[sepa, sepa])


def test_a_summary_cell_cannot_become_a_spreadsheet_formula() -> None:
    summary = summary_csv(
        [dataclasses.replace(US_LOCAL, creditor_name="+cmd('calc')")], name="s.csv"
    )
    (row,) = list(csv.reader(io.StringIO(summary.content.decode())))[1:]
    assert row[1] == "'+cmd('calc')"
    assert row[6] == ""  # no files given: the file column is left empty


def test_a_malformed_summary_fails_validation() -> None:
    with pytest.raises(Invalid, match="header"):
        validate(b"id,amount\r\n1,2\r\n", FORMAT_CSV)
    good_header = ",".join(CSV_HEADER).encode() + b"\r\n"
    with pytest.raises(Invalid, match="line 2 has 2 fields"):
        validate(good_header + b"a,b\r\n", FORMAT_CSV)


# -- the fast paths write what the libraries write --------------------------------------------
#
# `iso20022_credit_transfer` has xsdata serialise one transaction per shape and fills in each
# payment's values; `sepa_credit_transfer` exports with sepaxml's validation off and validates the
# bytes with libxml2 instead. These tests hold both to the slow paths they replaced.


def xsdata_file(payments: list[Payment]) -> bytes:
    """The pain.001.001.09 file as xsdata writes it when it serialises every transaction itself
    (what `iso20022_credit_transfer` did before it used shapes)."""
    checked = payout_files._check_payments(payments, payout_files.NAME_LENGTH)
    blocks: dict[str, list[payout_files._Checked]] = {}
    for item in checked:
        blocks.setdefault(item.payment.currency, []).append(item)
    header = payout_files._Header(
        message_id=XCT_MSG,
        execution_date=PAYOUT_DATE,
        created=CREATED,
        debtor=payout_files._check_debtor(DEBTOR, payout_files.NAME_LENGTH),
    )
    document = payout_files._iso_document(
        header,
        {currency: blocks[currency] for currency in sorted(blocks)},
        lambda items: [payout_files._transaction(item) for item in items],
    )
    serializer = XmlSerializer(config=SerializerConfig(encoding="UTF-8", indent="  "))
    text = serializer.render(document, ns_map={None: NAMESPACES[FORMAT_ISO20022]})
    return text.encode("utf-8")


# Every shape a transaction takes: IBAN with and without BIC (in and outside SEPA), local accounts
# with and without BIC, with a clearing system code (US, JP) and without (BR), and names and texts
# that transliterate or would need escaping.
SHAPES = [
    *OTHER_PAYMENTS,
    eur("Q-EUR-IBAN", 5),
    eur("Q-EUR-BIC", 123_456, iban="NL91ABNA0417164300", bic="ABNANL2A", country="NL"),
    dataclasses.replace(
        US_LOCAL,
        end_to_end_id="Q-BR",
        country="BR",
        bank_code="00100",
        account_number="12345-6",
        currency="BRL",
        creditor_name="João & Filhos <Ltda>",
        remittance="Pagamento {nov} & mais",
    ),
    dataclasses.replace(
        US_LOCAL, end_to_end_id="Q-CLF", currency="CLF", country="CL", bank_code="0012"
    ),
]


def test_the_pain_001_001_09_file_is_what_xsdata_writes_for_every_shape() -> None:
    made = other_file(SHAPES)
    assert made.content == xsdata_file(SHAPES)
    validate(made.content, FORMAT_ISO20022)


@settings(max_examples=25, deadline=None)
@given(
    picks=st.lists(
        st.tuples(st.sampled_from(SHAPES), st.integers(min_value=1, max_value=10**13)),
        min_size=1,
        max_size=12,
    )
)
def test_any_mix_of_shapes_is_written_as_xsdata_writes_it(
    picks: list[tuple[Payment, int]],
) -> None:
    payments = [
        dataclasses.replace(shape, end_to_end_id=f"Q-{index}", amount_minor=amount)
        for index, (shape, amount) in enumerate(picks)
    ]
    assert other_file(payments).content == xsdata_file(payments)


def test_a_sepa_file_passes_sepaxmls_own_validation() -> None:
    """`export(validate=False)` skips sepaxml's xmlschema pass, not what it would have found."""
    made = sepa_file()
    try_valid_xml(made.content, FORMAT_SEPA)  # raises sepaxml's ValidationError otherwise
    assert made.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Document')


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=200))
def test_sepaxmls_cleaning_would_change_nothing_it_is_given(text: str) -> None:
    """sepaxml's `clean` (unidecode, cut to 70 and 140) is off: on `latin_text` it is a no-op."""
    for limit in (SEPA_NAME_LENGTH, REMITTANCE_LENGTH):
        latin = latin_text(text, limit)
        assert unidecode(latin)[:limit] == latin


def test_text_unidecode_leaves_ascii_alone() -> None:
    """`latin_text` skips text_unidecode for ASCII text, which it maps to itself."""
    ascii_characters = "".join(map(chr, range(128)))
    assert unidecode(ascii_characters) == ascii_characters


@settings(max_examples=200, deadline=None)
@given(
    amount_minor=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(["JPY", "USD", "KWD", "CLF", "EUR"]),
)
def test_decimal_text_is_the_decimal_xsdata_writes(amount_minor: int, currency: str) -> None:
    places = {"JPY": 0, "USD": 2, "KWD": 3, "CLF": 4, "EUR": 2}[currency]
    expected = f"{Decimal(amount_minor).scaleb(-places):f}"
    assert payout_files._decimal_text(amount_minor, currency) == expected


def test_an_iban_elsewhere_in_a_transaction_is_not_its_creditor_account(
    other: PayoutFile,
) -> None:
    """The checks read each element at its place: an IBAN of the creditor's agent (CdtrAgtAcct)
    does not make up for a missing creditor account."""

    def account_to_agent(root: etree._Element) -> None:
        kuwait = next(
            t
            for t in finder(FORMAT_ISO20022)(root, ".//p:CdtTrfTxInf")
            if text(t, "p:PmtId/p:EndToEndId", FORMAT_ISO20022) == "Q202611-0104"
        )
        account = first(kuwait, FORMAT_ISO20022, "p:CdtrAcct")
        account.tag = f"{{{NAMESPACES[FORMAT_ISO20022]}}}CdtrAgtAcct"
        first(kuwait, FORMAT_ISO20022, "p:CdtrAgt").addnext(account)

    content = tampered(other.content, FORMAT_ISO20022, account_to_agent)
    official_schema(FORMAT_ISO20022).assertValid(parse(content))  # only our rule refuses it
    with pytest.raises(Invalid, match="Q202611-0104 has no creditor account"):
        validate(content, FORMAT_ISO20022)


def test_the_summary_is_the_same_whether_or_not_the_files_checked_its_payments(
    sepa: PayoutFile, other: PayoutFile
) -> None:
    """The summary reuses the files' checks for the very payments they checked; equal copies
    are checked again, and give the same rows."""
    long_name = "Zoë " + "Müller-Łukasz " * 8  # cut at 70 in the SEPA file, at 140 here
    sepa_payments = [*SEPA_PAYMENTS, eur("Q202611-0004", 10, creditor_name=long_name)]
    sepa_made = sepa_file(sepa_payments)
    payments = sepa_payments + OTHER_PAYMENTS
    reused = summary_csv(payments, name="s.csv", files=[sepa_made, other])
    copies = [dataclasses.replace(payment) for payment in payments]
    assert summary_csv(copies, name="s.csv", files=[sepa_made, other]).content == reused.content
    row = next(
        r for r in csv.reader(io.StringIO(reused.content.decode())) if r[0] == "Q202611-0004"
    )
    assert row[1] == latin_text(long_name, NAME_LENGTH)
    assert len(row[1]) > SEPA_NAME_LENGTH


def test_a_value_is_escaped_as_lxml_escapes_element_text() -> None:
    """No checked value needs escaping; one that did would be written as lxml writes it."""
    value = "a&b<c>d\re'f\"g"
    node = etree.Element("x")
    node.text = value
    assert etree.tostring(node, encoding=str) == f"<x>{payout_files._escaped(value)}</x>"


@pytest.mark.parametrize("enabled", [True, False])
def test_building_a_file_leaves_the_garbage_collector_as_it_was(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        sepa_file()
        assert gc.isenabled() is enabled
        with pytest.raises(Invalid):
            other_file([])
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


# -- the micro-benchmark (not a test: timings on a shared machine are not a verdict) -------------


def benchmark_payments(per_currency: int = 10_000) -> list[Payment]:
    """Payments as bench/payroll.py seeds them: EUR to German IBANs (schwifty's check digits,
    Commerzbank's national check digit), USD to US accounts at a checksummed ABA routing number,
    JPY to Zengin accounts; one name in seven needs transliterating."""
    from schwifty import IBAN

    ibans: list[str] = []
    account = 0
    while len(ibans) < per_currency:
        account += 1
        iban = IBAN.generate("DE", bank_code="37040044", account_code=f"{account:010d}")
        with contextlib.suppress(Invalid):
            ibans.append(payout_files._iban(str(iban), "benchmark"))
    payments = []
    for index in range(3 * per_currency):
        currency = ("EUR", "USD", "JPY")[index % 3]
        name = f"Specialist {index:05d}" if index % 7 else f"Zoë Müller-Łukasz {index}"
        amount = (index * 7919) % 5_000_000 + 1
        base = dataclasses.replace(
            US_LOCAL, end_to_end_id=f"QP202611A1L{index + 1:06d}", creditor_name=name
        )
        if currency == "EUR":
            iban = ibans[index // 3]
            payments.append(
                eur(base.end_to_end_id, amount, creditor_name=name, country="DE", iban=iban)
            )
        elif currency == "USD":
            account_number = f"{100_000_000 + index}"
            payments.append(
                dataclasses.replace(base, account_number=account_number, amount_minor=amount)
            )
        else:
            payments.append(
                dataclasses.replace(
                    base,
                    account_number=f"{index + 1:07d}",
                    bank_code="0001001",
                    country="JP",
                    currency="JPY",
                    amount_minor=amount,
                )
            )
    return payments


def benchmark(per_currency: int = 10_000, repeat: int = 3) -> dict[str, float]:
    """Median seconds per file over `repeat` runs, each with this module's caches cleared as in a
    fresh flow-run process. `python -c "from tests.quire.payroll.test_payout_files import
    benchmark; print(benchmark())"` (building the payments is not timed)."""
    payments = benchmark_payments(per_currency)
    sepa = [p for p in payments if p.currency == "EUR"]
    other = [p for p in payments if p.currency != "EUR"]
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        for value in vars(payout_files).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()
        started = time.perf_counter()
        made = [sepa_file(sepa)]
        sepa_done = time.perf_counter()
        made.append(other_file(other))
        other_done = time.perf_counter()
        summary_csv(payments, name="payroll-2026-11-a1-summary.csv", files=made)
        finished = time.perf_counter()
        runs.append(
            {
                FORMAT_SEPA: sepa_done - started,
                FORMAT_ISO20022: other_done - sepa_done,
                FORMAT_CSV: finished - other_done,
                "total": finished - started,
            }
        )
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}
