"""The demo's bank: it reads the payout files payroll wrote and answers with its statement.

A real bank executes a pain.001 credit transfer file and, next morning, sends a camt.053
bank-to-customer statement of the account it debited. This one does the same offline: every
transfer in the files is booked as a debit (its end-to-end id echoed, as banks do), one of them
comes back returned (reason AC04, account closed) the way banks book a return (a credit with
the same end-to-end id and the RRTN sub-family), and the statement's balances add up. One
statement per currency, as a multi-currency account is reported, in the version most banks
still send (camt.053.001.02). Quire then imports it like any bank's file, through the API.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from lxml import etree
from lxml.builder import ElementMaker

from quire.money import exponent

CAMT053 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
OPENING_BALANCE = {"EUR": 250_000_00, "JPY": 50_000_000}  # minor units; any other: 0
RETURN_REASON = ("AC04", "Account closed")


@dataclass(frozen=True)
class Transfer:
    """One credit transfer as the payout file asked for it."""

    end_to_end_id: str
    amount_minor: int
    currency: str
    creditor: str
    creditor_account: str
    execution_date: dt.date
    debtor_account: str


def transfers_in(files: Iterable[Path]) -> list[Transfer]:
    """Every credit transfer of these pain.001 files (any version: elements by local name)."""
    found: list[Transfer] = []
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for path in files:
        root = etree.parse(str(path), parser).getroot()
        for block in _all(root, "PmtInf"):
            debtor = _text(_one(block, "DbtrAcct"), ".//*[local-name()='IBAN']")
            executed = dt.date.fromisoformat(_text(block, ".//*[local-name()='ReqdExctnDt']")[:10])
            for tx in _all(block, "CdtTrfTxInf"):
                amount = _one(tx, "InstdAmt")
                currency = amount.get("Ccy", "")
                found.append(
                    Transfer(
                        end_to_end_id=_text(tx, ".//*[local-name()='EndToEndId']"),
                        amount_minor=int(Decimal(amount.text or "0").scaleb(exponent(currency))),
                        currency=currency,
                        creditor=_text(tx, "./*[local-name()='Cdtr']/*[local-name()='Nm']"),
                        creditor_account=_text(
                            _one(tx, "CdtrAcct"), ".//*[local-name()='Id'][not(*)]"
                        )
                        or _text(_one(tx, "CdtrAcct"), ".//*[local-name()='IBAN']"),
                        execution_date=executed,
                        debtor_account=debtor,
                    )
                )
    return found


def statement_for(
    transfers: list[Transfer], *, returned: str | None, booked_on: dt.date, bank: str = "DEMOBANK"
) -> bytes:
    """The camt.053 the bank sends for the day it executed `transfers`: one statement per
    currency; the transfer whose end-to-end id is `returned` is booked and then returned."""
    if not transfers:
        raise ValueError("no transfers: the bank has nothing to report")
    E = ElementMaker(namespace=CAMT053, nsmap={None: CAMT053})
    stamp = f"{booked_on.isoformat()}T07:30:00Z"
    statements = []
    for number, currency in enumerate(sorted({t.currency for t in transfers}), start=1):
        booked = [t for t in transfers if t.currency == currency]
        entries = []
        moved = 0
        for index, transfer in enumerate(booked, start=1):
            entries.append(_entry(E, transfer, f"{number}-{index}", booked_on, returned=False))
            moved -= transfer.amount_minor
            if transfer.end_to_end_id == returned:
                entries.append(_entry(E, transfer, f"{number}-{index}R", booked_on, returned=True))
                moved += transfer.amount_minor
        opening = OPENING_BALANCE.get(currency, 0)
        statements.append(
            E.Stmt(
                E.Id(f"{bank}-{booked_on:%Y%m%d}-{currency}"),
                E.ElctrncSeqNb(str(booked_on.toordinal())),
                E.CreDtTm(stamp),
                E.Acct(E.Id(E.IBAN(booked[0].debtor_account)), E.Ccy(currency)),
                _balance(E, "OPBD", opening, currency, booked_on - dt.timedelta(days=1)),
                _balance(E, "CLBD", opening + moved, currency, booked_on),
                *entries,
            )
        )
    document = E.Document(
        E.BkToCstmrStmt(
            E.GrpHdr(E.MsgId(f"{bank}-{booked_on:%Y%m%d}"), E.CreDtTm(stamp)), *statements
        )
    )
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _entry(
    E: ElementMaker, transfer: Transfer, reference: str, booked_on: dt.date, *, returned: bool
) -> etree._Element:
    amount = _amount(E, transfer.amount_minor, transfer.currency)
    party, account = ("Dbtr", "DbtrAcct") if returned else ("Cdtr", "CdtrAcct")
    details = [
        E.Refs(E.EndToEndId(transfer.end_to_end_id)),
        E.AmtDtls(E.TxAmt(_amount(E, transfer.amount_minor, transfer.currency))),
        E.RltdPties(
            E(party, E.Nm(transfer.creditor)),
            E(account, E.Id(E.Othr(E.Id(transfer.creditor_account)))),
        ),
    ]
    if returned:
        code, why = RETURN_REASON
        details.append(E.RtrInf(E.Rsn(E.Cd(code)), E.AddtlInf(why)))
    return E.Ntry(
        E.NtryRef(reference),
        amount,
        E.CdtDbtInd("CRDT" if returned else "DBIT"),
        E.Sts("BOOK"),
        E.BookgDt(E.Dt(booked_on.isoformat())),
        E.ValDt(E.Dt(booked_on.isoformat())),
        E.AcctSvcrRef(f"BK-{reference}"),
        E.BkTxCd(
            E.Domn(E.Cd("PMNT"), E.Fmly(E.Cd("ICDT"), E.SubFmlyCd("RRTN" if returned else "ESCT")))
        ),
        E.NtryDtls(E.TxDtls(*details)),
    )


def _balance(
    E: ElementMaker, code: str, amount_minor: int, currency: str, on: dt.date
) -> etree._Element:
    return E.Bal(
        E.Tp(E.CdOrPrtry(E.Cd(code))),
        _amount(E, abs(amount_minor), currency),
        E.CdtDbtInd("CRDT" if amount_minor >= 0 else "DBIT"),
        E.Dt(E.Dt(on.isoformat())),
    )


def _amount(E: ElementMaker, amount_minor: int, currency: str) -> etree._Element:
    places = exponent(currency)
    return E.Amt(f"{Decimal(amount_minor).scaleb(-places):.{places}f}", Ccy=currency)


def _all(node: etree._Element, name: str) -> list[etree._Element]:
    return node.xpath(f".//*[local-name()='{name}']")


def _one(node: etree._Element, name: str) -> etree._Element:
    found = _all(node, name)
    if not found:
        raise ValueError(f"a payout file without {name}")
    return found[0]


def _text(node: etree._Element, path: str) -> str:
    found = node.xpath(path)
    return "".join(found[0].itertext()).strip() if found else ""  # <ReqdExctnDt><Dt> in .09
