"""The files finance hands to the bank: the credit transfers it executes, and a summary.

- EUR to IBANs in the SEPA zone: a SEPA credit transfer, ISO 20022 `pain.001.001.03`, built by
  `sepaxml` and exported with its XSD validation.
- Every other currency (and EUR to accounts outside SEPA): ISO 20022 `pain.001.001.09`, built from
  `pyiso20022`'s generated dataclasses and serialised by `xsdata`, one payment information block
  per currency so each block's control sum is a sum in one currency.
- A CSV summary of every payment for people (accounts masked to their last four characters).

The bank echoes each transaction's end-to-end id on its statement, so reconciliation matches on it:
ids come from the caller, must be unique in a file, and are never rewritten here. Names and texts
are transliterated to the SWIFT/EPC Latin character set (what every bank accepts), never silently
dropped: a name that transliterates to nothing is refused.

Both XSDs are the ISO 20022 schemas `sepaxml` ships (`sepaxml/schemas/`), so the file sepaxml
validated and the file `validate` checks are checked against the same bytes. `validate` adds the
rules an XSD cannot express: no more decimals than the currency has (JPY 0, KWD 3), control sums
and transaction counts that add up, end-to-end ids unique, every transfer to an account (the ISO
XSDs let CdtrAcct be absent), SEPA files in EUR and to IBANs only.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

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
from sepaxml.validation import ValidationError as SepaValidationError
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


@dataclass(frozen=True)
class _Checked:
    """A payment after validation: normalised account identifiers, Latin-only texts."""

    payment: Payment
    name: str
    remittance: str
    iban: str | None
    bic: str | None
    account_number: str | None
    bank_code: str | None

    @property
    def account(self) -> str:
        return self.iban or self.account_number or ""


# -- the two XML formats --------------------------------------------------------------------------


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
    if not IBAN(debtor_iban).in_sepa_zone:
        raise Invalid(f"the debtor's IBAN ({debtor_iban[:2]}) is outside the SEPA zone")
    checked = _check_payments(payments, SEPA_NAME_LENGTH)
    for index, item in enumerate(checked):
        payment = item.payment
        where = _where(index, payment)
        if payment.currency != "EUR":
            raise Invalid(
                f"{where}: a SEPA credit transfer is in EUR only, not {payment.currency} "
                "(other currencies go in the pain.001.001.09 file)"
            )
        if item.iban is None:
            raise Invalid(f"{where}: a SEPA credit transfer pays an IBAN, not a local account")
        if not IBAN(item.iban).in_sepa_zone:
            raise Invalid(f"{where}: the IBAN's country {item.iban[:2]} is outside the SEPA zone")

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
    try:
        content = transfer.export(validate=True)
    except SepaValidationError as error:
        raise Invalid(
            f"the SEPA file does not validate against {FORMAT_SEPA}: {_xmlschema_reason(error)}",
            code="payout_file_invalid",
        ) from error
    validate(content, FORMAT_SEPA)
    return _xml_file(name, FORMAT_SEPA, content, message_id, checked)


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
    when = _execution_date(execution_date)
    created = _creation_time(created_at)
    debtor_iban, debtor_bic, debtor_name = _check_debtor(debtor, NAME_LENGTH)
    checked = _check_payments(payments, NAME_LENGTH)

    by_currency: dict[str, list[_Checked]] = {}
    for item in checked:
        by_currency.setdefault(item.payment.currency, []).append(item)
    blocks = []
    for currency in sorted(by_currency):
        items = by_currency[currency]
        blocks.append(
            PaymentInstruction30(
                pmt_inf_id=_payment_information_id(message_id, currency),
                pmt_mtd=PaymentMethod3Code.TRF,
                btch_bookg=True,
                nb_of_txs=str(len(items)),
                ctrl_sum=sum((_major(i.payment) for i in items), Decimal(0)),
                reqd_exctn_dt=DateAndDateTime2Choice(dt=XmlDate.from_date(when)),
                dbtr=PartyIdentification135(nm=debtor_name),
                dbtr_acct=CashAccount38(id=AccountIdentification4Choice(iban=debtor_iban)),
                dbtr_agt=BranchAndFinancialInstitutionIdentification6(
                    fin_instn_id=FinancialInstitutionIdentification18(bicfi=debtor_bic)
                ),
                chrg_br=ChargeBearerType1Code.DEBT,
                cdt_trf_tx_inf=[_transaction(item) for item in items],
            )
        )
    document = Document(
        cstmr_cdt_trf_initn=CustomerCreditTransferInitiationV09(
            grp_hdr=GroupHeader85(
                msg_id=message_id,
                cre_dt_tm=XmlDateTime.from_datetime(created),
                nb_of_txs=str(len(checked)),
                # ISO 20022: the total of all amounts in the message, irrespective of currency.
                ctrl_sum=sum((_major(i.payment) for i in checked), Decimal(0)),
                initg_pty=PartyIdentification135(nm=debtor_name),
            ),
            pmt_inf=blocks,
        )
    )
    serializer = XmlSerializer(config=SerializerConfig(encoding="UTF-8", indent="  "))
    text = serializer.render(document, ns_map={None: NAMESPACES[FORMAT_ISO20022]})
    content = text.encode("utf-8")
    validate(content, FORMAT_ISO20022)
    return _xml_file(name, FORMAT_ISO20022, content, message_id, checked)


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


class _SepaTransfer(SepaTransfer):
    """sepaxml's transfer with the caller's message id, creation time and payment block id.

    sepaxml draws the message and block ids at random and stamps the local time; the bank's status
    reports and statements refer to these ids, so they must be the ones stored with the run.
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
        super().__init__(config, schema=FORMAT_SEPA, clean=True)

    def _create_header(self) -> None:
        self.msg_id = self._wanted_message_id
        super()._create_header()
        self._xml.find("CstmrCdtTrfInitn/GrpHdr/CreDtTm").text = self._created

    def _finalize_batch(self) -> None:
        super()._finalize_batch()
        for node in self._xml.iter("PmtInfId"):
            node.text = self._payment_information_id


