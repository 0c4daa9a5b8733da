"""The files finance hands to the bank: the credit transfers it executes, and a summary.

- EUR to IBANs in the SEPA zone: a SEPA credit transfer, ISO 20022 `pain.001.001.03`, built by
  `sepaxml`, then validated against the XSD sepaxml ships.
- Every other currency (and EUR to accounts outside SEPA): ISO 20022 `pain.001.001.09`, built from
  `pyiso20022`'s generated dataclasses and serialised by `xsdata`, one payment information block
  per currency so each block's control sum is a sum in one currency.
- A CSV summary of every payment for people (accounts masked to their last four characters).

The bank echoes each transaction's end-to-end id on its statement, so reconciliation matches on it:
ids come from the caller, must be unique in a file, and are never rewritten here. Names and texts
are transliterated to the SWIFT/EPC Latin character set (what every bank accepts), never silently
dropped: a name that transliterates to nothing is refused.

Both XSDs are the ISO 20022 schemas `sepaxml` ships (`sepaxml/schemas/`). `validate` checks the
exact bytes written against them with libxml2 (lxml; each schema parsed once per process), and adds
the rules an XSD cannot express: no more decimals than the currency has (JPY 0, KWD 3), control
sums and transaction counts that add up, end-to-end ids unique, every transfer to an account (the
ISO XSDs let CdtrAcct be absent), SEPA files in EUR and to IBANs only.

Speed (the three files for 30,000 payments: ~14.5 s of CPU before, ~1.7 s now): sepaxml's own
`export(validate=True)` builds a new `xmlschema` schema and walks the file in pure Python on every
call (~3 s for 10,000 transfers), so the file is exported with `validate=False` and the very same
bytes go through `validate`: the same XSD file, checked by libxml2's XSD 1.0 validator in C
(a test shows sepaxml's own check accepts what is written). xsdata's serialiser turns every field
of every dataclass into events in Python (~9 s for 20,000 transfers), so xsdata serialises the
document with one transaction per *shape* per block (IBAN or local account, which optional
fields, country, currency), built by `_transaction` from values that are markers; each payment's
transaction is its shape's text with its own values in place of the markers (`_Shape`). The
tests hold the result byte for byte to xsdata serialising every transaction itself. IBANs, BICs
and routing numbers are parsed once per text (cached), the summary reuses the files' checks of
the very same payments, and the cyclic garbage collector waits while a file is built.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import hashlib
import io
import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache, lru_cache
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

import sepaxml
from lxml import etree
from pyiso20022.pain.pain_001_001_09 import (
    AccountIdentification4Choice,
    ActiveOrHistoricCurrencyAndAmount,
    AmountType4Choice,
    BranchAndFinancialInstitutionIdentification6,
    CashAccount38,
    ChargeBearerType1Code,
    ClearingSystemIdentification2Choice,
    ClearingSystemMemberIdentification2,
    CreditTransferTransaction34,
    CustomerCreditTransferInitiationV09,
    DateAndDateTime2Choice,
    Document,
    FinancialInstitutionIdentification18,
    GenericAccountIdentification1,
    GroupHeader85,
    PartyIdentification135,
    PaymentIdentification6,
    PaymentInstruction30,
    PaymentMethod3Code,
    PostalAddress24,
    RemittanceInformation16,
)
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from sepaxml import SepaTransfer
from text_unidecode import unidecode
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDate, XmlDateTime

from quire.errors import Invalid
from quire.money import UnknownCurrency, exponent, validate_amount, validate_currency

FORMAT_SEPA = "pain.001.001.03"
FORMAT_ISO20022 = "pain.001.001.09"
FORMAT_CSV = "csv"
XML_MEDIA_TYPE = "application/xml"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

SCHEMAS_DIR = Path(sepaxml.__file__).parent / "schemas"
NAMESPACES = {
    fmt: f"urn:iso:std:iso:20022:tech:xsd:{fmt}" for fmt in (FORMAT_SEPA, FORMAT_ISO20022)
}

SCHEMES = ("iban", "local")
CSV_HEADER = ("end_to_end_id", "creditor", "currency", "amount", "account", "scheme", "file")

# ISO 20022 Max35Text, restricted to what SEPA allows in references (EPC: the Latin set, no leading
# or trailing "/", no "//"), so one id works in both formats and on every bank's statement.
_REFERENCE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9/\-?:().,'+]{0,33}[A-Za-z0-9\-?:().,'+])?")
# The SWIFT / EPC basic Latin character set; anything else in a name or text is transliterated.
_NOT_LATIN = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,33}")
_BANK_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,34}")

# ISO 20022 ExternalClearingSystemIdentification1Code for the national bank codes we know, so a
# local account's bank code says which clearing system it belongs to (the MmbId alone is valid
# too, and is what is sent for any other country).
CLEARING_SYSTEMS = {
    "AU": "AUBSB",  # BSB number
    "CA": "CACPA",  # Canadian Payments Association routing number
    "CH": "CHBCC",  # Swiss bank clearing code
    "CN": "CNAPS",
    "DE": "DEBLZ",  # Bankleitzahl
    "GB": "GBDSC",  # sort code
    "HK": "HKNCC",
    "IN": "INFSC",  # IFSC
    "JP": "JPZGN",  # Zengin
    "NZ": "NZNCC",
    "US": "USABA",  # ABA routing transit number
    "ZA": "ZANCC",
}

SEPA_NAME_LENGTH = 70  # EPC rule for SEPA names (ISO allows 140)
NAME_LENGTH = 140  # ISO 20022 Max140Text
REMITTANCE_LENGTH = 140  # one unstructured remittance line


@dataclass(frozen=True)
class Debtor:
    """The tenant's account the payouts leave from."""

    name: str
    iban: str
    bic: str


