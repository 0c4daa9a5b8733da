"""A specialist's bank details: what a valid account is, how it is stored, shown and paid to.

Rules, one place for the API, the payroll run and its gate:

- **IBAN accounts** (`scheme="iban"`): the IBAN is normalised (spaces out, upper case) and checked
  by `schwifty` — country, length, the country's BBAN format, the ISO 7064 check digits and, where
  schwifty knows the algorithm, the national check digits. A BIC is optional inside the SEPA zone
  (IBAN-only since 2016) and required outside it (a pain.001.001.09 transfer names the creditor's
  bank); given, it must be a valid BIC of the IBAN's country (`BIC_COUNTRY_ALIASES`: territories
  whose banks carry another country's code).
- **Local accounts** (`scheme="local"`): an account number, a bank code and the account's country,
  for countries that do not use IBANs. A country in the official IBAN registry must give its IBAN.
  Well-known bank codes are checked by their national format (`LOCAL_FORMATS`: the US ABA routing
  number with its check digit, Canadian routing numbers, Australian BSBs, Japanese Zengin bank and
  branch codes, Indian IFSCs); elsewhere 1-35 letters and digits.
- **The holder** is ISO 20022 Max140Text: 1-140 characters after NFC and trimming, no control,
  format (except ZWNJ/ZWJ), private-use, unassigned or surrogate code points.

Every refusal names its field (`FieldProblem`, the same shape as a 422's `errors`), so a client
can point at what to fix; all problems are reported at once.

`account_fingerprint` is the SHA-256 of the normalised account identifier, so two specialists
paid into one account can be found (the gate refuses it). It is never shown: an unsalted digest of
an IBAN can be brute-forced back to the IBAN, so responses and audit entries carry `mask(...)`.

Cooling period (fraud protection): payouts to an account are held while it is new. The rule, in
Python (`in_cooling_period`, `cooling_until`) and in SQL (`in_cooling_period_clause`), is
`details_changed_at > cutoff - cooling_days` (never when `cooling_days == 0`). A specialist's first
details cool too: taking over a login without bank details and entering some gains an attacker
just as much as changing them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pycountry
from schwifty import BIC, IBAN, registry
from schwifty import exceptions as bank_errors
from sqlalchemy import ColumnElement, and_, case, false, or_

from quire.db import utcnow
from quire.payroll.errors import FieldProblem, InvalidPayoutDetails
from quire.payroll.models import PayoutDetails, PayoutScheme

if TYPE_CHECKING:
    from quire.settings import Settings

HOLDER_MAX = 140  # ISO 20022 Max140Text
IBAN_MAX = 34
BIC_PATTERN = re.compile(r"^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$")
# Spaces and hyphens people type between groups; nothing else is dropped from an identifier.
_SEPARATORS = re.compile(r"[\s-]+")
_ALNUM = re.compile(r"^[A-Z0-9]+$")
# Zero-width (non-)joiners are part of correct spelling in several scripts; other format
# characters (bidi overrides, zero-width spaces) only disguise a name.
_ALLOWED_FORMAT_CHARS = frozenset({"\u200c", "\u200d"})
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _iban_countries() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(official IBAN countries, aspirational ones, the SEPA zone), from schwifty's registry."""
    official: set[str] = set()
    aspirational: set[str] = set()
    sepa: set[str] = set()
    candidates = {c.alpha_2 for c in pycountry.countries} | {"XK"}
    for code in candidates:
        try:
            spec = registry.get_iban_spec(code)
        except bank_errors.SchwiftyException:
            continue
        (aspirational if spec.aspirational else official).add(code)
        if spec.in_sepa_zone:
            sepa.add(code)
    return frozenset(official), frozenset(aspirational), frozenset(sepa)


IBAN_COUNTRIES, ASPIRATIONAL_IBAN_COUNTRIES, SEPA_COUNTRIES = _iban_countries()
# ISO 3166-1 alpha-2 codes an account may be in (Kosovo's XK is user-assigned, used by banks).
COUNTRIES = frozenset({c.alpha_2 for c in pycountry.countries} | {"XK"})

