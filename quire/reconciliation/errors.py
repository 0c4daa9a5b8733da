"""Reconciliation's own failures (each a kind of `quire.errors`, so the API maps it to one status).

A bank statement that cannot be taken as it is must be refused whole, with a 422 that tells
finance what is wrong and where, so they can ask the bank for a corrected file. Every error here
is an `Invalid` carrying `loc` (a path into the file: XML element names for camt.053, tags for
MT940, the model's field names for checks made on the parsed statement) and the same `errors`
list a 422 for a request body has (`loc`, `msg`, `type`), so clients read both alike.
"""

from __future__ import annotations

from typing import Any

from quire.errors import Invalid

Loc = tuple[str | int, ...]


class StatementInvalid(Invalid):
    """A bank statement file that is refused; nothing of it may be stored."""

    code = "invalid_bank_statement"

    def __init__(self, message: str, *, loc: Loc = (), code: str | None = None, **details: Any):
        kind = code or type(self).code
        problem = {"loc": list(loc), "msg": message, "type": kind}
        super().__init__(message, code=code, errors=[problem], **details)
        self.loc = loc


class MalformedStatement(StatementInvalid):
    """Not well-formed (truncated, not XML, a tag that does not parse), or breaking the message
    definition (a required element missing, a value of the wrong type or pattern)."""

    code = "malformed_statement"


class UnknownStatementFormat(StatementInvalid):
    """Neither camt.053 (versions .02 to .08) nor MT940: another ISO 20022 message, another
    camt.053 version, or something else entirely."""

    code = "unknown_statement_format"


class AmountPrecision(StatementInvalid):
    """An amount with more decimals than its currency has (EUR 10.001, JPY 5.5): it is not a
    whole number of minor units, so it cannot be money here."""

    code = "amount_precision"


class UnknownCurrency(StatementInvalid):
    """A currency code that is not an ISO 4217 currency with a minor unit."""

    code = "unknown_currency"


class CurrencyMismatch(StatementInvalid):
    """A balance or an entry in another currency than the statement's account."""

    code = "currency_mismatch"


class MissingAccount(StatementInvalid):
    """A statement that does not say which account it is for."""

    code = "missing_account"


class MissingBalance(StatementInvalid):
    """A statement without its opening or its closing booked balance: without both it cannot
    be checked, so it cannot be trusted."""

    code = "missing_balance"


class UnbalancedStatement(StatementInvalid):
    """Opening balance plus the booked lines is not the closing balance: a line is missing or
    wrong (or the file was cut), so none of it can be reconciled."""

    code = "unbalanced_statement"