@dataclass(frozen=True)
class Payment:
    """One credit transfer to one specialist's account."""

    end_to_end_id: str  # <= 35 chars: the id the bank echoes back, reconciliation matches on it
    creditor_name: str
    scheme: str  # "iban" or "local"
    iban: str | None
    bic: str | None
    account_number: str | None
    bank_code: str | None
    country: str  # ISO 3166 alpha-2 of the creditor's account
    amount_minor: int
    currency: str
    remittance: str  # e.g. "Quire payout 2026-11"


@dataclass(frozen=True)
class PayoutFile:
    """A file's exact bytes with what is stored beside them (digest, message id, ids it pays)."""

    name: str
    format: str  # pain.001.001.03 | pain.001.001.09 | csv
    media_type: str
    content: bytes
    sha256: str  # of `content`, exactly the bytes to write
    message_id: str | None  # ISO 20022 GrpHdr/MsgId; None for the CSV
    currencies: list[str]
    line_count: int
    # The transactions' end-to-end ids in file order; empty for the CSV (it pays nothing).
    end_to_end_ids: tuple[str, ...] = ()
    # The payments as checked for this file, so the summary of the same payments need not check
    # them again (`summary_csv`); not part of what the file is.
    _checked: tuple[_Checked, ...] = field(default=(), repr=False, compare=False)


class _Checked(NamedTuple):
    """A payment after validation: normalised account identifiers, Latin-only texts (a tuple:
    one is made per payment and file, and a frozen dataclass costs several times as much)."""

    payment: Payment
    name: str
    remittance: str
    iban: str | None
    bic: str | None
    account_number: str | None
    bank_code: str | None
    name_length: int  # what `name` was cut to

    @property
    def account(self) -> str:
        return self.iban or self.account_number or ""


@contextmanager
def _collection_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector paused while a file is built, then resumed as it was.

    Building a file keeps ~10 container objects per payment alive until it is written (sepaxml's
    elements, the checked payments), so the collector's heap-wide passes keep coming round:
    2-3 full passes per 30,000 payments, ~0.15 s each in the micro-benchmark and more in a
    flow-run process, whose heap is larger. None of these objects is cyclic garbage, and
    reference counting still frees the rest as it goes; whatever is pending is collected as
    usual once the collector is back on. Pausing is process-wide; nesting and threads are safe
    (the collector ends up on again as long as it was on when the first pause began).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- the two XML formats --------------------------------------------------------------------------


@_collection_paused()
def sepa_credit_transfer(
    debtor: Debtor,
    payments: Sequence[Payment],
    *,
    message_id: str,
    execution_date: dt.date,
    name: str,
    created_at: dt.datetime | None = None,
) -> PayoutFile:
    """A SEPA credit transfer (pain.001.001.03) of EUR payments to IBANs in the SEPA zone.

    One batch-booked payment information block for the execution date. `created_at` (aware; default
    now) is the GrpHdr's creation time, passed to make a file reproducible byte for byte.
    """
    _check_reference(message_id, "message id")
    _check_file_name(name)
    when = _execution_date(execution_date)
    created = _creation_time(created_at)
    debtor_iban, debtor_bic, debtor_name = _check_debtor(debtor, SEPA_NAME_LENGTH)
    if not _in_sepa_zone(debtor_iban):
        raise Invalid(f"the debtor's IBAN ({debtor_iban[:2]}) is outside the SEPA zone")
    checked = _check_payments(payments, SEPA_NAME_LENGTH)
    for index, item in enumerate(checked):
        _check_sepa_payment(index, item)

    transfer = _SepaTransfer(
        {
            "name": debtor_name,
            "IBAN": debtor_iban,
            "BIC": debtor_bic,
            "batch": True,
            "currency": "EUR",
        },
        message_id=message_id,
        created=created.isoformat(timespec="seconds"),
        payment_information_id=_payment_information_id(message_id, "EUR"),
    )
    for item in checked:
        entry: dict[str, object] = {
            "name": item.name,
            "IBAN": item.iban,
            "amount": item.payment.amount_minor,  # EUR has 2 decimals: sepaxml's cents
            "currency": "EUR",
            "execution_date": when,
            "description": item.remittance,
            "endtoend_id": item.payment.end_to_end_id,
        }
        if item.bic is not None:
            entry["BIC"] = item.bic
        transfer.add_payment(entry)
    # sepaxml's own check (validate=True) re-reads the XSD and walks the file in pure Python on
    # every export; `validate` checks these same bytes against the same XSD file with libxml2.
    content = transfer.export(validate=False)
    validate(content, FORMAT_SEPA)
    return _xml_file(name, FORMAT_SEPA, content, message_id, checked)


def _check_sepa_payment(index: int, item: _Checked) -> None:
    """EPC rulebook: a SEPA credit transfer pays euros to an IBAN in the SEPA zone."""
    payment = item.payment
    if payment.currency != "EUR":
        raise Invalid(
            f"{_where(index, payment)}: a SEPA credit transfer is in EUR only, not "
            f"{payment.currency} (other currencies go in the pain.001.001.09 file)"
        )
    if item.iban is None:
        raise Invalid(
            f"{_where(index, payment)}: a SEPA credit transfer pays an IBAN, not a local account"
        )
    if not _in_sepa_zone(item.iban):
        raise Invalid(
            f"{_where(index, payment)}: the IBAN's country {item.iban[:2]} is outside the SEPA zone"
        )