# Territories with their own IBAN country code whose banks use another country's BICs.
_FRENCH = ("GF", "GP", "MQ", "RE", "YT", "PM", "BL", "MF", "NC", "PF", "WF", "TF", "MC")
BIC_COUNTRY_ALIASES: dict[str, frozenset[str]] = {
    **{code: frozenset({"FR"}) for code in _FRENCH},
    "AX": frozenset({"FI"}),
    "JE": frozenset({"GB"}),
    "GG": frozenset({"GB"}),
    "IM": frozenset({"GB"}),
    "VA": frozenset({"IT"}),
    "SM": frozenset({"IT"}),
}

# ISO 20022 ExternalClearingSystemIdentification1Code of each local format's bank code: what a
# pain.001.001.09 file puts in CdtrAgt/FinInstnId/ClrSysMmbId/ClrSysId/Cd.
CLEARING_SYSTEMS = {"US": "USABA", "CA": "CACPA", "AU": "AUBSB", "JP": "JPZGN", "IN": "INFSC"}

# Why a line is withheld, as `withhold_reason_clause` names it (the run's lines store these).
WITHHELD_MISSING = "missing_payout_details"
WITHHELD_ON_HOLD = "on_hold"
WITHHELD_COOLING = "payout_details_changed"
WITHHELD_NOT_SEPA = "not_sepa_reachable"


# ---------------------------------------------------------------------------------------------
# Problems


class _Bad(ValueError):
    """Internal: one field's problem, turned into a `FieldProblem` by the collector."""

    def __init__(self, type_: str, msg: str) -> None:
        super().__init__(msg)
        self.type = type_
        self.msg = msg


class _Collector:
    """Runs field checks, keeps the value of each that passed and every problem of those that
    did not, so a client hears about all of its mistakes in one answer."""

    def __init__(self, prefix: tuple[str | int, ...] = ()) -> None:
        self.prefix = prefix
        self.problems: list[FieldProblem] = []

    def check(self, field: str, fn: Callable[..., str], *args: Any, **kwargs: Any) -> str | None:
        try:
            return fn(*args, **kwargs)
        except _Bad as bad:
            self.problems.append(FieldProblem((*self.prefix, field), bad.msg, bad.type))
            return None

    def add(self, field: str, type_: str, msg: str) -> None:
        self.problems.append(FieldProblem((*self.prefix, field), msg, type_))

    def raise_if_any(self, code: str | None = None) -> None:
        if self.problems:
            raise InvalidPayoutDetails(self.problems, code=code)


# ---------------------------------------------------------------------------------------------
# Normalising and checking one field


def _compact(value: str) -> str:
    return _SEPARATORS.sub("", value).upper()


def normalise_text(value: str, *, what: str = "text", max_length: int = HOLDER_MAX) -> str:
    """A name as ISO 20022 carries it: NFC, trimmed, 1-`max_length` characters, nothing
    invisible or unprintable (a surrogate would also fail PostgreSQL's UTF-8 encoding)."""
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise _Bad("missing", f"the {what} must not be empty")
    if len(text) > max_length:
        raise _Bad("too_long", f"the {what} has at most {max_length} characters")
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES and char not in _ALLOWED_FORMAT_CHARS:
            raise _Bad(
                "invalid_character",
                f"the {what} must not contain control or invisible characters (U+{ord(char):04X})",
            )
    return text