def _xmlschema_reason(error: SepaValidationError) -> str:
    cause = error.__cause__
    reason = getattr(cause, "reason", None) or str(cause or error)
    path = getattr(cause, "path", None)
    return f"{reason} (at {path})" if path else str(reason)


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
    )


def _payment_information_id(message_id: str, currency: str) -> str:
    """PmtInfId (Max35Text): the message id and the block's currency, unique within the file and,
    through the message id (hashed when it is too long to keep whole), across files."""
    base = message_id
    if len(base) > 31:
        base = f"{message_id[:22]}-{hashlib.sha256(message_id.encode()).hexdigest()[:8]}"
    return f"{base}-{currency}"


# -- the CSV summary ------------------------------------------------------------------------------


def summary_csv(
    payments: Sequence[Payment], *, name: str, files: Sequence[PayoutFile] = ()
) -> PayoutFile:
    """One row per payment for people: id, creditor, currency, amount, masked account, scheme, and
    the bank file it is in (from `files`' end-to-end ids; every payment must then be in exactly
    one of them, or the summary would promise a payment no file makes)."""
    _check_file_name(name)
    checked = _check_payments(payments, NAME_LENGTH)
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
        transactions = block.findall("p:CdtTrfTxInf", ns)
        for transaction in transactions:
            end_to_end_id = transaction.findtext("p:PmtId/p:EndToEndId", namespaces=ns) or ""
            if end_to_end_id in seen:
                raise _inconsistent(fmt, f"end-to-end id {end_to_end_id} appears twice")
            seen.add(end_to_end_id)
            _check_creditor_account(transaction, ns, fmt, end_to_end_id)
            block_total += _checked_amount(transaction, ns, fmt, end_to_end_id)
        count += len(transactions)
        total += block_total
        block_id = block.findtext("p:PmtInfId", namespaces=ns)
        _check_control(block, ns, fmt, len(transactions), block_total, f"block {block_id}")
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", ns)
    assert header is not None  # the XSD requires it
    _check_control(header, ns, fmt, count, total, "the group header")


def _check_creditor_account(
    transaction: etree._Element, ns: dict[str, str], fmt: str, end_to_end_id: str
) -> None:
    """The XSD lets a transfer omit the creditor's account (ISO covers cheques); a credit transfer
    to nobody's account is one a bank returns, and SEPA pays IBANs only (EPC rulebook)."""
    if transaction.find("p:CdtrAcct/p:Id/p:IBAN", ns) is not None:
        return
    if fmt == FORMAT_SEPA:
        raise _inconsistent(fmt, f"transaction {end_to_end_id} has no creditor IBAN")
    if not (transaction.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=ns) or "").strip():
        raise _inconsistent(fmt, f"transaction {end_to_end_id} has no creditor account")