@_collection_paused()
def iso20022_credit_transfer(
    debtor: Debtor,
    payments: Sequence[Payment],
    *,
    message_id: str,
    execution_date: dt.date,
    name: str,
    created_at: dt.datetime | None = None,
) -> PayoutFile:
    """An ISO 20022 customer credit transfer (pain.001.001.09), one payment block per currency.

    Amounts are written with the currency's own decimals (JPY "1200", KWD "12.345"). A creditor
    account is its IBAN, or for the local scheme `Othr/Id` = account number with the creditor
    agent's `ClrSysMmbId/MmbId` = bank code (and its clearing system and BIC when known). Charges
    are the debtor's (`DEBT`): a specialist receives the amount on their statement.
    """
    _check_reference(message_id, "message id")
    _check_file_name(name)
    header = _Header(
        message_id=message_id,
        execution_date=_execution_date(execution_date),  # checked in this order, as before
        created=_creation_time(created_at),
        debtor=_check_debtor(debtor, NAME_LENGTH),
    )
    checked = _check_payments(payments, NAME_LENGTH)
    blocks: dict[str, list[_Checked]] = {}
    for item in checked:
        blocks.setdefault(item.payment.currency, []).append(item)
    blocks = {currency: blocks[currency] for currency in sorted(blocks)}
    content = _render_iso(_iso_document(header, blocks, _Shape.markers), blocks)
    validate(content, FORMAT_ISO20022)
    return _xml_file(name, FORMAT_ISO20022, content, message_id, checked)


@dataclass(frozen=True)
class _Header:
    """What a pain.001.001.09 file states once: its ids, times and the debtor (iban, bic, name)."""

    message_id: str
    created: dt.datetime
    execution_date: dt.date
    debtor: tuple[str, str, str]


def _iso_document(
    header: _Header,
    blocks: dict[str, list[_Checked]],
    transactions: Callable[[Sequence[_Checked]], list[CreditTransferTransaction34]],
) -> Document:
    """The pyiso20022 document: a group header, and a payment block per currency whose
    transactions are `transactions(items)` (the shapes' markers, or every payment's own)."""
    debtor_iban, debtor_bic, debtor_name = header.debtor
    every = [item for items in blocks.values() for item in items]
    return Document(
        cstmr_cdt_trf_initn=CustomerCreditTransferInitiationV09(
            grp_hdr=GroupHeader85(
                msg_id=header.message_id,
                cre_dt_tm=XmlDateTime.from_datetime(header.created),
                nb_of_txs=str(len(every)),
                # ISO 20022: the total of all amounts in the message, irrespective of currency.
                ctrl_sum=sum((_major(i.payment) for i in every), Decimal(0)),
                initg_pty=PartyIdentification135(nm=debtor_name),
            ),
            pmt_inf=[
                PaymentInstruction30(
                    pmt_inf_id=_payment_information_id(header.message_id, currency),
                    pmt_mtd=PaymentMethod3Code.TRF,
                    btch_bookg=True,
                    nb_of_txs=str(len(items)),
                    ctrl_sum=sum((_major(i.payment) for i in items), Decimal(0)),
                    reqd_exctn_dt=DateAndDateTime2Choice(
                        dt=XmlDate.from_date(header.execution_date)
                    ),
                    dbtr=PartyIdentification135(nm=debtor_name),
                    dbtr_acct=CashAccount38(id=AccountIdentification4Choice(iban=debtor_iban)),
                    dbtr_agt=BranchAndFinancialInstitutionIdentification6(
                        fin_instn_id=FinancialInstitutionIdentification18(bicfi=debtor_bic)
                    ),
                    chrg_br=ChargeBearerType1Code.DEBT,
                    cdt_trf_tx_inf=transactions(items),
                )
                for currency, items in blocks.items()
            ],
        )
    )


def _transaction(item: _Checked) -> CreditTransferTransaction34:
    payment = item.payment
    if item.iban is not None:
        account = AccountIdentification4Choice(iban=item.iban)
        agent = (
            BranchAndFinancialInstitutionIdentification6(
                fin_instn_id=FinancialInstitutionIdentification18(bicfi=item.bic)
            )
            if item.bic is not None
            else None
        )
    else:
        assert item.account_number is not None
        assert item.bank_code is not None
        account = AccountIdentification4Choice(
            othr=GenericAccountIdentification1(id=item.account_number)
        )
        clearing = CLEARING_SYSTEMS.get(payment.country)
        agent = BranchAndFinancialInstitutionIdentification6(
            fin_instn_id=FinancialInstitutionIdentification18(
                bicfi=item.bic,
                clr_sys_mmb_id=ClearingSystemMemberIdentification2(
                    clr_sys_id=(
                        ClearingSystemIdentification2Choice(cd=clearing) if clearing else None
                    ),
                    mmb_id=item.bank_code,
                ),
                # A bank code means something only within its country.
                pstl_adr=PostalAddress24(ctry=payment.country),
            )
        )
    return CreditTransferTransaction34(
        pmt_id=PaymentIdentification6(end_to_end_id=payment.end_to_end_id),
        amt=AmountType4Choice(
            instd_amt=ActiveOrHistoricCurrencyAndAmount(value=_major(payment), ccy=payment.currency)
        ),
        cdtr_agt=agent,
        cdtr=PartyIdentification135(nm=item.name),
        cdtr_acct=CashAccount38(id=account),
        rmt_inf=RemittanceInformation16(ustrd=[item.remittance]),
    )


@cache
def _serializer() -> XmlSerializer:
    """xsdata's serialiser (its default LxmlEventWriter), one per process so the dataclasses'
    metadata is worked out once."""
    return XmlSerializer(config=SerializerConfig(encoding="UTF-8", indent="  "))