def normalise_iban(value: str) -> str:
    """An IBAN in electronic form (`DE89370400440532013000`), or `_Bad` saying what is wrong."""
    compact = _compact(value)
    if not compact:
        raise _Bad("missing", "an IBAN is required")
    if not _ALNUM.match(compact):
        raise _Bad("iban_characters", "an IBAN has only letters and digits (and spaces)")
    if len(compact) > IBAN_MAX:
        raise _Bad("iban_length", f"an IBAN has at most {IBAN_MAX} characters")
    country = compact[:2]
    try:
        spec = registry.get_iban_spec(country)
    except bank_errors.SchwiftyException:
        raise _Bad("iban_country", f"{country!r} is not a country that issues IBANs") from None
    if len(compact) != spec.iban_length:
        raise _Bad(
            "iban_length",
            f"an IBAN from {country} has {spec.iban_length} characters, this one {len(compact)}",
        )
    try:
        with warnings.catch_warnings():
            # Countries without a known national check-digit algorithm only warn; that is fine.
            warnings.simplefilter("ignore", bank_errors.NationalChecksumNotVerified)
            return str(IBAN(compact, validate_bban=True))
    except bank_errors.InvalidChecksumDigits:
        raise _Bad("iban_checksum", "the IBAN's check digits do not match (a typo?)") from None
    except bank_errors.InvalidBBANChecksum:
        raise _Bad(
            "iban_national_checksum",
            f"the account's national check digits do not match ({country} rules; a typo?)",
        ) from None
    except bank_errors.SchwiftyException:
        raise _Bad(
            "iban_format",
            f"the account part does not have {country}'s format ({spec.bban_spec})",
        ) from None


def is_valid_iban(value: object) -> bool:
    """Whether `value` is an IBAN in electronic form that passes every check (for the gate)."""
    if not isinstance(value, str):
        return False
    try:
        return normalise_iban(value) == value
    except _Bad:
        return False


def normalise_bic(value: str, *, country: str | None = None) -> str:
    """A BIC (8 or 11 characters, upper case); with `country`, one of that country's banks."""
    compact = _compact(value)
    if not BIC_PATTERN.match(compact):
        raise _Bad(
            "bic_format",
            "a BIC is 4 letters (bank), 2 letters (country), 2 letters or digits (location) "
            "and optionally 3 letters or digits (branch)",
        )
    try:
        bic = BIC(compact)
    except bank_errors.SchwiftyException:
        raise _Bad("bic_country", f"{compact[4:6]!r} in the BIC is not a country code") from None
    if country is not None:
        accepted = {country} | BIC_COUNTRY_ALIASES.get(country, frozenset())
        if bic.country_code not in accepted:
            raise _Bad(
                "bic_country_mismatch",
                f"the BIC is a bank in {bic.country_code}, the account is in {country}",
            )
    return str(bic.compact)


def normalise_country(value: str) -> str:
    code = value.strip().upper()
    if code not in COUNTRIES:
        raise _Bad("country", f"{value[:8]!r} is not an ISO 3166 country code (e.g. US, JP)")
    return code


def _aba_checksum_ok(routing: str) -> bool:
    """The ABA routing number's check digit: 3-7-1 weights over the nine digits, sum % 10 == 0."""
    digits = [int(d) for d in routing]
    return sum(w * d for w, d in zip((3, 7, 1) * 3, digits, strict=True)) % 10 == 0


def _canadian_routing(code: str) -> str:
    """Paper (MICR) form transit-institution, `12345-678` -> electronic `067812345`."""
    if re.fullmatch(r"\d{8}", code):
        return f"0{code[5:]}{code[:5]}"
    return code


@dataclass(frozen=True, slots=True)
class LocalFormat:
    """How one country writes the bank code and account number of a domestic account."""

    bank_code: re.Pattern[str]
    bank_code_rule: str
    account_number: re.Pattern[str]
    account_number_rule: str
    check_bank_code: Callable[[str], bool] | None = None
    check_rule: str = ""
    rewrite_bank_code: Callable[[str], str] | None = None


DEFAULT_LOCAL_FORMAT = LocalFormat(
    re.compile(r"[A-Z0-9]{1,35}"),
    "1-35 letters or digits",
    re.compile(r"[A-Z0-9]{1,34}"),
    "1-34 letters or digits",
)
LOCAL_FORMATS: dict[str, LocalFormat] = {
    "US": LocalFormat(
        re.compile(r"\d{9}"),
        "an ABA routing number: 9 digits",
        re.compile(r"\d{4,17}"),
        "4-17 digits",
        _aba_checksum_ok,
        "the routing number's check digit does not match (a typo?)",
    ),
    "CA": LocalFormat(
        re.compile(r"0\d{8}"),
        "a routing number: 0, the 3-digit institution and the 5-digit transit number "
        "(or transit-institution, 12345-678)",
        re.compile(r"\d{7,12}"),
        "7-12 digits",
        rewrite_bank_code=_canadian_routing,
    ),
    "AU": LocalFormat(
        re.compile(r"\d{6}"),
        "a BSB: 6 digits (123-456)",
        re.compile(r"\d{5,10}"),
        "5-10 digits",
    ),
    "JP": LocalFormat(
        re.compile(r"\d{7}"),
        "the 4-digit bank code and the 3-digit branch code (Zengin), e.g. 0001-001",
        re.compile(r"\d{7}"),
        "7 digits",
    ),
    "IN": LocalFormat(
        re.compile(r"[A-Z]{4}0[A-Z0-9]{6}"),
        "an IFSC: 4 letters, a zero, 6 letters or digits",
        re.compile(r"\d{9,18}"),
        "9-18 digits",
    ),
}


