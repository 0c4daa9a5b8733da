"""One model for what a bank says happened, whichever format it said it in.

camt.053 and MT940 describe the same things with different names and different gaps; matching
(and everything after it) should not care which one a line came from. So both parsers build
these frozen values, and nothing downstream reads a camt or MT940 object.

Money is integers in minor units (quire.money's exponents): a line's `amount_minor` is its
magnitude and `credit_debit` its direction, as both formats state them; `signed_amount_minor`
is what it does to the balance. Balances are signed (an overdrawn account's is negative).

These are the domain's values, not request or response shapes, so they are dataclasses here
rather than `schemas.py` models; storage (`models.py`) comes with the next piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from quire import money
from quire.reconciliation.errors import AmountPrecision, Loc, MalformedStatement, UnknownCurrency


class CreditDebit(StrEnum):
    """The direction of a line, named as ISO 20022 names it (MT940's C/D/RC/RD map onto it)."""

    CREDIT = "CRDT"
    DEBIT = "DBIT"


# ISO 20022 bank transaction sub-families that book a returned payment (RRTN: reversal due to a
# payment return; RPCR: reversal due to a payment cancellation request), and the SWIFT
# transaction type codes of MT940's :61: for a returned item (N = non-SWIFT, S = SWIFT message
# type, F = first advice; RTI = returned item).
RETURN_SUB_FAMILIES = frozenset({"RRTN", "RPCR"})
RETURN_SWIFT_CODES = frozenset({"NRTI", "SRTI", "FRTI"})
# German banks (DK's structured :86:, DFÜ-Abkommen Anlage 3) book a returned credit transfer
# with business transaction code (GVC) 159, "SEPA Credit Transfer Retoure", whatever :61: says.
RETURN_DK_GVCS = frozenset({"159"})


@dataclass(frozen=True, slots=True)
class Balance:
    """A booked balance at the end of `date` (camt OPBD/PRCD/CLBD, MT940 :60F:/:62F:)."""

    amount_minor: int
    currency: str
    date: date


@dataclass(frozen=True, slots=True)
class BankTransactionCode:
    """What kind of booking the bank says a line is.

    camt: the structured ISO code (domain / family / sub-family, e.g. PMNT/ICDT/ESCT) and the
    proprietary one (Prtry/Cd with its Issr). MT940: the :61: transaction type (NTRF, NRTI, ...)
    as `proprietary` with issuer SWIFT; with a German (DK) structured :86: its GVC joins it the way
    DK banks write camt's proprietary code ("NTRF+116", issuer DK).
    """

    domain: str | None = None
    family: str | None = None
    sub_family: str | None = None
    proprietary: str | None = None
    issuer: str | None = None

    @property
    def text(self) -> str | None:
        """One string for storage and people: "PMNT-ICDT-ESCT", "NTRF+116 (DK)", or both."""
        structured = "-".join(p for p in (self.domain, self.family, self.sub_family) if p)
        proprietary = self.proprietary and (
            f"{self.proprietary} ({self.issuer})" if self.issuer else self.proprietary
        )
        return " ".join(p for p in (structured, proprietary) if p) or None

    @property
    def is_return(self) -> bool:
        """True if the code itself books a returned payment."""
        swift, _, gvc = (self.proprietary or "").partition("+")
        if self.issuer == "DK" and (gvc or swift) in RETURN_DK_GVCS:
            return True
        return self.sub_family in RETURN_SUB_FAMILIES or swift in RETURN_SWIFT_CODES


@dataclass(frozen=True, slots=True)
class ReturnInfo:
    """Why money came back, or that the bank undid a booking of its own.

    `reversal` is camt's RvslInd or MT940's RC/RD marks: the bank reverses an earlier entry
    (its own correction). `reason_code` is the ISO external return reason (AC04 account closed,
    AM04 insufficient funds, ...) from camt RtrInf/Rsn/Cd or an MT940 :86: /RTRN/ code;
    `reason_proprietary` is RtrInf/Rsn/Prtry; `additional_info` is RtrInf/AddtlInf.
    """

    reversal: bool = False
    reason_code: str | None = None
    reason_proprietary: str | None = None
    additional_info: str | None = None


@dataclass(frozen=True, slots=True)
class BankLine:
    """One booking on the account (or, for a batch-booked camt entry, one of its parts).

    `index` is the line's position in its statement (parts of a split batch are consecutive).
    `entry_reference` is the entry's reference as the bank wrote it (camt NtryRef; MT940 the
    :61: reference subfields, "NONREF//BK-7790"); `raw` is the entry itself as the bank wrote it
    (the Ntry element; the :61: and :86: text), kept for people and for rules yet to come.
    `booked` is False for camt's pending or information-only entries, which are listed but not
    in the booked balance.
    """

    index: int
    amount_minor: int
    credit_debit: CreditDebit
    currency: str
    booking_date: date | None
    value_date: date | None
    booked: bool = True
    status: str = "BOOK"
    end_to_end_id: str | None = None
    account_servicer_reference: str | None = None
    customer_reference: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    remittance_information: str | None = None
    creditor_reference: str | None = None
    bank_code: BankTransactionCode = BankTransactionCode()
    return_info: ReturnInfo = ReturnInfo()
    additional_info: str | None = None
    entry_reference: str | None = None
    raw: str = ""

    @property
    def signed_amount_minor(self) -> int:
        """What the line does to the balance: credits add, debits subtract."""
        return self.amount_minor if self.credit_debit is CreditDebit.CREDIT else -self.amount_minor

    @property
    def is_return(self) -> bool:
        """A returned payment: a return reason given, or a code that books a return."""
        info = self.return_info
        return bool(info.reason_code or info.reason_proprietary) or self.bank_code.is_return

    @property
    def is_reversal(self) -> bool:
        """The bank undoing one of its own bookings (RvslInd, RC/RD)."""
        return self.return_info.reversal


@dataclass(frozen=True, slots=True)
class Statement:
    """One account's statement over a period: its booked balances and its lines.

    `statement_id` is camt Stmt/Id, or MT940 :20: with :28C: ("STARTUMS/42/1": many banks
    write the same :20: on every statement; the statement number tells them apart).
    `message_id` is camt GrpHdr/MsgId (MT940 has none). The account is `account_iban` when the
    bank gave an IBAN, `account_id` otherwise. `electronic_sequence_number` is camt
    ElctrncSeqNb; `legal_sequence_number` camt LglSeqNb or MT940 :28C: ("42/1": statement 42,
    page 1). `created_at` is Stmt/CreDtTm (else GrpHdr's) or MT940 :13D:, with the offset the
    bank gave (naive if it gave none).
    """

    format: str
    statement_id: str
    currency: str
    opening_balance: Balance
    closing_balance: Balance
    lines: tuple[BankLine, ...]
    account_iban: str | None = None
    account_id: str | None = None
    message_id: str | None = None
    created_at: datetime | None = None
    electronic_sequence_number: str | None = None
    legal_sequence_number: str | None = None

    @property
    def account(self) -> str:
        """The account, as the bank identified it (the IBAN when there is one)."""
        return self.account_iban or self.account_id or ""

    @property
    def booked_lines(self) -> tuple[BankLine, ...]:
        """The lines in the booked balance (camt's pending entries are not)."""
        return tuple(line for line in self.lines if line.booked)


def currency_code(code: str | None, loc: Loc) -> str:
    """The currency as given, if quire.money knows it (ISO 4217, with a minor unit)."""
    try:
        return money.validate_currency(code or "")
    except money.UnknownCurrency as exc:
        raise UnknownCurrency(str(exc), loc=loc) from None


def minor_units(amount: Decimal, currency: str, loc: Loc) -> int:
    """`amount` (major units, as the file writes it) as an integer count of minor units.

    Refused when it has non-zero digits beyond the currency's decimals (EUR 10.001, JPY 5.5).
    Trailing zeros are accepted (JPY "250000.00" is 250000 yen): they carry no money.
    """
    if not amount.is_finite():
        raise MalformedStatement(f"{amount} is not an amount", loc=loc)
    places = money.exponent(currency_code(currency, loc))
    scaled = amount.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise AmountPrecision(
            f"{amount} {currency} has more decimals than {currency} has ({places})",
            loc=loc,
            amount=str(amount),
            currency=currency,
        )
    return int(scaled)


def account_identification(
    value: str, loc: Loc, *, require_iban: bool = False
) -> tuple[str | None, str | None]:
    """`(iban, None)` when `value` is a valid IBAN (compact form), else `(None, value)`.

    camt says which kind an account id is (IBAN or Othr), so an IBAN there that fails its check
    digits is refused (`require_iban`); MT940's :25: is free text, where a bank-internal id
    ("37040044/0532013000") is as legitimate as an IBAN.
    """
    try:
        return IBAN(value.replace(" ", "")).compact, None
    except SchwiftyException as exc:
        if require_iban:
            raise MalformedStatement(f"{value!r} is not a valid IBAN: {exc}", loc=loc) from None
        return None, value.strip()