# A transaction in xsdata's output (default namespace, no prefix; a `<` in a value is escaped).
_TRANSACTION_TEXT = re.compile(r"<CdtTrfTxInf>.*?</CdtTrfTxInf>", re.DOTALL)


def _render_iso(document: Document, blocks: dict[str, list[_Checked]]) -> bytes:
    """The file's bytes: xsdata serialises `document`, whose blocks hold their shapes' marker
    transactions; in each block these make way for every payment's transaction, its shape's text
    with the payment's values, in order, indented and separated as xsdata indents siblings."""
    text = _serializer().render(document, ns_map={None: NAMESPACES[FORMAT_ISO20022]})
    written = _TRANSACTION_TEXT.finditer(text)
    pieces: list[str] = []
    position = 0
    for currency, items in blocks.items():
        keyed = [(_Shape.key(item), item) for item in items]
        keys = list(dict.fromkeys(key for key, _ in keyed))
        found = list(itertools.islice(written, len(keys)))
        if len(found) != len(keys):
            raise RuntimeError("xsdata wrote fewer transactions than the shapes it was given")
        before = text[position : found[0].start()]
        separator = before[len(before.rstrip()) :]  # the whitespace xsdata put before a sibling
        for previous, following in itertools.pairwise(found):
            if text[previous.end() : following.start()] != separator:
                raise RuntimeError("xsdata wrote something between a block's transactions")
        shapes = {
            key: _Shape.of(match.group(), currency) for key, match in zip(keys, found, strict=True)
        }
        pieces += (before, separator.join([shapes[key].filled(item) for key, item in keyed]))
        position = found[-1].end()
    if next(written, None) is not None:
        raise RuntimeError("xsdata wrote more transactions than the shapes it was given")
    pieces.append(text[position:])
    return "".join(pieces).encode("utf-8")


# Private-use characters: `latin_text` and the reference and account checks keep them out of every
# real value, so a marker in xsdata's output can only be where a marker went in.
_MARK_START, _MARK_END = "\ue000", "\ue001"
_MARKER_AMOUNT = 987_654_321_012_345  # minor units: its text is unlike any code in a transaction
_SLOT_VALUES: dict[str, Callable[[_Checked], str | None]] = {
    "end_to_end_id": attrgetter("payment.end_to_end_id"),
    "name": attrgetter("name"),
    "remittance": attrgetter("remittance"),
    "iban": attrgetter("iban"),
    "bic": attrgetter("bic"),
    "account_number": attrgetter("account_number"),
    "bank_code": attrgetter("bank_code"),
}
# What lxml escapes in element text; no checked value has any, but a value that did would still
# be written as lxml writes it.
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_NEEDS_ESCAPE = re.compile("[&<>\r]")


def _marker(field: str) -> str:
    return f"{_MARK_START}{field}{_MARK_END}"


def _marked(field: str, value: str | None) -> str | None:
    """The marker of an optional field that is present; None stays None (it is the shape)."""
    return None if value is None else _marker(field)


def _amount_text(item: _Checked) -> str:
    """xsdata writes a Decimal as f"{value:f}", which for `_major` is `_decimal_text`."""
    return _decimal_text(item.payment.amount_minor, item.payment.currency)


def _escaped(value: str) -> str:
    return _NEEDS_ESCAPE.sub(lambda found: _TEXT_ESCAPES[found.group()], value)


@dataclass(frozen=True)
class _Shape:
    """A transaction as xsdata wrote it for a payment of one shape, values replaced by markers.

    `_transaction` reads a payment's scheme, country and currency, which optional fields are
    present, and the values of the others; `key` is the first part, so payments with one key
    differ only in the values, and those are where the markers are. `template` is xsdata's text
    with a `{}` for each marker (each element text), `slots` the values that go there.
    """

    template: str
    slots: tuple[Callable[[_Checked], str | None], ...]

    @staticmethod
    def key(item: _Checked) -> tuple[object, ...]:
        payment = item.payment
        present = (item.iban, item.bic, item.account_number, item.bank_code)
        return (payment.scheme, payment.country, payment.currency, *(v is None for v in present))

    @staticmethod
    def marked(item: _Checked) -> _Checked:
        """The payment of `item`'s shape whose values are all markers."""
        payment = Payment(
            end_to_end_id=_marker("end_to_end_id"),
            creditor_name=_marker("name"),
            scheme=item.payment.scheme,
            iban=_marked("iban", item.payment.iban),
            bic=_marked("bic", item.payment.bic),
            account_number=_marked("account_number", item.payment.account_number),
            bank_code=_marked("bank_code", item.payment.bank_code),
            country=item.payment.country,
            amount_minor=_MARKER_AMOUNT,
            currency=item.payment.currency,
            remittance=_marker("remittance"),
        )
        return _Checked(
            payment,
            name=payment.creditor_name,
            remittance=payment.remittance,
            iban=_marked("iban", item.iban),
            bic=_marked("bic", item.bic),
            account_number=_marked("account_number", item.account_number),
            bank_code=_marked("bank_code", item.bank_code),
            name_length=item.name_length,
        )

    @classmethod
    def markers(cls, items: Sequence[_Checked]) -> list[CreditTransferTransaction34]:
        """One marker transaction per shape among `items`, in order of first appearance."""
        first: dict[tuple[object, ...], _Checked] = {}
        for item in items:
            first.setdefault(cls.key(item), item)
        return [_transaction(cls.marked(item)) for item in first.values()]

    @classmethod
    def of(cls, text: str, currency: str) -> _Shape:
        """The shape xsdata wrote as `text`; a marker other than a whole element text is one
        this does not fill, and is refused."""
        values = {_marker(field): value for field, value in _SLOT_VALUES.items()}
        values[_decimal_text(_MARKER_AMOUNT, currency)] = _amount_text
        alternatives = "|".join(re.escape(marker) for marker in values)
        pieces = re.split(f"(?<=>)({alternatives})(?=<)", text)
        literals, markers = pieces[0::2], pieces[1::2]
        if any(_MARK_START in literal for literal in literals):
            raise RuntimeError(f"xsdata wrote a marker this does not fill: {text}")
        template = "{}".join(p.replace("{", "{{").replace("}", "}}") for p in literals)
        return cls(template, tuple(values[marker] for marker in markers))

    def filled(self, item: _Checked) -> str:
        values = [slot(item) or "" for slot in self.slots]
        if _NEEDS_ESCAPE.search("".join(values)):
            values = [_escaped(value) for value in values]
        return self.template.format(*values)