def normalise_bank_code(value: str, country: str) -> str:
    fmt = LOCAL_FORMATS.get(country, DEFAULT_LOCAL_FORMAT)
    code = _compact(value)
    if fmt.rewrite_bank_code is not None:
        code = fmt.rewrite_bank_code(code)
    if not fmt.bank_code.fullmatch(code):
        raise _Bad("bank_code_format", f"a bank code in {country} is {fmt.bank_code_rule}")
    if fmt.check_bank_code is not None and not fmt.check_bank_code(code):
        raise _Bad("bank_code_checksum", fmt.check_rule)
    return code


def normalise_account_number(value: str, country: str) -> str:
    fmt = LOCAL_FORMATS.get(country, DEFAULT_LOCAL_FORMAT)
    number = _compact(value)
    if not fmt.account_number.fullmatch(number):
        raise _Bad(
            "account_number_format", f"an account number in {country} is {fmt.account_number_rule}"
        )
    return number


# ---------------------------------------------------------------------------------------------
# A whole account


@dataclass(frozen=True, slots=True)
class Account:
    """Bank details that passed every check, normalised: what is stored and paid to."""

    scheme: PayoutScheme
    account_holder: str
    country: str
    iban: str | None = None
    bic: str | None = None
    account_number: str | None = None
    bank_code: str | None = None

    @property
    def identifier(self) -> str:
        """What names the account itself (not its holder, not the bank's BIC)."""
        if self.scheme is PayoutScheme.IBAN:
            return f"IBAN:{self.iban}"
        return f"LOCAL:{self.country}:{self.bank_code}:{self.account_number}"

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.identifier)


