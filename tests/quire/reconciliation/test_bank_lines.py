"""The bank-line model's own rules: minor units, signs, what counts as a return."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from quire.reconciliation.bank_lines import (
    BankLine,
    BankTransactionCode,
    CreditDebit,
    ReturnInfo,
    account_identification,
    minor_units,
)
from quire.reconciliation.errors import AmountPrecision, MalformedStatement, UnknownCurrency


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.50", "EUR", 1250),
        ("12.5", "EUR", 1250),
        ("250000", "JPY", 250000),
        ("250000.00", "JPY", 250000),  # trailing zeros carry no money
        ("0.375", "KWD", 375),
        ("100.125", "KWD", 100125),
    ],
)
def test_amounts_become_integer_minor_units(amount, currency, minor):
    assert minor_units(Decimal(amount), currency, ("Amt",)) == minor


@pytest.mark.parametrize(
    ("amount", "currency"), [("12.501", "EUR"), ("0.5", "JPY"), ("1.0005", "KWD")]
)
def test_a_fraction_of_the_minor_unit_is_refused(amount, currency):
    with pytest.raises(AmountPrecision) as refused:
        minor_units(Decimal(amount), currency, ("Amt",))
    assert refused.value.loc == ("Amt",)
    assert refused.value.details["currency"] == currency


def test_an_unknown_currency_and_a_non_number_are_refused():
    with pytest.raises(UnknownCurrency):
        minor_units(Decimal("1"), "XYZ", ("Amt",))
    with pytest.raises(UnknownCurrency):
        minor_units(Decimal("1"), "XAU", ("Amt",))  # gold has no minor unit
    with pytest.raises(MalformedStatement):
        minor_units(Decimal("NaN"), "EUR", ("Amt",))


def _line(**changes: object) -> BankLine:
    fields: dict[str, object] = {
        "index": 0,
        "amount_minor": 8000,
        "credit_debit": CreditDebit.CREDIT,
        "currency": "EUR",
        "booking_date": date(2026, 11, 30),
        "value_date": date(2026, 11, 30),
    }
    return BankLine(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_sign_is_what_the_line_does_to_the_balance():
    assert _line().signed_amount_minor == 8000
    assert _line(credit_debit=CreditDebit.DEBIT).signed_amount_minor == -8000


@pytest.mark.parametrize(
    ("changes", "is_return"),
    [
        ({}, False),
        ({"return_info": ReturnInfo(reason_code="AC04")}, True),
        ({"return_info": ReturnInfo(reason_proprietary="901")}, True),
        ({"bank_code": BankTransactionCode("PMNT", "ICDT", "RRTN")}, True),
        ({"bank_code": BankTransactionCode("PMNT", "ICDT", "RPCR")}, True),
        ({"bank_code": BankTransactionCode(proprietary="NRTI", issuer="SWIFT")}, True),
        ({"bank_code": BankTransactionCode(proprietary="NRTI+159", issuer="DK")}, True),
        ({"bank_code": BankTransactionCode(proprietary="NTRF", issuer="SWIFT")}, False),
        ({"return_info": ReturnInfo(reversal=True)}, False),  # a correction, not a return
    ],
)
def test_what_counts_as_a_returned_payment(changes, is_return):
    assert _line(**changes).is_return is is_return


def test_a_bank_code_as_one_string():
    assert BankTransactionCode("PMNT", "ICDT", "ESCT").text == "PMNT-ICDT-ESCT"
    assert BankTransactionCode(proprietary="NTRF+116", issuer="DK").text == "NTRF+116 (DK)"
    assert BankTransactionCode("PMNT", "RCDT", "ESCT", "NTRF", "SWIFT").text == (
        "PMNT-RCDT-ESCT NTRF (SWIFT)"
    )
    assert BankTransactionCode().text is None


def test_an_account_is_an_iban_only_when_it_is_a_valid_one():
    assert account_identification("DE89 3704 0044 0532 0130 00", ()) == (
        "DE89370400440532013000",
        None,
    )
    assert account_identification("37040044/0532013000", ()) == (None, "37040044/0532013000")
    assert account_identification("DE89370400440532013001", ()) == (None, "DE89370400440532013001")
    with pytest.raises(MalformedStatement, match="not a valid IBAN"):
        account_identification("DE89370400440532013001", ("IBAN",), require_iban=True)