class _SepaTransfer(SepaTransfer):
    """sepaxml's transfer with the caller's message id, creation time and payment block id.

    sepaxml draws the message and block ids at random and stamps the local time; the bank's status
    reports and statements refer to these ids, so they must be the ones stored with the run.
    sepaxml's `clean` (text_unidecode, cut to 70 / 140) is off: the names and texts it is given
    are `latin_text` already (the EPC set, cut to those lengths), on which it changes nothing.
    """

    def __init__(
        self,
        config: dict[str, object],
        *,
        message_id: str,
        created: str,
        payment_information_id: str,
    ) -> None:
        self._wanted_message_id = message_id
        self._created = created
        self._payment_information_id = payment_information_id
        super().__init__(config, schema=FORMAT_SEPA, clean=False)

    def _create_header(self) -> None:
        self.msg_id = self._wanted_message_id
        super()._create_header()
        self._xml.find("CstmrCdtTrfInitn/GrpHdr/CreDtTm").text = self._created

    def _finalize_batch(self) -> None:
        super()._finalize_batch()
        for node in self._xml.iter("PmtInfId"):
            node.text = self._payment_information_id


def _xml_file(
    name: str, fmt: str, content: bytes, message_id: str, checked: Sequence[_Checked]
) -> PayoutFile:
    return PayoutFile(
        name=name,
        format=fmt,
        media_type=XML_MEDIA_TYPE,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        message_id=message_id,
        currencies=sorted({item.payment.currency for item in checked}),
        line_count=len(checked),
        end_to_end_ids=tuple(item.payment.end_to_end_id for item in checked),
        _checked=tuple(checked),
    )


def _payment_information_id(message_id: str, currency: str) -> str:
    """PmtInfId (Max35Text): the message id and the block's currency, unique within the file and,
    through the message id (hashed when it is too long to keep whole), across files."""
    base = message_id
    if len(base) > 31:
        base = f"{message_id[:22]}-{hashlib.sha256(message_id.encode()).hexdigest()[:8]}"
    return f"{base}-{currency}"


# -- the CSV summary ------------------------------------------------------------------------------


@_collection_paused()
def summary_csv(
    payments: Sequence[Payment], *, name: str, files: Sequence[PayoutFile] = ()
) -> PayoutFile:
    """One row per payment for people: id, creditor, currency, amount, masked account, scheme, and
    the bank file it is in (from `files`' end-to-end ids; every payment must then be in exactly
    one of them, or the summary would promise a payment no file makes)."""
    _check_file_name(name)
    known = {id(item.payment): item for made in files for item in made._checked}
    checked = _check_payments(payments, NAME_LENGTH, known)
    file_of: dict[str, str] = {}
    for made in files:
        for end_to_end_id in made.end_to_end_ids:
            if end_to_end_id in file_of:
                raise Invalid(
                    f"end-to-end id {end_to_end_id} is in both {file_of[end_to_end_id]} and "
                    f"{made.name}: it would be paid twice"
                )
            file_of[end_to_end_id] = made.name
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for index, item in enumerate(checked):
        payment = item.payment
        file_name = file_of.get(payment.end_to_end_id, "")
        if files and not file_name:
            raise Invalid(f"{_where(index, payment)} is in none of the payout files")
        writer.writerow(
            (
                _cell(payment.end_to_end_id),
                _cell(item.name),
                payment.currency,
                _decimal_text(payment.amount_minor, payment.currency),
                mask_account(item.account),
                payment.scheme,
                file_name,
            )
        )
    content = buffer.getvalue().encode("utf-8")
    return PayoutFile(
        name=name,
        format=FORMAT_CSV,
        media_type=CSV_MEDIA_TYPE,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        message_id=None,
        currencies=sorted({item.payment.currency for item in checked}),
        line_count=len(checked),
    )


def mask_account(account: str) -> str:
    """Everything but the last four characters hidden, so a summary can be mailed around."""
    return "****" + account[-4:] if account else ""