def fingerprint_of(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()


def validate_account(
    *,
    scheme: str,
    account_holder: str,
    iban: str | None = None,
    bic: str | None = None,
    account_number: str | None = None,
    bank_code: str | None = None,
    country: str | None = None,
) -> Account:
    """The normalised account, or `InvalidPayoutDetails` naming every field that is wrong.

    A field that does not belong to the scheme (an IBAN with a local account, a bank code with an
    IBAN) is refused rather than ignored: silently dropping what someone typed hides mistakes.
    """
    c = _Collector()
    holder = c.check("account_holder", normalise_text, account_holder, what="account holder")
    if scheme == PayoutScheme.IBAN:
        for name, value in (("account_number", account_number), ("bank_code", bank_code)):
            if value is not None:
                c.add(name, "not_allowed", f"an IBAN account has no separate {name}")
        found = c.check("iban", normalise_iban, iban) if iban is not None else None
        if iban is None:
            c.add("iban", "missing", "an IBAN account needs its IBAN")
        iban_country = found[:2] if found else None
        given_country = c.check("country", normalise_country, country) if country else None
        if given_country and iban_country and given_country != iban_country:
            c.add("country", "country_mismatch", f"the IBAN is from {iban_country}")
        found_bic = None
        if bic is not None:
            found_bic = c.check("bic", normalise_bic, bic, country=iban_country)
        elif iban_country and iban_country not in SEPA_COUNTRIES:
            c.add("bic", "missing", f"a transfer to {iban_country} (outside SEPA) needs the BIC")
        c.raise_if_any()
        # Every check passed, so each value is there (for the type checker).
        assert holder is not None
        assert found is not None
        assert iban_country is not None
        return Account(PayoutScheme.IBAN, holder, iban_country, iban=found, bic=found_bic)
    if scheme != PayoutScheme.LOCAL:
        c.add("scheme", "scheme", "the scheme is 'iban' or 'local'")
        c.raise_if_any()
    if iban is not None:
        c.add("iban", "not_allowed", "a local account has no IBAN: use scheme 'iban'")
    place = None
    if country is None:
        c.add("country", "missing", "a local account needs its country")
    else:
        place = c.check("country", normalise_country, country)
    if place in IBAN_COUNTRIES:
        c.add("country", "iban_required", f"accounts in {place} have IBANs: use scheme 'iban'")
        place = None
    number = code = found_bic = None
    if account_number is None:
        c.add("account_number", "missing", "a local account needs its account number")
    if bank_code is None:
        c.add("bank_code", "missing", "a local account needs its bank code")
    if place is not None:
        if account_number is not None:
            number = c.check("account_number", normalise_account_number, account_number, place)
        if bank_code is not None:
            code = c.check("bank_code", normalise_bank_code, bank_code, place)
        if bic is not None:
            found_bic = c.check("bic", normalise_bic, bic, country=place)
    c.raise_if_any()
    assert holder is not None
    assert place is not None
    assert number is not None
    assert code is not None
    return Account(
        PayoutScheme.LOCAL, holder, place, bic=found_bic, account_number=number, bank_code=code
    )


def account_of(details: PayoutDetails) -> Account:
    """A stored row as an `Account` (no checks: it was checked when it was written)."""
    return Account(
        PayoutScheme(details.scheme),
        details.account_holder,
        details.country,
        iban=details.iban,
        bic=details.bic,
        account_number=details.account_number,
        bank_code=details.bank_code,
    )


def problems_of(details: PayoutDetails) -> list[FieldProblem]:
    """What is wrong with a stored row today (schwifty's registry moves on): [] if nothing."""
    try:
        validate_account(
            scheme=details.scheme,
            account_holder=details.account_holder,
            iban=details.iban,
            bic=details.bic,
            account_number=details.account_number,
            bank_code=details.bank_code,
            country=details.country if details.scheme == PayoutScheme.LOCAL else None,
        )
    except InvalidPayoutDetails as exc:
        return exc.problems
    return []


def apply(details: PayoutDetails, account: Account, *, now: dt.datetime | None = None) -> bool:
    """Write `account` into the row; True if the account itself changed (not just its holder's
    name or the BIC), which is what restarts the cooling period (`details_changed_at`)."""
    changed = details.account_fingerprint != account.fingerprint
    details.scheme = account.scheme.value
    details.account_holder = account.account_holder
    details.iban = account.iban
    details.bic = account.bic
    details.account_number = account.account_number
    details.bank_code = account.bank_code
    details.country = account.country
    if changed:
        details.account_fingerprint = account.fingerprint
        details.details_changed_at = now or utcnow()
    return changed


# ---------------------------------------------------------------------------------------------
# Showing and paying


def mask_iban(iban: str | None) -> str | None:
    """`DE89370400440532013000` -> `DE89…3000`: country and check digits, and the last four."""
    if not iban:
        return iban
    return f"{iban[:4]}…{iban[-4:]}" if len(iban) > 8 else "…"


def mask_account_number(number: str | None) -> str | None:
    """`0012345678` -> `****5678`: at most the last four, never more than half of it."""
    if not number:
        return number
    shown = min(4, len(number) // 2)
    return "****" + (number[-shown:] if shown else "")


def _field(details: PayoutDetails | Mapping[str, Any], name: str) -> Any:
    if isinstance(details, Mapping):
        return details.get(name)
    return getattr(details, name)


def mask(details: PayoutDetails | Mapping[str, Any]) -> dict[str, Any]:
    """What anyone but the owner sees of an account, and what audit entries hold: the IBAN's
    country, check digits and last four, the account number's last four; the holder, the BIC,
    the bank code and the country as they are (they name a bank, not an account). Works on a
    row and on a `payee(...)` snapshot alike."""
    return {
        "scheme": _field(details, "scheme"),
        "account_holder": _field(details, "account_holder"),
        "iban": mask_iban(_field(details, "iban")),
        "bic": _field(details, "bic"),
        "account_number": mask_account_number(_field(details, "account_number")),
        "bank_code": _field(details, "bank_code"),
        "country": _field(details, "country"),
    }


def payee(details: PayoutDetails) -> dict[str, Any]:
    """The account as a payout file needs it, in full, JSON-ready: frozen on a payroll line
    (`PayrollLine.payee`) when the line is computed, so a later change does not redirect it.

    Keys: `scheme` ("iban" | "local"), `account_holder` (up to 140 characters; SEPA files keep
    70), `iban`, `bic` (None if not given), `account_number`, `bank_code`, `country` (ISO 3166),
    `clearing_system` (the ISO 20022 ClrSysId code of a local bank code: USABA, CACPA, AUBSB,
    JPZGN, INFSC; else None), `sepa` (an IBAN inside the SEPA zone: a pain.001.001.03 line may
    go to it) and `account_fingerprint`. `mask(payee(d))` is what may be shown of it.
    """
    local = details.scheme == PayoutScheme.LOCAL
    return {
        "scheme": details.scheme,
        "account_holder": details.account_holder,
        "iban": details.iban,
        "bic": details.bic,
        "account_number": details.account_number,
        "bank_code": details.bank_code,
        "country": details.country,
        "clearing_system": CLEARING_SYSTEMS.get(details.country) if local else None,
        "sepa": not local and details.country in SEPA_COUNTRIES,
        "account_fingerprint": details.account_fingerprint,
    }


# ---------------------------------------------------------------------------------------------
# The cooling period


def _days(settings: Settings | int) -> int:
    return settings if isinstance(settings, int) else settings.payout_details_cooling_days


def in_cooling_period(details: PayoutDetails, at: dt.datetime, days: int) -> bool:
    """Are payouts computed at `at` (a run's cutoff) held because the account is new?"""
    return days > 0 and details.details_changed_at > at - dt.timedelta(days=days)


def cooling_until(
    details: PayoutDetails, settings: Settings | int, now: dt.datetime | None = None
) -> dt.datetime | None:
    """Until when payouts to this account are held (a run whose cutoff is before this instant
    withholds them), or None if the account is not (or no longer, at `now`) cooling.
    `settings` is the Settings or its `payout_details_cooling_days`."""
    days = _days(settings)
    if days <= 0:
        return None
    until = details.details_changed_at + dt.timedelta(days=days)
    return until if (now or utcnow()) < until else None


def in_cooling_period_clause(cutoff: dt.datetime, days: int) -> ColumnElement[bool]:
    """`in_cooling_period` in SQL, for the set-based line computation: true for rows of
    `payout_details` whose account was set or changed after `cutoff - days` (a change after the
    cutoff included). Combine it with an outer join (a missing row is NULL, i.e. not cooling)."""
    if days <= 0:
        return false()
    return PayoutDetails.details_changed_at > cutoff - dt.timedelta(days=days)


def withhold_reason_clause(
    cutoff: dt.datetime, days: int, payout_currency: ColumnElement[str]
) -> ColumnElement[str | None]:
    """Why a specialist's payout is withheld whatever its amount, in SQL, or NULL if it is not:
    no details (`payout_details` outer-joined), a hold, the cooling period, or a EUR payout to an
    account SEPA cannot reach (EUR lines go out as SEPA credit transfers). The minimum payout
    is the run's to apply; finance's own words for a hold are `PayoutDetails.hold_reason`."""
    return case(
        (PayoutDetails.user_id.is_(None), WITHHELD_MISSING),
        (PayoutDetails.on_hold, WITHHELD_ON_HOLD),
        (in_cooling_period_clause(cutoff, days), WITHHELD_COOLING),
        (
            and_(
                payout_currency == "EUR",
                or_(
                    PayoutDetails.scheme != PayoutScheme.IBAN.value,
                    PayoutDetails.country.not_in(sorted(SEPA_COUNTRIES)),
                ),
            ),
            WITHHELD_NOT_SEPA,
        ),
        else_=None,
    )
