"""Currencies and amounts: integers in minor units, exponents from the ISO 4217 table.

The `iso4217` package ships the maintenance agency's own list; no exponent is written by hand here.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Annotated

from iso4217 import Currency
from pydantic import AfterValidator, BeforeValidator, Field

# Larger than any real single order or payout (10^13 minor units = 100 billion USD), small enough
# that sums of millions of them stay far inside a signed 64-bit integer.
MAX_AMOUNT_MINOR = 10**13


class UnknownCurrency(ValueError):
    pass


@cache
def exponent(code: str) -> int:
    """Digits after the decimal point for an active ISO 4217 currency (JPY 0, USD 2, BHD 3)."""
    try:
        currency = Currency(code)
    except ValueError:
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code") from None
    if currency.exponent is None:
        raise UnknownCurrency(f"{code} has no minor unit (a fund or metal), it cannot carry money")
    return int(currency.exponent)


def format_minor(amount_minor: int, currency: str) -> str:
    """1250, "USD" -> "USD 12.50" (the currency's own number of decimals)."""
    places = exponent(currency)
    major = Decimal(amount_minor).scaleb(-places)
    return f"{currency} {major:,.{places}f}"


def validate_currency(code: str) -> str:
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha() or not code.isupper():
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code (three capital letters)")
    exponent(code)
    return code


def validate_amount(amount_minor: int) -> int:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ValueError("amounts are integers in the currency's minor unit")
    if amount_minor <= 0:
        raise ValueError("amount must be positive")
    if amount_minor > MAX_AMOUNT_MINOR:
        raise ValueError(f"amount {amount_minor} is absurdly large (max {MAX_AMOUNT_MINOR})")
    return amount_minor


CURRENCY_PATTERN = r"^[A-Z]{3}$"


@cache
def currency_codes() -> list[str]:
    """Every code `validate_currency` accepts: active ISO 4217 currencies with a minor unit."""
    return sorted(c.code for c in Currency if c.exponent is not None)


# The schema says exactly what the validator enforces, so clients (and fuzzers) can tell a valid
# code from an invalid one without asking: three capital letters, from the ISO 4217 list.
CurrencyCode = Annotated[
    str,
    AfterValidator(validate_currency),
    Field(
        json_schema_extra={"pattern": CURRENCY_PATTERN, "enum": currency_codes()},
        description="An ISO 4217 currency code with a minor unit (USD, EUR, JPY, ...).",
    ),
]


def whole_number(value: object) -> object:
    """JSON has one number type: `1200.0` is the integer 1200 (JSON Schema's `integer` agrees), so
    it is taken as one; `12.5`, `"1200"` and `true` still fail the strict integer check after."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer count of minor units: strict (no strings, no bools), whole JSON numbers accepted.
MinorUnits = Annotated[int, Field(strict=True), BeforeValidator(whole_number)]
# (Field before the validator: the other order loses the JSON Schema keywords of the bounds.)
AmountMinor = Annotated[
    int,
    Field(
        gt=0,
        le=MAX_AMOUNT_MINOR,
        strict=True,
        description="Integer amount in the currency's minor unit (cents for USD, yen for JPY).",
    ),
    BeforeValidator(whole_number),
]