def _cell(text: str) -> str:
    """A spreadsheet runs a cell starting with = + - @ as a formula: quote it (OWASP's advice)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# -- validation -----------------------------------------------------------------------------------


def validate(content: bytes, format: str) -> None:
    """Refuse a payout file the bank would refuse: its XSD's first error, then the rules an XSD
    cannot state (decimals per currency, sums and counts that add up, unique end-to-end ids, a
    creditor account on every transfer)."""
    if format == FORMAT_CSV:
        _validate_csv(content)
        return
    if format not in NAMESPACES:
        raise Invalid(f"unknown payout file format {format!r}", code="payout_file_invalid")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        tree = etree.fromstring(content, parser).getroottree()
    except etree.XMLSyntaxError as error:
        raise Invalid(
            f"the {format} file is not well-formed XML: {error}", code="payout_file_invalid"
        ) from None
    if tree.docinfo.doctype:
        raise Invalid(
            f"the {format} file declares a DOCTYPE; payment files have none",
            code="payout_file_invalid",
        )
    schema = _schema(format)
    if not schema.validate(tree):
        first = schema.error_log[0]
        raise Invalid(
            f"the {format} file does not validate against its XSD (line {first.line}): "
            f"{first.message}",
            code="payout_file_invalid",
        )
    _check_sums(tree.getroot(), format)


@cache
def _schema(fmt: str) -> etree.XMLSchema:
    """The ISO 20022 XSD sepaxml ships for `fmt`, parsed once per process."""
    return etree.XMLSchema(etree.parse(str(SCHEMAS_DIR / f"{fmt}.xsd")))


def _check_sums(root: etree._Element, fmt: str) -> None:
    ns = {"p": NAMESPACES[fmt]}
    seen: set[str] = set()
    total = Decimal(0)
    count = 0
    for block in root.iterfind("p:CstmrCdtTrfInitn/p:PmtInf", ns):
        block_total = Decimal(0)
        transactions = _transactions(block, fmt)
        for transaction in transactions:
            end_to_end_id = transaction.end_to_end_id
            if end_to_end_id in seen:
                raise _inconsistent(fmt, f"end-to-end id {end_to_end_id} appears twice")
            seen.add(end_to_end_id)
            _check_creditor_account(transaction, fmt)
            block_total += _checked_amount(transaction, fmt)
        count += len(transactions)
        total += block_total
        block_id = block.findtext("p:PmtInfId", namespaces=ns)
        _check_control(block, ns, fmt, len(transactions), block_total, f"block {block_id}")
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", ns)
    assert header is not None  # the XSD requires it
    _check_control(header, ns, fmt, count, total, "the group header")


@dataclass
class _Transaction:
    """What the checks read of one CdtTrfTxInf (the first of each, as `find` would give)."""

    end_to_end_id: str = ""
    creditor_iban: bool = False  # CdtrAcct/Id/IBAN is there
    creditor_other_id: str | None = None  # CdtrAcct/Id/Othr/Id's text
    amount: etree._Element | None = None  # Amt/InstdAmt


def _transactions(block: etree._Element, fmt: str) -> list[_Transaction]:
    """What the checks read of each of a block's transactions, in one pass over the block's
    elements with the tags involved (filtered in C); each one counts only at its own place in its
    transaction. Several ElementPath look-ups per transaction cost more than the XSD validation."""
    tag = f"{{{NAMESPACES[fmt]}}}".__add__
    start, end_to_end_id, amount, iban, other = (
        tag(name) for name in ("CdtTrfTxInf", "EndToEndId", "InstdAmt", "IBAN", "Othr")
    )
    at_id, at_amount, at_account = (tag("PmtId"),), (tag("Amt"),), (tag("Id"), tag("CdtrAcct"))
    found: list[_Transaction] = []
    current, element = _Transaction(), block
    for node in block.iter(start, end_to_end_id, amount, iban, other):
        name = node.tag
        if name == start:
            current, element = _Transaction(), node
            found.append(current)
        elif name == end_to_end_id:
            if not current.end_to_end_id and _is_at(node, element, at_id):
                current.end_to_end_id = node.text or ""
        elif name == amount:
            if current.amount is None and _is_at(node, element, at_amount):
                current.amount = node
        elif _is_at(node, element, at_account):
            if name == iban:
                current.creditor_iban = True
            elif current.creditor_other_id is None:
                current.creditor_other_id = _child_text(node, at_account[0])
    return found


def _child_text(node: etree._Element, name: str) -> str:
    """The text of `node`'s first child tagged `name` ("" if none), as `findtext` gives it."""
    for child in node:
        if child.tag == name:
            return child.text or ""
    return ""


def _is_at(node: etree._Element, transaction: etree._Element, parents: tuple[str, ...]) -> bool:
    """Whether `node`'s parents have these tags (nearest first), the next being `transaction`."""
    for name in parents:
        node = node.getparent()
        if node is None or node.tag != name:
            return False
    return node.getparent() is transaction


def _check_creditor_account(transaction: _Transaction, fmt: str) -> None:
    """The XSD lets a transfer omit the creditor's account (ISO covers cheques); a credit transfer
    to nobody's account is one a bank returns, and SEPA pays IBANs only (EPC rulebook)."""
    if transaction.creditor_iban:
        return
    end_to_end_id = transaction.end_to_end_id
    if fmt == FORMAT_SEPA:
        raise _inconsistent(fmt, f"transaction {end_to_end_id} has no creditor IBAN")
    if not (transaction.creditor_other_id or "").strip():
        raise _inconsistent(fmt, f"transaction {end_to_end_id} has no creditor account")


def _checked_amount(transaction: _Transaction, fmt: str) -> Decimal:
    """The instructed amount, with no more decimals than its currency has (the XSD allows 5)."""
    node = transaction.amount
    end_to_end_id = transaction.end_to_end_id
    if node is None:  # an equivalent amount (EqvtAmt): not a payout this module writes
        raise _inconsistent(fmt, f"transaction {end_to_end_id} has no instructed amount")
    currency = node.get("Ccy", "")
    if fmt == FORMAT_SEPA and currency != "EUR":
        raise _inconsistent(fmt, f"transaction {end_to_end_id} is in {currency}; SEPA is EUR only")
    try:
        places = exponent(currency)
    except UnknownCurrency as error:
        raise _inconsistent(fmt, f"transaction {end_to_end_id}: {error}") from None
    text = (node.text or "").strip()
    amount = Decimal(text)
    written = len(text.partition(".")[2])
    if written > places:
        raise _inconsistent(
            fmt,
            f"transaction {end_to_end_id}: {text} {currency} has {written} decimals, "
            f"{currency} has {places}",
        )
    return amount