def _checked_amount(
    transaction: etree._Element, ns: dict[str, str], fmt: str, end_to_end_id: str
) -> Decimal:
    """The instructed amount, with no more decimals than its currency has (the XSD allows 5)."""
    node = transaction.find("p:Amt/p:InstdAmt", ns)
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
    latin = _NOT_LATIN.sub(" ", unidecode(text))
    return " ".join(latin.split())[:limit].rstrip()


def _check_payments(payments: Sequence[Payment], name_length: int) -> list[_Checked]:
    if not payments:
        raise Invalid("a payout file needs at least one payment", code="no_payments")
    checked: list[_Checked] = []
    seen: dict[str, int] = {}
    for index, payment in enumerate(payments):
        if not isinstance(payment, Payment):
            raise Invalid(f"payment {index + 1} is a {type(payment).__name__}, not a Payment")
        where = _where(index, payment)
        _check_reference(payment.end_to_end_id, f"payment {index + 1}'s end-to-end id")
        if payment.end_to_end_id in seen:
            raise Invalid(
                f"{where}: end-to-end id {payment.end_to_end_id} is also payment "
                f"{seen[payment.end_to_end_id] + 1}'s; reconciliation needs them unique"
            )
        seen[payment.end_to_end_id] = index
        checked.append(_check_payment(payment, where, name_length))
    return checked


def _check_payment(payment: Payment, where: str, name_length: int) -> _Checked:
    name = latin_text(_text(payment.creditor_name, f"{where}: creditor name"), name_length)
    if not name:
        raise Invalid(f"{where}: the creditor name has no letters or digits a bank accepts")
    remittance = latin_text(_text(payment.remittance, f"{where}: remittance"), REMITTANCE_LENGTH)
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
        return _Checked(payment, name, remittance, iban, bic, None, None)
    if payment.scheme == "local":
        account_number = "".join(_text(payment.account_number or "", where).split())
        bank_code = "".join(_text(payment.bank_code or "", where).split())
        if not _ACCOUNT_NUMBER.fullmatch(account_number):
            raise Invalid(
                f"{where}: account number {account_number!r} is not 1-34 letters, digits or '-'"
            )
        if not _BANK_CODE.fullmatch(bank_code):
            raise Invalid(f"{where}: bank code {bank_code!r} is not 1-35 letters, digits or '-'")
        if payment.country == "US" and not is_aba_routing_number(bank_code):
            raise Invalid(f"{where}: {bank_code} is not an ABA routing number (9 digits, checksum)")
        return _Checked(payment, name, remittance, None, bic, account_number, bank_code)
    raise Invalid(f"{where}: scheme {payment.scheme!r} is not one of {', '.join(SCHEMES)}")


def is_aba_routing_number(code: str) -> bool:
    """A US routing transit number: nine digits whose 3-7-1 weighted sum is a multiple of ten."""
    if len(code) != 9 or not code.isascii() or not code.isdigit():
        return False
    digits = [int(c) for c in code]
    weighted = sum(d * w for d, w in zip(digits, (3, 7, 1) * 3, strict=True))
    return weighted % 10 == 0


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


def _iban(value: str, where: str) -> str:
    try:
        return str(IBAN(_text(value, f"{where}: IBAN")).compact)
    except SchwiftyException as error:
        raise Invalid(f"{where}: the IBAN is invalid ({error})") from None


def _bic(value: str, where: str) -> str:
    try:
        return str(BIC(_text(value, f"{where}: BIC")).compact)
    except SchwiftyException as error:
        raise Invalid(f"{where}: the BIC is invalid ({error})") from None


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be text")
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
    places = exponent(currency)
    return f"{Decimal(amount_minor).scaleb(-places):.{places}f}"


def _where(index: int, payment: Payment) -> str:
    end_to_end_id = getattr(payment, "end_to_end_id", None)
    label = end_to_end_id if isinstance(end_to_end_id, str) and end_to_end_id else "no id"
    return f"payment {index + 1} ({label[:35]})"