def _check_control(
    node: etree._Element, ns: dict[str, str], fmt: str, count: int, total: Decimal, what: str
) -> None:
    stated_count = node.findtext("p:NbOfTxs", namespaces=ns)
    if stated_count is not None and int(stated_count) != count:
        raise _inconsistent(fmt, f"{what} says {stated_count} transactions, it has {count}")
    stated_sum = node.findtext("p:CtrlSum", namespaces=ns)
    if stated_sum is not None and Decimal(stated_sum) != total:
        raise _inconsistent(
            fmt, f"{what}'s control sum is {stated_sum}, its amounts add up to {total}"
        )


def _inconsistent(fmt: str, message: str) -> Invalid:
    return Invalid(f"the {fmt} file is inconsistent: {message}", code="payout_file_invalid")


def _validate_csv(content: bytes) -> None:
    try:
        rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as error:
        raise Invalid(
            f"the CSV summary is unreadable: {error}", code="payout_file_invalid"
        ) from None
    if not rows or tuple(rows[0]) != CSV_HEADER:
        raise Invalid(
            f"the CSV summary's header is not {','.join(CSV_HEADER)}", code="payout_file_invalid"
        )
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(CSV_HEADER):
            raise Invalid(
                f"the CSV summary's line {number} has {len(row)} fields, not {len(CSV_HEADER)}",
                code="payout_file_invalid",
            )


# -- checking the input ---------------------------------------------------------------------------


def latin_text(text: str, limit: int) -> str:
    """Transliterated into the SWIFT/EPC Latin set ("Zoë Müller-Łukasz" -> "Zoe Muller-Lukasz"),
    other characters as spaces, runs of spaces collapsed, cut to `limit`."""
    # text_unidecode maps every ASCII character to itself (a test pins it): only the rest needs it.
    latin = _NOT_LATIN.sub(" ", text if text.isascii() else unidecode(text))
    return " ".join(latin.split())[:limit].rstrip()


def _check_payments(
    payments: Sequence[Payment], name_length: int, known: Mapping[int, _Checked] | None = None
) -> list[_Checked]:
    """Every payment checked (`known`: by `id`, payments a file has checked already)."""
    if not payments:
        raise Invalid("a payout file needs at least one payment", code="no_payments")
    checked: list[_Checked] = []
    seen: dict[str, int] = {}
    for index, payment in enumerate(payments):
        if not isinstance(payment, Payment):
            raise Invalid(f"payment {index + 1} is a {type(payment).__name__}, not a Payment")
        where = _Where(index, payment)
        _check_reference(payment.end_to_end_id, f"payment {index + 1}'s end-to-end id")
        if payment.end_to_end_id in seen:
            raise Invalid(
                f"{where}: end-to-end id {payment.end_to_end_id} is also payment "
                f"{seen[payment.end_to_end_id] + 1}'s; reconciliation needs them unique"
            )
        seen[payment.end_to_end_id] = index
        found = known.get(id(payment)) if known else None
        if found is not None and found.payment is payment:
            checked.append(_named(found, name_length))
        else:
            checked.append(_check_payment(payment, where, name_length))
    return checked


def _named(item: _Checked, name_length: int) -> _Checked:
    """A checked payment with its name cut to `name_length` (SEPA cuts at 70, the rest at 140; a
    name that kept a letter cut shorter keeps it cut longer)."""
    if item.name_length == name_length:
        return item
    name = latin_text(item.payment.creditor_name, name_length)
    return item._replace(name=name, name_length=name_length)


def _check_payment(payment: Payment, where: _Where, name_length: int) -> _Checked:
    name = latin_text(_text(payment.creditor_name, where, "creditor name"), name_length)
    if not name:
        raise Invalid(f"{where}: the creditor name has no letters or digits a bank accepts")
    remittance = latin_text(_text(payment.remittance, where, "remittance"), REMITTANCE_LENGTH)
    if not remittance:
        raise Invalid(f"{where}: the remittance text is empty")
    try:
        validate_currency(payment.currency)
        validate_amount(payment.amount_minor)
    except ValueError as error:
        raise Invalid(f"{where}: {error}") from None
    if not isinstance(payment.country, str) or not _COUNTRY.fullmatch(payment.country):
        raise Invalid(f"{where}: country {payment.country!r} is not an ISO 3166 alpha-2 code")
    bic = _bic(payment.bic, where) if payment.bic else None
    if payment.scheme == "iban":
        if not payment.iban:
            raise Invalid(f"{where}: the iban scheme needs an IBAN")
        iban = _iban(payment.iban, where)
        if iban[:2] != payment.country:
            raise Invalid(
                f"{where}: the IBAN is a {iban[:2]} account, the payment says {payment.country}"
            )
        return _Checked(payment, name, remittance, iban, bic, None, None, name_length)
    if payment.scheme == "local":
        account_number = "".join(_text(payment.account_number or "", where).split())
        bank_code = "".join(_text(payment.bank_code or "", where).split())
        if not _ACCOUNT_NUMBER.fullmatch(account_number):
            raise Invalid(
                f"{where}: account number {account_number!r} is not 1-34 letters, digits or '-'"
            )
        if not _BANK_CODE.fullmatch(bank_code):
            raise Invalid(f"{where}: bank code {bank_code!r} is not 1-35 letters, digits or '-'")
        if payment.country == "US" and not _aba_routing_number(bank_code):
            raise Invalid(f"{where}: {bank_code} is not an ABA routing number (9 digits, checksum)")
        return _Checked(
            payment, name, remittance, None, bic, account_number, bank_code, name_length
        )
    raise Invalid(f"{where}: scheme {payment.scheme!r} is not one of {', '.join(SCHEMES)}")


def is_aba_routing_number(code: str) -> bool:
    """A US routing transit number: nine digits whose 3-7-1 weighted sum is a multiple of ten."""
    if len(code) != 9 or not code.isascii() or not code.isdigit():
        return False
    digits = [int(c) for c in code]
    weighted = sum(d * w for d, w in zip(digits, (3, 7, 1) * 3, strict=True))
    return weighted % 10 == 0


# Payrolls pay many accounts at few banks: a routing number is checked once per process.
_aba_routing_number = lru_cache(maxsize=4096)(is_aba_routing_number)


def _check_debtor(debtor: Debtor, name_length: int) -> tuple[str, str, str]:
    if not isinstance(debtor, Debtor):
        raise Invalid("the debtor must be a Debtor")
    name = latin_text(_text(debtor.name, "debtor name"), name_length)
    if not name:
        raise Invalid("the debtor name has no letters or digits a bank accepts")
    if not debtor.iban:
        raise Invalid("the debtor needs an IBAN")
    if not debtor.bic:
        raise Invalid("the debtor needs a BIC")
    return _iban(debtor.iban, "debtor"), _bic(debtor.bic, "debtor"), name


def _iban(value: str, where: object) -> str:
    try:
        return _parsed_iban(_text(value, where, "IBAN"))[0]
    except SchwiftyException as error:
        raise Invalid(f"{where}: the IBAN is invalid ({error})") from None


def _bic(value: str, where: object) -> str:
    try:
        return _parsed_bic(_text(value, where, "BIC"))
    except SchwiftyException as error:
        raise Invalid(f"{where}: the BIC is invalid ({error})") from None


def _in_sepa_zone(iban: str) -> bool:
    """Whether a valid IBAN's country is in the SEPA zone (schwifty's list)."""
    return _parsed_iban(iban)[1]


# Enough for a payroll's distinct accounts, checked for its bank file, then for its summary; an
# entry is a few hundred bytes, so the bound keeps a long-lived process's memory in check.
_PARSED_ACCOUNTS = 1 << 16


@lru_cache(maxsize=_PARSED_ACCOUNTS)
def _parsed_iban(text: str) -> tuple[str, bool]:
    """(compact form, in the SEPA zone) of a valid IBAN, or schwifty's error (not cached).

    Cached by text: the answer depends on the text and schwifty's registry only, and parsing is
    most of what checking a payment costs."""
    iban = IBAN(text)
    return str(iban.compact), bool(iban.in_sepa_zone)


@lru_cache(maxsize=_PARSED_ACCOUNTS)
def _parsed_bic(text: str) -> str:
    """The compact form of a valid BIC, or schwifty's error (not cached); cached as IBANs are."""
    return str(BIC(text).compact)


def _text(value: object, what: object, field: str = "") -> str:
    """`value` if it is text; `what` (and `field`) name it in the refusal, formatted only then."""
    if not isinstance(value, str):
        raise Invalid(f"{what}: {field} must be text" if field else f"{what} must be text")
    return value


def _check_reference(value: object, what: str) -> None:
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value) or "//" in value:
        raise Invalid(
            f"{what} {value!r} must be 1-35 characters of A-Z a-z 0-9 / - ? : ( ) . , ' + "
            "(no spaces, no '//', starting with a letter or digit, not ending in '/')"
        )


def _check_file_name(name: object) -> None:
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or ".." in name:
        raise Invalid(
            f"file name {name!r} must be 1-200 characters of letters, digits, '.', '_' or '-'"
        )


def _execution_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise Invalid(f"the execution date must be a date, not {type(value).__name__}")
    return value


def _creation_time(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise Invalid("the creation time must be a datetime with a time zone")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _major(payment: Payment) -> Decimal:
    """Minor units as the decimal the file states: 1200 JPY -> 1200, 12345 KWD -> 12.345."""
    return Decimal(payment.amount_minor).scaleb(-exponent(payment.currency))


def _decimal_text(amount_minor: int, currency: str) -> str:
    """Minor units as the currency's decimal text (1200 JPY "1200", 12345 KWD "12.345"), by integer
    arithmetic: the same text as formatting `_major` (a test compares them), a fraction the cost."""
    places = exponent(currency)
    if places == 0:
        return str(amount_minor)
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 10**places)
    return f"{sign}{units}.{cents:0{places}d}"


def _where(index: int, payment: Payment) -> str:
    end_to_end_id = getattr(payment, "end_to_end_id", None)
    label = end_to_end_id if isinstance(end_to_end_id, str) and end_to_end_id else "no id"
    return f"payment {index + 1} ({label[:35]})"


class _Where:
    """`_where` of a payment, worked out only when a message needs it (most payments pass)."""

    __slots__ = ("index", "payment")

    def __init__(self, index: int, payment: Payment) -> None:
        self.index = index
        self.payment = payment

    def __format__(self, spec: str) -> str:
        return format(_where(self.index, self.payment), spec)

    def __str__(self) -> str:
        return _where(self.index, self.payment)
